"""Photometric losses: L1 and D-SSIM (the 3DGS mix 0.8 L1 + 0.2 (1 - SSIM))."""
from __future__ import annotations


import torch
import torch.nn.functional as F


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    w = g[:, None] * g[None, :]
    return w.expand(channels, 1, size, size).contiguous()


def ssim(img: torch.Tensor, ref: torch.Tensor, window: int = 11, sigma: float = 1.5,
         reduce: bool = True) -> torch.Tensor:
    """Structural similarity of images [..., H, W, C] in [0,1] (Gaussian 11x11 window, sigma 1.5,
    'valid' convolution as in the SSIM paper's reference). Returns the mean (or the map when reduce=False)."""
    if img.shape != ref.shape:
        raise ValueError(f"ssim: shapes differ {tuple(img.shape)} vs {tuple(ref.shape)}")
    x = img.reshape(-1, *img.shape[-3:]).permute(0, 3, 1, 2)
    y = ref.reshape(-1, *ref.shape[-3:]).permute(0, 3, 1, 2)
    c = x.shape[1]
    k = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(k, sigma, c, x.device, x.dtype)
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return m.mean() if reduce else m


def l1(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (img - ref).abs().mean()


def photometric_loss(img: torch.Tensor, ref: torch.Tensor, l1_weight: float = 0.8,
                     ssim_weight: float = 0.2) -> torch.Tensor:
    """l1_weight * L1 + ssim_weight * (1 - SSIM)."""
    loss = l1_weight * l1(img, ref)
    if ssim_weight > 0:
        loss = loss + ssim_weight * (1.0 - ssim(img, ref))
    return loss


def psnr(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0,1]."""
    mse = ((img - ref) ** 2).mean()
    return -10.0 * torch.log10(mse.clamp_min(1e-12))

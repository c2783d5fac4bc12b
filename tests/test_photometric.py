"""Photometric loss and image metrics against independent numpy/scipy implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from dyngauss.losses.photometric import l1, photometric_loss, psnr, ssim


def _ssim_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM with an 11-tap Gaussian (sigma 1.5) separable filter, 'valid' region only (Wang et al. 2004)."""
    k = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    k /= k.sum()

    def filt(a):
        a = correlate1d(a, k, axis=0, mode="constant")
        a = correlate1d(a, k, axis=1, mode="constant")
        return a[5:-5, 5:-5]

    vals = []
    for c in range(x.shape[-1]):
        a, b = x[..., c], y[..., c]
        mx, my = filt(a), filt(b)
        sxx, syy, sxy = filt(a * a) - mx * mx, filt(b * b) - my * my, filt(a * b) - mx * my
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        vals.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 40, 3))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    ours = ssim(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert ours == pytest.approx(_ssim_numpy(x, y), abs=1e-10)
    assert ssim(torch.from_numpy(x), torch.from_numpy(x)).item() == pytest.approx(1.0, abs=1e-12)


def test_psnr_and_l1():
    a = torch.zeros(4, 4, 3)
    b = torch.full((4, 4, 3), 0.1)
    assert psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)
    assert l1(a, b).item() == pytest.approx(0.1)


def test_photometric_loss_decreases_towards_target():
    torch.manual_seed(0)
    target = torch.rand(16, 16, 3)
    img = torch.rand(16, 16, 3, requires_grad=True)
    opt = torch.optim.Adam([img], lr=0.05)
    first = None
    for _ in range(50):
        loss = photometric_loss(img, target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first

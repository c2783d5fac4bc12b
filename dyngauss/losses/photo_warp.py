"""Temporal photometric consistency through rendered motion (NSFF's L_pho, Li et al. 2021, adapted to Gaussians).

For a training frame i (camera i, time t_i) and a neighbour frame j, the flow rendered at i from the Gaussians'
motion (:func:`dyngauss.render.flow.gaussian_flow_2d`: where each Gaussian seen at pixel x of frame i is in frame
j) says where to look in image j: ``I_j(x + F_ij(x))`` must match ``I_i(x)`` wherever the surface seen at x is
visible in j. The images themselves supervise the motion; no optical-flow estimate is involved. Gradients reach
the motion through the bilinear sampling of image j (its image gradient at the warped position).

Occlusion (NSFF weighs by predicted disocclusion; here a geometric test): the depth in camera j of the surface
seen at x (rendered at i as one more feature channel) is compared with the depth rendered at j where x lands
(:func:`depth_visible`); x is dropped when something nearer covers it in j.

Conventions: images [H,W,C], flow [H,W,2] in pixels (x right, y down), ``flow[r, c]`` = displacement of the
pixel (c, r); sampling positions are pixel indices (pixel centres at integers, as in OpenCV's remap).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["warp_image", "photo_warp_loss", "depth_visible"]


def _grid(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling positions x + flow [H,W,2] (pixel indices) and whether they lie inside the image [H,W]."""
    H, W = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(H, device=flow.device, dtype=flow.dtype),
                            torch.arange(W, device=flow.device, dtype=flow.dtype), indexing="ij")
    pos = torch.stack([xs, ys], -1) + flow
    inside = (pos[..., 0] >= 0) & (pos[..., 0] <= W - 1) & (pos[..., 1] >= 0) & (pos[..., 1] <= H - 1)
    return pos, inside


def warp_image(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward warp: ``out[r, c] = image(c + flow[r, c, 0], r + flow[r, c, 1])``, bilinear.

    Args: image [H,W,C] (the neighbour frame), flow [H,W,2] pixels (same H, W). Differentiable w.r.t. both.
    Returns (warped [H,W,C], inside [H,W] bool: the sample lies inside the image; outside, border values are
    repeated and should be masked out)."""
    if image.dim() != 3 or flow.dim() != 3 or flow.shape[-1] != 2 or image.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image must be [H,W,C] and flow [H,W,2] of one size, got {tuple(image.shape)} and "
                         f"{tuple(flow.shape)}")
    H, W = flow.shape[:2]
    pos, inside = _grid(flow)
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], device=flow.device, dtype=flow.dtype)
    grid = (pos * scale - 1.0)[None]                                       # [1,H,W,2], x then y
    img = image.to(flow.dtype).permute(2, 0, 1)[None]                      # [1,C,H,W]
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].permute(1, 2, 0), inside


def depth_visible(depth_in_j: torch.Tensor, depth_j: torch.Tensor, alpha_j: torch.Tensor, flow: torch.Tensor,
                  tol: float, alpha_threshold: float = 0.5) -> torch.Tensor:
    """Pixels of frame i [H,W] (bool) whose surface is not hidden in frame j.

    Args:
        depth_in_j [H,W]: camera-j z-depth of the surface seen at each pixel of i (rendered at i).
        depth_j [H,W]: accumulated (not normalised) z-depth rendered at j, alpha_j [H,W]: alpha rendered at j.
        flow [H,W,2]: rendered flow i -> j (pixels).
        tol: depth tolerance (world units).
    The expected depth at j where x lands is ``sample(depth_j) / sample(alpha_j)`` (bilinear; the background's
    zero weight keeps it out of the mean). x is visible when that depth is not nearer than ``depth_in_j - tol``,
    or when alpha_j there is at most `alpha_threshold` (nothing rendered there: no occluder). No gradient."""
    with torch.no_grad():
        both = torch.stack([depth_j, alpha_j], -1)
        s, _ = warp_image(both, flow.detach())
        acc, a = s[..., 0], s[..., 1]
        zj = acc / a.clamp_min(1e-6)
        return (a <= alpha_threshold) | (zj >= depth_in_j - tol)


def photo_warp_loss(image_i: torch.Tensor, image_j: torch.Tensor, flow: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 colour error (mean over channels) between image i and image j warped into frame i by `flow`, over
    the pixels in `mask` [H,W] whose sample lies inside image j; scalar (0, attached to flow's graph, when none).

    image_i, image_j [H,W,C] in [0,1]; flow [H,W,2] pixels i -> j (e.g. the rendered Gaussian flow)."""
    warped, inside = warp_image(image_j, flow)
    sel = inside if mask is None else inside & mask.to(inside.device).bool()
    err = (warped - image_i.to(warped)).abs().mean(-1)
    n = sel.sum()
    if int(n) == 0:
        return (flow * 0.0).sum()
    return torch.where(sel, err, torch.zeros_like(err)).sum() / n

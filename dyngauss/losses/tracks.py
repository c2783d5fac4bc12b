"""Long-range 2D track supervision: the rendered Gaussian flow from frame a to frame b, read at the tracked points
of frame a, against where the tracks are in frame b (data/tracks2d.py; Shape of Motion's track loss on projected
Gaussians, with tracks chained from optical flow).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .flow import flow_error_map

__all__ = ["sample_image", "track_loss"]


def sample_image(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples [M,C] of image [H,W,C] at pixel-index positions xy [M,2] (x, y; pixel centres at
    integers; positions outside are clamped to the border). Differentiable w.r.t. the image."""
    H, W = image.shape[:2]
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], device=image.device, dtype=image.dtype)
    grid = (xy.to(image) * scale - 1.0).reshape(1, 1, -1, 2)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0, :, 0].T


def track_loss(flow: torch.Tensor, alpha: torch.Tensor | None, xy_a: torch.Tensor, xy_b: torch.Tensor,
               alpha_threshold: float = 0.5, kind: str = "charbonnier", eps: float = 0.1,
               normalize: bool = True) -> torch.Tensor:
    """Mean robust error between the rendered flow at the tracked points and the tracks' displacement; scalar.

    Args:
        flow [H,W,2]: rendered flow a -> b (alpha-normalised, pixels). alpha [H,W,1] / [H,W] or None: rendered
            alpha at a; points where its sample is at most `alpha_threshold` are ignored (mask only).
        xy_a, xy_b [M,2]: the same tracks' positions in frames a and b (pixel indices).
        kind, eps: :func:`~dyngauss.losses.flow.flow_error_map` ("charbonnier" / "l1", eps in pixels).
        normalize: divide by the larger image side (image units, like the flow prior).
    Returns 0 (attached to flow's graph) when no point is selected."""
    if xy_a.shape != xy_b.shape or xy_a.dim() != 2 or xy_a.shape[-1] != 2:
        raise ValueError(f"track positions must be [M,2] of one shape, got {tuple(xy_a.shape)}, "
                         f"{tuple(xy_b.shape)}")
    if xy_a.shape[0] == 0:
        return (flow * 0.0).sum()
    pred = sample_image(flow, xy_a)
    err = flow_error_map(pred, (xy_b - xy_a).to(pred), kind, eps)
    if normalize:
        err = err / float(max(flow.shape[0], flow.shape[1]))
    if alpha is not None:
        a = alpha.detach()
        a = a if a.dim() == 3 else a[..., None]
        keep = sample_image(a.to(flow), xy_a)[:, 0] > alpha_threshold
        if not bool(keep.any()):
            return (flow * 0.0).sum()
        err = err[keep]
    return err.mean()

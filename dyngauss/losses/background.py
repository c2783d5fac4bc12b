"""Static background (Nerfies): points known to be static must not move.

:func:`background_loss` is the penalty; :func:`static_mask_from_masks` is one way to find the static
Gaussians when per-frame object masks exist (e.g. casual_twist ``masks/``): a Gaussian is static when it
projects outside the object mask in (almost) every view that sees it.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["background_loss", "static_mask_from_masks"]


def background_loss(canonical: torch.Tensor, posed: torch.Tensor, static: torch.Tensor,
                    kind: str = "l2sq") -> torch.Tensor:
    """Mean over static points of ||posed - canonical||^2 (kind "l2sq") or ||.|| (kind "l2", Nerfies); scalar.

    Args:
        canonical [N,3]: canonical means; posed [N,3]: the same points at time t.
        static [N] bool (flags) or float in [0,1] (weights, e.g. a soft background probability).
    Returns 0 (attached to the graph) when no point is static."""
    if canonical.shape != posed.shape:
        raise ValueError(f"shapes differ: {tuple(canonical.shape)} vs {tuple(posed.shape)}")
    w = static.to(device=posed.device, dtype=posed.dtype)
    d = posed - canonical
    if kind == "l2sq":
        e = (d * d).sum(-1)
    elif kind == "l2":
        e = torch.sqrt((d * d).sum(-1) + 1e-16) - 1e-8
    else:
        raise ValueError(f"unknown kind {kind!r}; use l2sq or l2")
    tot = w.sum()
    if float(tot) <= 0:
        return (posed * 0.0).sum()
    return (w * e).sum() / tot


@torch.no_grad()
def static_mask_from_masks(means: torch.Tensor, cameras: Sequence, masks: torch.Tensor,
                           min_static_fraction: float = 0.95, min_views: int = 1) -> torch.Tensor:
    """Static flags [N] bool for canonical/posed points [N,3] from object masks.

    masks [F,H,W] or [F,H,W,1] (object = > 0.5), one per camera (same size as the cameras). A point counts
    as static when, among the views where it projects inside the image in front of the camera, at least
    ``min_static_fraction`` put it outside the object mask, and there are at least ``min_views`` such views.
    Pass the means posed at each camera's time if the scene moves a lot; canonical means are usually enough
    for background (which does not move)."""
    m = masks[..., 0] if masks.dim() == 4 else masks
    n = means.shape[0]
    seen = torch.zeros(n, device=means.device)
    outside = torch.zeros(n, device=means.device)
    for cam, mk in zip(cameras, m):
        uv, z = cam.project(means)
        col, row = torch.floor(uv[:, 0]).long(), torch.floor(uv[:, 1]).long()
        H, W = mk.shape
        ok = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
        val = mk.to(means.device)[row.clamp(0, H - 1), col.clamp(0, W - 1)] > 0.5
        seen += ok.float()
        outside += (ok & ~val).float()
    return (seen >= min_views) & (outside >= min_static_fraction * seen)

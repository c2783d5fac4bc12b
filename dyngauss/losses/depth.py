"""Depth supervision: rendered expected depth vs a measured depth map (RGB-D input, DynamicFusion's data term in
image form; the depth losses of depth-supervised NeRF / Gaussian splatting).

Errors are in units of the scene radius (`unit`), so a world scaled x20 (depths x20, radius x20) gives the same
loss and the weight needs no retuning.
"""
from __future__ import annotations

import torch

__all__ = ["depth_loss", "depth_valid_mask", "CHARBONNIER_EPS"]

# Charbonnier's smoothing length, in units of the scene radius (errors well above it are penalised like L1)
CHARBONNIER_EPS = 0.01


def _plane(x: torch.Tensor) -> torch.Tensor:
    """[...,H,W,1] -> [...,H,W]; [...,H,W] unchanged."""
    return x[..., 0] if x.dim() >= 3 and x.shape[-1] == 1 else x


def depth_valid_mask(pred: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor | None = None,
                     alpha_threshold: float = 0.5) -> torch.Tensor:
    """Pixels [...,H,W] (bool) where both depths are known: target finite and > 0, prediction finite, and the
    rendered alpha (when given) above `alpha_threshold` (an expected depth is meaningless where little is
    rendered)."""
    pred, target = _plane(pred), _plane(target).to(pred.device)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target depth must have one shape [...,H,W], got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    mask = torch.isfinite(target) & (target > 0) & torch.isfinite(pred.detach())
    if alpha is not None:
        mask = mask & (_plane(alpha).detach().to(pred.device).reshape(mask.shape) > alpha_threshold)
    return mask


def depth_loss(pred: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor | None = None,
               alpha_threshold: float = 0.5, unit: float = 1.0, kind: str = "l1") -> torch.Tensor:
    """Mean depth error over the pixels where both depths are known (:func:`depth_valid_mask`); scalar.

    Args:
        pred [...,H,W] or [...,H,W,1]: rendered expected depth (``render_mode="RGB+ED"``), camera z, world units.
        target: measured camera z-depth of the same shape, +inf (or any non-finite / non-positive value) unknown.
        alpha: rendered alpha [...,H,W(,1)] or None; used as a mask only (no gradient through it).
        unit: the scene radius (world units); errors are divided by it.
        kind: "l1" |d| or "charbonnier" sqrt(d^2 + eps^2) - eps with eps = :data:`CHARBONNIER_EPS` (d in units).
    Returns the mean error; 0 (still attached to pred's graph) when no pixel is valid. Raises ValueError for
    an unknown kind, a non-positive unit or shapes that differ.
    """
    if not unit > 0:
        raise ValueError(f"unit (the scene radius) must be positive, got {unit}")
    if kind not in ("l1", "charbonnier"):
        raise ValueError(f"unknown depth loss kind {kind!r}; use l1 or charbonnier")
    p = _plane(pred)
    mask = depth_valid_mask(p, target, alpha, alpha_threshold)
    t = torch.where(mask, _plane(target).to(p), torch.zeros_like(p))
    d = torch.where(mask, p - t, torch.zeros_like(p)) / float(unit)  # no NaN/inf reaches the graph
    err = d.abs() if kind == "l1" else torch.sqrt(d * d + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS
    n = mask.sum()
    if int(n) == 0:
        return (p * 0.0).nan_to_num().sum()
    return torch.where(mask, err, torch.zeros_like(err)).sum() / n

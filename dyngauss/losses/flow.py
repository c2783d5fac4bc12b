"""2D flow supervision: rendered Gaussian flow vs an optical-flow prior (NSFF's L_flow with occlusion masks)."""
from __future__ import annotations

import torch

__all__ = ["flow_loss", "flow_error_map"]


def flow_error_map(pred: torch.Tensor, target: torch.Tensor, kind: str = "charbonnier",
                   eps: float = 0.1) -> torch.Tensor:
    """Per-pixel robust error [...] in pixels between flows [...,2].

    charbonnier: sqrt(|d|^2 + eps^2) - eps (a smooth end-point error, 0 at d = 0); l1: |dx| + |dy|;
    epe: |d| (not differentiable at 0, for reporting)."""
    d = pred - target
    if kind == "charbonnier":
        return torch.sqrt((d * d).sum(-1) + eps * eps) - eps
    if kind == "l1":
        return d.abs().sum(-1)
    if kind == "epe":
        return d.norm(dim=-1)
    raise ValueError(f"unknown flow loss kind {kind!r}; use charbonnier, l1 or epe")


def flow_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
              alpha: torch.Tensor | None = None, alpha_threshold: float = 0.5, kind: str = "charbonnier",
              eps: float = 0.1, normalize: bool = True) -> torch.Tensor:
    """Masked robust error between a rendered flow and a flow prior; scalar.

    Args:
        pred [H,W,2] or [B,H,W,2]: rendered flow (alpha-normalised, e.g. render/flow.py render_flow), pixels.
        target: prior flow of the same shape (e.g. DIS), pixels.
        valid [H,W] / [B,H,W] (bool or 0/1): prior pixels to trust (forward-backward consistent). None = all.
        alpha [H,W,1] / [H,W] (batched likewise) or None: rendered alpha; pixels with alpha <= alpha_threshold
            are ignored (the rendered flow is meaningless where nothing is rendered). Used as a mask only
            (no gradient through it).
        kind: "charbonnier" (eps in pixels) or "l1".
        normalize: divide the error by the larger image side, so the loss is in units of the image size and
            the weight does not depend on the resolution.
    Returns the mean error over the selected pixels; 0 (still attached to pred's graph) when none is selected.
    """
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred and target must be [...,H,W,2] of one shape, got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}")
    target = target.to(pred)
    mask = torch.ones(pred.shape[:-1], dtype=torch.bool, device=pred.device)
    if valid is not None:
        mask = mask & valid.to(pred.device).bool().reshape(pred.shape[:-1])
    if alpha is not None:
        a = alpha.detach().to(pred.device)
        if a.shape[-1] == 1 and a.dim() == pred.dim():
            a = a[..., 0]
        mask = mask & (a.reshape(pred.shape[:-1]) > alpha_threshold)
    err = flow_error_map(pred, target, kind, eps)
    if normalize:
        err = err / float(max(pred.shape[-3], pred.shape[-2]))
    n = mask.sum()
    if int(n) == 0:
        return (pred * 0.0).sum()
    return torch.where(mask, err, torch.zeros_like(err)).sum() / n

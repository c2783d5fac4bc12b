"""Static background (Nerfies, Park et al. 2021, "background regularization"): points known to be static must
not move, L = mean_i ||W(x_i, t) - x_i|| over static points x_i (the L2 norm, not squared, as Nerfies: robust
to the few points wrongly counted as static). Which points are static: dyngauss/data/points.py."""
from __future__ import annotations

import torch

__all__ = ["background_loss"]


def background_loss(canonical: torch.Tensor, posed: torch.Tensor, static: torch.Tensor | None = None,
                    kind: str = "l2") -> torch.Tensor:
    """Mean over static points of ||posed - canonical|| (kind "l2", Nerfies) or ||.||^2 ("l2sq"); a scalar in
    scene units (squared for l2sq).

    Args:
        canonical [N,3]: static points; posed [N,3]: the same points moved by the field at some time t.
        static: None (every point is static), [N] bool flags or [N] float weights in [0,1].
    Returns 0 (attached to the graph) when no point is static. Raises ValueError for mismatched shapes or an
    unknown kind."""
    if canonical.shape != posed.shape:
        raise ValueError(f"shapes differ: {tuple(canonical.shape)} vs {tuple(posed.shape)}")
    d = posed - canonical
    if kind == "l2sq":
        e = (d * d).sum(-1)
    elif kind == "l2":
        e = torch.sqrt((d * d).sum(-1) + 1e-16) - 1e-8
    else:
        raise ValueError(f"unknown kind {kind!r}; use l2 or l2sq")
    w = torch.ones_like(e) if static is None else static.to(device=posed.device, dtype=posed.dtype)
    tot = w.sum()
    if float(tot) <= 0:
        return (posed * 0.0).sum()
    return (w * e).sum() / tot

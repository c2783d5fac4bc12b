"""Nerfies' elastic regulariser: the deformation should be locally rigid.

The warp W(x) = R(x) x + t(x) (canonical -> time t, the field's Motion evaluated at x) has Jacobian
J = dW/dx [3,3] at every point. With singular values sigma of J, a rigid neighbourhood has log sigma = 0;
the loss is ||log sigma||^2, made robust with Geman-McClure (Nerfies: rho(x, c) = 2 (x/c)^2 / ((x/c)^2 + 4),
c = 0.03) applied to ||log sigma||_2 so that genuinely non-rigid regions (joints, folds) are not forced.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..geometry.quaternion import quat_normalize, quat_rotate

__all__ = ["geman_mcclure", "deformation_jacobian", "field_warp_fn", "elastic_loss_from_jacobian",
           "elastic_loss"]


def geman_mcclure(x: torch.Tensor, c: float = 0.03) -> torch.Tensor:
    """rho(x, c) = 2 (x/c)^2 / ((x/c)^2 + 4): ~ x^2 / (2 c^2) for |x| << c, saturating at 2."""
    r2 = (x / c) ** 2
    return 2.0 * r2 / (r2 + 4.0)


def field_warp_fn(field, t: float, frame: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """x [S,3] -> R(x) x + t(x) for a :class:`~dyngauss.deform.base.DeformField` at time t."""
    def warp(x: torch.Tensor) -> torch.Tensor:
        m = field(x, t) if frame is None else field(x, t, frame)
        return quat_rotate(quat_normalize(m.rot), x) + m.trans
    return warp


def deformation_jacobian(warp: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor,
                         method: str = "autograd", create_graph: bool = True) -> torch.Tensor:
    """J [S,3,3], J[s, r, c] = d warp(x_s)_r / d x_s,c, for a point-wise warp [S,3] -> [S,3].

    method "autograd": 3 backward passes through one batched evaluation (works for any field, including
    ones with KNN lookups; assumes each output point depends only on its own input point).
    method "jacrev": torch.func.vmap(jacrev(.)) per point (needs a functorch-compatible field).
    ``create_graph`` keeps the graph so the loss can be back-propagated into the field's parameters."""
    x = points.detach().clone().requires_grad_(True)
    if method == "jacrev":
        from torch.func import jacrev, vmap

        return vmap(jacrev(lambda p: warp(p[None])[0]))(x)
    if method != "autograd":
        raise ValueError(f"unknown jacobian method {method!r}; use autograd or jacrev")
    with torch.enable_grad():
        y = warp(x)
        rows = []
        for r in range(3):
            (g,) = torch.autograd.grad(y[:, r].sum(), x, create_graph=create_graph, retain_graph=True,
                                       allow_unused=True)
            rows.append(torch.zeros_like(x) if g is None else g)
    return torch.stack(rows, 1)


def elastic_loss_from_jacobian(J: torch.Tensor, c: float = 0.03, robust: bool = True,
                               weights: torch.Tensor | None = None, min_sv: float = 1e-6) -> torch.Tensor:
    """Mean over points of rho(||log sigma(J)||, c) (robust) or ||log sigma(J)||^2; J [S,3,3]; scalar."""
    if J.numel() == 0:
        return J.sum() * 0.0
    sv = torch.linalg.svdvals(J).clamp_min(min_sv)
    sq = (torch.log(sv) ** 2).sum(-1)
    if robust:  # rho(||log sigma||, c) written in terms of the squared norm (smooth at 0)
        r2 = sq / (c * c)
        e = 2.0 * r2 / (r2 + 4.0)
    else:
        e = sq
    if weights is None:
        return e.mean()
    w = weights.to(e)
    return (w * e).sum() / w.sum().clamp_min(1e-12)


def elastic_loss(field, points: torch.Tensor, t: float, frame: int | None = None, c: float = 0.03,
                 robust: bool = True, method: str = "autograd", weights: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Nerfies elastic loss of a deformation field at time t, at canonical sample points [S,3]; scalar.

    ``points`` are taken as fixed samples (no gradient to them): pass e.g. ~1k randomly chosen canonical
    means per step. Gradients flow into the field's parameters. 0 for a rigid (or identity) field."""
    J = deformation_jacobian(field_warp_fn(field, t, frame), points, method=method)
    return elastic_loss_from_jacobian(J, c, robust, weights)

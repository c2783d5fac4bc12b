"""Cycle consistency (NSFF L_cyc; forward/backward deformation fields).

(a) canonical -> t -> canonical: a forward field (canonical -> t, :class:`~dyngauss.deform.base.DeformField`)
    poses the Gaussians; a backward field (``backward(points, t) -> Motion`` mapping posed -> canonical) must
    bring them back: ``|| backward(forward(mu, t), t) - mu ||``.
(b) scene-flow cycle t -> t' -> t: points at t carried to t' and back must return to where they started.
"""
from __future__ import annotations

import torch

from ..deform.base import Motion
from ..geometry.quaternion import quat_normalize, quat_rotate

__all__ = ["transform_points", "point_error", "canonical_cycle_loss", "scene_flow_cycle",
           "scene_flow_cycle_loss"]


def transform_points(motion: Motion, points: torch.Tensor) -> torch.Tensor:
    """R x + t for points [N,3] and a Motion of N rows."""
    return quat_rotate(quat_normalize(motion.rot), points) + motion.trans


def point_error(diff: torch.Tensor, kind: str = "l1", weights: torch.Tensor | None = None,
                eps: float = 1e-6) -> torch.Tensor:
    """Reduce displacement vectors [N,3] to a scalar: mean over points (weighted mean when ``weights`` [N]).

    kind: "l1" (sum of |components|, NSFF), "l2" (Euclidean norm, smoothed by eps), "l2sq" (squared norm)."""
    if kind == "l1":
        e = diff.abs().sum(-1)
    elif kind == "l2":
        e = torch.sqrt((diff * diff).sum(-1) + eps * eps) - eps
    elif kind == "l2sq":
        e = (diff * diff).sum(-1)
    else:
        raise ValueError(f"unknown error kind {kind!r}; use l1, l2 or l2sq")
    if e.numel() == 0:
        return diff.sum() * 0.0
    if weights is None:
        return e.mean()
    w = weights.to(e)
    return (w * e).sum() / w.sum().clamp_min(1e-12)


def _call_field(field, points: torch.Tensor, t, frame: int | None) -> Motion:
    return field(points, t) if frame is None else field(points, t, frame)


def canonical_cycle_loss(backward, canonical: torch.Tensor, posed: torch.Tensor, t: float,
                         frame: int | None = None, kind: str = "l1", weights: torch.Tensor | None = None,
                         detach_posed: bool = False) -> torch.Tensor:
    """|| backward(posed, t) applied to posed - canonical ||, mean over points; scalar.

    Args:
        backward: field with ``backward(points [N,3], t) -> Motion`` mapping posed -> canonical.
        canonical [N,3]: canonical means mu (the cycle's target).
        posed [N,3]: forward(mu, t) applied to mu (e.g. ``DynamicGaussians.pose(t).means``).
        detach_posed: train only the backward field (the forward field is then not pulled towards the
            backward one). Default False: both fields receive gradients (NSFF).
    Zero when the backward field is the exact inverse of the forward one at time t."""
    x = posed.detach() if detach_posed else posed
    back = transform_points(_call_field(backward, x, t, frame), x)
    return point_error(back - canonical, kind, weights)


def scene_flow_cycle(forward, backward, points_t: torch.Tensor, t: float, t2: float,
                     frame: int | None = None, frame2: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry points at time t to t' and back through the fields; returns (points at t' [N,3], back at t [N,3]).

    x_t --backward(., t)--> canonical --forward(., t')--> x_t' --backward(., t')--> canonical
        --forward(., t)--> x_t back. ``forward(means, t, frame) -> Motion`` is queried at the points'
    canonical positions (any point, not only Gaussian centres)."""
    c1 = transform_points(_call_field(backward, points_t, t, frame), points_t)
    x2 = transform_points(_call_field(forward, c1, t2, frame2), c1)
    c2 = transform_points(_call_field(backward, x2, t2, frame2), x2)
    back = transform_points(_call_field(forward, c2, t, frame), c2)
    return x2, back


def scene_flow_cycle_loss(points_t: torch.Tensor, points_back: torch.Tensor, kind: str = "l1",
                          weights: torch.Tensor | None = None) -> torch.Tensor:
    """NSFF's L_cyc: || x_t -> t' -> t  -  x_t ||, mean over points; scalar.

    points_t [N,3]: points at time t; points_back [N,3]: the same points carried to t' by the forward
    scene flow and back by the backward scene flow (e.g. :func:`scene_flow_cycle`, or
    ``x_t + f_fwd(x_t) + f_bwd(x_t + f_fwd(x_t))`` for explicit scene-flow predictions)."""
    if points_t.shape != points_back.shape:
        raise ValueError(f"shapes differ: {tuple(points_t.shape)} vs {tuple(points_back.shape)}")
    return point_error(points_back - points_t, kind, weights)

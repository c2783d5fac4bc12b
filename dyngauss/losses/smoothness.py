"""Temporal smoothness of trajectories: small acceleration, || x(t - dt) - 2 x(t) + x(t + dt) ||^2."""
from __future__ import annotations

import torch

from ..geometry.quaternion import quat_normalize, quat_rotate

__all__ = ["acceleration_loss", "field_trajectory_points"]


def acceleration_loss(x_prev: torch.Tensor, x_t: torch.Tensor, x_next: torch.Tensor,
                      weights: torch.Tensor | None = None, dt: float | None = None) -> torch.Tensor:
    """Mean over points of ||x(t-dt) - 2 x(t) + x(t+dt)||^2 (second finite difference); scalar.

    x_prev, x_t, x_next [N,3]: the same points at t - dt, t, t + dt (equally spaced). ``dt`` given: divide by
    dt^2 (acceleration in units / time^2; large, so scale the weight); None: the raw second difference.
    0 for any motion with constant velocity (in particular static or uniformly translating points)."""
    a = x_prev - 2.0 * x_t + x_next
    if dt is not None:
        a = a / (dt * dt)
    e = (a * a).sum(-1)
    if e.numel() == 0:
        return x_t.sum() * 0.0
    if weights is None:
        return e.mean()
    w = weights.to(e)
    return (w * e).sum() / w.sum().clamp_min(1e-12)


def field_trajectory_points(field, means: torch.Tensor, t: float, dt: float, rows: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical means [N,3] (or their rows `rows` [A]) posed at (t - dt, t, t + dt) by a DeformField (times
    clamped into [0, 1] by shifting the triple, so the spacing stays equal). No per-frame index is passed: the
    field must interpolate between frames. `rows` goes through the field's ``motion_of`` (fields with
    per-Gaussian state need the whole set and the rows)."""
    tc = min(max(float(t), dt), 1.0 - dt) if dt < 0.5 else 0.5
    x = means if rows is None else means[rows]

    def at(s: float) -> torch.Tensor:
        m = field(means, s) if rows is None else field.motion_of(means, s, None, rows)
        return quat_rotate(quat_normalize(m.rot), x) + m.trans

    return at(tc - dt), at(tc), at(tc + dt)

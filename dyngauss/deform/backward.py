"""Backward (inverse) deformation field: a posed point at time t -> its canonical position.

Same family as the dense forward field (:class:`~dyngauss.deform.mlp.MLPDeformField`): an MLP on
(PE(x_posed), time code) -> screw axis -> SE(3), zero-initialised (identity). `forward(points, t, frame)`
returns a :class:`Motion` mapping posed -> canonical (canonical = R x_posed + t); :meth:`to_canonical`
applies it. Used for cycle consistency (forward then backward returns to the start, NSFF) and to query the
canonical position of arbitrary posed points. Unlike the forward fields it accepts one time per point
(t of shape [N]).
"""
from __future__ import annotations

import torch

from ..geometry.quaternion import quat_rotate
from .mlp import MLPDeformField


class BackwardField(MLPDeformField):
    """Inverse field posed(t) -> canonical. Arguments as :class:`MLPDeformField` (no dscale head)."""

    kind = "backward"

    def __init__(self, **kwargs):
        kwargs["dscale"] = False
        super().__init__(**kwargs)

    def to_canonical(self, points: torch.Tensor, t, frame=None) -> torch.Tensor:
        """Canonical positions [N,3] of posed points [N,3] at time(s) t (float or [N])."""
        m = self(points, t, frame)
        return quat_rotate(m.rot, points) + m.trans

    def param_groups(self, lr: float) -> list[dict]:
        groups = super().param_groups(lr)
        for g in groups:
            g["name"] = g["name"].replace("deform.mlp", "deform.backward")
        return groups

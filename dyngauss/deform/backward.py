"""Backward (inverse) deformation field: a posed point at time t -> its canonical position.

Same family as the dense forward field (:class:`~dyngauss.deform.mlp.MLPDeformField`): an MLP on
(PE(x_posed), time code) -> screw axis -> SE(3), zero-initialised (identity). `forward(points, t, frame)`
returns a :class:`Motion` mapping posed -> canonical (canonical = R x_posed + t); :meth:`to_canonical`
applies it. Used for cycle consistency (forward then backward returns to the start, NSFF) and to query the
canonical position of arbitrary posed points. Unlike the forward fields it accepts one time per point
(t of shape [N]). Built by :meth:`~dyngauss.deform.config.NetworkFieldConfig.build_backward` from the forward
field's shared keys (and backward_width / backward_depth).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from ..geometry.quaternion import quat_rotate
from .config import MLPFieldConfig
from .mlp import MLPDeformField


class BackwardField(MLPDeformField):
    """Inverse field posed(t) -> canonical. Arguments as :class:`MLPDeformField` (the dscale head is never
    built: an inverse field moves points)."""

    kind = "backward"

    def __init__(self, cfg: MLPFieldConfig | None = None, num_frames: int | None = None,
                 frame_times: Sequence[float] | None = None):
        cfg = MLPFieldConfig() if cfg is None else cfg
        super().__init__(replace(cfg, dscale=False) if cfg.dscale else cfg, num_frames, frame_times)

    def to_canonical(self, points: torch.Tensor, t, frame=None) -> torch.Tensor:
        """Canonical positions [N,3] of posed points [N,3] at time(s) t (float or [N])."""
        m = self(points, t, frame)
        return quat_rotate(m.rot, points) + m.trans

    def param_groups(self, lr: float) -> list[dict]:
        groups = super().param_groups(lr)
        for g in groups:
            g["name"] = g["name"].replace("deform.mlp", "deform.backward")
        return groups

"""The deformation-field interface shared by every motion model.

A field maps canonical Gaussian centres (and the time t in [0, 1]) to a :class:`Motion`: a rotation
(unit quaternion, wxyz), a translation and optionally a log-scale change, per Gaussian. The posed mean is
R mu + t and the posed orientation rot ⊗ q (docs/design.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..geometry.quaternion import quat_multiply, quat_normalize, quat_rotate


def checked_world_frame(center, radius: float, rotation=None, center_dtype: torch.dtype = torch.float32
                        ) -> tuple[torch.Tensor | None, float, torch.Tensor]:
    """The scene frame a field works in, checked: (centre [3] in `center_dtype`, or None when `center` is None;
    radius r; axes Q [3,3] float64, identity when `rotation` is None). Raises ValueError for a radius that is not
    positive and finite, a non-finite centre, or a Q that is no rotation (not orthonormal to 1e-5, or det <= 0)."""
    r = float(radius)
    if not (r > 0 and torch.isfinite(torch.as_tensor(r))):
        raise ValueError(f"scene radius must be a positive finite number, got {radius}")
    c = None
    if center is not None:
        c = torch.as_tensor(center, dtype=center_dtype).reshape(3)
        if not bool(torch.isfinite(c).all()):
            raise ValueError(f"scene centre must be finite, got {c.tolist()}")
    Q = torch.eye(3, dtype=torch.float64) if rotation is None else \
        torch.as_tensor(rotation, dtype=torch.float64).reshape(3, 3)
    if not (bool(torch.isfinite(Q).all()) and float((Q.T @ Q - torch.eye(3, dtype=Q.dtype)).abs().max()) < 1e-5
            and float(torch.linalg.det(Q)) > 0):
        raise ValueError("scene axes must be a rotation matrix")
    return c, r, Q


def checked_parents(parents, n_old: int, device) -> torch.Tensor:
    """`parents` (new Gaussian i came from old Gaussian parents[i]) as int64 [M] on `device`; ValueError when an
    index is outside [0, n_old)."""
    parents = torch.as_tensor(parents).to(device=device, dtype=torch.long).reshape(-1)
    if parents.numel() and (int(parents.min()) < 0 or int(parents.max()) >= n_old):
        raise ValueError(f"parents must index the {n_old} previous Gaussians, got the range "
                         f"[{int(parents.min())}, {int(parents.max())}]")
    return parents


@dataclass
class Motion:
    """Per-Gaussian SE(3) (+ scale) from canonical to time t. rot [N,4] wxyz, trans [N,3], dscale [N,3] or None
    (added to the log-scales)."""

    rot: torch.Tensor
    trans: torch.Tensor
    dscale: torch.Tensor | None = None

    @staticmethod
    def identity(n: int, device=None, dtype=torch.float32) -> "Motion":
        rot = torch.zeros(n, 4, device=device, dtype=dtype)
        rot[:, 0] = 1.0
        return Motion(rot, torch.zeros(n, 3, device=device, dtype=dtype), None)


def apply_motion(means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
                 motion: Motion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posed (means, quats, log_scales) = (R mu + t, rot ⊗ q, log_s + dscale)."""
    rot = quat_normalize(motion.rot)
    posed_means = quat_rotate(rot, means) + motion.trans
    posed_quats = quat_multiply(rot, quat_normalize(quats))
    posed_scales = log_scales if motion.dscale is None else log_scales + motion.dscale
    return posed_means, posed_quats, posed_scales


class DeformField(nn.Module):
    """Base class. Subclasses implement :meth:`forward`; the hooks below have harmless defaults.

    `forward(means, t, frame=None)`: means [N,3] canonical centres, t a float (or 0-d tensor) in [0,1],
    frame an optional integer frame index (for per-frame latent codes); returns a Motion for N Gaussians.
    """

    kind: str = "base"

    def forward(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None) -> Motion:  # noqa: D401
        raise NotImplementedError

    def motion_of(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None,
                  rows: torch.Tensor | None = None) -> Motion:
        """The motion of the Gaussians `rows` [A] (int64) of the canonical Gaussians means [N,3] (all of them when
        None). Default: the field at means[rows]. Fields with per-Gaussian state (deform.kind=tracking) look
        their rows up, which is why callers that want a subset pass the whole set and the rows."""
        return self(means if rows is None else means[rows], t, frame)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups (name, params, lr); default: all parameters at `lr`."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"name": f"deform.{self.kind}", "params": params, "lr": lr}] if params else []

    def set_step(self, step: int) -> None:
        """Called every iteration (coarse-to-fine annealing, schedules)."""

    def on_gaussians_changed(self, means: torch.Tensor) -> None:
        """Called after densification/pruning changed the canonical Gaussians (e.g. node re-binding)."""


class IdentityField(DeformField):
    """`deform.kind=none`: a static scene."""

    kind = "none"

    def forward(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None) -> Motion:
        return Motion.identity(means.shape[0], means.device, means.dtype)

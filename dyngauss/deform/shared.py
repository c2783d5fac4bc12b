"""What the MLP-based fields share: :class:`NetworkField`, the trunk of the dense field (mlp.py), the node field
(nodes.py) and the backward field (backward.py).

The trunk maps an encoded position and a time code to a screw axis (and optionally a log-scale change):

* position: `PE_alpha(pos_scale * u)` with Nerfies' coarse-to-fine window; alpha goes 0 -> pos_freqs over
  `anneal_steps` deformation steps (:meth:`NetworkField.set_step`; the step is a buffer, so a loaded checkpoint
  keeps its alpha). u = Q^T (x - c) / r are the world positions in the scene's own frame
  (:meth:`NetworkField.to_unit`: c, r = the scene's centre and radius, Q its axes, set by the trainer with
  :meth:`NetworkField.set_world_frame`), and the screw's rotation and translation come back from that frame
  (:meth:`NetworkField.from_unit_motion`), so the field sees the same numbers, frequencies and output sizes
  whatever similarity transform (translation, scale, rotation) the world coordinates of the data carry —
  D-NeRF / Nerfies assume a normalised world instead. c = 0, r = 1, Q = I (the default, and what a checkpoint
  without these buffers gets) is exactly the raw world;
* time: :class:`~dyngauss.deform.encoding.TimeCode`, PE of t or per-frame latent codes (GLO, Nerfies);
* :class:`~dyngauss.deform.encoding.ConditionedMLP` on (position features, time code), then zero-initialised
  heads (:class:`~dyngauss.deform.encoding.ZeroLinear`): the screw axis [N,6] (`screw_head`) and the optional
  log-scale change [N,3] (`dscale_head`), so every field starts as the identity.

Submodule names (`step`, `pos_pe`, `time`, `net`, `screw_head`, `dscale_head`) and the buffers `world_center`,
`world_radius`, `world_rotation` are the state-dict keys of the fields, and the creation order of the submodules
fixes the order in which random initial weights are drawn.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import DeformField, checked_world_frame
from .config import NetworkFieldConfig
from .encoding import ConditionedMLP, PositionalEncoding, TimeCode, ZeroLinear, anneal_alpha


class NetworkField(DeformField):
    """Base of the fields built on the conditioned-MLP trunk. Subclasses call :meth:`_build_inputs` and then
    :meth:`_build_trunk` (with the width of their MLP input) in their constructor, and :meth:`trunk` to
    evaluate it."""

    def __init__(self, cfg: NetworkFieldConfig, num_frames: int | None = None,
                 frame_times: Sequence[float] | None = None):
        super().__init__()
        self._num_frames, self._frame_times = cfg.frames(num_frames, frame_times)
        self.pos_freqs, self.anneal_steps = int(cfg.pos_freqs), int(cfg.anneal_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("world_center", torch.zeros(3))
        self.register_buffer("world_radius", torch.ones(()))
        self.register_buffer("world_rotation", torch.eye(3))

    # ---- the scene's unit ----------------------------------------------------------------------
    @torch.no_grad()
    def set_world_frame(self, center, radius: float, rotation=None) -> None:
        """The scene's frame: centre c [3], radius r > 0 (world units) and axes Q [3,3] (a rotation, columns = the
        frame's axes in world; default identity). Positions enter the network as u = Q^T (x - c) / r and its
        rotations / translations leave it as Q R_u Q^T / r Q t_u. Set before training (changing it later changes
        the field). Raises ValueError for a non-finite centre, a radius that is not positive or a Q that is no
        rotation."""
        c, r, Q = checked_world_frame(center, radius, rotation, self.world_center.dtype)
        self.world_center.copy_(c)
        self.world_radius.fill_(r)
        self.world_rotation.copy_(Q.to(self.world_rotation.dtype))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """World positions [...,3] -> the scene's unit, Q^T (x - c) / r."""
        return ((x - self.world_center.to(x.dtype)) @ self.world_rotation.to(x.dtype)) / self.world_radius.to(x.dtype)

    def rotation_from_unit(self, rot: torch.Tensor) -> torch.Tensor:
        """World rotations [N,4] wxyz of rotations written in the scene's axes: q_Q rot q_Q^-1."""
        from ..geometry.quaternion import matrix_to_quat, quat_conjugate, quat_multiply

        qQ = matrix_to_quat(self.world_rotation.to(rot.dtype)).expand_as(rot)
        return quat_multiply(quat_multiply(qQ, rot), quat_conjugate(qQ))

    def vector_from_unit(self, v: torch.Tensor) -> torch.Tensor:
        """World vectors [...,3] (lengths times r) of vectors written in the scene's unit: r Q v."""
        return self.world_radius.to(v.dtype) * (v @ self.world_rotation.to(v.dtype).T)

    def from_unit_motion(self, rot: torch.Tensor, trans_unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The world motion x' = R x + T (rot [N,4] wxyz, trans [N,3]) of the motion u' = R_u u + t_u written in
        the scene's unit: R = Q R_u Q^T, T = r Q t_u + c - R c."""
        from ..geometry.quaternion import quat_rotate

        rot_w = self.rotation_from_unit(rot)
        c = self.world_center.to(trans_unit.dtype)
        return rot_w, self.vector_from_unit(trans_unit) + c - quat_rotate(rot_w, c.expand_as(trans_unit))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # checkpoints written before the scene's frame existed trained in raw world coordinates: c = 0, r = 1, Q = I
        for name, default in (("world_center", torch.zeros(3)), ("world_radius", torch.ones(())),
                              ("world_rotation", torch.eye(3))):
            state_dict.setdefault(prefix + name, default)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _build_inputs(self, cfg: NetworkFieldConfig) -> None:
        """The position encoding (`pos_pe`) and the time code (`time`)."""
        self.pos_pe = PositionalEncoding(3, self.pos_freqs, scale=cfg.pos_scale)
        if cfg.time_mode == "latent":
            self.time = TimeCode("latent", num_frames=self._num_frames, latent_dim=cfg.latent_dim,
                                 frame_times=self._frame_times, latent_init=cfg.latent_init)
            self.latent_lr_mult = cfg.lr_mult(cfg.latent_lr)
        else:
            self.time = TimeCode(cfg.time_mode, time_freqs=cfg.time_freqs)
            self.latent_lr_mult = 1.0

    def _build_trunk(self, cfg: NetworkFieldConfig, x_dim: int) -> None:
        """The conditioned MLP on x_dim input features (`net`) and its zero-initialised heads."""
        skip = None if cfg.skip == 0 else (cfg.depth // 2 if cfg.skip == -1 else cfg.skip)
        self.net = ConditionedMLP(x_dim, self.time.out_dim, cfg.width, cfg.depth, skip)
        self.screw_head = ZeroLinear(cfg.width, 6)
        self.dscale_head = ZeroLinear(cfg.width, 3) if cfg.dscale else None

    def trunk(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Screw axes [N,6] and log-scale changes [N,3] (or None) from input features x [N,x_dim] and time code
        c ([1,C] shared or [N,C])."""
        h = self.net(x, c)
        return self.screw_head(h), (self.dscale_head(h) if self.dscale_head is not None else None)

    # ---- schedule ------------------------------------------------------------------------------
    def set_step(self, step: int) -> None:
        self.step.fill_(int(step))

    @property
    def alpha(self) -> float | torch.Tensor | None:
        """Current coarse-to-fine window position (None: no annealing, all bands on)."""
        return anneal_alpha(self.pos_freqs, self.step, self.anneal_steps)

    def set_frame_times(self, times) -> None:
        """Times of the latent-code frames (frame i has time times[i]); used to interpolate unseen t."""
        if self.time.mode == "latent":
            self.time.set_frame_times(times)

    def _time_param_group(self, prefix: str, lr: float) -> list[dict]:
        """The latent codes' parameter group (none in PE mode)."""
        params = list(self.time.parameters())
        return [{"name": f"{prefix}.latent", "params": params, "lr": lr * self.latent_lr_mult}] if params else []

"""Dense SE(3) deformation field (D-NeRF / Nerfies / HyperNeRF ideas), `deform.kind=mlp`.

Per Gaussian: screw axis S = MLP(PE_alpha(x), time code [, PE(ambient(x, time code))]) -> (R, t) = exp(S), so
posed mean = R mu + t (docs/design.md). The screw acts in world coordinates (Nerfies; `screw_frame="world"`) or
about the canonical point itself (`"local"`: posed mean = mu + t_local, R only turns the Gaussian). Positions,
rotations and translations are in the scene's frame (centred on the scene, radius 1, the scene's axes;
deform/shared.py), so "world" rotates about the scene's centre.

* coarse-to-fine: the position encoding's frequency bands fade in as alpha goes 0 -> pos_freqs over
  `anneal_steps` (driven by :meth:`set_step`; the step is a buffer, so a loaded checkpoint keeps its alpha).
* time: `time_mode="pe"` encodes t; `"latent"` uses one learned code per training frame (GLO). With a frame
  index the code is looked up; without one (unseen times) it is linearly interpolated in t between the two
  nearest frames, whose times are `frame_times` (default: linspace(0, 1, num_frames); set them with
  :meth:`set_frame_times`). Codes start as a smooth function of their frame's time (`latent_init="smooth"`),
  which short runs need (with random codes the network must memorise an arbitrary code -> motion map).
* ambient (HyperNeRF): `ambient_dims > 0` adds a small MLP w = H(PE(x), time code) whose encoded output feeds
  the deformation MLP next to the encoded position. The last computed w is kept in `last_ambient`.
* the output heads are zero-initialised: the field is exactly the identity at initialisation.

The position encoding, time code, MLP trunk, heads and the coarse-to-fine schedule are shared with the node
and backward fields (:class:`~dyngauss.deform.shared.NetworkField`); settings: :class:`MLPFieldConfig`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..geometry.quaternion import quat_rotate
from ..geometry.se3 import se3_exp
from .base import Motion
from .config import MLPFieldConfig
from .encoding import ConditionedMLP, PositionalEncoding, as_time_tensor
from .shared import NetworkField


class MLPDeformField(NetworkField):
    """Dense SE(3) field (module docstring). `cfg`: its settings; num_frames / frame_times: the training frames
    (per-frame latent codes; frame i at frame_times[i], default evenly spaced in [0, 1]).
    Raises ValueError for an unknown screw_frame or time_mode, or latent codes without a frame count."""

    kind = "mlp"

    def __init__(self, cfg: MLPFieldConfig | None = None, num_frames: int | None = None,
                 frame_times: Sequence[float] | None = None):
        cfg = MLPFieldConfig() if cfg is None else cfg
        super().__init__(cfg, num_frames, frame_times)
        if cfg.screw_frame not in ("world", "local"):
            raise ValueError(f"screw_frame must be 'world' or 'local', got {cfg.screw_frame!r}")
        self.screw_frame = cfg.screw_frame
        self._build_inputs(cfg)
        c_dim = self.time.out_dim
        x_dim = self.pos_pe.out_dim
        self.ambient_dims = int(cfg.ambient_dims)
        if self.ambient_dims > 0:
            self.ambient_lr_mult = cfg.lr_mult(cfg.ambient_lr)
            self.ambient_net = ConditionedMLP(x_dim, c_dim, cfg.ambient_width, cfg.ambient_depth)
            self.ambient_head = nn.Linear(cfg.ambient_width, self.ambient_dims)
            nn.init.normal_(self.ambient_head.weight, std=1e-4)
            nn.init.zeros_(self.ambient_head.bias)
            self.ambient_pe = PositionalEncoding(self.ambient_dims, cfg.ambient_freqs)
            x_dim += self.ambient_pe.out_dim
        self._build_trunk(cfg, x_dim)
        self.last_ambient: torch.Tensor | None = None

    # ---- evaluation ----------------------------------------------------------------------------
    def screw(self, points: torch.Tensor, t, frame=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw outputs: screw axes [N,6] and dscale [N,3] (or None)."""
        n = points.shape[0]
        tt = as_time_tensor(t, n, points.device, points.dtype)
        c = self.time(tt, frame)
        x = self.pos_pe(self.to_unit(points), self.alpha)
        if self.ambient_dims > 0:
            amb = self.ambient_head(self.ambient_net(x, c))
            self.last_ambient = amb
            x = torch.cat([x, self.ambient_pe(amb)], -1)
        return self.trunk(x, c)

    def forward(self, means: torch.Tensor, t, frame=None) -> Motion:
        if means.shape[0] == 0:
            return Motion.identity(0, means.device, means.dtype)
        s, ds = self.screw(means, t, frame)
        rot, trans = se3_exp(s)  # in the scene's frame (shared.py)
        if self.screw_frame == "local":  # x' = R (x - mu) + mu + p  =>  t = mu + p - R mu
            rot = self.rotation_from_unit(rot)
            trans = means + self.vector_from_unit(trans) - quat_rotate(rot, means)
        else:
            rot, trans = self.from_unit_motion(rot, trans)
        return Motion(rot, trans, ds)

    def param_groups(self, lr: float) -> list[dict]:
        net = [p for n, p in self.named_parameters() if not n.startswith(("time.", "ambient_"))]
        groups = [{"name": "deform.mlp", "params": net, "lr": lr}] + self._time_param_group("deform.mlp", lr)
        if self.ambient_dims > 0:
            amb = [p for n, p in self.named_parameters() if n.startswith("ambient_")]
            groups.append({"name": "deform.mlp.ambient", "params": amb, "lr": lr * self.ambient_lr_mult})
        return groups

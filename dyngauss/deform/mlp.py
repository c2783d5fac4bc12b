"""Dense SE(3) deformation field (D-NeRF / Nerfies / HyperNeRF ideas), `deform.kind=mlp`.

Per Gaussian: screw axis S = MLP(PE_alpha(x), time code [, PE(ambient(x, time code))]) -> (R, t) = exp(S), so
posed mean = R mu + t (DESIGN.md). The screw acts in world coordinates (Nerfies; `screw_frame="world"`) or
about the canonical point itself (`"local"`: posed mean = mu + t_local, R only turns the Gaussian).

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
"""
from __future__ import annotations

import torch
from torch import nn

from ..geometry.quaternion import quat_rotate
from ..geometry.se3 import se3_exp
from .base import DeformField, Motion
from .encoding import ConditionedMLP, PositionalEncoding, ZeroLinear, anneal_alpha, as_time_tensor, frame_interp


class TimeCode(nn.Module):
    """Time conditioning: PE of t (`mode="pe"`) or per-frame latent codes with interpolation (`"latent"`)."""

    def __init__(self, mode: str = "pe", time_freqs: int = 6, num_frames: int | None = None,
                 latent_dim: int = 8, frame_times: torch.Tensor | None = None, latent_init_std: float = 0.1,
                 latent_init: str = "smooth"):
        super().__init__()
        if mode not in ("pe", "latent"):
            raise ValueError(f"time_mode must be 'pe' or 'latent', got {mode!r}")
        self.mode = mode
        if mode == "pe":
            self.pe = PositionalEncoding(1, time_freqs)
            self.out_dim = self.pe.out_dim
        else:
            if not num_frames or num_frames < 1:
                raise ValueError("time_mode='latent' needs num_frames >= 1")
            self.codes = nn.Embedding(int(num_frames), latent_dim)
            ft = torch.linspace(0.0, 1.0, int(num_frames)) if frame_times is None else \
                torch.as_tensor(frame_times, dtype=torch.float32).reshape(-1)
            if ft.numel() != num_frames:
                raise ValueError(f"frame_times has {ft.numel()} entries for {num_frames} frames")
            self.register_buffer("frame_times", ft.clone())
            self.latent_init, self.latent_init_std = latent_init, latent_init_std
            self.init_codes()
            self.out_dim = latent_dim

    @torch.no_grad()
    def init_codes(self) -> None:
        """"random": N(0, std^2). "smooth" (default): a smooth basis of the frame's time
        [2t-1, cos(pi t), sin(pi t), cos(2 pi t), ...] plus N(0, (std/10)^2) noise, so that frames close in
        time start with close codes (learning then only refines them; with random codes a short run must
        memorise an arbitrary code -> motion map)."""
        w = self.codes.weight
        if self.latent_init == "random":
            w.normal_(std=self.latent_init_std)
            return
        t = self.frame_times.to(w.dtype)[:, None]
        feats = [2 * t - 1]
        k = 1
        while len(feats) < w.shape[1]:
            feats += [torch.cos(torch.pi * k * t), torch.sin(torch.pi * k * t)]
            k += 1
        w.copy_(torch.cat(feats, 1)[:, :w.shape[1]] + torch.randn_like(w) * self.latent_init_std / 10)

    @property
    def num_frames(self) -> int:
        return self.codes.num_embeddings if self.mode == "latent" else 0

    def set_frame_times(self, times) -> None:
        t = torch.as_tensor(times, dtype=self.frame_times.dtype, device=self.frame_times.device).reshape(-1)
        if t.numel() != self.num_frames:
            raise ValueError(f"{t.numel()} times for {self.num_frames} frames")
        self.frame_times.copy_(t)

    def forward(self, t: torch.Tensor, frame=None) -> torch.Tensor:
        """t [1,1] or [N,1] -> code [1,C] or [N,C]."""
        if self.mode == "pe":
            return self.pe(t)
        w = self.codes.weight
        if frame is not None:
            f = torch.as_tensor(frame, device=w.device, dtype=torch.long).reshape(-1)
            return w[f].to(t.dtype)
        return self.interpolate(t.reshape(-1)).to(t.dtype)

    def interpolate(self, t: torch.Tensor) -> torch.Tensor:
        """Codes at times t [B] by linear interpolation between the two nearest frames -> [B,C]."""
        w = self.codes.weight
        lo, hi, a = frame_interp(self.frame_times, t)
        a = a.to(w.dtype).unsqueeze(-1)
        return w[lo] * (1 - a) + w[hi] * a


class MLPDeformField(DeformField):
    """Dense SE(3) field. See the module docstring; constructor arguments mirror :class:`DeformConfig`."""

    kind = "mlp"

    def __init__(self, pos_freqs: int = 8, time_freqs: int = 6, width: int = 128, depth: int = 6,
                 skip: int | None = -1, anneal_steps: int = 0, time_mode: str = "pe",
                 num_frames: int | None = None, latent_dim: int = 8, frame_times=None,
                 latent_init: str = "smooth",
                 ambient_dims: int = 0, ambient_width: int = 64, ambient_depth: int = 3, ambient_freqs: int = 2,
                 dscale: bool = False, pos_scale: float = 1.0, screw_frame: str = "world",
                 latent_lr_mult: float = 1.0, ambient_lr_mult: float = 1.0):
        super().__init__()
        if screw_frame not in ("world", "local"):
            raise ValueError(f"screw_frame must be 'world' or 'local', got {screw_frame!r}")
        self.pos_freqs, self.anneal_steps, self.screw_frame = int(pos_freqs), int(anneal_steps), screw_frame
        self.latent_lr_mult, self.ambient_lr_mult = latent_lr_mult, ambient_lr_mult
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.pos_pe = PositionalEncoding(3, pos_freqs, scale=pos_scale)
        self.time = TimeCode(time_mode, time_freqs, num_frames, latent_dim, frame_times, latent_init=latent_init)
        c_dim = self.time.out_dim
        x_dim = self.pos_pe.out_dim
        self.ambient_dims = int(ambient_dims)
        if self.ambient_dims > 0:
            self.ambient_net = ConditionedMLP(x_dim, c_dim, ambient_width, ambient_depth)
            self.ambient_head = nn.Linear(ambient_width, self.ambient_dims)
            nn.init.normal_(self.ambient_head.weight, std=1e-4)
            nn.init.zeros_(self.ambient_head.bias)
            self.ambient_pe = PositionalEncoding(self.ambient_dims, ambient_freqs)
            x_dim += self.ambient_pe.out_dim
        if skip == -1:
            skip = depth // 2
        self.net = ConditionedMLP(x_dim, c_dim, width, depth, skip)
        self.screw_head = ZeroLinear(width, 6)
        self.dscale_head = ZeroLinear(width, 3) if dscale else None
        self.last_ambient: torch.Tensor | None = None

    # ---- schedule ------------------------------------------------------------------------------
    def set_step(self, step: int) -> None:
        self.step.fill_(int(step))

    @property
    def alpha(self) -> float | None:
        """Current coarse-to-fine window position (None: no annealing, all bands on)."""
        return anneal_alpha(self.pos_freqs, self.step, self.anneal_steps)

    def set_frame_times(self, times) -> None:
        """Times of the latent-code frames (frame i has time times[i]); used to interpolate unseen t."""
        if self.time.mode == "latent":
            self.time.set_frame_times(times)

    # ---- evaluation ----------------------------------------------------------------------------
    def screw(self, points: torch.Tensor, t, frame=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw outputs: screw axes [N,6] and dscale [N,3] (or None)."""
        n = points.shape[0]
        tt = as_time_tensor(t, n, points.device, points.dtype)
        c = self.time(tt, frame)
        x = self.pos_pe(points, self.alpha)
        if self.ambient_dims > 0:
            amb = self.ambient_head(self.ambient_net(x, c))
            self.last_ambient = amb
            x = torch.cat([x, self.ambient_pe(amb)], -1)
        h = self.net(x, c)
        return self.screw_head(h), (self.dscale_head(h) if self.dscale_head is not None else None)

    def forward(self, means: torch.Tensor, t, frame=None) -> Motion:
        if means.shape[0] == 0:
            return Motion.identity(0, means.device, means.dtype)
        s, ds = self.screw(means, t, frame)
        rot, trans = se3_exp(s)
        if self.screw_frame == "local":  # x' = R (x - mu) + mu + p  =>  t = mu + p - R mu
            trans = means + trans - quat_rotate(rot, means)
        return Motion(rot, trans, ds)

    def param_groups(self, lr: float) -> list[dict]:
        groups = []
        net = [p for n, p in self.named_parameters() if not n.startswith(("time.", "ambient_"))]
        groups.append({"name": "deform.mlp", "params": net, "lr": lr})
        time_p = list(self.time.parameters())
        if time_p:
            groups.append({"name": "deform.mlp.latent", "params": time_p, "lr": lr * self.latent_lr_mult})
        if self.ambient_dims > 0:
            amb = [p for n, p in self.named_parameters() if n.startswith("ambient_")]
            groups.append({"name": "deform.mlp.ambient", "params": amb, "lr": lr * self.ambient_lr_mult})
        return groups

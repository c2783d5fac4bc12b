"""What the MLP-based fields share: :class:`NetworkField`, the trunk of the dense field (mlp.py), the node field
(nodes.py) and the backward field (backward.py).

The trunk maps an encoded position and a time code to a screw axis (and optionally a log-scale change):

* position: `PE_alpha(pos_scale * x)` with Nerfies' coarse-to-fine window; alpha goes 0 -> pos_freqs over
  `anneal_steps` deformation steps (:meth:`NetworkField.set_step`; the step is a buffer, so a loaded checkpoint
  keeps its alpha);
* time: :class:`~dyngauss.deform.encoding.TimeCode`, PE of t or per-frame latent codes (GLO, Nerfies);
* :class:`~dyngauss.deform.encoding.ConditionedMLP` on (position features, time code), then zero-initialised
  heads (:class:`~dyngauss.deform.encoding.ZeroLinear`): the screw axis [N,6] (`screw_head`) and the optional
  log-scale change [N,3] (`dscale_head`), so every field starts as the identity.

Submodule names (`step`, `pos_pe`, `time`, `net`, `screw_head`, `dscale_head`) are the state-dict keys of the
fields, and their creation order fixes the order in which random initial weights are drawn.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import DeformField
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

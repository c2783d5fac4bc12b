"""`DynamicGaussians`: the model. Canonical Gaussians moved to any time t by a deformation field.

One object carries what a trained dynamic scene is — the canonical :class:`Gaussians`, the forward deformation
field (canonical -> time t), the optional backward field (time t -> canonical, for cycle consistency) and the
training frame times — and answers the three questions every consumer asks (trainer, evaluation, export,
viewer, tools):

* :meth:`DynamicGaussians.frame_index` — which training frame a time is (per-frame latent codes, node tables);
* :meth:`DynamicGaussians.pose` — the Gaussians at time t (:class:`PosedGaussians`);
* :meth:`DynamicGaussians.render` — pose and rasterize into cameras.

Posing follows docs/design.md: a field gives every Gaussian an SE(3) motion (rotation R as a unit quaternion,
translation T, optionally a log-scale change); the posed mean is R mu + T, the posed orientation R ⊗ q
(Nerfies / D-NeRF style SE(3) fields, SC-GS-style node skinning). The layout follows shape-of-motion's
``SceneModel`` (one module owning Gaussians + motion) and gsplat's ``rasterization()`` (tensors in, images out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from ..data.camera import Camera
from ..deform.base import DeformField, Motion, apply_motion
from ..render.api import RenderOutput, rasterize
from .gaussians import Gaussians

if TYPE_CHECKING:
    from ..config import Config

# Times closer than this are the same frame (times are normalised to [0, 1]; 1e-6 is far below any frame gap).
FRAME_TIME_TOL = 1e-6


@dataclass
class PosedGaussians:
    """The Gaussians at one time t, ready for a rasterizer (gsplat's argument names).

    means [N,3] world units; quats [N,4] wxyz (unit when posed by a field; the canonical, possibly unnormalised
    quaternions for an undeformed model — rasterizers normalise); log_scales [N,3] (natural log of the standard
    deviations, world units); opacities [N] in (0, 1) (activated); sh [N,K,3] SH coefficients, K = (d+1)^2;
    motion: the per-Gaussian SE(3) that moved them from the canonical pose (None when undeformed); t: the time.
    Tensors keep their autograd history (training poses through this).
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    t: float
    motion: Motion | None = None

    @property
    def scales(self) -> torch.Tensor:
        """Standard deviations exp(log_scales) [N,3] (world units)."""
        return torch.exp(self.log_scales)

    @property
    def rotations(self) -> torch.Tensor:
        """The motion's unit rotation per Gaussian [N,4] wxyz (identity when undeformed)."""
        from ..geometry.quaternion import quat_identity, quat_normalize

        if self.motion is None:
            return quat_identity((self.means.shape[0],), self.means.device, self.means.dtype)
        return quat_normalize(self.motion.rot)

    def __len__(self) -> int:
        return int(self.means.shape[0])


@dataclass
class CheckpointInfo:
    """Where a loaded model came from: the file, its training step and what the trainer recorded."""

    path: Path | None = None
    step: int = 0
    train_seconds: float = 0.0
    scene_scale: float = 1.0
    dataset: str = ""
    version: int = 0


class DynamicGaussians(nn.Module):
    """Canonical Gaussians + deformation field (+ backward field) + the training frame times.

    Args:
        gaussians: the canonical :class:`Gaussians` (N of them).
        field: the forward deformation field, canonical -> time t (``forward(means, t, frame) -> Motion``);
            :class:`dyngauss.deform.base.IdentityField` for a static scene.
        backward: the inverse field (posed -> canonical, ``to_canonical``) or None.
        train_times: the distinct training times in [0, 1], sorted; frame i is at ``train_times[i]``.
        config: the run's :class:`dyngauss.config.Config` (render options, background), or None.
        info: where a loaded model came from (:class:`CheckpointInfo`).

    The modules are registered as ``gaussians``, ``deform`` and ``backward`` (state-dict prefixes).
    """

    def __init__(self, gaussians: Gaussians, field: DeformField, backward: DeformField | None = None,
                 train_times: Sequence[float] = (), config: "Config | None" = None,
                 info: CheckpointInfo | None = None):
        super().__init__()
        self.gaussians = gaussians
        self.deform = field
        self.backward = backward
        self.train_times: tuple[float, ...] = tuple(float(t) for t in train_times)
        self.config = config
        self.info = info or CheckpointInfo()

    # ---- time ----------------------------------------------------------------------------------------
    def frame_index(self, t: float) -> int | None:
        """Index i of the training frame at time t (``|train_times[i] - t| <= 1e-6``), None for any other time.

        Per-frame latent codes and node tables use the frame's own code at a training time and interpolate
        between codes elsewhere (``frame=None``).
        """
        best, best_d = None, FRAME_TIME_TOL
        t = float(t)
        for i, tt in enumerate(self.train_times):
            d = abs(tt - t)
            if d <= best_d:
                best, best_d = i, d
        return best

    @property
    def kind(self) -> str:
        """The deformation field's kind (``none``, ``mlp``, ``nodes``, ...)."""
        return str(getattr(self.deform, "kind", "none"))

    @property
    def num_frames(self) -> int:
        return len(self.train_times)

    def __len__(self) -> int:
        return len(self.gaussians)

    @property
    def device(self) -> torch.device:
        return self.gaussians.means.device

    # ---- posing --------------------------------------------------------------------------------------
    def pose(self, t: float | torch.Tensor, frame: int | None = None, *, deformed: bool = True,
             motion: Motion | None = None) -> PosedGaussians:
        """The Gaussians at time t.

        Args:
            t: time in [0, 1] (float or 0-d tensor; a device tensor keeps CUDA-graph capture host-sync free).
            frame: the training frame index for per-frame codes; None looks it up with :meth:`frame_index`
                (a float t only) — pass it explicitly when it is known.
            deformed: False returns the canonical Gaussians (e.g. during the trainer's static warm-up).
            motion: a precomputed :class:`Motion` for these Gaussians (skips the field).
        Returns: :class:`PosedGaussians` (with autograd history; wrap in ``torch.no_grad()`` for inference).
        """
        g = self.gaussians
        if motion is None and deformed and not _is_identity(self.deform):
            if frame is None and not isinstance(t, torch.Tensor):
                frame = self.frame_index(t)
            motion = self.deform(g.means, t, frame)
        tf = float(t) if not isinstance(t, torch.Tensor) or not t.is_cuda else float("nan")
        if motion is None:
            return PosedGaussians(g.means, g.quats, g.log_scales, g.opacities, g.sh, tf, None)
        means, quats, log_scales = apply_motion(g.means, g.quats, g.log_scales, motion)
        return PosedGaussians(means, quats, log_scales, g.opacities, g.sh, tf, motion)

    # ---- rendering -----------------------------------------------------------------------------------
    def render_options(self) -> dict[str, Any]:
        """Rasterizer options from the run config (near, far, eps2d, tile_size); empty without a config. The
        config's near/far are in units of the scene scale (``info.scene_scale``, world units), so they follow
        the world's units."""
        r = getattr(self.config, "render", None)
        if r is None:
            return {}
        s = float(self.info.scene_scale or 1.0)
        return {"near": r.near * s, "far": r.far * s, "eps2d": r.eps2d, "tile_size": r.tile_size}

    def background(self) -> torch.Tensor:
        """The run's background colour [3] on the model's device (white without a config)."""
        bg = getattr(getattr(self.config, "data", None), "background", None) or [1.0, 1.0, 1.0]
        return torch.tensor(bg, dtype=torch.float32, device=self.device)

    def render(self, cameras: Camera | Sequence[Camera], t: float | torch.Tensor, *, frame: int | None = None,
               posed: PosedGaussians | None = None, sh_degree: int | None = None,
               background: torch.Tensor | None = None, features: torch.Tensor | None = None,
               render_mode: str = "RGB", backend: str = "auto", **raster_kw: Any) -> RenderOutput:
        """Pose at time t (or use `posed`) and rasterize into C cameras of one size.

        Args:
            cameras: one :class:`Camera` or a list (OpenCV convention, see docs/design.md).
            sh_degree: SH degree to evaluate (default: the model's maximum).
            background: [3] colour composited behind (default: none, i.e. black; see :meth:`background`).
            features: [N,F] extra per-Gaussian channels alpha-composited like colour (e.g. 2D flow).
            render_mode / backend / raster_kw: as :func:`dyngauss.render.rasterize`; the run config's
                near/far/eps2d/tile_size are the defaults.
        Returns: :class:`dyngauss.render.RenderOutput` (rgb [C,H,W,3], alpha [C,H,W,1], ...).
        """
        p = posed if posed is not None else self.pose(t, frame)
        kw = {**self.render_options(), **raster_kw}
        deg = self.gaussians.max_sh_degree if sh_degree is None else sh_degree
        return rasterize(p.means, p.quats, p.scales, p.opacities, p.sh, cameras, sh_degree=deg,
                         background=background, features=features, render_mode=render_mode, backend=backend, **kw)

    # ---- checkpoints ---------------------------------------------------------------------------------
    def state_payload(self) -> dict[str, Any]:
        """The model part of a checkpoint (CPU tensors): see :mod:`dyngauss.model.checkpoint`."""
        from ..config import config_to_dict
        from .checkpoint import CKPT_VERSION, FORMAT

        def cpu(m: nn.Module | None) -> dict | None:
            return None if m is None else {k: v.detach().cpu() for k, v in m.state_dict().items()}

        return {"format": FORMAT, "version": CKPT_VERSION, "kind": self.kind,
                "cfg": config_to_dict(self.config) if self.config is not None else None,
                "sh_degree": self.gaussians.max_sh_degree, "gaussians": cpu(self.gaussians),
                "deform": cpu(self.deform), "backward": cpu(self.backward),
                "train_times": list(self.train_times), "num_frames": len(self.train_times),
                "step": self.info.step, "train_seconds": self.info.train_seconds,
                "scene_scale": self.info.scene_scale, "dataset": self.info.dataset}

    def save(self, path: str | Path) -> Path:
        """Write the model (no optimizer state) as a checkpoint file, atomically; loadable with :meth:`load`."""
        from .checkpoint import save_checkpoint

        return save_checkpoint(self.state_payload(), path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "DynamicGaussians":
        """Load a model from a checkpoint file or a run folder (its newest readable checkpoint).

        Raises :class:`dyngauss.model.checkpoint.CheckpointError` for a missing, corrupt, foreign or
        incompatible checkpoint (the message names the file and, for old formats, the version).
        """
        from .checkpoint import model_from_payload, read_checkpoint

        model = model_from_payload(read_checkpoint(path))
        model.eval()
        return model.to(device)


def _is_identity(field: DeformField | None) -> bool:
    return field is None or getattr(field, "kind", None) == "none"

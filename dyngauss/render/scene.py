"""Render the canonical Gaussians posed by a deformation field at time t (the model's forward pass)."""
from __future__ import annotations

import torch

from ..data.camera import Camera
from ..deform.base import DeformField, Motion, apply_motion
from ..model.gaussians import Gaussians
from .api import RenderOutput, rasterize


def posed_gaussians(gaussians: Gaussians, deform: DeformField | None, t: float, frame: int | None = None,
                    motion: Motion | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Motion | None]:
    """(means, quats, log_scales, motion) of the Gaussians at time t; identity when deform is None."""
    if motion is None and deform is not None:
        motion = deform(gaussians.means, t, frame)
    if motion is None:
        return gaussians.means, gaussians.quats, gaussians.log_scales, None
    m, q, s = apply_motion(gaussians.means, gaussians.quats, gaussians.log_scales, motion)
    return m, q, s, motion


def render_gaussians(gaussians: Gaussians, deform: DeformField | None, camera: Camera | list[Camera], t: float,
                     *, frame: int | None = None, sh_degree: int | None = None,
                     background: torch.Tensor | None = None, features: torch.Tensor | None = None,
                     render_mode: str = "RGB", backend: str = "auto", motion: Motion | None = None,
                     **kw) -> tuple[RenderOutput, Motion | None]:
    """Pose the Gaussians at time t and rasterize them; returns (output, motion used)."""
    means, quats, log_scales, motion = posed_gaussians(gaussians, deform, t, frame, motion)
    deg = gaussians.max_sh_degree if sh_degree is None else sh_degree
    out = rasterize(means, quats, torch.exp(log_scales), gaussians.opacities, gaussians.sh, camera,
                    sh_degree=deg, background=background, features=features, render_mode=render_mode,
                    backend=backend, **kw)
    return out, motion

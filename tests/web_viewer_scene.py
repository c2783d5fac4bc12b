"""A small analytic dynamic scene for the web-viewer tests: a cube of Gaussians that slides along world y.

Every Gaussian of the "moving" half is translated by (0, SLIDE * (2t - 1), 0) at time t; the other half stays
put (so "the most moving" Gaussians are known). The camera looks along +z from (0.8, 0, -4): the cube is left of
the image centre (clear of viser's control panel on the right) and moves from the upper half (t=0) to the lower
half (t=1) of the image.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from dyngauss.deform.base import DeformField, Motion
from dyngauss.model import DynamicGaussians, Gaussians
from dyngauss.viewer.web_cameras import ViewCamera

SLIDE = 0.6        # world units: y offset at t=0 is -SLIDE, at t=1 +SLIDE
HALF = 0.3         # the cube's half size
CAM_POS = np.array([0.8, 0.0, -4.0])
FOV_Y = math.radians(50.0)


class SlideField(DeformField):
    """x' = x + moving * (0, SLIDE * (2t - 1), 0)."""

    kind = "slide"

    def __init__(self, moving: torch.Tensor):
        super().__init__()
        self.register_buffer("moving", moving.float())

    def forward(self, means, t, frame=None):
        m = Motion.identity(means.shape[0], means.device, means.dtype)
        m.trans[:, 1] = self.moving[: means.shape[0]] * SLIDE * (2 * float(t) - 1)
        return m


def slide_model(n: int = 600, seed: int = 0, frames: int = 5, all_move: bool = False) -> DynamicGaussians:
    """The cube (n Gaussians, opaque, saturated colours, SH degree 1); rows with even index move (all rows when
    `all_move`)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-HALF, HALF, (n, 3)).astype(np.float32)
    cols = np.where(rng.uniform(size=(n, 1)) < 0.5, [[0.9, 0.1, 0.1]], [[0.1, 0.2, 0.9]]).astype(np.float32)
    g = Gaussians.from_points(pts, cols, init_opacity=0.95, init_scale_mult=1.0, sh_degree=1)
    moving = torch.ones(n) if all_move else (torch.arange(n) % 2 == 0).float()
    return DynamicGaussians(g, SlideField(moving), train_times=np.linspace(0, 1, frames).tolist())


def view_camera(split: str = "test", time: float | None = None) -> ViewCamera:
    """The camera described in the module docstring (OpenCV: identity rotation looks along +z, y down)."""
    c2w = np.eye(4)
    c2w[:3, 3] = CAM_POS
    return ViewCamera(f"{split} cam", split, c2w, FOV_Y, 1.5, time)

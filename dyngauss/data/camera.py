"""Pinhole camera in the OpenCV convention (x right, y down, z forward).

`viewmat` maps world to camera coordinates; `K` is in pixels with pixel centres at
(col + 0.5, row + 0.5). D-NeRF / Blender cameras (OpenGL, camera-to-world) are converted
once with :func:`opengl_c2w_to_viewmat`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..geometry.look_at import look_at_viewmat  # noqa: F401  (re-exported: the one look-at)

# Flip y and z: OpenGL camera axes (x right, y up, looking along -z) -> OpenCV (y down, z forward).
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_c2w_to_viewmat(c2w: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world [4,4] -> OpenCV world-to-camera [4,4]."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4):
        raise ValueError(f"camera-to-world must be 4x4, got {c2w.shape}")
    return np.linalg.inv(c2w @ _GL_TO_CV)


def viewmat_to_opengl_c2w(viewmat: np.ndarray) -> np.ndarray:
    """Inverse of :func:`opengl_c2w_to_viewmat`."""
    return np.linalg.inv(np.asarray(viewmat, dtype=np.float64)) @ _GL_TO_CV


def intrinsics_from_fov(camera_angle_x: float, width: int, height: int) -> np.ndarray:
    """K for a horizontal field of view (radians), square pixels, principal point at the centre."""
    f = 0.5 * width / np.tan(0.5 * camera_angle_x)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


@dataclass
class Camera:
    """One calibrated view. `K` [3,3] pixels, `viewmat` [4,4] world-to-camera (OpenCV)."""

    K: torch.Tensor
    viewmat: torch.Tensor
    width: int
    height: int
    time: float = 0.0
    name: str = ""
    index: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.K = torch.as_tensor(self.K, dtype=torch.float32)
        self.viewmat = torch.as_tensor(self.viewmat, dtype=torch.float32)
        if self.K.shape != (3, 3):
            raise ValueError(f"K must be [3,3], got {tuple(self.K.shape)}")
        if self.viewmat.shape != (4, 4):
            raise ValueError(f"viewmat must be [4,4], got {tuple(self.viewmat.shape)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)

    @property
    def camtoworld(self) -> torch.Tensor:
        return torch.linalg.inv(self.viewmat)

    @property
    def center(self) -> torch.Tensor:
        """Camera centre in world coordinates [3]."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.T @ t

    def to(self, device: torch.device | str) -> "Camera":
        return Camera(self.K.to(device), self.viewmat.to(device), self.width, self.height,
                      self.time, self.name, self.index, dict(self.meta))

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [...,3] -> (pixels [...,2] with centres at +0.5, camera z-depth [...])."""
        R, t = self.viewmat[:3, :3].to(points), self.viewmat[:3, 3].to(points)
        pc = points @ R.T + t
        z = pc[..., 2]
        K = self.K.to(points)
        uv = torch.stack([K[0, 0] * pc[..., 0] / z + K[0, 2], K[1, 1] * pc[..., 1] / z + K[1, 2]], -1)
        return uv, z

    def scaled(self, factor: float) -> "Camera":
        """Same camera with the image resized by `factor` (e.g. 0.5 halves width and height)."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        K = self.K.clone()
        K[0] *= w / self.width
        K[1] *= h / self.height
        return Camera(K, self.viewmat.clone(), w, h, self.time, self.name, self.index, dict(self.meta))


def stack_cameras(cameras: Sequence[Camera]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Batch cameras of one size into (viewmats [C,4,4], Ks [C,3,3], width, height)."""
    if len(cameras) == 0:
        raise ValueError("need at least one camera")
    w, h = cameras[0].width, cameras[0].height
    for c in cameras:
        if (c.width, c.height) != (w, h):
            raise ValueError(f"cameras in a batch must share one size: {w}x{h} vs {c.width}x{c.height}")
    return (torch.stack([c.viewmat for c in cameras]), torch.stack([c.K for c in cameras]), w, h)

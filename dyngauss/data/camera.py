"""Pinhole camera in the OpenCV convention (x right, y down, z forward).

`viewmat` maps world to camera coordinates; `K` is in pixels with pixel centres at
(col + 0.5, row + 0.5). D-NeRF / Blender cameras (OpenGL, camera-to-world) are converted
once with :func:`opengl_c2w_to_viewmat`.
"""
from __future__ import annotations

import math
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


class CameraError(ValueError):
    """A camera-to-world matrix or intrinsics that describe no pinhole camera (the loaders add the file name)."""


# A rotation block whose columns are orthonormal to within this (after removing a uniform scale) is a rotation.
ROTATION_TOL = 1e-2
# A uniform scale of the rotation block further than this from 1 is removed (with a warning by the loaders).
SCALE_TOL = 1e-3
# Fields of view outside this range (degrees) are refused: no pinhole camera of a real dataset has them, and
# they are what normalised (0..1) or millimetre intrinsics look like when read as pixels.
FOV_RANGE_DEG = (0.01, 170.0)


def check_c2w(m: np.ndarray) -> tuple[np.ndarray, float]:
    """Validate a camera-to-world matrix and return (c2w [4,4] float64 with a pure rotation block, the uniform
    scale that was removed from it: 1.0 when none).

    Accepts [4,4] or [3,4] (the bottom row [0,0,0,1] is added). Raises :class:`CameraError` when the matrix is
    not finite, its bottom row is not [0,0,0,1] (with a hint when it looks transposed), or its 3x3 block is not
    a rotation times a positive uniform scale (shear, non-uniform scale, a reflection or a singular block).

    A uniform scale s != 1 of the rotation block (e.g. a Blender camera object with a scale) is divided out:
    the camera centre (the last column) and the viewing direction are unchanged by it, so the normalised
    matrix is the camera that was meant; instant-ngp does the same. Inverting the scaled matrix instead would
    put every camera centre at t / s^2 (16x off for s = 0.25). Callers should warn when the scale is not 1.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]], axis=0)
    if m.shape != (4, 4):
        raise CameraError(f"must be a 4x4 (or 3x4) array of numbers, got shape {m.shape}")
    bad = ~np.isfinite(m)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise CameraError(f"has {int(bad.sum())} non-finite value(s) (NaN or inf), e.g. at row {r}, column {c}")
    unit = np.array([0.0, 0.0, 0.0, 1.0])
    if np.abs(m[3] - unit).max() > 1e-5:
        hint = " (the matrix looks transposed: write it row by row, translation in the last column)" \
            if np.abs(m[:, 3] - unit).max() <= 1e-5 else ""
        raise CameraError(f"bottom row must be [0, 0, 0, 1], got {np.round(m[3], 6).tolist()}{hint}")
    A = m[:3, :3]
    det, vol = float(np.linalg.det(A)), float(np.prod(np.linalg.norm(A, axis=0)))
    if not det > 1e-9 * vol:
        what = "a reflection (determinant < 0)" if det < -1e-9 * vol else "singular"
        raise CameraError(f"rotation block is {what}; it must be a rotation (times a uniform scale)")
    s = det ** (1.0 / 3.0)
    Q = A / s
    err = float(np.abs(Q.T @ Q - np.eye(3)).max())
    if err > ROTATION_TOL:
        norms = np.linalg.norm(A, axis=0)
        raise CameraError(f"rotation block is not a rotation times a uniform scale (column norms "
                          f"{np.round(norms, 4).tolist()}, orthogonality error {err:.3g}: shear or non-uniform "
                          "scale)")
    if abs(s - 1.0) <= SCALE_TOL:
        return m, 1.0
    out = m.copy()
    out[:3, :3] = Q
    return out, s


def check_intrinsics(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> None:
    """Raise :class:`CameraError` unless fx, fy > 0, all four are finite, and both fields of view
    (2 atan(size / 2f)) lie in :data:`FOV_RANGE_DEG` (a focal of 1e-9 px, or intrinsics given in units of the
    image size, read as pixels, give ~180 degrees)."""
    vals = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy}
    for k, v in vals.items():
        if not math.isfinite(float(v)):
            raise CameraError(f"'{k}' is not finite ({v})")
    if fx <= 0 or fy <= 0:
        raise CameraError(f"focal length must be positive, got fl_x={fx:g}, fl_y={fy:g}")
    lo, hi = FOV_RANGE_DEG
    for axis, f, size in (("horizontal", fx, width), ("vertical", fy, height)):
        fov = math.degrees(2.0 * math.atan(0.5 * size / f))
        if not lo <= fov <= hi:
            hint = " (are the intrinsics in units of the image size instead of pixels?)" if fov > hi else ""
            raise CameraError(f"focal length {f:g} px gives a {axis} field of view of {fov:.4g} degrees for a "
                              f"{width}x{height} image; a pinhole camera needs {lo:g}..{hi:g}{hint}")


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

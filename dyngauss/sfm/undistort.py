"""Undistort frames of a COLMAP camera to a pinhole camera of the same image size (numpy + OpenCV remap).

Our D-NeRF loader accepts pinhole cameras only, so the frames are resampled once: the output keeps the width,
height and principal point, and the focal length is enlarged just enough (``scale`` >= 1) that every output pixel
samples inside the input (no blank corners for pincushion distortion; for barrel distortion scale = 1).
Pixel centres are at (col + 0.5, row + 0.5) in both COLMAP and ``Camera``; ``cv2.remap`` indexes pixel centres at
integers, hence the -0.5 below.

Models (COLMAP parameter order): SIMPLE_PINHOLE f cx cy; PINHOLE fx fy cx cy; SIMPLE_RADIAL f cx cy k;
RADIAL f cx cy k1 k2; OPENCV fx fy cx cy k1 k2 p1 p2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Undistorter", "distort_normalized"]


def _unpack(model: str, params: Sequence[float]):
    p = [float(v) for v in params]
    k1 = k2 = p1 = p2 = 0.0
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = p
        fx = fy = f
    elif model == "PINHOLE":
        fx, fy, cx, cy = p
    elif model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = p
        fx = fy = f
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = p
        fx = fy = f
    elif model == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = p
    else:
        raise ValueError(f"unsupported camera model {model!r} (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV)")
    return fx, fy, cx, cy, (k1, k2, p1, p2)


def distort_normalized(x: np.ndarray, y: np.ndarray, dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP / OpenCV radial-tangential distortion of normalised image coordinates."""
    k1, k2, p1, p2 = dist
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


@dataclass
class Undistorter:
    """Resample images of a distorted camera (``model``, ``params``, ``width`` x ``height``) to the pinhole
    camera ``K`` of the same size."""

    model: str
    params: Sequence[float]
    width: int
    height: int

    def __post_init__(self):
        fx, fy, cx, cy, dist = _unpack(self.model, self.params)
        self.dist = dist
        self._src = (fx, fy, cx, cy)
        self.identity = all(abs(d) < 1e-12 for d in dist)
        self.scale = 1.0 if self.identity else self._zoom()
        self.K = np.array([[fx * self.scale, 0.0, cx], [0.0, fy * self.scale, cy], [0.0, 0.0, 1.0]])
        self._maps = None

    def _source_pixels(self, u: np.ndarray, v: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Output pixel coordinates (centres at +0.5) -> input pixel coordinates (same convention)."""
        fx, fy, cx, cy = self._src
        x = (u - cx) / (fx * scale)
        y = (v - cy) / (fy * scale)
        xd, yd = distort_normalized(x, y, self.dist)
        return fx * xd + cx, fy * yd + cy

    def _zoom(self) -> float:
        """Smallest focal scale >= 1 with every output border pixel mapping inside the input image."""
        W, H = self.width, self.height
        uu = np.concatenate([np.linspace(0.5, W - 0.5, 256), np.full(256, W - 0.5), np.linspace(0.5, W - 0.5, 256),
                             np.full(256, 0.5)])
        vv = np.concatenate([np.full(256, 0.5), np.linspace(0.5, H - 0.5, 256), np.full(256, H - 0.5),
                             np.linspace(0.5, H - 0.5, 256)])

        def inside(s):
            su, sv = self._source_pixels(uu, vv, s)
            return bool(np.all((su >= 0.0) & (su <= W) & (sv >= 0.0) & (sv <= H)))

        if inside(1.0):
            return 1.0
        lo, hi = 1.0, 1.05
        while not inside(hi):
            hi = 1.0 + 2.0 * (hi - 1.0)
            if hi > 4.0:
                raise ValueError(f"distortion {self.dist} too strong to undistort to a pinhole camera")
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if inside(mid) else (mid, hi)
        return hi

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
            su, sv = self._source_pixels(u, v, self.scale)
            self._maps = ((su - 0.5).astype(np.float32), (sv - 0.5).astype(np.float32))
        return self._maps

    def __call__(self, img: np.ndarray, interpolation: str = "linear") -> np.ndarray:
        """Undistort an image [H,W(,C)] (uint8 or float)."""
        import cv2

        if img.shape[0] != self.height or img.shape[1] != self.width:
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}, camera is {self.width}x{self.height}")
        if self.identity:
            return img
        mx, my = self.maps()
        interp = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_NEAREST
        return cv2.remap(img, mx, my, interp, borderMode=cv2.BORDER_REPLICATE)

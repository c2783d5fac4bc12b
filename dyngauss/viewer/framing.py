"""The player's fixed camera: a pinhole that frames a sequence's bounding box, and a matching point size.

Conventions: OpenCV (x right, y down, z forward), world-to-camera extrinsic from
:func:`dyngauss.geometry.look_at.look_at_viewmat` (the same look-at as the datasets' cameras). Open3D's pinhole
extrinsics (legacy ViewControl, Filament ``setup_camera``) use this convention too, so the matrix is passed to
them as it is (tests/test_player.py checks where a rendered point lands). Pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..geometry.look_at import look_at_viewmat

if TYPE_CHECKING:
    from .sequence import LoadedSequence


@dataclass
class Framing:
    """A fixed pinhole camera: K [3,3] (pixels), extrinsic [4,4] world-to-camera (OpenCV), image size (pixels),
    eye [3] and target [3] (world), distance = |eye - target| (world units)."""

    K: np.ndarray
    extrinsic: np.ndarray
    width: int
    height: int
    distance: float
    eye: np.ndarray
    target: np.ndarray


def orbit_direction(up: Sequence[float], azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the target towards the eye: `azimuth_deg` around the `up` axis, measured from world x
    (world y when up is close to x) made perpendicular to up, raised by `elevation_deg` towards up."""
    up = np.asarray(up, np.float64)
    up = up / np.linalg.norm(up)
    ref = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = ref - ref.dot(up) * up
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up


def frame_bbox(bbox: tuple[np.ndarray, np.ndarray], width: int, height: int, fov_deg: float = 40.0,
               up: Sequence[float] = (0, 0, 1), azimuth_deg: float = -60.0, elevation_deg: float = 20.0,
               margin: float = 1.05) -> Framing:
    """Camera that sees the bounding sphere of `bbox` (min [3], max [3], world units) entirely, `margin` times
    larger, centred in the image. `fov_deg` is the vertical field of view (square pixels, principal point at
    the image centre); azimuth/elevation are measured around the `up` axis (default +z, the D-NeRF/Blender
    convention), see :func:`orbit_direction`."""
    lo, hi = (np.asarray(b, np.float64) for b in bbox)
    c = 0.5 * (lo + hi)
    r = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-3)
    fy = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[fy, 0, width / 2.0], [0, fy, height / 2.0], [0, 0, 1.0]])
    half = min(math.atan(0.5 * width / fy), math.atan(0.5 * height / fy))
    dist = margin * r / math.sin(half)
    eye = c + dist * orbit_direction(up, azimuth_deg, elevation_deg)
    return Framing(K, look_at_viewmat(eye, c, up), int(width), int(height), dist, eye, c)


def auto_point_size(seq: "LoadedSequence", framing: Framing) -> float:
    """Point size in pixels: the projected diameter (2 sigma) of a typical Gaussian at the framing distance;
    for point frames, the projected typical spacing of the points over the bounding box. Clamped to [1, 10]."""
    f = float(framing.K[1, 1])
    if seq.mean_scale is not None:
        world = 2.0 * seq.mean_scale
    else:
        lo, hi = seq.bbox
        world = float(np.linalg.norm(hi - lo)) / math.sqrt(max(seq.num_points, 1))
    return float(np.clip(world * f / max(framing.distance, 1e-9), 1.0, 10.0))

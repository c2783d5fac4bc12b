"""Look-at camera pose in the OpenCV convention (numpy only, so torch-free code such as the viewer can use it).

The one implementation of "a camera at `eye` looking at `target`": :mod:`dyngauss.data.camera` re-exports it for
datasets and tools, :mod:`dyngauss.viewer.framing` frames PLY sequences with it. Open3D's pinhole extrinsics
(legacy ``ViewControl`` and Filament ``setup_camera``) use the same convention, so no conversion is needed there.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["look_at_viewmat"]


def look_at_viewmat(eye: Sequence[float], target: Sequence[float] = (0, 0, 0),
                    up: Sequence[float] = (0, 0, 1)) -> np.ndarray:
    """OpenCV world-to-camera matrix [4,4] float64 of a camera at `eye` looking at `target`.

    Camera axes: x right, y down, z forward (towards `target`); the image's up direction is the projection of
    `up` (world units, any length). When `up` is parallel to the viewing direction, any perpendicular x axis is
    chosen. Rows 0-2 of the rotation are the camera axes in world coordinates; translation = -R @ eye.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:  # looking along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world coords
    V = np.eye(4)
    V[:3, :3] = R
    V[:3, 3] = -R @ eye
    return V

"""Is a structure-from-motion result believable? Checks run after mapping, before anything is written.

Structure-from-motion always finds *some* explanation when enough features match; on a scene that is not rigid
(a fixed camera filming a moving object on a plain background) it invents an orbiting camera whose focal length
is far off (issue 19, case 6: 4x too short, a 112 degree field of view for a 40 degree lens). Two checks:

* :func:`check_focal` (refuses): the estimated horizontal field of view must lie in a sane range (default
  20-120 degrees: from a light telephoto to a phone's ultra-wide), and within a factor ``tolerance`` in focal
  length of the field of view the user states (``--fov``) when there is one.
* :func:`feature_coverage` (warns): the median fraction of an 8x8 grid over the frame that holds triangulated
  features. When the features cover a small part of the frame, the poses rest on that part alone; if it is the
  moving object, they are wrong.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .errors import PrepareError

__all__ = ["horizontal_fov_deg", "focal_from_fov", "check_focal", "feature_coverage", "FOV_RANGE"]

FOV_RANGE = (20.0, 120.0)


def horizontal_fov_deg(focal_px: float, width: int) -> float:
    """Horizontal field of view (degrees) of a pinhole camera with focal ``focal_px`` and ``width`` px."""
    return math.degrees(2.0 * math.atan(0.5 * width / focal_px))


def focal_from_fov(fov_deg: float, width: int) -> float:
    """Focal length (px) of a pinhole camera with a horizontal field of view ``fov_deg`` over ``width`` px.
    Raises PrepareError(kind="args") unless 0 < fov_deg < 180."""
    if not (0.0 < fov_deg < 180.0) or not math.isfinite(fov_deg):
        raise PrepareError(f"--fov must be a horizontal field of view in degrees in (0, 180), got {fov_deg}",
                           "args")
    return 0.5 * width / math.tan(math.radians(0.5 * fov_deg))


def check_focal(focal_px: float, width: int, fov_range: tuple[float, float] = FOV_RANGE,
                expected_fov: float | None = None, tolerance: float = 1.5) -> float:
    """Refuse an estimated focal length that no real camera has. Returns the horizontal FOV (degrees).

    Raises PrepareError(kind="implausible") when the FOV is outside ``fov_range`` or, with ``expected_fov``,
    when the focal differs from that FOV's focal by more than a factor ``tolerance``."""
    if not (focal_px > 0 and math.isfinite(focal_px)):
        raise PrepareError(f"structure-from-motion estimated an invalid focal length ({focal_px})", "implausible")
    fov = horizontal_fov_deg(focal_px, width)
    advice = ("This happens when the camera does not move and SfM explains the moving object as a rigid scene "
              "(then use --fixed-camera [--fov DEG]), or when most features lie on the moving object (give --masks "
              "for it, white = moving).")
    lo, hi = fov_range
    if not lo <= fov <= hi:
        raise PrepareError(
            f"implausible camera: structure-from-motion estimated a focal length of {focal_px:.1f} px, a horizontal "
            f"field of view of {fov:.0f} degrees over {width} px (a real camera has {lo:.0f}-{hi:.0f}). {advice} "
            "If your lens really is that wide or narrow, say so with --fov DEG.", "implausible")
    if expected_fov is not None:
        f_exp = focal_from_fov(expected_fov, width)
        ratio = focal_px / f_exp
        if not 1.0 / tolerance <= ratio <= tolerance:
            raise PrepareError(
                f"implausible camera: structure-from-motion estimated a focal length of {focal_px:.1f} px "
                f"({fov:.0f} degrees), but --fov {expected_fov:g} means {f_exp:.1f} px ({ratio:.2f}x). {advice}",
                "implausible")
    return fov


def feature_coverage(points_per_image: Iterable[np.ndarray], width: int, height: int, grid: int = 8) -> float:
    """Median over images of the fraction of a ``grid`` x ``grid`` partition of the frame that holds at least one
    of the image's triangulated features. points_per_image: per image an [M, 2] array of pixel (x, y)."""
    fractions = []
    for xy in points_per_image:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        occ = np.zeros((grid, grid), bool)
        if len(xy):
            ij = np.clip((xy / [width, height] * grid).astype(int), 0, grid - 1)
            occ[ij[:, 1], ij[:, 0]] = True
        fractions.append(occ.mean())
    return float(np.median(fractions)) if fractions else 0.0

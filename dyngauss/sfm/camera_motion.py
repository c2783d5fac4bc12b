"""Does the camera move? A cheap pixel test on the decoded frames, run before structure-from-motion.

A fixed camera (tripod, phone on a table) gives structure-from-motion nothing to triangulate from the
background. When the background is textured, SfM fails or finds no baseline; when it is plain, every feature
lies on the moving object and SfM happily explains the object's motion as a rigid scene seen by an orbiting
camera, with a wrong focal length (issue 19, case 6). Both are visible in the pixels before any feature is
extracted: with a fixed camera, most of the background never changes over the whole clip.

The test, on grey thumbnails (about 160 px wide, blurred with sigma 1 px against compression noise, each frame's
median brightness removed against exposure drift):

* a pixel is *still* when its 90th-percentile absolute deviation from the per-pixel temporal median over all
  kept frames is below ``tau`` grey levels (a moving object that covers a pixel in under 10 % of the frames
  does not count);
* a pixel is *textured* when the median image's gradient exceeds ``grad_thresh`` grey levels per pixel;
* verdict ``static_textured``: at least ``textured_still_min`` of the textured pixels are still and they cover
  at least ``textured_still_area`` of the frame (a textured background that does not move: the camera is fixed);
* verdict ``static_plain`` (otherwise): at least ``border_still_min`` of a border band (``border`` of the
  shorter side) and ``still_min`` of the frame never change (a plain background: the camera is fixed, or it
  films a plain backdrop where only the moving object has features; SfM poses would come from the moving
  object alone either way);
* ``no_texture``: under ``min_textured`` of the frame is textured (left to the SIFT texture check);
* otherwise ``moving``.

Any camera travel of more than a pixel or two of the thumbnail over the clip moves textured pixels by more than
``tau`` and makes the border change (a 10-px slow pan over 30 frames at 160 px keeps 17 % of the border still).
Pixels under user masks (white = moving) in any kept frame are left out. Cost: about 0.1 s for 75 frames
(measured on a busy 2-core machine), against minutes for feature extraction, matching and mapping.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

__all__ = ["StillnessConfig", "Stillness", "thumbnail", "measure_stillness"]


@dataclass
class StillnessConfig:
    """Thresholds of :func:`measure_stillness` (see the module docstring); grey levels are 0..255."""

    width: int = 160
    blur_sigma: float = 1.0
    tau: float = 10.0
    quantile: float = 0.9
    grad_thresh: float = 6.0
    border: float = 0.08
    min_textured: float = 0.002
    textured_still_min: float = 0.5
    textured_still_area: float = 0.01
    border_still_min: float = 0.9
    still_min: float = 0.5


@dataclass
class Stillness:
    """Result of :func:`measure_stillness`: fractions in [0, 1] of the analysed (unmasked) pixels, the verdict
    (``moving``, ``static_textured``, ``static_plain``, ``no_texture``, ``too_few_frames``), the thumbnail size
    (w, h), the number of frames and the seconds spent."""

    verdict: str
    still_fraction: float
    border_still_fraction: float
    textured_fraction: float
    textured_still_fraction: float
    num_frames: int
    size: tuple[int, int]
    seconds: float

    @property
    def static(self) -> bool:
        return self.verdict in ("static_textured", "static_plain")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def thumbnail(img: np.ndarray, width: int = 160) -> np.ndarray:
    """Grey float32 [h, w] thumbnail of an RGB uint8 [H, W, 3] frame, ``width`` px on the longer side at most."""
    import cv2

    h, w = img.shape[:2]
    s = min(1.0, width / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    g = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    if size != (w, h):
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    return g.astype(np.float32)


def measure_stillness(thumbs: Sequence[np.ndarray], moving: Sequence[np.ndarray] | None = None,
                      cfg: StillnessConfig | None = None) -> Stillness:
    """Which part of the frame never changes over the clip (module docstring).

    thumbs: T grey frames [h, w] (from :func:`thumbnail`, all the same size, in time order). moving: optional
    T boolean masks [h, w] (True = moving object, e.g. the user's masks resized); those pixels are left out.
    Raises ValueError when the frames differ in size."""
    import cv2

    cfg = cfg or StillnessConfig()
    t0 = time.perf_counter()
    if len({np.shape(t) for t in thumbs}) > 1:
        raise ValueError("thumbnails differ in size")
    T = len(thumbs)
    h, w = np.shape(thumbs[0]) if T else (0, 0)
    if T < 3:
        return Stillness("too_few_frames", 0.0, 0.0, 0.0, 0.0, T, (w, h), time.perf_counter() - t0)
    G = np.stack([cv2.GaussianBlur(np.asarray(t, np.float32), (0, 0), cfg.blur_sigma) for t in thumbs])
    G -= np.median(G.reshape(T, -1), axis=1)[:, None, None]
    ref = np.median(G, axis=0)
    k = min(T - 1, int(math.ceil(cfg.quantile * (T - 1))))
    dev = np.partition(np.abs(G - ref), k, axis=0)[k]  # the per-pixel quantile (upper order statistic)
    valid = np.ones((h, w), bool)
    if moving is not None:
        valid &= ~np.any(np.stack([np.asarray(m, bool) for m in moving]), axis=0)
    still = (dev < cfg.tau) & valid
    gx = cv2.Sobel(ref, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(ref, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    textured = (np.hypot(gx, gy) > cfg.grad_thresh) & valid
    b = max(2, round(cfg.border * min(h, w)))
    band = np.zeros((h, w), bool)
    band[:b] = band[-b:] = True
    band[:, :b] = band[:, -b:] = True
    band &= valid
    n_valid = max(1, int(valid.sum()))
    still_f = float(still.sum()) / n_valid
    border_f = float(still[band].mean()) if band.any() else 0.0
    tex_f = float(textured.sum()) / n_valid
    tex_still = float((still & textured).sum()) / max(1, int(textured.sum()))
    tex_still_area = float((still & textured).sum()) / n_valid
    if tex_f < cfg.min_textured:
        verdict = "no_texture"
    elif tex_still >= cfg.textured_still_min and tex_still_area >= cfg.textured_still_area:
        verdict = "static_textured"
    elif border_f >= cfg.border_still_min and still_f >= cfg.still_min:
        verdict = "static_plain"
    else:
        verdict = "moving"
    return Stillness(verdict, still_f, border_f, tex_f, tex_still, T, (int(w), int(h)), time.perf_counter() - t0)

"""Per-frame depth maps of a loaded split (RGB-D captures, rendered scenes): finding, reading and resizing them.

Layouts (the first file found for a frame wins; frames without one have no depth):

* ``<image folder>/depth_<digits>.npz`` next to the frame's image, ``<digits>`` the trailing digits of the image's
  file stem (``train/r_007.png`` -> ``train/depth_007.npz``; D-NeRF-style splits, the built-in scene).
* ``<dataset>/depth/<stem>.npz`` (``frames/000012.png`` -> ``depth/000012.npz``; casual video captures).

Each npz holds key ``depth``: float [H,W] camera z-depth in world units (distance along the optical axis, not
along the ray), ``+inf`` (or any non-finite or non-positive value) where unknown, e.g. on the background. A map
of another size than the loaded image (the split's ``data.downscale``) must have the image's aspect ratio; it is
area-averaged over the known values, and a resized pixel is known only when every input pixel under it is (so
depth edges never blend into the background). Lens distortion given at the top level of the transforms file
(``k1 k2 k3 p1 p2``; the images were undistorted by the loader) is removed from the depth map the same way (a
z-depth does not change when its pixel moves); per-frame distortion keys are not looked at.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .dnerf import DatasetError

__all__ = ["DEPTH_KEY", "FrameDepths", "depth_file_for", "read_depth", "resize_depth", "load_split_depths"]

DEPTH_KEY = "depth"
_DIST = ("k1", "k2", "k3", "p1", "p2")


@dataclass
class FrameDepths:
    """Depth of the frames of one split at the loaded image size.

    depth: float32 [F,H,W] camera z-depth (world units), ``+inf`` where unknown (and for frames without a file).
    has: bool [F], the frames with a depth file. files: the file of each frame (None without one)."""

    depth: torch.Tensor
    has: torch.Tensor
    files: list[Path | None]

    @property
    def count(self) -> int:
        return int(self.has.sum())


def depth_file_for(image_path: str | Path, dataset: str | Path) -> Path | None:
    """The depth file of the frame whose image is `image_path` (layouts: module docstring), None when absent."""
    img = Path(image_path)
    m = re.search(r"(\d+)$", img.stem)
    cands = [img.parent / f"depth_{m.group(1)}.npz"] if m else []
    cands.append(Path(dataset) / "depth" / f"{img.stem}.npz")
    return next((c for c in cands if c.is_file()), None)


def read_depth(path: str | Path) -> np.ndarray:
    """The ``depth`` array [H,W] float32 of a depth npz, non-finite and non-positive values set to +inf.
    Raises DatasetError naming the file when it is unreadable, lacks the key or is not 2-D."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            if DEPTH_KEY not in z.files:
                raise DatasetError(f"{p}: missing key {DEPTH_KEY!r} (has {z.files})")
            d = np.asarray(z[DEPTH_KEY], dtype=np.float32)
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - zip / pickle / OS errors: name the file
        raise DatasetError(f"corrupt or unreadable depth file {p}: {e}") from e
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise DatasetError(f"{p}: depth must be [H,W], got shape {d.shape}")
    return np.where(np.isfinite(d) & (d > 0), d, np.float32(np.inf)).astype(np.float32)


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area resize of a depth map [h,w] (+inf = unknown) to [height,width]: the mean of the known values under
    each output pixel, +inf unless all of them are known."""
    h, w = depth.shape
    if (w, h) == (width, height):
        return depth
    from .images import area_resize

    known = np.isfinite(depth)
    num = area_resize(np.where(known, depth, 0.0).astype(np.float32)[..., None], width, height)[..., 0]
    cover = area_resize(known.astype(np.float32)[..., None], width, height)[..., 0]
    out = num / np.maximum(cover, 1e-12)
    return np.where(cover > 0.999, out, np.inf).astype(np.float32)


def _distortion(meta: dict) -> tuple[tuple[float, float, float], tuple[float, float]] | None:
    vals = {}
    for k in _DIST:
        try:
            vals[k] = float(meta.get(k) or 0.0)
        except (TypeError, ValueError):
            vals[k] = 0.0
    if all(abs(v) <= 1e-12 for v in vals.values()):
        return None
    return (vals["k1"], vals["k2"], vals["k3"]), (vals["p1"], vals["p2"])


def _undistort(depth: np.ndarray, cam, dist) -> np.ndarray:
    """Remove the split's lens distortion from a depth map the size of the original image (K scaled to it)."""
    from .images import undistort_to_pinhole

    h, w = depth.shape
    K = cam.K.double().cpu().numpy().copy()
    K[0] *= w / float(cam.width)
    K[1] *= h / float(cam.height)
    out = undistort_to_pinhole(np.where(np.isfinite(depth), depth, 0.0)[..., None], K, *dist)[..., 0]
    known = undistort_to_pinhole(np.isfinite(depth).astype(np.float32)[..., None], K, *dist)[..., 0] > 0.999
    return np.where(known, out, np.inf).astype(np.float32)


def load_split_depths(split, dataset: str | Path | None = None) -> FrameDepths | None:
    """Depth maps of the frames of a loaded split (:class:`~dyngauss.data.dnerf.DNeRFSplit`), None when no frame
    has one. Frames are matched through their image file (``Camera.meta["file_path"]``); `dataset` defaults to
    ``split.path``. Raises DatasetError naming the file for an unreadable map or one whose aspect ratio is not
    the image's."""
    dataset = Path(dataset if dataset is not None else split.path)
    cams = split.cameras
    files = [depth_file_for(c.meta["file_path"], dataset) if c.meta.get("file_path") else None for c in cams]
    if not any(f is not None for f in files):
        return None
    H, W = int(split.images.shape[1]), int(split.images.shape[2])
    dist = _distortion(getattr(split, "meta", None) or {})
    depth = torch.full((len(cams), H, W), math.inf, dtype=torch.float32)
    for k, (cam, f) in enumerate(zip(cams, files)):
        if f is None:
            continue
        d = read_depth(f)
        h, w = d.shape
        if abs(w / h - W / H) > 0.02 * (W / H):
            raise DatasetError(f"{f}: depth map is {w}x{h} but the frame's image is {W}x{H} (another aspect "
                               "ratio); a depth map must cover the image")
        if dist is not None:
            d = _undistort(d, cam, dist)
        depth[k] = torch.from_numpy(resize_depth(d, W, H))
    has = torch.tensor([f is not None for f in files])
    return FrameDepths(depth, has, files)

"""Sparse scene points of a dataset folder, and which of them are static.

Sources, in the dataset's normalised world frame:

* ``points3d.ply``: the sparse structure-from-motion points of a folder prepared from a video
  (dyngauss/sfm/prepare.py; x y z float, red green blue uchar). Features on moving objects are masked out
  when masks were given to the preparation, so these points are (mostly) the static scene.
* Nerfies ``points.npy``: the capture's background points, normalised by the loader (``split.meta["points"]``).
* ``masks/<frame name>.<ext>``: per-frame masks of the moving objects (white = moving, e.g.
  ../shared/data/casual_twist/masks). With them, a point counts as static only when it projects outside the
  masks in (almost) every view that sees it.

:func:`static_points` combines them for Nerfies' static-background loss (losses/background.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .images import IMAGE_EXTENSIONS, read_image

POINTS_FILE = "points3d.ply"
MASKS_DIR = "masks"


class StaticPointsError(ValueError):
    """The dataset has no usable static points (no source, unreadable masks, or every point masked)."""


def load_sfm_points(path: str | Path, max_points: int = 200_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points [M,3] float32 and colours [M,3] in [0,1] of a sparse point cloud PLY (e.g. written by
    tools/prepare_video.py), randomly thinned to at most `max_points`; non-finite points are dropped."""
    from ..io.ply import read_points_ply

    pc = read_points_ply(path)
    pts, cols = pc["xyz"].astype(np.float32), pc["rgb"].astype(np.float32) / 255.0
    ok = np.isfinite(pts).all(1)
    pts, cols = pts[ok], cols[ok]
    if len(pts) > max_points:
        keep = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
        pts, cols = pts[keep], cols[keep]
    return pts, cols


@torch.no_grad()
def static_flags_from_masks(points: torch.Tensor, cameras: Sequence, masks: Sequence,
                            min_static_fraction: float = 0.95, min_views: int = 1) -> torch.Tensor:
    """Static flags [N] bool of world points [N,3] from moving-object masks.

    masks: one [H,W] (or [H,W,1]) array/tensor per camera, object = > 0.5, of any size (pixel coordinates are
    scaled from the camera's image size to the mask's). A point is static when, among the views where it lies
    in front of the camera and inside the image, at least `min_static_fraction` put it outside the mask, and
    there are at least `min_views` such views. Use it for points that do not move (background); a moving
    point is judged at its canonical position only."""
    n = points.shape[0]
    seen = torch.zeros(n, device=points.device)
    outside = torch.zeros(n, device=points.device)
    for cam, mk in zip(cameras, masks):
        mk = torch.as_tensor(np.asarray(mk) if not torch.is_tensor(mk) else mk, device=points.device)
        mk = mk[..., 0] if mk.dim() == 3 else mk
        H, W = mk.shape
        uv, z = cam.project(points)
        col = torch.floor(uv[:, 0] * (W / cam.width)).long()
        row = torch.floor(uv[:, 1] * (H / cam.height)).long()
        ok = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
        inside = mk[row.clamp(0, H - 1), col.clamp(0, W - 1)] > 0.5
        seen += ok.float()
        outside += (ok & ~inside).float()
    return (seen >= min_views) & (outside >= min_static_fraction * seen)


def read_object_masks(folder: str | Path, cameras: Sequence) -> list[np.ndarray]:
    """The mask [H,W] float32 in [0,1] of every camera: ``folder/<camera.name>.<ext>`` (any image extension;
    RGB masks are averaged). Raises StaticPointsError naming the first camera without a readable mask."""
    folder = Path(folder)
    out = []
    for cam in cameras:
        name = getattr(cam, "name", "") or ""
        files = [folder / f"{name}{ext}" for ext in IMAGE_EXTENSIONS] if name else []
        path = next((p for p in files if p.is_file()), None)
        if path is None:
            raise StaticPointsError(f"{folder}: no mask for training frame {name!r} (expected {name}.png or "
                                    "another image type; one mask per frame, named like the frames)")
        try:
            rgb, _ = read_image(path)
        except OSError as e:
            raise StaticPointsError(f"cannot read mask {path}: {e}") from None
        out.append(rgb.mean(-1))
    return out


def static_points(dataset: str | Path | None, cameras: Sequence, points: np.ndarray | None = None,
                  max_points: int = 200_000, seed: int = 0) -> tuple[np.ndarray, str]:
    """Points [M,3] float32 known to be static, and a sentence saying where they came from.

    Source: ``dataset/points3d.ply``, else `points` (the loader's sparse points, e.g. Nerfies ``points.npy``).
    When ``dataset/masks/`` exists, only the points outside the moving-object masks are kept
    (:func:`static_flags_from_masks` over the training `cameras`). Raises StaticPointsError when there is no
    source, a mask is missing, or no point is left."""
    folder = Path(dataset) if dataset else None
    ply = folder / POINTS_FILE if folder is not None else None
    if ply is not None and ply.is_file():
        pts, _ = load_sfm_points(ply, max_points=max_points, seed=seed)
        source = str(ply)
    elif points is not None and len(points):
        pts = np.asarray(points, np.float32).reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(1)]
        source = "the dataset's sparse points (points.npy)"
    else:
        raise StaticPointsError(f"the dataset ({folder}) has no {POINTS_FILE} and its loader gave no sparse "
                                "points (Nerfies points.npy)")
    masks_dir = folder / MASKS_DIR if folder is not None else None
    if masks_dir is not None and masks_dir.is_dir() and len(pts):
        flags = static_flags_from_masks(torch.from_numpy(pts), cameras, read_object_masks(masks_dir, cameras))
        pts = pts[flags.numpy()]
        source += f", outside the object masks in {masks_dir}"
    if len(pts) == 0:
        raise StaticPointsError(f"no static points left from {source}")
    return pts, f"{len(pts)} static points from {source}"

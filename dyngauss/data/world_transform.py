"""A D-NeRF dataset with its world coordinates changed by a similarity transform x' = s R x + t.

The images stay the same (they are linked, not copied): only what is written in world coordinates changes —
every camera-to-world matrix of every ``transforms*.json``, the motion ground truth (``gt_tracks.npz``
positions), every z-depth map (``<split>/depth_*.npz`` and ``depth/*.npz``, data/depth.py's layouts: the fixed
camera's ground truth in ``video/``, the training depth of ``data.synthetic_depth`` / RGB-D captures; depths scale
with s), ``points3d.ply`` and the object box of ``meta.json``. Used to check that training does not depend on the
world frame (tests/test_world_frame.py): the same scene in other coordinates must give the same result.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["similarity", "rotation_about", "transform_dataset"]


def rotation_about(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Rotation matrix [3,3] of `degrees` about `axis` (right-handed, Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    th = math.radians(degrees)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K


def similarity(scale: float = 1.0, rotation: np.ndarray | None = None,
               translation: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The 4x4 matrix of x' = scale * R x + t. Raises ValueError for a non-positive scale or a rotation that is
    not one."""
    R = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if R.shape != (3, 3) or np.abs(R.T @ R - np.eye(3)).max() > 1e-9 or np.linalg.det(R) < 0:
        raise ValueError("rotation must be a 3x3 rotation matrix")
    M = np.eye(4)
    M[:3, :3] = scale * R
    M[:3, 3] = np.asarray(translation, dtype=np.float64)
    return M


def _points(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x @ M[:3, :3].T + M[:3, 3]


def _camera(M: np.ndarray, c2w) -> list:
    """c2w' with the rotation block R Rc (still a rotation) and the centre s R o + t."""
    c2w = np.asarray(c2w, dtype=np.float64)
    s = float(np.cbrt(np.linalg.det(M[:3, :3])))
    R = M[:3, :3] / s
    out = np.eye(4)
    out[:3, :3] = R @ c2w[:3, :3]
    out[:3, 3] = _points(M, c2w[:3, 3])
    return out.tolist()


def _link(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst, target_is_directory=src.is_dir())
    except OSError:  # no symlinks here: copy
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def _is_depth_file(p: Path) -> bool:
    """A z-depth map in one of data/depth.py's layouts: ``<split>/depth_<n>.npz`` or ``depth/<frame>.npz``."""
    return p.is_file() and p.suffix == ".npz" and (p.name.startswith("depth_") or p.parent.name == "depth")


def _copy_split_scaling_depth(src: Path, dst: Path, s: float) -> None:
    """A folder whose depth maps (:func:`_is_depth_file`) are multiplied by `s` (world units scale with s; inf,
    the no-surface value, stays inf); every other file is linked."""
    dst.mkdir()
    for p in sorted(src.iterdir()):
        if _is_depth_file(p):
            with np.load(p) as z:
                np.savez(dst / p.name, **{k: (z[k] * s if k == "depth" else z[k]) for k in z.files})
        else:
            _link(p, dst / p.name)


def transform_dataset(src: str | os.PathLike, dst: str | os.PathLike, matrix: np.ndarray,
                      keep_meta_bbox: bool = True) -> Path:
    """Write `src` (a D-NeRF folder) with world coordinates x' = M x into the new folder `dst`.

    matrix: [4,4] from :func:`similarity`. keep_meta_bbox: write ``meta.json``'s ``object_bbox_all_times`` as the
    axis-aligned box of the transformed box (exact for translations and scales, larger under a general
    rotation); False drops it, so that the loader estimates the bounds from the cameras in every variant.
    Raises FileExistsError when `dst` exists, ValueError for a matrix that is not a similarity."""
    src, dst = Path(src), Path(dst)
    M = np.asarray(matrix, dtype=np.float64)
    s = float(np.cbrt(np.linalg.det(M[:3, :3]))) if M.shape == (4, 4) else -1.0
    if not s > 0 or np.abs(M[:3, :3].T @ M[:3, :3] / s ** 2 - np.eye(3)).max() > 1e-9 \
            or np.abs(M[3] - [0, 0, 0, 1]).max() > 0:
        raise ValueError("matrix must be a 4x4 similarity (s R | t; 0 0 0 1) with s > 0")
    dst.mkdir(parents=True, exist_ok=False)
    rewritten = {"meta.json", "gt_tracks.npz", "points3d.ply", ".complete"}
    for p in sorted(src.iterdir()):
        if p.name in rewritten or (p.name.startswith("transforms") and p.suffix == ".json"):
            continue
        if p.is_dir() and any(_is_depth_file(q) for q in p.iterdir()):
            _copy_split_scaling_depth(p, dst / p.name, s)
        else:
            _link(p, dst / p.name)
    for p in sorted(src.glob("transforms*.json")):
        data = json.loads(p.read_text())
        for fr in data.get("frames", []):
            fr["transform_matrix"] = _camera(M, fr["transform_matrix"])
        (dst / p.name).write_text(json.dumps(data, indent=1))
    if (src / "gt_tracks.npz").is_file():
        with np.load(src / "gt_tracks.npz") as z:
            arrays = {k: z[k] for k in z.files}
        for k, v in arrays.items():
            if k.startswith("xyz_") or k == "rest_xyz":
                arrays[k] = _points(M, v.reshape(-1, 3)).reshape(v.shape).astype(v.dtype)
        np.savez(dst / "gt_tracks.npz", **arrays)
    if (src / "points3d.ply").is_file():
        from ..io.ply import read_points_ply, write_points_ply

        pc = read_points_ply(src / "points3d.ply")
        write_points_ply(dst / "points3d.ply", _points(M, pc["xyz"]).astype(np.float32), pc["rgb"])
    if (src / "meta.json").is_file():
        meta = json.loads((src / "meta.json").read_text())
        bb = meta.pop("object_bbox_all_times", None)
        if keep_meta_bbox and bb is not None:
            lo, hi = np.asarray(bb, dtype=np.float64)
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            c = _points(M, corners)
            meta["object_bbox_all_times"] = [c.min(0).tolist(), c.max(0).tolist()]
        meta["world_transform"] = {"matrix": M.tolist(), "source": str(src)}
        (dst / "meta.json").write_text(json.dumps(meta, indent=1))
    return dst

"""Nerfies / HyperNeRF captures (google/nerfies, google/hypernerf layout).

A capture folder holds ``dataset.json`` (``ids``, ``train_ids``, ``val_ids``), ``metadata.json`` (per id:
``warp_id``, ``appearance_id``, ``camera_id`` and, in HyperNeRF captures, ``time_id``), ``scene.json``
(``center``, ``scale``, ``near``, ``far``), ``camera/<id>.json`` and images ``rgb/<k>x/<id>.png`` (k = 1, 2, 4, ...),
optionally ``points.npy`` (background points, world coordinates).

Camera JSON (Nerfies convention): ``orientation`` is the 3x3 world-to-camera rotation (rows = camera x/y/z axes
in world; x right, y down, looking along +z, as OpenCV), ``position`` the camera centre in world, and a pixel
is ``(f*x + skew*y + cx, f*pixel_aspect_ratio*y + cy)`` for the distorted normalised coordinates (x, y), with
pixel centres at +0.5. Intrinsics refer to ``image_size`` (the rgb/1x images) and are scaled to the images read.
World coordinates are normalised as ``(X - center) * scale`` (camera positions and points alike), as Nerfies does.
Lens distortion (``radial_distortion`` k1 k2 k3, ``tangential_distortion`` / ``tangential`` p1 p2) and skew are
removed by resampling each image to the pinhole camera with the same focal lengths and principal point.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .camera import Camera, CameraError, check_intrinsics
from .dnerf import DatasetError, DNeRFSplit, check_dataset_folder, estimate_bounds
from .images import (IMAGE_EXTENSIONS, ImageReadError, area_resize, composite, decode_ahead, read_image,
                     undistort_to_pinhole)

__all__ = ["is_nerfies_folder", "load_nerfies", "nerfies_splits", "NerfiesCamera", "read_nerfies_camera"]

# split name -> dataset.json key ("test" is an alias of "val": Nerfies captures have no separate test set)
_SPLIT_KEYS = {"train": "train_ids", "val": "val_ids", "test": "val_ids", "all": "ids"}


def is_nerfies_folder(path: str | os.PathLike) -> bool:
    """True when the folder has ``dataset.json`` and a ``camera/`` folder."""
    p = Path(path).expanduser()
    return (p / "dataset.json").is_file() and (p / "camera").is_dir()


def _read_json(path: Path):
    if not path.is_file():
        raise DatasetError(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"malformed JSON in {path} at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e


def _read_object(path: Path) -> dict:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _array(spec: dict, key: str, shape: tuple, where: Path, default=None) -> np.ndarray:
    """spec[key] (or `default` when absent and given) as a finite float64 array of `shape`; DatasetError
    naming the file otherwise."""
    if key not in spec:
        if default is None:
            raise DatasetError(f"{where}: missing '{key}'")
        return np.asarray(default, dtype=np.float64)
    try:
        a = np.asarray(spec[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: '{key}' must be numbers with shape {shape}") from None
    if a.shape != shape:
        raise DatasetError(f"{where}: '{key}' must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DatasetError(f"{where}: '{key}' is not finite")
    return a


@dataclass(frozen=True)
class NerfiesCamera:
    """One ``camera/<id>.json`` as written (full-resolution intrinsics, un-normalised world)."""

    orientation: np.ndarray          # [3,3] world-to-camera rotation
    position: np.ndarray             # [3] camera centre in world
    focal_length: float
    principal_point: np.ndarray      # [2]
    skew: float
    pixel_aspect_ratio: float
    radial_distortion: np.ndarray    # [3] k1 k2 k3
    tangential_distortion: np.ndarray  # [2] p1 p2
    image_size: tuple[int, int]      # (W, H)

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.radial_distortion != 0) or np.any(self.tangential_distortion != 0)
                    or self.skew != 0)


def read_nerfies_camera(path: str | os.PathLike) -> NerfiesCamera:
    """Parse and validate one Nerfies camera JSON."""
    path = Path(path)
    spec = _read_object(path)
    R = _array(spec, "orientation", (3, 3), path)
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise DatasetError(f"{path}: 'orientation' is not a rotation matrix (orthonormal, det +1)")
    scalars = {}
    for key, default in (("focal_length", None), ("skew", 0.0), ("pixel_aspect_ratio", 1.0)):
        scalars[key] = float(_array(spec, key, (), path, default))
    if scalars["focal_length"] <= 0 or scalars["pixel_aspect_ratio"] <= 0:
        raise DatasetError(f"{path}: 'focal_length' and 'pixel_aspect_ratio' must be positive")
    tkey = "tangential_distortion" if "tangential_distortion" in spec else "tangential"
    size = _array(spec, "image_size", (2,), path)
    if np.any(size < 1) or np.any(size != np.round(size)):
        raise DatasetError(f"{path}: 'image_size' must be two positive integers [W, H], got {size.tolist()}")
    pp = _array(spec, "principal_point", (2,), path)
    f = scalars["focal_length"]
    try:
        check_intrinsics(f, f * scalars["pixel_aspect_ratio"], pp[0], pp[1], int(size[0]), int(size[1]))
    except CameraError as e:
        raise DatasetError(f"{path}: {e}") from None
    return NerfiesCamera(
        orientation=R, position=_array(spec, "position", (3,), path), focal_length=scalars["focal_length"],
        principal_point=pp, skew=scalars["skew"],
        pixel_aspect_ratio=scalars["pixel_aspect_ratio"],
        radial_distortion=_array(spec, "radial_distortion", (3,), path, (0.0, 0.0, 0.0)),
        tangential_distortion=_array(spec, tkey, (2,), path, (0.0, 0.0)),
        image_size=(int(size[0]), int(size[1])))


# ----------------------------------------------------------------------------------------------- dataset files

def _id_list(data: dict, key: str, where: Path) -> list[str]:
    ids = data.get(key)
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
        raise DatasetError(f"{where}: '{key}' must be a list of ids")
    return [str(i) for i in ids]


def _dataset_ids(folder: Path) -> dict[str, list[str]]:
    """``train_ids``, ``val_ids`` and ``ids`` (all; the union in order when ``ids`` is absent)."""
    dp = folder / "dataset.json"
    data = _read_object(dp)
    out = {k: _id_list(data, k, dp) for k in ("train_ids", "val_ids")}
    union = list(dict.fromkeys(out["train_ids"] + out["val_ids"]))
    out["ids"] = _id_list(data, "ids", dp) if "ids" in data else union
    return out


def nerfies_splits(path: str | os.PathLike) -> list[str]:
    """Splits with frames: ``train``, ``val`` and ``test`` (both = ``val_ids``), ``all``."""
    ids = _dataset_ids(check_dataset_folder(path))
    return [s for s, k in _SPLIT_KEYS.items() if ids[k]]


def _times(folder: Path, all_ids: list[str]) -> dict[str, tuple[float, dict]]:
    """id -> (time in [0,1] = time_id / max time_id over all ids, metadata entry); warp_id when no time_id."""
    mp = folder / "metadata.json"
    meta = _read_object(mp)
    tids = {}
    for i in all_ids:
        m = meta.get(i)
        if not isinstance(m, dict):
            raise DatasetError(f"{mp}: no entry for id {i!r} (listed in {folder / 'dataset.json'})")
        key = "time_id" if "time_id" in m else "warp_id"
        v = m.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
            raise DatasetError(f"{mp}: id {i!r}: need a non-negative integer 'time_id' or 'warp_id', got {v!r}")
        tids[i] = (int(v), m)
    top = max((t for t, _ in tids.values()), default=0)
    return {i: (t / top if top > 0 else 0.0, m) for i, (t, m) in tids.items()}


def _scene(folder: Path) -> tuple[np.ndarray, float, float | None, float | None]:
    """(center, scale, near, far) from scene.json; identity when the file is absent."""
    sp = folder / "scene.json"
    if not sp.exists():
        return np.zeros(3), 1.0, None, None
    s = _read_object(sp)
    center = _array(s, "center", (3,), sp)
    scale = float(_array(s, "scale", (), sp))
    if scale <= 0:
        raise DatasetError(f"{sp}: 'scale' must be positive, got {scale}")
    near = float(_array(s, "near", (), sp)) if "near" in s else None
    far = float(_array(s, "far", (), sp)) if "far" in s else None
    return center, scale, near, far


def _image_dir(folder: Path, image_scale: int | None) -> tuple[Path, int]:
    """rgb/<k>x with the smallest k (or k = image_scale)."""
    rgb = folder / "rgb"
    have = sorted(int(p.name[:-1]) for p in rgb.glob("*x") if p.is_dir() and p.name[:-1].isdigit()) \
        if rgb.is_dir() else []
    if image_scale is not None:
        k = int(image_scale)
        if k not in have:
            raise DatasetError(f"image folder not found: {rgb / f'{k}x'} (available: "
                               f"{', '.join(f'{h}x' for h in have) or 'none'})")
        return rgb / f"{k}x", k
    if not have:
        raise DatasetError(f"no image folder in {rgb} (expected {rgb / '1x'}, {rgb / '2x'}, ...)")
    return rgb / f"{have[0]}x", have[0]


def _image_path(img_dir: Path, item: str, where: Path) -> Path:
    for ext in IMAGE_EXTENSIONS:
        p = img_dir / f"{item}{ext}"
        if p.is_file():
            return p
    raise DatasetError(f"image file not found: {img_dir / (item + '.png')} (id {item!r} of {where})")


def _bounds_from_points(pp: Path, center: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(normalised points [N,3] float32, bbox [2,3] of their 0.5..99.5 percentiles)."""
    try:
        pts = np.load(pp, allow_pickle=False)
    except Exception as e:
        raise DatasetError(f"corrupt or unreadable {pp}: {e}") from e
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise DatasetError(f"{pp}: points must be [N,3], got {pts.shape}")
    pts = (pts.astype(np.float64) - center) * scale
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        raise DatasetError(f"{pp}: no finite points")
    bb = np.percentile(pts, [0.5, 99.5], axis=0)
    return pts.astype(np.float32), bb


# ----------------------------------------------------------------------------------------------- images

def _undistort(img: np.ndarray, nc: NerfiesCamera, K: np.ndarray, sx: float) -> np.ndarray:
    """Resample an image of camera `nc` (scaled by sx, sy) to the pinhole K (no skew, no distortion)."""
    return undistort_to_pinhole(img, K, nc.radial_distortion, nc.tangential_distortion, nc.skew * sx)


def _decoded(paths: list[Path], workers: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Decode the images in order, ahead on a thread pool (DatasetError naming the file on failure)."""
    def read(p: Path):
        try:
            return read_image(p)
        except ImageReadError as e:
            raise DatasetError(f"corrupt or unreadable image {p}: {e.__cause__ or e}") from e
        except FileNotFoundError:
            raise DatasetError(f"image file not found: {p}") from None

    return decode_ahead(paths, read, workers)


# ----------------------------------------------------------------------------------------------- loader

def load_nerfies(path: str | os.PathLike, split: str = "train", downscale: float = 1,
                 background: Sequence[float] = (1.0, 1.0, 1.0), image_scale: int | None = None,
                 frames: Sequence[int] | slice | None = None, num_threads: int | None = None) -> DNeRFSplit:
    """Load one split of a Nerfies / HyperNeRF capture as a :class:`DNeRFSplit`.

    Args:
        split: ``train`` (``train_ids``), ``val`` or ``test`` (both ``val_ids``), ``all`` (``ids``).
        downscale: further image size division after choosing the image folder (area resize, K scaled as
            ``Camera.scaled``), as in :func:`load_dnerf`.
        background: RGB that RGBA images (rare) are composited on; RGB images give ``alphas`` None.
        image_scale: read ``rgb/<image_scale>x``; default the smallest k with an ``rgb/<k>x`` folder.
        frames: optional subset of rows of the split; ``Camera.index`` keeps the row in the full split.
    Cameras are OpenCV (``.name`` = id, ``.time`` = time_id (or warp_id) / its maximum over all ids) in the
    normalised world ``(X - center) * scale``. Bounds: from ``points.npy`` when present
    (``bbox_source == "points"``, the points in ``meta["points"]``), else estimated from the cameras;
    scene.json ``near``/``far`` (normalised units) are kept in ``meta``.
    Raises:
        DatasetError naming the offending file for any missing / malformed input.
    """
    folder = check_dataset_folder(path)
    if split not in _SPLIT_KEYS:
        raise DatasetError(f"{folder}: unknown split {split!r} for a Nerfies capture (use {', '.join(_SPLIT_KEYS)})")
    if downscale is None or not float(downscale) >= 1.0:
        raise ValueError(f"downscale must be >= 1, got {downscale}")
    downscale = float(downscale)
    bg = tuple(float(v) for v in background)
    if len(bg) != 3:
        raise ValueError(f"background must be 3 numbers, got {background}")
    ids = _dataset_ids(folder)
    rows_ids = ids[_SPLIT_KEYS[split]]
    if not rows_ids:
        raise DatasetError(f"{folder / 'dataset.json'}: '{_SPLIT_KEYS[split]}' is empty (split {split!r})")
    rows = list(range(len(rows_ids)))
    if frames is not None:
        rows = rows[frames] if isinstance(frames, slice) else [int(i) for i in frames]
        for i in rows:
            if not 0 <= i < len(rows_ids):
                raise IndexError(f"frame index {i} out of range for split {split!r} ({len(rows_ids)} frames)")
        if not rows:
            raise ValueError("frames selects no frame")
    times = _times(folder, list(dict.fromkeys(ids["ids"] + ids["train_ids"] + ids["val_ids"])))
    center, scale, near, far = _scene(folder)
    img_dir, k = _image_dir(folder, image_scale)

    # Validate every camera JSON and image path before decoding any image.
    recs = []
    for i in rows:
        item = rows_ids[i]
        cp = folder / "camera" / f"{item}.json"
        if not cp.is_file():
            raise DatasetError(f"camera file not found: {cp} (id {item!r} of {folder / 'dataset.json'})")
        recs.append((i, item, read_nerfies_camera(cp), cp, _image_path(img_dir, item, folder / "dataset.json")))

    n = len(recs)
    images = alphas = None
    cameras: list[Camera] = []
    size0, any_alpha = None, False
    workers = max(1, num_threads or min(4, os.cpu_count() or 1))
    for j, ((i, item, nc, cp, ip), (rgb, alpha)) in enumerate(zip(recs, _decoded([r[4] for r in recs], workers))):
        H, W = rgb.shape[:2]
        W0, H0 = nc.image_size
        if abs(W * k - W0) > k or abs(H * k - H0) > k:
            raise DatasetError(f"image {ip} is {W}x{H} but {cp} has image_size {W0}x{H0}, i.e. about "
                               f"{W0 / k:g}x{H0 / k:g} at rgb/{k}x")
        if size0 is None:
            size0 = (W, H)
            w2, h2 = max(1, round(W / downscale)), max(1, round(H / downscale))
            images = np.empty((n, h2, w2, 3), dtype=np.float32)
            alphas = np.ones((n, h2, w2, 1), dtype=np.float32)
        elif (W, H) != size0:
            raise DatasetError(f"image {ip} is {W}x{H} but earlier images are {size0[0]}x{size0[1]} "
                               "(all images of a split must share one size)")
        sx, sy = W / W0, H / H0
        f, (px, py) = nc.focal_length, nc.principal_point
        K = np.array([[f * sx, 0.0, px * sx], [0.0, f * nc.pixel_aspect_ratio * sy, py * sy], [0.0, 0.0, 1.0]])
        V = np.eye(4)
        V[:3, :3] = nc.orientation
        V[:3, 3] = -nc.orientation @ ((nc.position - center) * scale)
        t, m = times[item]
        cam = Camera(K, V, W, H, time=t, name=item, index=i,
                     meta={"file_path": str(ip), "split": split, "camera_file": str(cp),
                           **{key: m[key] for key in ("warp_id", "appearance_id", "camera_id", "time_id")
                              if key in m}})
        cameras.append(cam.scaled(1.0 / downscale) if downscale != 1.0 else cam)
        img = composite(rgb, alpha, bg)
        if nc.distorted:
            img = _undistort(img, nc, K, sx)
            alpha = None if alpha is None else _undistort(alpha, nc, K, sx)
        images[j] = area_resize(img, w2, h2)
        if alpha is not None:
            any_alpha = True
            alphas[j] = area_resize(alpha, w2, h2)

    meta = {"format": "nerfies", "scene_center": center.tolist(), "scene_scale": scale, "near": near,
            "far": far, "image_scale": k, "image_dir": str(img_dir), "points": None}
    pp = folder / "points.npy"
    if pp.is_file():
        meta["points"], bb = _bounds_from_points(pp, center, scale)
        bcenter, radius, source = 0.5 * (bb[0] + bb[1]), 0.5 * float(np.linalg.norm(bb[1] - bb[0])), "points"
    else:
        bcenter, radius = estimate_bounds(cameras)
        bb = np.stack([bcenter - radius, bcenter + radius])
        source = "cameras"
    if not math.isfinite(radius) or radius <= 0:
        raise DatasetError(f"{folder}: cannot estimate the scene bounds from the cameras")
    return DNeRFSplit(
        path=folder, split=split, cameras=cameras, images=torch.from_numpy(images),
        alphas=torch.from_numpy(alphas) if any_alpha else None,
        times=torch.tensor([c.time for c in cameras], dtype=torch.float32), background=bg,
        scene_center=torch.tensor(bcenter, dtype=torch.float32), scene_radius=float(radius),
        bbox=torch.tensor(bb, dtype=torch.float32), bbox_source=source, downscale=downscale, meta=meta)

"""CMU Panoptic captures as prepared by Dynamic3DGaussians (Luiten et al. 2024, "Dynamic 3D Gaussians: Tracking
by Persistent Dynamic View Synthesis", 3DV; its ``data/<sequence>/`` layout), and the built-in scene's multi-camera
mode, which is written in the same layout (dyngauss/data/synthetic_multiview.py).

A folder holds ``train_meta.json`` and/or ``test_meta.json`` (the splits ``train`` and ``test``), each a JSON
object with ``w``, ``h`` (image size, pixels) and, per time step t (lists of length T), per camera (lists of one
length per time step):

* ``k``: [T][C][3][3] intrinsics in pixels (OpenCV: pixel centres at +0.5 as everywhere in dyngauss);
* ``w2c``: [T][C][4][4] world-to-camera (OpenCV axes: x right, y down, z forward), used as ``Camera.viewmat``
  (checked: a rotation, bottom row [0, 0, 0, 1]);
* ``fn``: [T][C] image file names relative to ``ims/`` (``"<cam>/<frame>.jpg"``);
* ``cam_id``: [T][C] camera ids (the camera's name is ``str(cam_id)``).

Images ``ims/<fn>`` (JPEG or PNG; an alpha channel is used as in D-NeRF: composited on ``background``).
Optional ``seg/<fn with .png>``: foreground masks (a pixel is foreground when any of its channels is non-zero:
Dynamic3DGaussians' masks are 0/1 or 0/255), exposed as ``split.masks``; with ``seg_as_alpha`` (the default) they
are also the alpha of images that have none, so the photo is composited on ``background`` (foreground-only
training; ``seg_as_alpha=False`` trains on the full photos). Optional ``init_pt_cld.npz`` (key ``data``: [M,7]
x y z, r g b in [0,1] (0-255 is divided by 255), seg): the initial points, given to the model's init as
``split.meta["points"]`` / ``["point_colors"]`` (``["point_seg"]``: their foreground flags).

Times: step t of T is t / (T - 1) (both splits must have the same T); ``time_stride`` / ``max_frames`` select
steps (dyngauss/data/multiview.py). Frames are ordered by time, then camera (position in the time step's lists);
each frame is decoded (image + mask) on first access (dyngauss/data/frames.py). At load time every selected image
file is checked to exist and the first one's header is read (its size must be ``w`` x ``h``).

Bounds: ``meta.json``'s ``object_bbox_all_times`` (the built-in scene), else the 2..98 percentile box of the
initial points, else the sphere every camera sees (:func:`dyngauss.data.dnerf.estimate_bounds`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .camera import Camera, CameraError, check_c2w, check_intrinsics
from .dnerf import DatasetError, check_dataset_folder
from .frames import Decoded, to_u8
from .images import ImageReadError, area_resize, composite, read_image
from .multiview import (DEFAULT_CACHE_GB, FrameSpec, MultiViewSplit, assemble_split, bounds_from_meta,
                        bounds_from_points, check_load_options, default_workers, read_json, select_source_frames,
                        source_time)

__all__ = ["META_KEYS", "IMAGES_DIR", "SEG_DIR", "POINTS_FILE", "is_panoptic_folder", "panoptic_splits",
           "meta_path", "read_meta", "load_panoptic", "load_init_points"]

META_KEYS = ("w", "h", "k", "w2c", "fn", "cam_id")
IMAGES_DIR, SEG_DIR, POINTS_FILE = "ims", "seg", "init_pt_cld.npz"
_SPLITS = ("train", "test")


def meta_path(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}_meta.json"


def is_panoptic_folder(folder: Path) -> bool:
    return any(meta_path(folder, s).is_file() for s in _SPLITS)


def panoptic_splits(path: str | os.PathLike) -> list[str]:
    """The splits whose ``<split>_meta.json`` exists (train, test)."""
    folder = check_dataset_folder(path)
    return [s for s in _SPLITS if meta_path(folder, s).is_file()]


def _positive_int(meta: dict, key: str, mp: Path) -> int:
    v = meta[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or int(v) <= 0:
        raise DatasetError(f"{mp}: {key!r} must be a positive integer (image size in pixels), got {v!r}")
    return int(v)


def read_meta(mp: Path) -> dict:
    """Parse and check the structure of a ``<split>_meta.json`` (values are checked when cameras are built):
    every key of :data:`META_KEYS`, ``k`` / ``w2c`` / ``fn`` / ``cam_id`` lists of T time steps, each a list
    with one entry per camera of that step. Returns the dict with ``w``, ``h`` as ints. DatasetError naming the
    file and the key otherwise."""
    meta = read_json(mp)
    if not isinstance(meta, dict):
        raise DatasetError(f"{mp}: expected a JSON object at the top level, got {type(meta).__name__}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise DatasetError(f"{mp}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                           f"(a Panoptic / Dynamic3DGaussians meta file has {', '.join(META_KEYS)})")
    meta = dict(meta)
    meta["w"], meta["h"] = _positive_int(meta, "w", mp), _positive_int(meta, "h", mp)
    fn = meta["fn"]
    if not isinstance(fn, list) or not fn:
        raise DatasetError(f"{mp}: 'fn' must be a non-empty list (one list of file names per time step)")
    T = len(fn)
    for key in ("k", "w2c", "fn", "cam_id"):
        v = meta[key]
        if not isinstance(v, list) or len(v) != T:
            n = len(v) if isinstance(v, list) else type(v).__name__
            raise DatasetError(f"{mp}: {key!r} must be a list of {T} time steps (as 'fn'), got {n}")
        for t, row in enumerate(v):
            if not isinstance(row, list) or not row:
                raise DatasetError(f"{mp}: {key!r}[{t}] must be a non-empty list (one entry per camera)")
            if len(row) != len(fn[t]):
                raise DatasetError(f"{mp}: {key!r}[{t}] has {len(row)} cameras but 'fn'[{t}] has {len(fn[t])}")
    return meta


def load_init_points(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(points [M,3] float32, colours [M,3] float32 in [0,1], foreground flags [M] float32) of
    ``init_pt_cld.npz`` (key ``data`` [M,7] or [M,6] without seg), None when there is none; DatasetError naming
    the file when it is unreadable or has the wrong shape."""
    p = Path(folder) / POINTS_FILE
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            if "data" not in z.files:
                raise DatasetError(f"{p}: missing key 'data' (has {z.files}); expected [M,7] x y z r g b seg")
            d = np.asarray(z["data"])
    except DatasetError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError
        raise DatasetError(f"corrupt or unreadable npz {p}: {e}") from e
    if d.ndim != 2 or d.shape[1] not in (6, 7) or d.dtype.kind not in "fiu":
        raise DatasetError(f"{p}: 'data' must be an [M,7] (or [M,6]) array of numbers, got {d.dtype} {d.shape}")
    d = d.astype(np.float64)
    d = d[np.isfinite(d).all(1)]
    rgb = d[:, 3:6]
    if len(rgb) and rgb.max() > 1.0:  # 0-255 colours
        rgb = rgb / 255.0
    seg = d[:, 6] if d.shape[1] == 7 else np.ones(len(d))
    return d[:, :3].astype(np.float32), np.clip(rgb, 0, 1).astype(np.float32), seg.astype(np.float32)


def _camera(meta: dict, t: int, c: int, mp: Path) -> tuple[np.ndarray, np.ndarray]:
    where = f"{mp}: time step {t}, camera {c} (fn {meta['fn'][t][c]!r})"
    try:
        K = np.asarray(meta["k"][t][c], np.float64)
        w2c = np.asarray(meta["w2c"][t][c], np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: 'k' must be 3x3 and 'w2c' 4x4 arrays of numbers") from None
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise DatasetError(f"{where}: 'k' must be a finite 3x3 matrix, got shape {K.shape}")
    if abs(K[0, 1]) > 1e-6 * abs(K[0, 0]) or np.abs(K[2] - [0, 0, 1]).max() > 1e-6 or abs(K[1, 0]) > 1e-9:
        raise DatasetError(f"{where}: 'k' must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
    try:
        check_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], meta["w"], meta["h"])
    except CameraError as e:
        raise DatasetError(f"{where}: 'k' {e}") from None
    if w2c.shape != (4, 4) or not np.isfinite(w2c).all():
        raise DatasetError(f"{where}: 'w2c' must be a finite 4x4 matrix, got shape {w2c.shape}")
    try:
        c2w, _ = check_c2w(np.linalg.inv(w2c))
    except (CameraError, np.linalg.LinAlgError) as e:
        raise DatasetError(f"{where}: 'w2c' is not a camera pose: {e}") from None
    return K, np.linalg.inv(c2w)


def _has_alpha(img: Path) -> tuple[bool, tuple[int, int]]:
    from PIL import Image

    try:
        with Image.open(img) as im:
            return (im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)), im.size
    except Exception as e:
        raise DatasetError(f"corrupt or unreadable image {img}: {e}") from e


def load_panoptic(path: str | os.PathLike, split: str = "train", downscale: float = 1,
                  background: Sequence[float] = (1.0, 1.0, 1.0), frames: Sequence[int] | slice | None = None,
                  time_stride: int = 1, max_frames: int = 0, seg_as_alpha: bool = True,
                  cache_gb: float = DEFAULT_CACHE_GB, num_threads: int | None = None) -> MultiViewSplit:
    """One split of a Panoptic / Dynamic3DGaussians folder (module docstring), decoded lazily.

    downscale: image size divided by this (area resize on composited colour; K as ``Camera.scaled``);
    background: RGB in [0,1] that alpha (image alpha, or seg masks with `seg_as_alpha`) is composited on;
    frames: optional subset of rows; time_stride / max_frames: time steps kept; cache_gb: the decoded-frame cache
    budget; num_threads: decode-ahead threads when many frames are read at once.
    Raises DatasetError naming the file (module docstring)."""
    folder = check_dataset_folder(path)
    downscale, bg = check_load_options(downscale, background, time_stride, max_frames, cache_gb)
    mp = meta_path(folder, split)
    if not mp.is_file():
        have = panoptic_splits(folder)
        raise DatasetError(f"split {split!r}: meta file not found: {mp} (available splits: "
                           f"{', '.join(have) or 'none'})")
    meta = read_meta(mp)
    T = len(meta["fn"])
    for other in _SPLITS:
        op = meta_path(folder, other)
        if other != split and op.is_file():
            ot = read_json(op)
            n = len(ot["fn"]) if isinstance(ot, dict) and isinstance(ot.get("fn"), list) else None
            if n is not None and n != T:
                raise DatasetError(f"{mp} has {T} time steps but {op} has {n}: the splits of one capture share "
                                   "its time steps")
    keep = select_source_frames(T, time_stride, max_frames)
    W, H = meta["w"], meta["h"]
    seg_dir = folder / SEG_DIR
    has_mask = seg_dir.is_dir()
    names: list[str] = []
    specs: list[FrameSpec] = []
    for k, t in enumerate(keep):
        time = source_time(t, T)
        for c, fn in enumerate(meta["fn"][t]):
            if not isinstance(fn, str) or not fn:
                raise DatasetError(f"{mp}: 'fn'[{t}][{c}] must be a file name, got {fn!r}")
            cid = meta["cam_id"][t][c]
            if isinstance(cid, bool) or not isinstance(cid, (int, str)):
                raise DatasetError(f"{mp}: 'cam_id'[{t}][{c}] must be an integer or a name, got {cid!r}")
            cname = str(cid)
            if cname not in names:
                names.append(cname)
            img = folder / IMAGES_DIR / fn
            if not img.is_file():
                raise DatasetError(f"{mp}: time step {t}, camera {cname}: image file not found: {img}")
            seg = (seg_dir / fn).with_suffix(".png")
            if has_mask and not seg.is_file():
                raise DatasetError(f"{mp}: time step {t}, camera {cname}: {seg_dir} exists but has no mask "
                                   f"{seg} (masks are optional, but then for every image)")
            K, viewmat = _camera(meta, t, c, mp)
            cam = Camera(K, viewmat, W, H, time=time, name=f"{cname}_{Path(fn).stem}",
                         meta={"file_path": str(img), "camera": cname, "frame": t, "split": split})
            specs.append(FrameSpec(cam, names.index(cname), k, str(img), {"image": img, "seg": seg}))
    if not specs:
        raise DatasetError(f"{mp}: no frame selected (time_stride={time_stride}, max_frames={max_frames})")
    first_alpha, size = _has_alpha(specs[0].data["image"])
    if size != (W, H):
        raise DatasetError(f"{specs[0].data['image']} is {size[0]}x{size[1]} but {mp} says w x h = {W}x{H}")
    has_alpha = first_alpha or (has_mask and bool(seg_as_alpha))

    def decode(group: list[FrameSpec], width: int, height: int) -> list[Decoded]:
        out = []
        for s in group:
            img = s.data["image"]
            try:
                rgb, alpha = read_image(img)
            except (ImageReadError, FileNotFoundError) as e:
                raise DatasetError(f"corrupt or unreadable image {img}: {e}") from None
            if rgb.shape[:2] != (H, W):
                raise DatasetError(f"{img} is {rgb.shape[1]}x{rgb.shape[0]} but {mp} says w x h = {W}x{H}")
            mask = None
            if has_mask:
                try:
                    m, ma = read_image(s.data["seg"])
                except (ImageReadError, FileNotFoundError) as e:
                    raise DatasetError(f"corrupt or unreadable mask {s.data['seg']}: {e}") from None
                if m.shape[:2] != (H, W):
                    raise DatasetError(f"mask {s.data['seg']} is {m.shape[1]}x{m.shape[0]}, its image {W}x{H}")
                mask = (m.max(axis=2, keepdims=True) > 0).astype(np.float32)
                if ma is not None:
                    mask *= (ma > 0)
            if alpha is None and has_mask and seg_as_alpha:
                alpha = mask
            rgb = composite(rgb, alpha, bg)
            if (width, height) != (W, H):
                rgb = area_resize(rgb, width, height)
                alpha = area_resize(alpha, width, height) if alpha is not None else None
                mask = area_resize(mask, width, height) if mask is not None else None
            a8 = None
            if has_alpha:
                a8 = to_u8(alpha) if alpha is not None else np.full((height, width, 1), 255, np.uint8)
            out.append((to_u8(rgb), a8, to_u8(mask) if mask is not None else None))
        return out

    pts = load_init_points(folder)
    bbox, source = bounds_from_meta(folder), "meta"
    if bbox is None and pts is not None:
        bbox, source = bounds_from_points(pts[0]), "points"
    if bbox is None:
        source = "cameras"
    info = {"format": "panoptic", "meta_file": str(mp), "cameras": names, "source_frames": T,
            "time_stride": int(time_stride), "max_frames": int(max_frames), "seg_as_alpha": bool(seg_as_alpha),
            "points": pts[0] if pts is not None else None, "point_colors": pts[1] if pts is not None else None,
            "point_seg": pts[2] if pts is not None else None}
    workers = num_threads or default_workers()
    return assemble_split(folder, split, specs, names, [source_time(t, T) for t in keep], keep, decode,
                          downscale=downscale, background=bg, has_alpha=has_alpha, has_mask=has_mask, frames=frames,
                          cache_gb=cache_gb, bbox=bbox, bbox_source=source, meta=info, workers=workers)

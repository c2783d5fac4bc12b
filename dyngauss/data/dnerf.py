"""D-NeRF / Blender-format dynamic datasets.

A dataset folder holds ``transforms_<split>.json`` (``train``, ``val``, ``test``, and for scenes with motion
ground truth ``video``; a plain ``transforms.json`` is exposed as split ``"all"``). Each file has
``camera_angle_x`` (horizontal FOV, radians) and/or nerfstudio-style intrinsics ``fl_x fl_y cx cy w h`` (also
accepted per frame), and ``frames`` with ``file_path`` (relative to the folder, with or without extension),
``time`` in [0, 1] and ``transform_matrix`` (OpenGL camera-to-world, converted here once to the OpenCV
world-to-camera ``Camera.viewmat``).

Lens distortion in OpenCV's radial-tangential model (``k1 k2 k3 p1 p2``, nerfstudio's ``OPENCV``
``camera_model``) is removed by resampling each image to the pinhole camera with the same intrinsics; fisheye
models are refused.

A folder with only a plain ``transforms.json`` (nerfstudio / instant-ngp layout: ``frames`` with ``file_path``,
``transform_matrix`` and optional per-frame intrinsics; ``time`` optional) trains as it is: its ``train`` and
``test`` splits are derived (:func:`auto_split_rows`: nerfstudio's ``<split>_filenames`` lists, else every
``test_every``-th frame in time order is a test frame), and without any ``time`` the frames are spread over
[0, 1] in the natural order of their file names.

Cameras are checked (:func:`~dyngauss.data.camera.check_c2w`, :func:`~dyngauss.data.camera.check_intrinsics`):
a bottom row other than [0, 0, 0, 1], shear, non-uniform scale, reflections, non-finite values and focal lengths
giving a field of view outside 0.01..170 degrees are errors; a uniform scale of a rotation block is removed with a
:class:`DatasetWarning` (the camera centre and viewing direction do not depend on it).

Images are 8-bit PNG (JPEG also read): RGBA is composited on ``background`` (straight alpha, sRGB values as-is),
RGB images have alpha 1 (``alphas`` is None when no image of the split has an alpha channel).

Motion ground truth (present for ``../shared/data/twist`` and the built-in synthetic scene):
``load_video_gt`` (fixed-camera depth / forward flow / validity) and ``load_tracks`` (``gt_tracks.npz``).
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .camera import Camera, CameraError, check_c2w, check_intrinsics, opengl_c2w_to_viewmat
from .images import (IMAGE_EXTENSIONS, ImageReadError, area_resize, composite, decode_ahead, read_image,
                     undistort_to_pinhole)

__all__ = ["DatasetError", "DatasetWarning", "DNeRFSplit", "auto_split_rows", "AUTO_TEST_EVERY", "load_dnerf",
           "load_cameras", "available_splits", "load_video_gt", "load_tracks",
           "transforms_path", "read_transforms"]

_SPLIT_ORDER = ("train", "val", "test", "video")
# Every this-many-th frame (in time order) of a plain transforms.json is a test frame (as prepare-video writes).
AUTO_TEST_EVERY = 10


class DatasetError(ValueError):
    """A dataset folder or one of its files is missing or malformed. The message names the file."""


class DatasetWarning(UserWarning):
    """Input that was accepted after a correction the user should know about (the message names the file)."""


@dataclass
class DNeRFSplit:
    """One split of a D-NeRF-format dataset, fully loaded.

    cameras: one Camera per frame (OpenCV; ``.time``, ``.name`` = file stem e.g. ``"r_007"``, ``.index`` = row
        in this split, ``.meta["file_path"]``).
    images: float32 [F,H,W,3] in [0,1], composited on ``background``.
    alphas: float32 [F,H,W,1] in [0,1], or None when the images have no alpha channel.
    times: float32 [F].
    scene_center [3], scene_radius, bbox [2,3]: object bounds; from ``meta.json`` (``object_bbox_all_times``)
        when present (``bbox_source == "meta"``), else estimated from the cameras (the sphere around the
        point the cameras look at that every view sees entirely; ``bbox_source == "cameras"``).
    """

    path: Path
    split: str
    cameras: list[Camera]
    images: torch.Tensor
    alphas: torch.Tensor | None
    times: torch.Tensor
    background: tuple[float, float, float]
    scene_center: torch.Tensor
    scene_radius: float
    bbox: torch.Tensor
    bbox_source: str = "cameras"
    downscale: float = 1.0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])


# ----------------------------------------------------------------------------------------------- files

def transforms_path(path: str | os.PathLike, split: str) -> Path:
    """The JSON file of a split (``"all"`` -> ``transforms.json``)."""
    path = Path(path)
    return path / ("transforms.json" if split == "all" else f"transforms_{split}.json")


def check_dataset_folder(path: str | os.PathLike) -> Path:
    """The dataset folder as a Path (``~`` expanded); DatasetError when it is missing or not a folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"dataset path is not a folder: {path}")
    return path


def available_splits(path: str | os.PathLike, test_every: int = AUTO_TEST_EVERY) -> list[str]:
    """Split names the folder has (train, val, test, video first; ``all`` for a plain ``transforms.json``).

    A folder with a ``transforms.json`` but no ``transforms_train.json`` (nerfstudio / instant-ngp layout) also
    has the derived splits of :func:`auto_split_rows`: ``train`` and ``test`` (``test`` only when
    `test_every` >= 2), or the ones its ``<split>_filenames`` lists name."""
    path = check_dataset_folder(path)
    found = []
    for p in path.glob("transforms_*.json"):
        m = re.fullmatch(r"transforms_(.+)\.json", p.name)
        if m:
            found.append(m.group(1))
    if (path / "transforms.json").is_file() and "train" not in found:
        try:
            derived = _derived_splits(_read_json(path / "transforms.json"), test_every)
        except DatasetError:
            derived = []
        found += [sp for sp in derived if sp not in found]
    order = {s: i for i, s in enumerate(_SPLIT_ORDER)}
    found.sort(key=lambda s: (order.get(s, len(order)), s))
    if (path / "transforms.json").is_file():
        found.append("all")
    return found


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"malformed JSON in {path} at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def read_transforms(path: str | os.PathLike, split: str) -> dict:
    """Parse and validate ``transforms_<split>.json`` (``transforms.json`` for ``all``; no images read)."""
    folder = check_dataset_folder(path)
    tp = transforms_path(folder, split)
    if not tp.is_file():
        have = available_splits(folder)
        raise DatasetError(f"split {split!r}: transforms file not found: {tp} (available splits: {have or 'none'})")
    return _checked_transforms(tp)


def _checked_transforms(tp: Path) -> dict:
    data = _read_json(tp)
    frames = data.get("frames")
    if not isinstance(frames, list) or len(frames) == 0:
        raise DatasetError(f"{tp}: 'frames' must be a non-empty list")
    return data


# ----------------------------------------------------------------------------------------------- derived splits

_LIST_KEYS = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}


def _natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value (``frame_2`` before ``frame_10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _derived_splits(data: dict, test_every: int) -> list[str]:
    if any(k in data for k in _LIST_KEYS.values()):
        return [sp for sp, k in _LIST_KEYS.items() if isinstance(data.get(k), list) and data[k]]
    return ["train", "test"] if test_every >= 2 else ["train"]


def _order_rows(frames: list) -> list[int]:
    """Rows of a plain transforms.json in time order: by `time` when every frame has one, else by the natural
    order of ``file_path`` (frames of a video are numbered); ties keep the file's order."""
    def fp(fr) -> str:
        return fr.get("file_path", "") if isinstance(fr, dict) and isinstance(fr.get("file_path"), str) else ""

    if all(isinstance(fr, dict) and "time" in fr for fr in frames):
        def key(i):
            try:
                return (float(frames[i]["time"]), i)
            except (TypeError, ValueError):
                return (math.inf, i)
        return sorted(range(len(frames)), key=key)
    return sorted(range(len(frames)), key=lambda i: (_natural_key(fp(frames[i])), i))


def auto_split_rows(data: dict, split: str, tp: Path, test_every: int = AUTO_TEST_EVERY) -> list[int]:
    """Rows of a plain ``transforms.json`` (nerfstudio / instant-ngp layout, no ``transforms_<split>.json``) that
    form `split`.

    * When the file has nerfstudio's ``train_filenames`` / ``val_filenames`` / ``test_filenames`` lists, a split
      is the frames whose ``file_path`` is in its list (paths compared after normalising ``./`` prefixes).
    * Otherwise, with the frames in time order (:func:`_order_rows`), every `test_every`-th frame (positions
      0, N, 2N, ...; nerfstudio's ``interval`` mode, prepare-video's ``--test-every``) is ``test`` and the
      others are ``train``; `test_every` 0 puts every frame in ``train`` (and there is no ``test``).

    Raises DatasetError naming the file for an unknown split, an empty split or a listed file that no frame has.
    """
    frames = data["frames"]
    if any(k in data for k in _LIST_KEYS.values()):
        key = _LIST_KEYS.get(split)
        names = data.get(key) if key else None
        if not isinstance(names, list) or not names:
            have = _derived_splits(data, test_every)
            raise DatasetError(f"{tp}: no '{key or split + '_filenames'}' list for split {split!r} (this file "
                               f"defines {', '.join(have) or 'no split'})")
        def norm(p) -> str:
            return os.path.normpath(str(p)).replace(os.sep, "/")
        by_path: dict[str, list[int]] = {}
        for i, fr in enumerate(frames):
            if isinstance(fr, dict) and isinstance(fr.get("file_path"), str):
                by_path.setdefault(norm(fr["file_path"]), []).append(i)
                by_path.setdefault(norm(os.path.splitext(fr["file_path"])[0]), []).append(i)
        rows: list[int] = []
        for n in names:
            hit = by_path.get(norm(n)) or by_path.get(norm(os.path.splitext(str(n))[0]))
            if not hit:
                raise DatasetError(f"{tp}: '{key}' names {n!r}, which no frame's 'file_path' is")
            rows += [i for i in hit if i not in rows]
        return rows
    if test_every < 0 or test_every == 1:
        raise DatasetError(f"data.test_every must be 0 (no test split) or >= 2, got {test_every}")
    order = _order_rows(frames)
    if split == "train":
        rows = [r for k, r in enumerate(order) if not (test_every and k % test_every == 0)]
    elif split == "test" and test_every:
        rows = [r for k, r in enumerate(order) if k % test_every == 0]
    else:
        raise DatasetError(f"split {split!r}: no transforms_{split}.json in {tp.parent}, and {tp.name} gives only "
                           f"{' and '.join(_derived_splits(data, test_every))} (every {test_every}-th frame is test; "
                           "set data.test_every)" if test_every else
                           f"split {split!r}: no transforms_{split}.json in {tp.parent}, and data.test_every=0 puts "
                           f"every frame of {tp.name} in train")
    if not rows:
        raise DatasetError(f"{tp}: split {split!r} of its {len(frames)} frames is empty (data.test_every="
                           f"{test_every})")
    return rows


def _split_source(folder: Path, split: str, test_every: int) -> tuple[dict, Path, list[int] | None]:
    """(parsed JSON, its file, the rows forming `split` or None = every row): ``transforms_<split>.json`` when it
    exists, else the derived split of a plain ``transforms.json`` (:func:`auto_split_rows`)."""
    tp = transforms_path(folder, split)
    if tp.is_file():
        return _checked_transforms(tp), tp, None
    plain = folder / "transforms.json"
    if split != "all" and plain.is_file() and not transforms_path(folder, "train").is_file():
        data = _checked_transforms(plain)
        return data, plain, auto_split_rows(data, split, plain, test_every)
    return read_transforms(folder, split), tp, None


def _frame_times(data: dict, tp: Path) -> list[float] | None:
    """Times of every frame of a plain ``transforms.json`` when none has a ``time`` (from the natural order of
    the file names: t = rank / (n - 1)); None when frames carry their own times. DatasetError when only some
    frames have one."""
    frames = data["frames"]
    has = [isinstance(fr, dict) and "time" in fr for fr in frames]
    if all(has):
        return None
    if any(has):
        i = has.index(False)
        raise DatasetError(f"{tp}: frame {i} has no 'time' but other frames have one (give every frame a time "
                           "in [0, 1], or none: then times follow the file names' order)")
    order = _order_rows(frames)
    n = len(frames)
    times = [0.0] * n
    for k, r in enumerate(order):
        times[r] = k / (n - 1) if n > 1 else 0.0
    return times


def _resolve_image(folder: Path, file_path: str, tp: Path, i: int) -> Path:
    p = Path(file_path)
    base = p if p.is_absolute() else folder / p
    candidates = []
    if base.suffix in IMAGE_EXTENSIONS:
        candidates.append(base)
    candidates += [base.with_name(base.name + ext) for ext in IMAGE_EXTENSIONS]
    if base.suffix and base.suffix not in IMAGE_EXTENSIONS:
        candidates.append(base)
    for c in candidates:
        if c.is_file():
            return c
    also = f" (also tried {', '.join(c.suffix for c in candidates[1:4])})" if len(candidates) > 1 else ""
    raise DatasetError(f"{tp}: frame {i} ({file_path!r}): image file not found: {candidates[0]}{also}")


def _frame_name(file_path: str) -> str:
    name = Path(file_path).name
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


# ----------------------------------------------------------------------------------------------- cameras

_INTR_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
_DIST_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_MODEL_KEYS = ("camera_model",)


def _intrinsics(spec: dict, img_w: int, img_h: int, where: str) -> np.ndarray:
    """K [3,3] for an image of img_w x img_h from camera_angle_x and/or fl_x/fl_y/cx/cy/w/h."""
    def num(key):
        v = spec.get(key)
        if v is None:
            return None
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: '{key}' must be a number, got {v!r}") from None
        if not math.isfinite(v):
            raise DatasetError(f"{where}: '{key}' is not finite")
        return v

    w0, h0 = num("w"), num("h")
    # Intrinsics given in pixels refer to a w x h image (default: the image itself); rescale to the image.
    ref_w = w0 if w0 else float(img_w)
    ref_h = h0 if h0 else float(img_h)
    sx, sy = img_w / ref_w, img_h / ref_h
    if abs(sx - sy) > 0.02 * max(sx, sy):
        raise DatasetError(f"{where}: image size {img_w}x{img_h} does not match w x h = {w0:g}x{h0:g} "
                           "(different aspect ratio)")
    fx, fy = num("fl_x"), num("fl_y")
    ax, ay = num("camera_angle_x"), num("camera_angle_y")
    if fx is None and ax is not None:
        if not 0.0 < ax < math.pi:
            raise DatasetError(f"{where}: camera_angle_x must be in (0, pi) radians, got {ax}")
        fx = 0.5 * ref_w / math.tan(0.5 * ax)
    if fy is None and ay is not None and 0.0 < ay < math.pi:
        fy = 0.5 * ref_h / math.tan(0.5 * ay)
    if fx is None and fy is None:
        raise DatasetError(f"{where}: no intrinsics: need 'camera_angle_x' or 'fl_x' (and optionally "
                           "fl_y, cx, cy, w, h)")
    fx = fx if fx is not None else fy
    fy = fy if fy is not None else fx
    cx, cy = num("cx"), num("cy")
    cx = cx if cx is not None else ref_w / 2.0
    cy = cy if cy is not None else ref_h / 2.0
    try:
        check_intrinsics(fx * sx, fy * sy, cx * sx, cy * sy, img_w, img_h)
    except CameraError as e:
        raise DatasetError(f"{where}: {e}") from None
    return np.array([[fx * sx, 0.0, cx * sx], [0.0, fy * sy, cy * sy], [0.0, 0.0, 1.0]])


_PINHOLE_MODELS = ("", "PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")


def _distortion(spec: dict, where: str) -> tuple[tuple[float, float, float], tuple[float, float]] | None:
    """OpenCV radial-tangential coefficients ((k1, k2, k3), (p1, p2)) of a frame's camera, None when they are all
    zero (a pinhole camera). nerfstudio writes them for its ``OPENCV`` model; fisheye / equirectangular models
    (``camera_model`` ``OPENCV_FISHEYE``, ``EQUIRECTANGULAR``, or a non-zero ``k4``) are refused."""
    model = str(spec.get("camera_model", "") or "").upper()
    if model not in _PINHOLE_MODELS:
        raise DatasetError(f"{where}: camera_model {spec['camera_model']!r} is not supported (pinhole or OpenCV "
                           "radial-tangential distortion only: undistort the images first)")
    vals = {}
    for k in _DIST_KEYS:
        v = spec.get(k)
        try:
            v = 0.0 if v is None else float(v)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: '{k}' must be a number, got {v!r}") from None
        if not math.isfinite(v):
            raise DatasetError(f"{where}: '{k}' is not finite")
        vals[k] = v
    if abs(vals["k4"]) > 1e-12:
        raise DatasetError(f"{where}: k4={vals['k4']} (a fisheye / rational lens model) is not supported "
                           "(OpenCV k1 k2 k3 p1 p2 only)")
    if all(abs(v) <= 1e-12 for v in vals.values()):
        return None
    return (vals["k1"], vals["k2"], vals["k3"]), (vals["p1"], vals["p2"])


def _c2w(frame: dict, where: str) -> tuple[np.ndarray, float]:
    """(camera-to-world [4,4] with a pure rotation block, the uniform scale removed from it) of a frame
    (:func:`~dyngauss.data.camera.check_c2w`); DatasetError naming `where` otherwise."""
    m = frame.get("transform_matrix")
    if m is None:
        raise DatasetError(f"{where}: missing 'transform_matrix'")
    try:
        m = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: 'transform_matrix' must be a 4x4 array of numbers") from None
    try:
        return check_c2w(m)
    except CameraError as e:
        raise DatasetError(f"{where}: 'transform_matrix' {e}") from None


def _time(frame: dict, where: str) -> float:
    if "time" not in frame:
        raise DatasetError(f"{where}: missing 'time' (D-NeRF frames need a time in [0, 1])")
    try:
        t = float(frame["time"])
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: 'time' must be a number, got {frame['time']!r}") from None
    if not (math.isfinite(t) and -1e-6 <= t <= 1.0 + 1e-6):
        raise DatasetError(f"{where}: 'time' must be in [0, 1], got {t}")
    return min(max(t, 0.0), 1.0)


def estimate_bounds(cameras: Sequence[Camera]) -> tuple[np.ndarray, float]:
    """Point the cameras look at (least squares over optical axes) and the radius of the largest sphere around
    it that every camera sees entirely.

    When the optical axes come from well-spread directions (orbits, arcs) the plain least-squares point is used,
    which moves with any similarity transform of the world (the weak pull towards the world origin used before
    put a scene translated by (6, -4, 3) 0.01 off). When they are nearly parallel (a fixed camera, a
    forward-facing capture: the look-at point is undetermined along them) it is pulled weakly towards the world
    origin, where prepared videos put the centre of their points (dyngauss/sfm/normalize.py)."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    centers, dirs = [], []
    for c in cameras:
        V = c.viewmat.double().numpy()
        o = -V[:3, :3].T @ V[:3, 3]
        d = V[2, :3] / np.linalg.norm(V[2, :3])  # optical axis (+z of the OpenCV camera) in world
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
        centers.append(o)
        dirs.append(d)
    ev = np.linalg.eigvalsh(A)
    if ev[0] > 0.05 * ev[-1]:  # the axes cross from well-spread directions: their least-squares point
        center = np.linalg.solve(A, b)
    else:  # nearly parallel axes: pulled weakly towards the origin along the undetermined direction
        lam = 1e-3 * len(cameras)
        center = np.linalg.solve(A + lam * np.eye(3), b)
    radius = np.inf
    for c, o, d in zip(cameras, centers, dirs):
        K = c.K.double().numpy()
        half = min(math.atan2(min(K[0, 2], c.width - K[0, 2]), K[0, 0]),
                   math.atan2(min(K[1, 2], c.height - K[1, 2]), K[1, 1]))
        dist = np.linalg.norm(center - o)
        radius = min(radius, dist * math.sin(half))
    return center, float(radius)


def _bounds_from_meta(folder: Path):
    mp = folder / "meta.json"
    if not mp.is_file():
        return None
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
        bb = np.asarray(meta.get("object_bbox_all_times", meta.get("bbox")), dtype=np.float64)
        if bb.shape == (2, 3) and np.all(np.isfinite(bb)) and np.all(bb[1] >= bb[0]):
            return bb
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return None


# ----------------------------------------------------------------------------------------------- loader

def _parse_frames(folder: Path, split: str, frames, test_every: int = AUTO_TEST_EVERY) -> tuple[dict, Path, list]:
    """Validate the transforms JSON of the selected frames and resolve their image files (no decoding).
    Warns (:class:`DatasetWarning`, once per file) when rotation blocks carried a scale that was removed."""
    data, tp, split_rows = _split_source(folder, split, test_every)
    all_frames = data["frames"]
    derived_times = _frame_times(data, tp) if tp.name == "transforms.json" else None
    if split_rows is None:
        split_rows = list(range(len(all_frames)))
    rows = list(range(len(split_rows)))
    if frames is not None:
        rows = rows[frames] if isinstance(frames, slice) else [int(i) for i in frames]
        for i in rows:
            if not 0 <= i < len(split_rows):
                raise IndexError(f"frame index {i} out of range for split {split!r} of {tp} "
                                 f"({len(split_rows)} frames)")
        if len(rows) == 0:
            raise ValueError("frames selects no frame")

    # Validate the JSON of every selected frame before decoding any image (fast, precise errors).
    recs, scaled = [], []
    for i in rows:
        j = split_rows[i]  # row in the JSON file
        fr = all_frames[j]
        where = f"{tp}: frame {j}"
        if not isinstance(fr, dict):
            raise DatasetError(f"{where}: expected an object, got {type(fr).__name__}")
        fp = fr.get("file_path")
        if not isinstance(fp, str) or not fp:
            raise DatasetError(f"{where}: missing 'file_path'")
        where = f"{tp}: frame {j} ({fp!r})"
        t = derived_times[j] if derived_times is not None else _time(fr, where)
        c2w, scale = _c2w(fr, where)
        if scale != 1.0:
            scaled.append((j, scale))
        spec = {k: data[k] for k in _INTR_KEYS + _DIST_KEYS + _MODEL_KEYS if k in data}
        spec.update({k: fr[k] for k in _INTR_KEYS + _DIST_KEYS + _MODEL_KEYS if k in fr})
        _distortion(spec, where)  # refuse unsupported lens models before reading images
        if not any(k in spec for k in ("camera_angle_x", "fl_x", "fl_y", "camera_angle_y")):
            raise DatasetError(f"{tp}: no intrinsics: need 'camera_angle_x' or 'fl_x' (and optionally "
                               f"fl_y, cx, cy, w, h) at the top level or in frame {j}")
        img_path = _resolve_image(folder, fp, tp, j)
        recs.append((i, fp, t, c2w, spec, img_path, where))
    if scaled:
        lo, hi = min(s for _, s in scaled), max(s for _, s in scaled)
        warnings.warn(f"{tp}: the rotation block of {len(scaled)} of {len(rows)} camera matrices is scaled "
                      f"(by {lo:.4g}" + (f"..{hi:.4g}" if hi - lo > 1e-6 else "") + f", e.g. frame {scaled[0][0]}); "
                      "the scale was removed, keeping each camera's centre and viewing direction (a "
                      "transform_matrix should hold a pure rotation)", DatasetWarning, stacklevel=3)
    return data, tp, recs


def load_dnerf(path: str | os.PathLike, split: str = "train", downscale: float = 1,
               background: Sequence[float] = (1.0, 1.0, 1.0),
               frames: Sequence[int] | slice | None = None, num_threads: int | None = None,
               test_every: int = AUTO_TEST_EVERY) -> DNeRFSplit:
    """Load one split of a D-NeRF-format folder.

    Args:
        path: dataset folder.
        split: ``train`` | ``val`` | ``test`` | ``video`` | any ``transforms_<split>.json`` | ``all``; a folder
            with only a plain ``transforms.json`` (nerfstudio) has the derived ``train`` / ``test`` splits of
            :func:`auto_split_rows` (times from ``time``, or from the file names' order when no frame has one).
        downscale: image size divided by this (area resize on composited, premultiplied colour; K scaled as
            ``Camera.scaled(1/downscale)``, i.e. the new size is ``round(W/downscale)``).
        background: RGB in [0,1] that RGBA images are composited on (white by default, as D-NeRF).
        frames: optional subset of frame rows (indices or a slice) to load; ``Camera.index`` keeps the row
            number in the full split.
        test_every: derived splits only: every this-many-th frame is ``test`` (0: all frames are ``train``).
    Raises:
        DatasetError naming the offending file for any missing / malformed input (DatasetWarning when camera
        rotation blocks carried a scale, which is removed).
    """
    folder = check_dataset_folder(path)
    if downscale is None or not (float(downscale) >= 1.0):
        raise ValueError(f"downscale must be >= 1, got {downscale}")
    downscale = float(downscale)
    bg = tuple(float(v) for v in background)
    if len(bg) != 3:
        raise ValueError(f"background must be 3 numbers, got {background}")
    data, tp, recs = _parse_frames(folder, split, frames, test_every)

    def read(rec):
        i, fp, t, c2w, spec, img_path, where = rec
        try:
            rgb, alpha = read_image(img_path)
        except ImageReadError as e:
            raise DatasetError(f"{where}: corrupt or unreadable image {img_path}: {e.__cause__ or e}") from e
        except FileNotFoundError:
            raise DatasetError(f"{where}: image file not found: {img_path}") from None
        return rgb, alpha

    n = len(recs)
    images = alphas = None
    cameras: list[Camera] = []
    size0 = None
    any_alpha = False
    workers = max(1, num_threads or min(4, os.cpu_count() or 1))

    for k, (rec, (rgb, alpha)) in enumerate(zip(recs, decode_ahead(recs, read, workers))):
        i, fp, t, c2w, spec, img_path, where = rec
        H, W = rgb.shape[:2]
        if size0 is None:
            size0 = (W, H)
            w2, h2 = max(1, round(W / downscale)), max(1, round(H / downscale))
            images = np.empty((n, h2, w2, 3), dtype=np.float32)
            alphas = np.ones((n, h2, w2, 1), dtype=np.float32)
        elif (W, H) != size0:
            raise DatasetError(f"{where}: image {img_path} is {W}x{H} but earlier frames are "
                               f"{size0[0]}x{size0[1]} (all images of a split must share one size)")
        K = _intrinsics(spec, W, H, where)
        cam = Camera(K, opengl_c2w_to_viewmat(c2w), W, H, time=t, name=_frame_name(fp), index=i,
                     meta={"file_path": str(img_path), "split": split})
        if downscale != 1.0:
            cam = cam.scaled(1.0 / downscale)
        cameras.append(cam)
        img = composite(rgb, alpha, bg)
        dist = _distortion(spec, where)
        if dist is not None:  # resample to the pinhole camera K (nerfstudio's OPENCV model)
            img = undistort_to_pinhole(img, K, *dist)
            alpha = None if alpha is None else undistort_to_pinhole(alpha, K, *dist)
        images[k] = area_resize(img, w2, h2)
        if alpha is not None:
            any_alpha = True
            alphas[k] = area_resize(alpha, w2, h2)

    bb = _bounds_from_meta(folder)
    if bb is not None:
        center = 0.5 * (bb[0] + bb[1])
        radius = 0.5 * float(np.linalg.norm(bb[1] - bb[0]))
        source = "meta"
    else:
        center, radius = estimate_bounds(cameras)
        bb = np.stack([center - radius, center + radius])
        source = "cameras"
    meta = {k: v for k, v in data.items() if k != "frames" and k not in _LIST_KEYS.values()}
    return DNeRFSplit(
        path=folder, split=split, cameras=cameras,
        images=torch.from_numpy(images),
        alphas=torch.from_numpy(alphas) if any_alpha else None,
        times=torch.tensor([c.time for c in cameras], dtype=torch.float32),
        background=bg,
        scene_center=torch.tensor(center, dtype=torch.float32), scene_radius=float(radius),
        bbox=torch.tensor(bb, dtype=torch.float32), bbox_source=source, downscale=downscale, meta=meta)


def load_cameras(path: str | os.PathLike, split: str = "train", downscale: float = 1,
                 frames: Sequence[int] | slice | None = None, test_every: int = AUTO_TEST_EVERY) -> list[Camera]:
    """The cameras of a split exactly as :func:`load_dnerf` makes them, reading only the image headers."""
    from PIL import Image

    folder = check_dataset_folder(path)
    if downscale is None or not (float(downscale) >= 1.0):
        raise ValueError(f"downscale must be >= 1, got {downscale}")
    data, tp, recs = _parse_frames(folder, split, frames, test_every)
    cameras, size0 = [], None
    for i, fp, t, c2w, spec, img_path, where in recs:
        try:
            with Image.open(img_path) as im:
                W, H = im.size
        except Exception as e:
            raise DatasetError(f"{where}: corrupt or unreadable image {img_path}: {e}") from e
        if size0 is None:
            size0 = (W, H)
        elif (W, H) != size0:
            raise DatasetError(f"{where}: image {img_path} is {W}x{H} but earlier frames are "
                               f"{size0[0]}x{size0[1]} (all images of a split must share one size)")
        cam = Camera(_intrinsics(spec, W, H, where), opengl_c2w_to_viewmat(c2w), W, H, time=t,
                     name=_frame_name(fp), index=i, meta={"file_path": str(img_path), "split": split})
        cameras.append(cam.scaled(1.0 / float(downscale)) if float(downscale) != 1.0 else cam)
    return cameras


# ----------------------------------------------------------------------------------------------- ground truth

def _load_npz_key(p: Path, key: str) -> np.ndarray:
    if not p.is_file():
        raise DatasetError(f"ground-truth file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if key not in z.files:
                raise DatasetError(f"{p}: missing key {key!r} (has {z.files})")
            return z[key]
    except DatasetError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, ...
        raise DatasetError(f"corrupt or unreadable npz {p}: {e}") from e


def _numbered(folder: Path, pattern: str) -> list[Path]:
    rx = re.compile(pattern)
    items = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = rx.fullmatch(p.name)
        if m:
            items.append((int(m.group(1)), p))
    items.sort()
    for k, (idx, p) in enumerate(items):
        if idx != k:
            raise DatasetError(f"{folder}: numbered files {pattern!r} are not contiguous from 0: "
                               f"expected index {k}, found {p.name}")
    return [p for _, p in items]


def load_video_gt(path: str | os.PathLike) -> dict:
    """Dense motion ground truth of the fixed-camera video split.

    Layouts: ``video/depth_XXX.npz``, ``video/flow_XXX.npz``, ``video/flow_valid.npz`` (twist, synthetic) or
    ``depth/NNNNNN.npz``, ``flow/NNNNNN.npz``, ``flow_valid.npz`` (casual_twist).
    Returns torch tensors: ``depth`` float32 [F,H,W] (camera z-depth, +inf on background), ``flow`` float32
    [F-1,H,W,2] (forward i -> i+1, pixels, x right / y down), ``flow_valid`` bool [F-1,H,W], and ``times``
    float32 [F] when a transforms file for the frames exists.
    """
    folder = check_dataset_folder(path)
    if (folder / "video").is_dir() and any((folder / "video").glob("depth_*.npz")):
        vdir = folder / "video"
        dfiles = _numbered(vdir, r"depth_(\d+)\.npz")
        ffiles = _numbered(vdir, r"flow_(\d+)\.npz")
        vfile = vdir / "flow_valid.npz"
        tfile = transforms_path(folder, "video")
    elif (folder / "depth").is_dir():
        dfiles = _numbered(folder / "depth", r"(\d+)\.npz")
        ffiles = _numbered(folder / "flow", r"(\d+)\.npz")
        vfile = folder / "flow_valid.npz"
        tfile = transforms_path(folder, "all")
    else:
        raise DatasetError(f"no video ground truth in {folder} (expected {folder / 'video'}/depth_000.npz)")
    if not dfiles:
        raise DatasetError(f"no depth files in {folder}")
    if len(ffiles) != len(dfiles) - 1:
        raise DatasetError(f"{folder}: {len(dfiles)} depth files need {len(dfiles) - 1} flow files, "
                           f"found {len(ffiles)}")
    d0 = _load_npz_key(dfiles[0], "depth")
    if d0.ndim != 2:
        raise DatasetError(f"{dfiles[0]}: depth must be [H,W], got {d0.shape}")
    H, W = d0.shape
    F = len(dfiles)
    depth = np.empty((F, H, W), np.float32)
    flow = np.empty((F - 1, H, W, 2), np.float32)
    for i, p in enumerate(dfiles):
        d = d0 if i == 0 else _load_npz_key(p, "depth")
        if d.shape != (H, W):
            raise DatasetError(f"{p}: depth shape {d.shape} differs from {dfiles[0]} {(H, W)}")
        depth[i] = d
    for i, p in enumerate(ffiles):
        f = _load_npz_key(p, "flow")
        if f.shape != (H, W, 2):
            raise DatasetError(f"{p}: flow must be {(H, W, 2)}, got {f.shape}")
        flow[i] = f
    valid = _load_npz_key(vfile, "valid").astype(bool)
    if valid.shape != (F - 1, H, W):
        raise DatasetError(f"{vfile}: valid must be {(F - 1, H, W)}, got {valid.shape}")
    out = {"depth": torch.from_numpy(depth), "flow": torch.from_numpy(flow), "flow_valid": torch.from_numpy(valid)}
    if tfile.is_file():
        fr = _read_json(tfile).get("frames", [])
        if len(fr) == F:
            out["times"] = torch.tensor([_time(f, f"{tfile}: frame {i}") for i, f in enumerate(fr)],
                                        dtype=torch.float32)
    return out


def load_tracks(path: str | os.PathLike) -> dict:
    """``gt_tracks.npz``: 3D trajectories of fixed surface points.

    ``path`` is the dataset folder or the npz itself. Returns torch tensors: ``xyz_<split>`` float32 [P,T,3]
    (world positions), ``times_<split>`` float32 [T], ``rest_xyz`` [P,3], ``tri_index`` [P], ``bary`` [P,3],
    ``point_ids`` [P] (whatever of these the file has; ``xyz_*``/``times_*`` pairs are checked), plus
    ``splits``: the list of split names with tracks.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "gt_tracks.npz"
    if not p.is_file():
        raise DatasetError(f"tracks file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise DatasetError(f"corrupt or unreadable npz {p}: {e}") from e
    splits = sorted(k[4:] for k in arrays if k.startswith("xyz_"))
    order = {s: i for i, s in enumerate(_SPLIT_ORDER)}
    splits.sort(key=lambda s: (order.get(s, len(order)), s))
    if not splits:
        raise DatasetError(f"{p}: no 'xyz_<split>' arrays (has {sorted(arrays)})")
    P = None
    for s in splits:
        x = arrays[f"xyz_{s}"]
        t = arrays.get(f"times_{s}")
        if x.ndim != 3 or x.shape[2] != 3:
            raise DatasetError(f"{p}: xyz_{s} must be [P,T,3], got {x.shape}")
        if t is None or t.shape != (x.shape[1],):
            raise DatasetError(f"{p}: times_{s} must be [{x.shape[1]}], got {None if t is None else t.shape}")
        if P is not None and x.shape[0] != P:
            raise DatasetError(f"{p}: xyz_{s} has {x.shape[0]} points, other splits {P}")
        P = x.shape[0]
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    out["splits"] = splits
    return out

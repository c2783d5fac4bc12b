"""Synchronised multi-camera captures: the split object the multi-view loaders return and what they share.

Loaders: Neural 3D Video / LLFF-style folders (dyngauss/data/n3v.py) and Panoptic / Dynamic3DGaussians folders
(dyngauss/data/panoptic.py); the built-in scene's multi-camera mode is written in the Panoptic layout
(dyngauss/data/synthetic_multiview.py).

A :class:`MultiViewSplit` is a :class:`~dyngauss.data.dnerf.DNeRFSplit` (one Camera per frame, ``times``,
``images``, ``alphas``, bounds, ``meta``) whose frames are ordered by time, then camera, and whose image tensors
are :class:`~dyngauss.data.frames.LazyFrames` (decoded on access; dyngauss/data/frames.py has the memory
budget). It adds the grid structure a batched or distributed trainer needs: ``time_index`` / ``camera_index``
per frame, ``time_values`` per time step, :meth:`MultiViewSplit.frames_at` (every camera's frame at one time)
and :meth:`MultiViewSplit.grid`.

Times: a capture's time steps 0..T-1 (video frames, meta rows) are normalised to t = f / (T - 1) over the whole
source, before any subsampling: ``data.time_stride`` / ``data.max_frames`` select time steps but keep their
times, so the splits of one capture, its ground truth (``gt_tracks.npz``) and runs with different strides agree.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
import torch

from .camera import Camera
from .dnerf import DatasetError, DNeRFSplit, estimate_bounds
from .frames import Decoded, FrameStore, LazyFrames

__all__ = ["MultiViewSplit", "FrameSpec", "select_source_frames", "source_time", "check_load_options",
           "assemble_split", "read_json", "bounds_from_meta", "bounds_from_points", "DEFAULT_CACHE_GB"]

# Default byte budget of a split's decoded-frame cache (data.frame_cache_gb).
DEFAULT_CACHE_GB = 4.0


@dataclass
class MultiViewSplit(DNeRFSplit):
    """One split of a synchronised multi-camera capture (module docstring).

    images: LazyFrames float32 [N,H,W,3] (composited on ``background``); alphas: LazyFrames [N,H,W,1] or None;
    masks: LazyFrames [N,H,W,1] foreground masks (Panoptic ``seg/``) or None. Frames are ordered by time step,
    then camera. camera_names: [C] the split's cameras (video stems, Panoptic cam ids as text), in camera_index
    order. camera_index, time_index: long [N] per frame. time_values: float32 [T] the split's times (t in
    [0,1], increasing); source_frames: long [T] their frame numbers in the source (video frame / meta row)."""

    masks: LazyFrames | None = None
    camera_names: list[str] = field(default_factory=list)
    camera_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    time_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    time_values: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    source_frames: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    @property
    def n_cameras(self) -> int:
        return len(self.camera_names)

    @property
    def n_times(self) -> int:
        return int(self.time_values.numel())

    def frames_at(self, k: int) -> list[int]:
        """Rows of every frame at time step `k` (0 <= k < n_times), in camera order."""
        return torch.nonzero(self.time_index == int(k)).flatten().tolist()

    def frames_by_time(self) -> list[list[int]]:
        """:meth:`frames_at` of every time step."""
        return [self.frames_at(k) for k in range(self.n_times)]

    def grid(self) -> torch.Tensor:
        """Rows as a long [T, C] table (time step x camera), -1 where a camera has no frame at that time."""
        g = torch.full((self.n_times, self.n_cameras), -1, dtype=torch.long)
        g[self.time_index, self.camera_index] = torch.arange(len(self.cameras))
        return g


@dataclass
class FrameSpec:
    """What a loader knows of one frame before decoding: its full-size camera (time and name set), the indices of
    its camera and time step, its decode group, and loader data (file paths) for the decode callback."""

    camera: Camera
    camera_index: int
    time_index: int
    group: Hashable
    data: dict = field(default_factory=dict)


def read_json(path: Path) -> object:
    """Parsed JSON of `path`; DatasetError naming the file when it is missing, unreadable or malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"malformed JSON in {path} at line {e.lineno}, column {e.colno}: {e.msg}") from None


def check_load_options(downscale: float, background: Sequence[float], time_stride: int, max_frames: int,
                       cache_gb: float) -> tuple[float, tuple[float, float, float]]:
    """(downscale, background) validated; ValueError for a downscale < 1, a background that is not 3 numbers, a
    time_stride < 1, a negative max_frames or a cache budget <= 0."""
    if downscale is None or not float(downscale) >= 1.0:
        raise ValueError(f"downscale must be >= 1, got {downscale}")
    bg = tuple(float(v) for v in background)
    if len(bg) != 3:
        raise ValueError(f"background must be 3 numbers, got {background}")
    if int(time_stride) < 1:
        raise ValueError(f"time_stride must be >= 1, got {time_stride}")
    if int(max_frames) < 0:
        raise ValueError(f"max_frames must be >= 0 (0 = all), got {max_frames}")
    if not (math.isfinite(float(cache_gb)) and float(cache_gb) > 0):
        raise ValueError(f"the frame cache budget must be > 0 GB, got {cache_gb}")
    return float(downscale), bg  # type: ignore[return-value]


def select_source_frames(n_source: int, time_stride: int = 1, max_frames: int = 0) -> list[int]:
    """Source time steps kept: 0, s, 2s, ... below `n_source`, at most `max_frames` of them (0 = all)."""
    f = list(range(0, int(n_source), int(time_stride)))
    return f[: int(max_frames)] if max_frames else f


def source_time(frame: int, n_source: int) -> float:
    """t in [0, 1] of source time step `frame` of `n_source` (0 for a single step)."""
    return frame / (n_source - 1) if n_source > 1 else 0.0


def bounds_from_meta(folder: Path) -> np.ndarray | None:
    """``object_bbox_all_times`` [2,3] of a ``meta.json`` (the built-in scene writes it), or None."""
    mp = Path(folder) / "meta.json"
    if not mp.is_file():
        return None
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
        bb = np.asarray(meta.get("object_bbox_all_times"), dtype=np.float64)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if bb.shape == (2, 3) and np.all(np.isfinite(bb)) and np.all(bb[1] >= bb[0]):
        return bb
    return None


def bounds_from_points(points: np.ndarray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray | None:
    """Box [2,3] holding the `lo_pct`..`hi_pct` percentiles of points [M,3] along each axis (stray points out), or
    None for fewer than 4 finite points."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    p = p[np.isfinite(p).all(1)]
    if len(p) < 4:
        return None
    return np.stack([np.percentile(p, lo_pct, axis=0), np.percentile(p, hi_pct, axis=0)])


def _scaled(cam: Camera, downscale: float) -> Camera:
    return cam.scaled(1.0 / downscale) if downscale != 1.0 else cam


def assemble_split(folder: Path, split: str, specs: list[FrameSpec], camera_names: list[str],
                   time_values: Sequence[float], source_frames: Sequence[int],
                   decode: Callable[[list[FrameSpec], int, int], list[Decoded]], *, downscale: float,
                   background: tuple[float, float, float], has_alpha: bool, has_mask: bool,
                   frames: Sequence[int] | slice | None, cache_gb: float, bbox: np.ndarray | None,
                   bbox_source: str, meta: dict, workers: int = 1) -> MultiViewSplit:
    """Build a :class:`MultiViewSplit` from the loader's frame specs (time-major order, full-size cameras).

    decode(specs, width, height) -> one Decoded per spec (uint8 at the split's size; the specs of one group).
    frames: optional subset of rows (indices or a slice); ``Camera.index`` keeps the row in the full split.
    bbox: object bounds [2,3] (None: estimated from the cameras, :func:`dnerf.estimate_bounds`)."""
    n_all = len(specs)
    if n_all == 0:
        raise DatasetError(f"{folder}: split {split!r} has no frame")
    rows = list(range(n_all))
    if frames is not None:
        rows = rows[frames] if isinstance(frames, slice) else [int(i) for i in frames]
        for i in rows:
            if not 0 <= i < n_all:
                raise IndexError(f"frame index {i} out of range for split {split!r} of {folder} ({n_all} frames)")
        if not rows:
            raise ValueError("frames selects no frame")
    sel = [specs[i] for i in rows]
    cameras = []
    for i, s in zip(rows, sel):
        c = _scaled(s.camera, downscale)
        c.index = i
        cameras.append(c)
    W, H = cameras[0].width, cameras[0].height
    for s, c in zip(sel, cameras):
        if (c.width, c.height) != (W, H):
            raise DatasetError(f"{folder}: split {split!r}: camera {camera_names[s.camera_index]!r} has "
                               f"{s.camera.width}x{s.camera.height} images, others {sel[0].camera.width}x"
                               f"{sel[0].camera.height} (a split's images must share one size)")

    def dec(group: Hashable, members: list[int]) -> dict[int, Decoded]:
        return dict(zip(members, decode([sel[m] for m in members], W, H)))

    store = FrameStore(len(sel), W, H, [s.group for s in sel], dec, has_alpha=has_alpha, has_mask=has_mask,
                       budget_bytes=int(float(cache_gb) * 2**30), workers=workers)
    if bbox is None:
        center, radius = estimate_bounds(cameras)
        bbox = np.stack([center - radius, center + radius])
    else:
        bbox = np.asarray(bbox, np.float64)
        center = 0.5 * (bbox[0] + bbox[1])
        radius = 0.5 * float(np.linalg.norm(bbox[1] - bbox[0]))
    t_idx = torch.tensor([s.time_index for s in sel], dtype=torch.long)
    return MultiViewSplit(
        path=folder, split=split, cameras=cameras, images=LazyFrames(store, "rgb"),
        alphas=LazyFrames(store, "alpha") if has_alpha else None,
        times=torch.tensor([c.time for c in cameras], dtype=torch.float32), background=background,
        scene_center=torch.tensor(center, dtype=torch.float32), scene_radius=float(radius),
        bbox=torch.tensor(bbox, dtype=torch.float32), bbox_source=bbox_source, downscale=downscale, meta=meta,
        masks=LazyFrames(store, "mask") if has_mask else None, camera_names=list(camera_names),
        camera_index=torch.tensor([s.camera_index for s in sel], dtype=torch.long), time_index=t_idx,
        time_values=torch.tensor(list(time_values), dtype=torch.float32),
        source_frames=torch.tensor(list(source_frames), dtype=torch.long))


def default_workers() -> int:
    """Threads decoding image files ahead (PIL releases the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))

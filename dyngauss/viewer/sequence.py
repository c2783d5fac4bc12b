"""Preloading a PLY sequence (written by dyngauss.export) for playback: positions and colours per frame.

A sequence is a folder with ``sequence.json`` (frames, times, fps; optional node-graph files, bbox,
background) and its ``frame_*.ply`` files, a folder of ``frame_*.ply`` without a manifest, or one PLY file.
Needs numpy only (no torch, no open3d).
"""
from __future__ import annotations

import glob
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io.ply import PlyError, SH_C0, ply_kind, read_line_set_ply, read_ply_element, read_points_ply
from .glyphs import normalize_quats

MANIFEST = "sequence.json"
DEFAULT_FPS = 30.0
MAX_GLYPHS = 2000
_XYZ = ["x", "y", "z"]
_DC = ["f_dc_0", "f_dc_1", "f_dc_2"]
_SCALE = ["scale_0", "scale_1", "scale_2"]
_ROT = ["rot_0", "rot_1", "rot_2", "rot_3"]


class SequenceLoadError(ValueError):
    """The sequence folder cannot be played (missing, incomplete or inconsistent); the message names the file."""


@dataclass
class LoadedSequence:
    """A preloaded sequence of `count` frames with N points each (row i = the same Gaussian in every frame).

    positions[f] [N,3] float32 world units; colors [N,3] float32 in [0,1] (frame_colors[f] when colours change
    over time); quats[f] [N,4] unit (w,x,y,z) and scales[f] [N,3] linear standard deviations when glyphs were
    requested; mean_scale: the median Gaussian size (None for point frames); nodes[f]: node-graph line sets
    ({"vertices", "edges", "edge_rgb"}); bbox (min [3], max [3]) robust world bounding box; background RGB in
    [0,1]; times[f] normalised times; fps playback rate; files[f] the frame PLYs (re-read in full by
    :mod:`dyngauss.viewer.splats`)."""

    path: Path
    fmt: str
    fps: float
    times: list[float]
    positions: list[np.ndarray]
    colors: np.ndarray
    frame_colors: list[np.ndarray] | None = None
    quats: list[np.ndarray] | None = None
    scales: list[np.ndarray] | None = None
    mean_scale: float | None = None
    nodes: list[dict] | None = None
    bbox: tuple[np.ndarray, np.ndarray] = (np.zeros(3), np.ones(3))
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    manifest: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.positions)

    @property
    def num_points(self) -> int:
        return len(self.positions[0]) if self.positions else 0

    @property
    def has_glyphs(self) -> bool:
        return self.quats is not None

    def colors_at(self, i: int) -> np.ndarray:
        """Colours [N,3] of frame i."""
        return self.frame_colors[i] if self.frame_colors is not None else self.colors


def _cols(rec: np.ndarray, names: Sequence[str]) -> np.ndarray:
    out = np.empty((len(rec), len(names)), np.float32)
    for j, n in enumerate(names):
        out[:, j] = rec[n]
    return out


def _read_manifest(seq_dir: Path) -> dict | None:
    mpath = seq_dir / MANIFEST
    if not mpath.exists():
        return None
    try:
        m = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SequenceLoadError(f"{mpath}: unreadable manifest: {e}") from None
    for key in ("frames", "fps", "times"):
        if key not in m:
            raise SequenceLoadError(f"{mpath}: manifest lacks {key!r}")
    if len(m["frames"]) != len(m["times"]) or not m["frames"]:
        raise SequenceLoadError(f"{mpath}: {len(m['frames'])} frames but {len(m['times'])} times")
    return m


def _list_files(path: Path) -> tuple[list[Path], list[Path], list[float], dict]:
    """(frame files, node files, times, manifest) of a sequence folder or a single PLY."""
    if path.is_file():
        return [path], [], [0.0], {}
    m = _read_manifest(path)
    if m is not None:
        files = [path / f for f in m["frames"]]
        node_files = [path / f for f in (m.get("nodes") or [])]
        times = [float(t) for t in m["times"]]
    else:
        m = {}
        files = [Path(p) for p in sorted(glob.glob(str(path / "frame_*.ply")))]
        if not files:
            raise SequenceLoadError(f"{path}: no {MANIFEST} and no frame_*.ply files: not a sequence folder")
        node_files = [Path(p) for p in sorted(glob.glob(str(path / "nodes_*.ply")))]
        times = [0.0] if len(files) == 1 else [float(t) for t in np.linspace(0, 1, len(files))]
    missing = [str(f.name) for f in files + node_files if not f.is_file()]
    if missing:
        raise SequenceLoadError(f"{path}: incomplete sequence, missing {missing[:3]}")
    if node_files and len(node_files) != len(files):
        print(f"warning: {len(node_files)} node files for {len(files)} frames; node overlay disabled",
              file=sys.stderr)
        node_files = []
    return files, node_files, times, m


class _GaussianFrames:
    """Reads 3DGS frames: keeps the rows visible in frame 0 (opacity >= threshold) in every frame."""

    def __init__(self, opacity_threshold: float, glyphs: bool, max_glyphs: int):
        self.threshold, self.glyphs, self.max_glyphs = opacity_threshold, glyphs, max_glyphs
        self.keep: np.ndarray | None = None
        self.rows: int | None = None
        self.mean_scale: float | None = None
        self.quats: list[np.ndarray] = []
        self.scales: list[np.ndarray] = []

    def read(self, f: Path) -> tuple[np.ndarray, np.ndarray]:
        rec = read_ply_element(f, "vertex")
        need = _XYZ + _DC + ["opacity"] + (_SCALE + _ROT if self.glyphs or self.keep is None else [])
        miss = [p for p in need if p not in (rec.dtype.names or ())]
        if miss:
            raise PlyError(f"{f}: not a 3D Gaussian PLY: missing vertex properties {miss}")
        if self.keep is None:
            self._first(rec)
        if self.rows is not None and len(rec) != self.rows:
            raise SequenceLoadError(f"{f}: {len(rec)} rows but frame 0 has {self.rows}; rows must correspond")
        self.rows = len(rec)
        sub = rec[self.keep]
        if self.glyphs:
            self.quats.append(normalize_quats(_cols(sub, _ROT)))
            self.scales.append(np.exp(_cols(sub, _SCALE)))
        return _cols(sub, _XYZ), np.clip(0.5 + SH_C0 * _cols(sub, _DC), 0, 1)

    def _first(self, rec: np.ndarray) -> None:
        op = 1.0 / (1.0 + np.exp(-rec["opacity"].astype(np.float64)))
        self.keep = np.nonzero(op >= self.threshold)[0]
        ls = _cols(rec, _SCALE)[self.keep]
        if len(ls):
            self.mean_scale = float(np.median(np.exp(ls.astype(np.float64).mean(1))))
        if self.glyphs and len(self.keep) > self.max_glyphs:
            print(f"warning: {len(self.keep)} Gaussians > {self.max_glyphs}: glyphs disabled, showing points",
                  file=sys.stderr)
            self.glyphs = False


def load_sequence(path: str | os.PathLike, opacity_threshold: float = 0.05, glyphs: bool = False,
                  max_glyphs: int = MAX_GLYPHS, fps: float | None = None,
                  progress: Callable[[int, int], None] | None = None) -> LoadedSequence:
    """Preload a sequence folder (``sequence.json`` + frames), a folder of ``frame_*.ply`` without a manifest
    (fps defaults to 30, times evenly spaced in [0, 1]), or a single PLY file (one frame).

    Gaussian frames: the Gaussians whose opacity in the first frame is >= `opacity_threshold` are shown (the same
    rows in every frame), coloured by their SH DC term. `glyphs`=True keeps orientations and scales for
    ellipsoid glyphs when at most `max_glyphs` Gaussians are shown (otherwise glyphs are dropped with a warning).
    `fps` overrides the manifest's rate; `progress(i, n)` is called after each frame.
    Raises SequenceLoadError (missing/incomplete/inconsistent sequence, unreadable PLY, bad fps).
    """
    path = Path(path)
    if not path.exists():
        raise SequenceLoadError(f"{path}: no such sequence folder or PLY file")
    files, node_files, times, manifest = _list_files(path)
    try:
        kind = manifest.get("format") or ply_kind(files[0])
    except PlyError as e:
        raise SequenceLoadError(str(e)) from None
    if kind not in ("gaussians", "points"):
        raise SequenceLoadError(f"{files[0]}: unsupported frame kind {kind!r}")

    gauss = _GaussianFrames(opacity_threshold, glyphs, max_glyphs) if kind == "gaussians" else None
    positions: list[np.ndarray] = []
    frame_colors: list[np.ndarray] = []
    for i, f in enumerate(files):
        try:
            if gauss is not None:
                xyz, rgb = gauss.read(f)
            else:
                d = read_points_ply(f)
                xyz, rgb = d["xyz"], d["rgb"].astype(np.float32) / 255.0
                if i > 0 and len(xyz) != len(positions[0]):
                    raise SequenceLoadError(f"{f}: {len(xyz)} points but frame 0 has {len(positions[0])}; "
                                            f"rows must correspond")
        except PlyError as e:
            raise SequenceLoadError(str(e)) from None
        positions.append(xyz)
        frame_colors.append(rgb)
        if progress is not None:
            progress(i + 1, len(files))
    colors = frame_colors[0]
    varying = any(not np.array_equal(c, colors) for c in frame_colors[1:])
    with_glyphs = gauss is not None and gauss.glyphs

    seq_fps = float(fps) if fps else float(manifest.get("fps") or DEFAULT_FPS)
    if not (math.isfinite(seq_fps) and seq_fps > 0):
        raise SequenceLoadError(f"{path}: invalid fps {seq_fps}")
    bg = manifest.get("background")
    return LoadedSequence(
        path=path, fmt=kind, fps=seq_fps, times=times, positions=positions, colors=colors,
        frame_colors=frame_colors if varying else None,
        quats=gauss.quats if with_glyphs else None, scales=gauss.scales if with_glyphs else None,
        mean_scale=gauss.mean_scale if gauss is not None else None, nodes=_read_nodes(node_files),
        bbox=_manifest_bbox(manifest) or robust_bbox(positions),
        background=tuple(float(c) for c in bg[:3]) if bg else (1.0, 1.0, 1.0), manifest=manifest, files=files)


def _read_nodes(node_files: list[Path]) -> list[dict] | None:
    if not node_files:
        return None
    try:
        return [read_line_set_ply(f) for f in node_files]
    except PlyError as e:
        print(f"warning: node graph unreadable ({e}); overlay disabled", file=sys.stderr)
        return None


def _manifest_bbox(manifest: dict) -> tuple[np.ndarray, np.ndarray] | None:
    bb = manifest.get("bbox_robust") or manifest.get("bbox")
    if not bb:
        return None
    return np.asarray(bb["min"], np.float64), np.asarray(bb["max"], np.float64)


def robust_bbox(positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(min [3], max [3]) float64 over (up to 16 of) the frames: the 0.5% / 99.5% quantiles when there are more
    than 200 points (a few stray Gaussians do not shrink the view), else the exact extent."""
    step = max(1, len(positions) // 16)
    pts = np.concatenate([p for p in positions[::step] if len(p)] or [np.zeros((1, 3), np.float32)])
    if len(pts) > 200:
        q = np.quantile(pts, [0.005, 0.995], axis=0)
        return q[0].astype(np.float64), q[1].astype(np.float64)
    return pts.min(0).astype(np.float64), pts.max(0).astype(np.float64)

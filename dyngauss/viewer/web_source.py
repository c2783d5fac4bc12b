"""What the web viewer shows: a source of posed Gaussians at any time, from a model or a PLY sequence.

Two sources answer the same questions (:class:`Source`): the Gaussians at time t (:class:`SplatFrame`), the
node graph at t (node-graph fields only), the 3D tracks of chosen rows over time, the cameras, and "write the
Gaussians at t to a PLY".

* :class:`ModelSource` poses a :class:`dyngauss.model.DynamicGaussians` at any t in [0, 1] (continuous time:
  between training frames the field interpolates, as ``model.pose`` does). Posing holds the source's lock, so
  the viewer's threads never pose one model at once. :meth:`ModelSource.publish` swaps in another model (the
  live viewer hands over CPU snapshots of a training model this way) and bumps :attr:`revision`.
* :class:`SequenceSource` reads an exported folder (``sequence.json`` + ``frame_*.ply`` [+ ``nodes_*.ply``],
  :mod:`dyngauss.export.sequence`); time t shows the frame nearest to t; frames are read on first use and kept.

torch is imported only by :class:`ModelSource` (a sequence needs numpy + plyfile).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .web_cameras import ViewCamera
from .web_frame import SplatFrame, bounds


@dataclass
class NodeOverlay:
    """A node graph at one time: positions [M,3] float32 (world units), edges [E,2] int64 (undirected)."""

    positions: np.ndarray
    edges: np.ndarray


class Source(Protocol):
    """The interface :class:`dyngauss.viewer.web.WebViewer` draws from."""

    label: str                      # shown in the viewer's title
    time_range: tuple[float, float]
    key_times: list[float]          # the frames (training times / exported times), sorted
    fps: float                      # key frames per second at speed 1
    cameras: list[ViewCamera]
    background: tuple[float, float, float]
    revision: int                   # bumped whenever the data behind the frames changes (live training)
    has_nodes: bool
    info: str                       # one line: what is shown (Gaussians, step, ...)

    def frame(self, t: float) -> SplatFrame: ...
    def nodes(self, t: float) -> NodeOverlay | None: ...
    def tracks(self, rows: np.ndarray, times: Sequence[float]) -> np.ndarray: ...
    def export_ply(self, t: float, path: Path) -> Path: ...
    def bounds(self, t: float | None = None) -> tuple[np.ndarray, np.ndarray]: ...


def _undirected(edges: np.ndarray) -> np.ndarray:
    e = np.asarray(edges, np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(np.sort(e, 1), axis=0) if len(e) else np.zeros((0, 2), np.int64)


def sample_times(key_times: Sequence[float], time_range: tuple[float, float], count: int = 40) -> list[float]:
    """At most `count` times for tracks: the key times (evenly thinned), or an even grid over the range."""
    kt = list(key_times)
    if len(kt) >= 2:
        if len(kt) <= count:
            return kt
        idx = np.unique(np.round(np.linspace(0, len(kt) - 1, count)).astype(int))
        return [kt[i] for i in idx]
    lo, hi = time_range
    return [float(v) for v in np.linspace(lo, hi, count)]


# -------------------------------------------------------------------------------------------------- model
class ModelSource:
    """A :class:`dyngauss.model.DynamicGaussians` (any device; posed under ``torch.no_grad``).

    Args:
        model: the model (None: nothing to show until :meth:`publish`).
        cameras: the cameras to draw (see :func:`dyngauss.viewer.web_cameras.dataset_cameras`).
        label: the viewer's title.
        fps: key frames per second of playback at speed 1 (default: the run config's export.fps, else 15).
    """

    def __init__(self, model=None, cameras: Sequence[ViewCamera] = (), label: str = "model",
                 fps: float | None = None):
        self._lock = threading.RLock()
        self.cameras = list(cameras)
        self.label = label
        self.revision = 0
        self.step: int | None = None
        self._fps = fps
        self.model = None
        if model is not None:
            self.publish(model)

    def publish(self, model, step: int | None = None) -> None:
        """Show `model` from now on (the previous one is dropped); `step`: the training step it is from."""
        with self._lock:
            self.model = model
            self.step = step if step is not None else (model.info.step if model is not None else None)
            self.revision += 1

    # ---- description ------------------------------------------------------------------------------
    @property
    def key_times(self) -> list[float]:
        m = self.model
        return sorted(m.train_times) if m is not None else []

    @property
    def time_range(self) -> tuple[float, float]:
        kt = self.key_times
        return (0.0, 1.0) if len(kt) < 2 else (min(0.0, kt[0]), max(1.0, kt[-1]))

    @property
    def fps(self) -> float:
        if self._fps:
            return float(self._fps)
        cfg = getattr(self.model, "config", None)
        return float(getattr(getattr(cfg, "export", None), "fps", 15.0) or 15.0)

    @property
    def background(self) -> tuple[float, float, float]:
        bg = getattr(getattr(getattr(self.model, "config", None), "data", None), "background", None)
        return tuple(float(v) for v in bg) if bg else (1.0, 1.0, 1.0)

    @property
    def has_nodes(self) -> bool:
        from ..export.sequence import field_has_node_graph

        return self.model is not None and field_has_node_graph(self.model.deform)

    @property
    def info(self) -> str:
        m = self.model
        if m is None:
            return "waiting for the first model"
        step = f", step {self.step}" if self.step is not None else ""
        return f"{len(m)} Gaussians, {m.kind} field, {m.num_frames} training frames{step}"

    # ---- queries ----------------------------------------------------------------------------------
    def _posed(self, t: float):
        import torch

        m = self.model
        if m is None:
            raise LookupError("no model to show yet")
        with torch.no_grad():
            return m.pose(float(t))

    def frame(self, t: float) -> SplatFrame:
        with self._lock:
            return SplatFrame.from_posed(self._posed(t))

    def nodes(self, t: float) -> NodeOverlay | None:
        from ..export.sequence import _canonical_nodes, _posed_nodes, field_has_node_graph

        import torch

        with self._lock, torch.no_grad():
            m = self.model
            if m is None or not field_has_node_graph(m.deform):
                return None
            canon, edges = _canonical_nodes(m.deform)
            if canon.shape[0] == 0:
                return None
            pos = _posed_nodes(m.deform, canon, float(t), m.frame_index(float(t)))
            return NodeOverlay(np.asarray(pos, np.float32), _undirected(edges))

    def tracks(self, rows: np.ndarray, times: Sequence[float]) -> np.ndarray:
        """Positions [R,T,3] float32 of Gaussians `rows` at `times` (rows past the model's count: NaN)."""
        rows = np.asarray(rows, np.int64)
        out = np.full((len(rows), len(times), 3), np.nan, np.float32)
        with self._lock:
            for j, t in enumerate(times):
                means = self._posed(t).means.detach().float().cpu().numpy()
                ok = rows < len(means)
                out[ok, j] = means[rows[ok]]
        return out

    def export_ply(self, t: float, path: Path) -> Path:
        """Write the Gaussians at time t as a 3DGS PLY (:func:`dyngauss.io.ply.write_gaussians_ply`)."""
        from ..geometry.quaternion import quat_normalize
        from ..io.ply import write_gaussians_ply

        with self._lock:
            p = self._posed(t)
            g = self.model.gaussians
            return write_gaussians_ply(path, p.means, quat_normalize(p.quats.detach()), p.log_scales,
                                       g.opacity_logits.detach(), p.sh,
                                       comments=[f"dyngauss view: {self.label}", f"time {float(t)!r}"])

    def bounds(self, t: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Robust bounds of the visible Gaussians at t (default: the middle of the time range)."""
        t = sum(self.time_range) / 2 if t is None else t
        f = self.frame(t)
        return bounds(f.means[f.visible(0.05)])


# ----------------------------------------------------------------------------------------------- sequence
class SequenceSource:
    """An exported PLY sequence folder (see module docstring). SequenceError (from
    :func:`dyngauss.export.sequence.load_manifest`) for a folder that is not a complete sequence."""

    def __init__(self, seq_dir: str | Path, cameras: Sequence[ViewCamera] = (), label: str | None = None):
        from ..export.sequence import load_manifest

        self.path = Path(seq_dir)
        self.manifest = load_manifest(self.path)
        m = self.manifest
        self.cameras = list(cameras)
        self.label = label or self.path.name
        self.revision = 1
        self.key_times = [float(t) for t in m["times"]]
        self._order = np.argsort(self.key_times, kind="stable")
        self.key_times = [self.key_times[i] for i in self._order]
        lo, hi = (self.key_times[0], self.key_times[-1]) if self.key_times else (0.0, 1.0)
        self.time_range = (lo, hi if hi > lo else lo + 1.0)
        self.fps = float(m.get("fps") or 15.0)
        bg = m.get("background")
        self.background = tuple(float(v) for v in bg) if bg and len(bg) == 3 else (1.0, 1.0, 1.0)
        self.has_nodes = bool(m.get("nodes"))
        self._frames: dict[int, SplatFrame] = {}
        self._lock = threading.Lock()
        box = m.get("bbox_robust") or m.get("bbox")
        ext = float(np.linalg.norm(np.subtract(box["max"], box["min"]))) if box else 1.0
        self._point_radius = max(ext, 1e-6) * 0.004  # points sequences: splat size
        self.info = (f"{m.get('num_gaussians', '?')} {'Gaussians' if m['format'] == 'gaussians' else 'points'}, "
                     f"{m['count']} frames, {m.get('deform') or 'unknown'} field")

    def index(self, t: float) -> int:
        """The manifest's frame index nearest to time t."""
        j = int(np.argmin(np.abs(np.asarray(self.key_times) - float(t))))
        return int(self._order[j])

    def frame(self, t: float) -> SplatFrame:
        from ..io.ply import read_gaussians_ply, read_points_ply

        i = self.index(t)
        with self._lock:
            f = self._frames.get(i)
            if f is None:
                path = self.path / self.manifest["frames"][i]
                ti = float(self.manifest["times"][i])
                if self.manifest["format"] == "gaussians":
                    f = SplatFrame.from_gaussian_ply(read_gaussians_ply(path), ti)
                else:
                    rec = read_points_ply(path)
                    f = SplatFrame.from_points(rec["xyz"], rec["rgb"], self._point_radius, ti)
                self._frames[i] = f
            return f

    def nodes(self, t: float) -> NodeOverlay | None:
        from ..io.ply import read_line_set_ply

        names = self.manifest.get("nodes")
        if not names:
            return None
        rec = read_line_set_ply(self.path / names[self.index(t)])
        return NodeOverlay(rec["vertices"].astype(np.float32), _undirected(rec["edges"]))

    def tracks(self, rows: np.ndarray, times: Sequence[float]) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        out = np.full((len(rows), len(times), 3), np.nan, np.float32)
        for j, t in enumerate(times):
            means = self.frame(t).means
            ok = rows < len(means)
            out[ok, j] = means[rows[ok]]
        return out

    def export_ply(self, t: float, path: Path) -> Path:
        """The frame nearest to t as a 3DGS PLY (a ``points`` sequence: as a coloured point PLY)."""
        from ..io.ply import read_gaussians_ply, write_gaussians_ply, write_points_ply

        i = self.index(t)
        src = self.path / self.manifest["frames"][i]
        comments = [f"dyngauss view: {src}", f"time {float(self.manifest['times'][i])!r}"]
        if self.manifest["format"] == "gaussians":
            r = read_gaussians_ply(src)
            return write_gaussians_ply(path, r["means"], r["quats"], r["log_scales"], r["opacity_logits"], r["sh"],
                                       comments=comments)
        f = self.frame(t)
        return write_points_ply(path, f.means, np.rint(f.rgb * 255).astype(np.uint8), comments=comments)

    def bounds(self, t: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        box = self.manifest.get("bbox_robust") or self.manifest.get("bbox")
        if box:
            return np.asarray(box["min"], np.float64), np.asarray(box["max"], np.float64)
        f = self.frame(sum(self.time_range) / 2 if t is None else t)
        return bounds(f.means[f.visible(0.05)])

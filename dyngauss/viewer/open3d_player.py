"""Real-time playback of PLY sequences (dyngauss.export) in Open3D, on screen or offscreen.

* :func:`load_sequence` preloads a whole sequence folder (3DGS frames -> coloured points, colour from f_dc and a
  point size from the Gaussians' mean scale; point frames as they are; optional node-graph line sets and
  oriented ellipsoid glyphs for small sets).
* :class:`Player` plays it in a window (``open3d.visualization.VisualizerWithKeyCallback``) in real time at the
  manifest's fps: space play/pause, left/right step, +/- speed, L loop, N node graph, G glyphs, P screenshot,
  R reset view, H help, Esc/Q quit.
* :func:`render_offscreen` renders every frame without a display into PNGs and/or a video, choosing the first
  offscreen path that works here (:func:`open_offscreen`):
    1. "legacy": ``open3d.visualization.Visualizer(visible=False)``; Open3D >= 0.19 falls back to headless EGL
       (Mesa llvmpipe on CPU) when no X display exists, or uses the X server in ``$DISPLAY`` (e.g. Xvfb).
    2. "filament": ``open3d.visualization.rendering.OffscreenRenderer`` (headless Filament; on a CPU-only
       machine it needs a software Vulkan driver: apt ``libvulkan1 mesa-vulkan-drivers``). ~8x slower.
  Both are probed in order; a clear :class:`OffscreenUnavailable` lists why each failed.

The camera is fixed and frames the sequence's bounding box (OpenCV convention, like the rest of dyngauss).
This module needs numpy + open3d only (no torch).
"""
from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io.ply import PlyError, SH_C0, ply_kind, read_line_set_ply, read_ply_element, read_points_ply

MANIFEST = "sequence.json"
DEFAULT_FPS = 30.0
GLYPH_SIGMA = 1.0          # ellipsoid glyph radius in standard deviations
MAX_GLYPHS = 2000


class SequenceLoadError(ValueError):
    """The sequence folder cannot be played (missing, incomplete or inconsistent)."""


class OffscreenUnavailable(RuntimeError):
    """No offscreen rendering path works on this machine."""


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------
@dataclass
class LoadedSequence:
    """A preloaded sequence. positions[i] [N,3] float32 (row = same Gaussian in every frame), colors [N,3]
    float32 in [0,1] (frame_colors[i] when colours change over time), glyph data (quats [N,4] wxyz and linear
    scales [N,3] per frame) when requested, node graph line sets when present."""

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


def _quat_normalize(q: np.ndarray) -> np.ndarray:
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)


def load_sequence(path: str | os.PathLike, opacity_threshold: float = 0.05, glyphs: bool = False,
                  max_glyphs: int = MAX_GLYPHS, fps: float | None = None,
                  progress: Callable[[int, int], None] | None = None) -> LoadedSequence:
    """Preload a sequence folder (``sequence.json`` + frames), a folder of ``frame_*.ply`` without a manifest
    (fps defaults to 30, times evenly spaced), or a single PLY file (one frame).

    Gaussians frames: the Gaussians whose opacity in the first frame is >= opacity_threshold are shown (the same
    rows in every frame), coloured by their SH DC term. glyphs=True keeps orientations and scales for ellipsoid
    glyphs when at most `max_glyphs` Gaussians are shown (otherwise glyphs are dropped with a warning).
    """
    path = Path(path)
    if not path.exists():
        raise SequenceLoadError(f"{path}: no such sequence folder or PLY file")
    manifest: dict = {}
    if path.is_file():
        files, node_files, seq_dir = [path], [], path.parent
        times = [0.0]
    else:
        seq_dir = path
        m = _read_manifest(path)
        if m is not None:
            manifest = m
            files = [path / f for f in m["frames"]]
            node_files = [path / f for f in (m.get("nodes") or [])]
            times = [float(t) for t in m["times"]]
        else:
            files = [Path(p) for p in sorted(glob.glob(str(path / "frame_*.ply")))]
            if not files:
                raise SequenceLoadError(f"{path}: no {MANIFEST} and no frame_*.ply files: not a sequence folder")
            node_files = [Path(p) for p in sorted(glob.glob(str(path / "nodes_*.ply")))]
            n = len(files)
            times = [0.0] if n == 1 else [float(t) for t in np.linspace(0, 1, n)]
        missing = [str(f.name) for f in files + node_files if not f.is_file()]
        if missing:
            raise SequenceLoadError(f"{path}: incomplete sequence, missing {missing[:3]}")
        if node_files and len(node_files) != len(files):
            print(f"warning: {len(node_files)} node files for {len(files)} frames; node overlay disabled",
                  file=sys.stderr)
            node_files = []
    try:
        kind = manifest.get("format") or ply_kind(files[0])
    except PlyError as e:
        raise SequenceLoadError(str(e)) from None
    if kind not in ("gaussians", "points"):
        raise SequenceLoadError(f"{files[0]}: unsupported frame kind {kind!r}")

    positions: list[np.ndarray] = []
    frame_colors: list[np.ndarray] = []
    quats: list[np.ndarray] = []
    scales: list[np.ndarray] = []
    keep = None
    n_rows = None
    mean_scale = None
    want_glyphs = glyphs and kind == "gaussians"
    for i, f in enumerate(files):
        try:
            if kind == "gaussians":
                rec = read_ply_element(f, "vertex")
                need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
                if want_glyphs or i == 0:
                    need += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
                miss = [p for p in need if p not in (rec.dtype.names or ())]
                if miss:
                    raise PlyError(f"{f}: not a 3D Gaussian PLY: missing vertex properties {miss}")
                if keep is None:
                    op = 1.0 / (1.0 + np.exp(-rec["opacity"].astype(np.float64)))
                    keep = np.nonzero(op >= opacity_threshold)[0]
                    ls = _cols(rec, ["scale_0", "scale_1", "scale_2"])[keep]
                    if len(ls):
                        mean_scale = float(np.median(np.exp(ls.astype(np.float64).mean(1))))
                    if want_glyphs and len(keep) > max_glyphs:
                        print(f"warning: {len(keep)} Gaussians > {max_glyphs}: glyphs disabled, showing points",
                              file=sys.stderr)
                        want_glyphs = False
                if n_rows is not None and len(rec) != n_rows:
                    raise SequenceLoadError(f"{f}: {len(rec)} rows but frame 0 has {n_rows}; rows must correspond")
                n_rows = len(rec)
                sub = rec[keep]
                positions.append(_cols(sub, ["x", "y", "z"]))
                frame_colors.append(np.clip(0.5 + SH_C0 * _cols(sub, ["f_dc_0", "f_dc_1", "f_dc_2"]), 0, 1))
                if want_glyphs:
                    quats.append(_quat_normalize(_cols(sub, ["rot_0", "rot_1", "rot_2", "rot_3"])))
                    scales.append(np.exp(_cols(sub, ["scale_0", "scale_1", "scale_2"])))
            else:
                d = read_points_ply(f)
                if i > 0 and len(d["xyz"]) != len(positions[0]):
                    raise SequenceLoadError(f"{f}: {len(d['xyz'])} points but frame 0 has {len(positions[0])}; "
                                            f"rows must correspond")
                positions.append(d["xyz"])
                frame_colors.append(d["rgb"].astype(np.float32) / 255.0)
        except PlyError as e:
            raise SequenceLoadError(str(e)) from None
        if progress is not None:
            progress(i + 1, len(files))
    colors = frame_colors[0]
    varying = any(not np.array_equal(c, colors) for c in frame_colors[1:])

    nodes = None
    if node_files:
        try:
            nodes = [read_line_set_ply(f) for f in node_files]
        except PlyError as e:
            print(f"warning: node graph unreadable ({e}); overlay disabled", file=sys.stderr)
            nodes = None

    bb = manifest.get("bbox_robust") or manifest.get("bbox")
    if bb:
        lo, hi = np.asarray(bb["min"], np.float64), np.asarray(bb["max"], np.float64)
    else:
        lo, hi = _bbox_of(positions)
    bg = manifest.get("background")
    seq_fps = float(fps) if fps else float(manifest.get("fps") or DEFAULT_FPS)
    if not (math.isfinite(seq_fps) and seq_fps > 0):
        raise SequenceLoadError(f"invalid fps {seq_fps}")
    return LoadedSequence(
        path=seq_dir if path.is_dir() else path, fmt=kind, fps=seq_fps, times=times, positions=positions,
        colors=colors, frame_colors=frame_colors if varying else None,
        quats=quats if want_glyphs else None, scales=scales if want_glyphs else None, mean_scale=mean_scale,
        nodes=nodes, bbox=(lo, hi),
        background=tuple(float(c) for c in bg[:3]) if bg else (1.0, 1.0, 1.0), manifest=manifest)


def _bbox_of(positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    step = max(1, len(positions) // 16)
    pts = np.concatenate([p for p in positions[::step] if len(p)] or [np.zeros((1, 3), np.float32)])
    if len(pts) > 200:
        q = np.quantile(pts, [0.005, 0.995], axis=0)
        return q[0].astype(np.float64), q[1].astype(np.float64)
    return pts.min(0).astype(np.float64), pts.max(0).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------
# camera framing and playback state (pure numpy / python: unit-testable without a renderer)
# ---------------------------------------------------------------------------------------------------------
def look_at(eye, target, up) -> np.ndarray:
    """OpenCV world-to-camera [4,4] of a camera at `eye` looking at `target` with image-up ~ `up`."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    V = np.eye(4)
    V[:3, :3] = np.stack([x, y, z])
    V[:3, 3] = -V[:3, :3] @ eye
    return V


@dataclass
class Framing:
    """A fixed pinhole camera: K [3,3] (pixels), extrinsic [4,4] world-to-camera (OpenCV), size, distance."""

    K: np.ndarray
    extrinsic: np.ndarray
    width: int
    height: int
    distance: float


def frame_bbox(bbox: tuple[np.ndarray, np.ndarray], width: int, height: int, fov_deg: float = 40.0,
               up: Sequence[float] = (0, 0, 1), azimuth_deg: float = -60.0, elevation_deg: float = 20.0,
               margin: float = 1.05) -> Framing:
    """Camera that sees the bounding sphere of `bbox` entirely. `fov_deg` is the vertical field of view;
    azimuth/elevation are measured around the `up` axis (default +z, the D-NeRF/Blender convention)."""
    lo, hi = (np.asarray(b, np.float64) for b in bbox)
    c = 0.5 * (lo + hi)
    r = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-3)
    fy = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[fy, 0, width / 2.0], [0, fy, height / 2.0], [0, 0, 1.0]])
    half = min(math.atan(0.5 * width / fy), math.atan(0.5 * height / fy))
    dist = margin * r / math.sin(half)
    up = np.asarray(up, np.float64)
    up = up / np.linalg.norm(up)
    # an orthonormal frame (a, b, up) around the up axis; a = world x (or y) made perpendicular to up
    ref = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = ref - ref.dot(up) * up
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    d = math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up
    return Framing(K, look_at(c + dist * d, c, up), width, height, dist)


def auto_point_size(seq: LoadedSequence, framing: Framing) -> float:
    """Point size in pixels: the projected diameter (2 sigma) of a typical Gaussian at the framing distance;
    for point frames, the projected typical spacing of the points over the bounding box. Clamped to [1, 10]."""
    f = float(framing.K[1, 1])
    if seq.mean_scale is not None:
        world = 2.0 * seq.mean_scale
    else:
        lo, hi = seq.bbox
        world = float(np.linalg.norm(hi - lo)) / math.sqrt(max(seq.num_points, 1))
    return float(np.clip(world * f / max(framing.distance, 1e-9), 1.0, 10.0))


class PlaybackState:
    """Time-based playback over `count` frames at `fps` (real time: frames are skipped when rendering is
    slower than the frame rate). pos is measured in frames."""

    SPEEDS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

    def __init__(self, count: int, fps: float, loop: bool = True, playing: bool = True, speed: float = 1.0):
        if count < 1:
            raise ValueError("need at least one frame")
        self.count, self.fps, self.loop, self.playing = int(count), float(fps), bool(loop), bool(playing)
        self.speed = float(speed)
        self.pos = 0.0

    @property
    def frame(self) -> int:
        return min(self.count - 1, max(0, int(math.floor(self.pos + 1e-9))))

    def tick(self, dt: float) -> int:
        """Advance by dt seconds of wall time; returns the frame to show."""
        if self.playing and self.count > 1:
            self.pos += dt * self.fps * self.speed
            if self.pos >= self.count:
                if self.loop:
                    self.pos %= self.count
                else:
                    self.pos = self.count - 1
                    self.playing = False
        return self.frame

    def toggle(self) -> None:
        if not self.playing and not self.loop and self.frame == self.count - 1:
            self.pos = 0.0  # at the end of a non-looping run: play restarts
        self.playing = not self.playing

    def step(self, d: int) -> int:
        self.playing = False
        f = self.frame + int(d)
        f = f % self.count if self.loop else min(self.count - 1, max(0, f))
        self.pos = float(f)
        return f

    def faster(self) -> float:
        self.speed = next((s for s in self.SPEEDS if s > self.speed + 1e-9), self.SPEEDS[-1])
        return self.speed

    def slower(self) -> float:
        self.speed = next((s for s in reversed(self.SPEEDS) if s < self.speed - 1e-9), self.SPEEDS[0])
        return self.speed

    def toggle_loop(self) -> bool:
        self.loop = not self.loop
        return self.loop

    def describe(self, times: Sequence[float] | None = None) -> str:
        t = f" t={times[self.frame]:.3f}" if times else ""
        return (f"frame {self.frame + 1}/{self.count}{t}  speed {self.speed:g}x  "
                f"{'playing' if self.playing else 'paused'}  loop {'on' if self.loop else 'off'}")


# ---------------------------------------------------------------------------------------------------------
# per-frame geometry (numpy) and ellipsoid glyphs
# ---------------------------------------------------------------------------------------------------------
def quat_to_matrix_np(q: np.ndarray) -> np.ndarray:
    w, x, y, z = _quat_normalize(q.astype(np.float64)).T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


class GlyphBuilder:
    """One triangle mesh of G oriented ellipsoids (a low-poly unit sphere mapped by R diag(sigma * s))."""

    def __init__(self, n: int, colors: np.ndarray, resolution: int = 6):
        import open3d as o3d

        sphere = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=resolution)
        self.unit = np.asarray(sphere.vertices, np.float64)          # [S,3]
        tri = np.asarray(sphere.triangles, np.int32)                   # [T,3]
        s = len(self.unit)
        self.triangles = (tri[None] + (s * np.arange(n, dtype=np.int32))[:, None, None]).reshape(-1, 3)
        self.vertex_colors = np.repeat(np.asarray(colors, np.float64), s, axis=0)
        self.n = n

    def vertices_normals(self, means: np.ndarray, quats: np.ndarray, scales: np.ndarray,
                         sigma: float = GLYPH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
        R = quat_to_matrix_np(quats)
        s = np.maximum(scales.astype(np.float64), 1e-9)
        M = R * (sigma * s)[:, None, :]                                # R diag(sigma s)
        v = np.einsum("gij,sj->gsi", M, self.unit) + means[:, None, :].astype(np.float64)
        Ninv = R / s[:, None, :]                                       # R diag(1/s): normal transform
        nrm = np.einsum("gij,sj->gsi", Ninv, self.unit)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
        return v.reshape(-1, 3), nrm.reshape(-1, 3)


# ---------------------------------------------------------------------------------------------------------
# rendering backends
# ---------------------------------------------------------------------------------------------------------
def _o3d(level: str = "Warning"):
    try:
        import open3d as o3d
    except ImportError as e:
        raise OffscreenUnavailable(
            f"cannot import open3d ({e}). Open3D needs e.g. libusb-1.0-0, libgl1, libegl1 (apt) on Linux") from e
    try:
        o3d.utility.set_verbosity_level(getattr(o3d.utility.VerbosityLevel, level))
    except Exception:  # noqa: BLE001
        pass
    return o3d


def _ensure_runtime_dir() -> None:
    """Mesa/GLFW complain when XDG_RUNTIME_DIR is unset; give them a private one."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    d = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(d)
    except OSError:
        pass


def _has_display() -> bool:
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class _Scene:
    """The o3d geometries of one sequence and how to move them to frame i."""

    def __init__(self, o3d, seq: LoadedSequence, glyphs: bool):
        self.o3d, self.seq = o3d, seq
        self.glyphs = glyphs and seq.has_glyphs
        V = o3d.utility.Vector3dVector
        if self.glyphs:
            self.builder = GlyphBuilder(seq.num_points, seq.colors)
            self.geom = o3d.geometry.TriangleMesh()
            self.geom.triangles = o3d.utility.Vector3iVector(self.builder.triangles)
            self.geom.vertex_colors = V(self.builder.vertex_colors)
        else:
            self.geom = o3d.geometry.PointCloud()
            self.geom.colors = V(seq.colors.astype(np.float64))
        self.lines = o3d.geometry.LineSet() if seq.nodes else None
        self.set_frame(0)

    def set_frame(self, i: int) -> None:
        V = self.o3d.utility.Vector3dVector
        seq = self.seq
        if self.glyphs:
            v, n = self.builder.vertices_normals(seq.positions[i], seq.quats[i], seq.scales[i])
            self.geom.vertices = V(v)
            self.geom.vertex_normals = V(n)
            if seq.frame_colors is not None:
                self.geom.vertex_colors = V(np.repeat(seq.colors_at(i).astype(np.float64), len(self.builder.unit), 0))
        else:
            self.geom.points = V(seq.positions[i].astype(np.float64))
            if seq.frame_colors is not None:
                self.geom.colors = V(seq.colors_at(i).astype(np.float64))
        if self.lines is not None:
            nd = seq.nodes[i]
            self.lines.points = V(nd["vertices"].astype(np.float64))
            self.lines.lines = self.o3d.utility.Vector2iVector(nd["edges"].astype(np.int32))
            rgb = nd["edge_rgb"] if nd["edge_rgb"] is not None else np.tile([[230, 60, 40]], (len(nd["edges"]), 1))
            self.lines.colors = V(np.asarray(rgb, np.float64) / 255.0)


class LegacyBackend:
    """open3d.visualization.Visualizer (hidden window; headless EGL when there is no display)."""

    name = "legacy"

    def __init__(self, width: int, height: int):
        self.o3d = _o3d("Error")  # hides GLFW's "no platform" warning before the EGL fallback
        _ensure_runtime_dir()
        self.vis = self.o3d.visualization.Visualizer()
        if not self.vis.create_window(window_name="dyngauss", width=width, height=height, visible=False):
            raise OffscreenUnavailable("Visualizer.create_window(visible=False) failed (no EGL and no X display)")
        self.width, self.height = width, height
        self._geoms: dict[str, object] = {}

    def add(self, name: str, geom, kind: str) -> None:
        self.vis.add_geometry(geom, reset_bounding_box=not self._geoms)
        self._geoms[name] = geom

    def remove(self, name: str) -> None:
        g = self._geoms.pop(name, None)
        if g is not None:
            self.vis.remove_geometry(g, reset_bounding_box=False)

    def update(self, name: str, geom, kind: str) -> None:
        self.vis.update_geometry(geom)

    def setup(self, framing: Framing, point_size: float, background) -> None:
        ro = self.vis.get_render_option()
        ro.point_size = float(point_size)
        ro.background_color = np.asarray(background, np.float64)
        ro.mesh_show_back_face = True
        ro.light_on = True
        set_legacy_camera(self.o3d, self.vis, framing)

    def render(self) -> np.ndarray:
        # capture(do_render=True) draws once and reads back; poll_events() would draw a second time
        img = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

    def close(self) -> None:
        self.vis.destroy_window()


def set_legacy_camera(o3d, vis, framing: Framing) -> bool:
    params = o3d.camera.PinholeCameraParameters()
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(framing.width, framing.height, framing.K)
    params.extrinsic = framing.extrinsic
    vc = vis.get_view_control()
    try:
        ok = vc.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
    except TypeError:  # Open3D < 0.13
        ok = vc.convert_from_pinhole_camera_parameters(params)
    # the legacy view control's near/far planes follow the scene's bounding box; keep them wide
    try:
        vc.set_constant_z_near(max(framing.distance * 1e-3, 1e-4))
        vc.set_constant_z_far(framing.distance * 100.0)
    except AttributeError:
        pass
    return bool(ok)


class FilamentBackend:
    """open3d.visualization.rendering.OffscreenRenderer (headless Filament)."""

    name = "filament"

    def __init__(self, width: int, height: int):
        self.o3d = _o3d("Error")
        _ensure_runtime_dir()
        from open3d.visualization import rendering

        self.rendering = rendering
        if not os.environ.get(_IN_PROBE):
            # Filament aborts the whole process (C++ panic) when it cannot create a Vulkan/EGL context, so try it
            # in a child process first
            ok, msg = probe_offscreen("filament")
            if ok is None:
                raise OffscreenUnavailable(f"OffscreenRenderer failed in a test process: {msg}")
        try:
            self.r = rendering.OffscreenRenderer(width, height)
        except Exception as e:  # noqa: BLE001 - RuntimeError("Failed to load vulkan library!") etc.
            raise OffscreenUnavailable(f"OffscreenRenderer failed: {e}") from e
        self.width, self.height = width, height
        self.point_size = 2.0
        self._kinds: dict[str, str] = {}

    def _material(self, kind: str):
        m = self.rendering.MaterialRecord()
        if kind == "points":
            m.shader, m.point_size = "defaultUnlit", float(self.point_size)
        elif kind == "lines":
            m.shader, m.line_width = "unlitLine", 2.0
        else:
            m.shader = "defaultLit"
        return m

    def _tgeom(self, geom, kind: str):
        o3d = self.o3d
        if kind == "points":
            t = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.asarray(geom.points, np.float32)))
            t.point.colors = o3d.core.Tensor(np.asarray(geom.colors, np.float32))
            return t
        return geom

    def add(self, name: str, geom, kind: str) -> None:
        self.r.scene.add_geometry(name, self._tgeom(geom, kind), self._material(kind))
        self._kinds[name] = kind

    def remove(self, name: str) -> None:
        if self._kinds.pop(name, None) is not None:
            self.r.scene.remove_geometry(name)

    def update(self, name: str, geom, kind: str) -> None:
        # Scene.update_geometry garbles point clouds on the software Vulkan path; re-adding is reliable
        self.r.scene.remove_geometry(name)
        self.r.scene.add_geometry(name, self._tgeom(geom, kind), self._material(kind))

    def setup(self, framing: Framing, point_size: float, background) -> None:
        self.point_size = float(point_size)
        for name, kind in self._kinds.items():
            if kind == "points":
                self.r.scene.modify_geometry_material(name, self._material(kind))
        self.r.scene.set_background(list(np.asarray(background, np.float32)) + [1.0])
        try:  # no tone mapping / colour grading: show the stored colours and background as they are
            self.r.scene.view.set_post_processing(False)
        except AttributeError:
            pass
        self.r.setup_camera(framing.K, framing.extrinsic, framing.width, framing.height)

    def render(self) -> np.ndarray:
        return np.asarray(self.r.render_to_image())[..., :3].copy()

    def close(self) -> None:
        del self.r


BACKENDS = {"legacy": LegacyBackend, "filament": FilamentBackend}


def open_offscreen(width: int, height: int, backend: str = "auto"):
    """The first offscreen backend that starts (auto: legacy, then filament). Raises OffscreenUnavailable."""
    names = list(BACKENDS) if backend == "auto" else [backend]
    errors = []
    for name in names:
        if name not in BACKENDS:
            raise ValueError(f"unknown offscreen backend {name!r}; use auto, {', '.join(BACKENDS)}")
        try:
            return BACKENDS[name](width, height)
        except OffscreenUnavailable as e:
            errors.append(f"{name}: {e}")
    raise OffscreenUnavailable(
        "no offscreen rendering path works on this machine:\n  " + "\n  ".join(errors) + "\n"
        "fixes: install Mesa EGL (apt: libegl1 libegl-mesa0 libgl1-mesa-dri) for the legacy path, or run under an "
        "X server (apt: xvfb; then `xvfb-run -a python tools/play.py ...`), or install a software Vulkan driver "
        "(apt: libvulkan1 mesa-vulkan-drivers) for the Filament path")


_IN_PROBE = "DYNGAUSS_OFFSCREEN_PROBE"


def probe_offscreen(backend: str = "auto", timeout: float = 60.0) -> tuple[str | None, str]:
    """Check in a child process per backend (a broken GL/Vulkan stack may abort the process) which offscreen
    backend works (auto: legacy, then filament). Returns (backend name or None, message)."""
    if backend == "auto":
        errors = []
        for name in BACKENDS:
            ok, msg = probe_offscreen(name, timeout)
            if ok is not None:
                return ok, msg
            errors.append(f"{name}: {msg}")
        return None, "; ".join(errors)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from dyngauss.viewer.open3d_player import open_offscreen, OffscreenUnavailable\n"
            "try:\n"
            "    b = open_offscreen(32, 32, %r)\n"
            "except OffscreenUnavailable as e:\n"
            "    print('FAILED', str(e).replace(chr(10), ' | ')); sys.exit(1)\n"
            "img = b.render(); b.close()\n"
            "print('BACKEND', b.name, img.shape)\n") % (str(Path(__file__).resolve().parents[2]), backend)
    env = dict(os.environ, **{_IN_PROBE: "1"})
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"offscreen probe ({backend}) timed out after {timeout:g} s"
    for line in p.stdout.splitlines():
        if line.startswith("BACKEND "):
            return line.split()[1], line
        if line.startswith("FAILED "):
            return None, line[7:]
    tail = [ln for ln in p.stderr.strip().splitlines() if ln.strip()][-3:]
    return None, f"probe process exited with code {p.returncode}: " + " | ".join(tail)


# ---------------------------------------------------------------------------------------------------------
# offscreen rendering of a whole sequence
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RenderStats:
    backend: str
    frames: int
    seconds: float
    files: list[Path] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _even(x: int) -> int:
    return int(x) + (int(x) % 2)


def render_offscreen(seq: LoadedSequence, *, video: str | os.PathLike | None = None,
                     frames_dir: str | os.PathLike | None = None, size: tuple[int, int] = (960, 720),
                     fps: float | None = None, point_size: float | None = None, glyphs: bool = False,
                     nodes: bool = False, backend: str = "auto", background=None, up=(0, 0, 1),
                     on_frame: Callable[[int, np.ndarray], None] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> RenderStats:
    """Render every frame of `seq` with the fixed bbox-framing camera into PNGs (`frames_dir/frame_0000.png`)
    and/or a video (`.mp4`/`.mkv`/`.webm`/`.avi` through imageio-ffmpeg, `.gif` through Pillow) at `fps`
    (default: the manifest's)."""
    if video is None and frames_dir is None and on_frame is None:
        raise ValueError("nothing to do: give video, frames_dir or on_frame")
    import imageio.v2 as iio

    W, H = (int(size[0]), int(size[1]))
    if video is not None and Path(video).suffix.lower() != ".gif":
        W, H = _even(W), _even(H)  # yuv420p needs even sizes
    if W < 8 or H < 8:
        raise ValueError(f"image size {W}x{H} too small")
    out_fps = float(fps or seq.fps)
    framing = frame_bbox(seq.bbox, W, H, up=up)
    ps = float(point_size) if point_size else auto_point_size(seq, framing)
    bg = background if background is not None else seq.background

    be = open_offscreen(W, H, backend)
    o3d = be.o3d
    writer, gif_frames, files = None, [], []
    try:
        scene = _Scene(o3d, seq, glyphs)
        kind = "mesh" if scene.glyphs else "points"
        be.add("main", scene.geom, kind)
        if nodes and scene.lines is not None:
            be.add("nodes", scene.lines, "lines")
        be.setup(framing, ps, bg)
        if frames_dir is not None:
            frames_dir = Path(frames_dir)
            frames_dir.mkdir(parents=True, exist_ok=True)
        if video is not None:
            video = Path(video)
            video.parent.mkdir(parents=True, exist_ok=True)
            if video.suffix.lower() != ".gif":
                writer = iio.get_writer(str(video), fps=out_fps, codec="libx264", quality=8,
                                        macro_block_size=1, ffmpeg_log_level="error")
        t0 = time.perf_counter()
        for i in range(seq.count):
            scene.set_frame(i)
            be.update("main", scene.geom, kind)
            if nodes and scene.lines is not None:
                be.update("nodes", scene.lines, "lines")
            img = be.render()
            if frames_dir is not None:
                p = frames_dir / f"frame_{i:04d}.png"
                iio.imwrite(p, img)
                files.append(p)
            if writer is not None:
                writer.append_data(img)
            elif video is not None:
                gif_frames.append(img)
            if on_frame is not None:
                on_frame(i, img)
            if progress is not None:
                progress(i + 1, seq.count)
        seconds = time.perf_counter() - t0
        if gif_frames:
            import imageio.v3 as iio3
            iio3.imwrite(video, np.stack(gif_frames), duration=1000.0 / out_fps, loop=0)
    finally:
        if writer is not None:
            writer.close()
        be.close()
    if video is not None:
        files.append(Path(video))
    return RenderStats(be.name, seq.count, seconds, files)


# ---------------------------------------------------------------------------------------------------------
# interactive player
# ---------------------------------------------------------------------------------------------------------
KEY_HELP = """keys: space play/pause | <- -> step | + - speed | L loop | N node graph | G glyphs/points |
      P screenshot | R reset view | [ ] point size | H help | Esc/Q quit"""

# GLFW key codes
_K = {"space": 32, "left": 263, "right": 262, "equal": 61, "kp_add": 334, "minus": 45, "kp_sub": 333,
      "L": 76, "N": 78, "P": 80, "R": 82, "H": 72, "G": 71, "Q": 81, "lbracket": 91, "rbracket": 93}


class Player:
    """Interactive real-time playback in an Open3D window (legacy VisualizerWithKeyCallback)."""

    def __init__(self, seq: LoadedSequence, size: tuple[int, int] = (1280, 800), point_size: float | None = None,
                 glyphs: bool = False, background=None, loop: bool = True, speed: float = 1.0,
                 screenshot_dir: str | os.PathLike = ".", up=(0, 0, 1), verbose: bool = True):
        self.seq = seq
        self.size = (int(size[0]), int(size[1]))
        self.state = PlaybackState(seq.count, seq.fps, loop=loop, speed=speed)
        self.point_size = point_size
        self.want_glyphs = glyphs
        self.background = background if background is not None else seq.background
        self.screenshot_dir = Path(screenshot_dir)
        self.up = up
        self.verbose = verbose
        self.show_nodes = False
        self.shots = 0
        self.frames_shown = 0
        self._shown = -1
        self._status = ""

    # -- helpers ------------------------------------------------------------------------------------
    def _say(self, msg: str, newline: bool = False) -> None:
        if self.verbose:
            sys.stdout.write(("\r" + msg.ljust(len(self._status))) + ("\n" if newline else ""))
            sys.stdout.flush()
            self._status = "" if newline else msg

    def _framing(self) -> Framing:
        w, h = self.size
        try:
            p = self.vis.get_view_control().convert_to_pinhole_camera_parameters()
            w, h = p.intrinsic.width, p.intrinsic.height
        except Exception:  # noqa: BLE001
            pass
        return frame_bbox(self.seq.bbox, w, h, up=self.up)

    def _show(self, i: int) -> None:
        self.scene.set_frame(i)
        self.vis.update_geometry(self.scene.geom)
        if self.show_nodes and self.scene.lines is not None:
            self.vis.update_geometry(self.scene.lines)
        self._shown = i
        self.frames_shown += 1

    # -- key handlers (return True: redraw) -------------------------------------------------------
    def _toggle(self, vis) -> bool:
        self.state.toggle()
        self._say(self.state.describe(self.seq.times))
        return False

    def _step(self, d: int) -> bool:
        self._show(self.state.step(d))
        self._say(self.state.describe(self.seq.times))
        return True

    def _speed(self, faster: bool) -> bool:
        self.state.faster() if faster else self.state.slower()
        self._say(self.state.describe(self.seq.times))
        return False

    def _loop(self, vis) -> bool:
        self.state.toggle_loop()
        self._say(self.state.describe(self.seq.times))
        return False

    def _nodes(self, vis) -> bool:
        if self.scene.lines is None:
            self._say("no node graph in this sequence (nodes_*.ply)", newline=True)
            return False
        self.show_nodes = not self.show_nodes
        if self.show_nodes:
            self.scene.set_frame(self.state.frame)
            vis.add_geometry(self.scene.lines, reset_bounding_box=False)
        else:
            vis.remove_geometry(self.scene.lines, reset_bounding_box=False)
        return True

    def _glyphs(self, vis) -> bool:
        if not self.seq.has_glyphs:
            self._say("glyphs unavailable (start with --glyphs; Gaussian frames with <= "
                      f"{MAX_GLYPHS} Gaussians)", newline=True)
            return False
        vis.remove_geometry(self.scene.geom, reset_bounding_box=False)
        lines = self.scene.lines
        self.scene = _Scene(self.o3d, self.seq, not self.scene.glyphs)
        self.scene.lines = lines if lines is not None else self.scene.lines
        self.scene.set_frame(self.state.frame)
        vis.add_geometry(self.scene.geom, reset_bounding_box=False)
        return True

    def _screenshot(self, vis) -> bool:
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        name = self.seq.path.name if self.seq.path.is_dir() else self.seq.path.stem
        while True:
            self.shots += 1
            p = self.screenshot_dir / f"{name}_frame{self.state.frame:04d}_{self.shots:02d}.png"
            if not p.exists():
                break
        vis.capture_screen_image(str(p), do_render=True)
        self._say(f"screenshot: {p}", newline=True)
        return False

    def _reset(self, vis) -> bool:
        set_legacy_camera(self.o3d, vis, self._framing())
        return True

    def _point_size(self, factor: float) -> bool:
        ro = self.vis.get_render_option()
        ro.point_size = float(np.clip(ro.point_size * factor, 1.0, 25.0))
        return True

    def _help(self, vis) -> bool:
        self._say(KEY_HELP, newline=True)
        return False

    def _quit(self, vis) -> bool:
        self._closing = True
        vis.close()
        return False

    # -- main loop --------------------------------------------------------------------------------
    def run(self, duration: float | None = None, on_tick: Callable[["Player", float], None] | None = None) -> int:
        """Open the window and play until it is closed (or for `duration` seconds). Returns frames shown.
        `on_tick(player, elapsed_seconds)` is called once per loop iteration (scripting, tests)."""
        if not _has_display() and duration is None:
            raise OffscreenUnavailable("no display ($DISPLAY is not set): use --video/--frames for headless "
                                       "rendering, or run under `xvfb-run -a` / with X forwarding")
        self.o3d = o3d = _o3d()
        _ensure_runtime_dir()
        vis = self.vis = o3d.visualization.VisualizerWithKeyCallback()
        title = f"dyngauss: {self.seq.path.name} ({self.seq.count} frames, {self.seq.num_points} points)"
        if not vis.create_window(window_name=title, width=self.size[0], height=self.size[1]):
            raise OffscreenUnavailable("could not open an Open3D window")
        self._closing = False
        try:
            self.scene = _Scene(o3d, self.seq, self.want_glyphs)
            vis.add_geometry(self.scene.geom)
            framing = self._framing()
            ro = vis.get_render_option()
            ro.point_size = float(self.point_size or auto_point_size(self.seq, framing))
            ro.background_color = np.asarray(self.background, np.float64)
            ro.mesh_show_back_face = True
            set_legacy_camera(o3d, vis, framing)
            reg = vis.register_key_callback
            reg(_K["space"], self._toggle)
            reg(_K["right"], lambda v: self._step(+1))
            reg(_K["left"], lambda v: self._step(-1))
            for k in ("equal", "kp_add"):
                reg(_K[k], lambda v: self._speed(True))
            for k in ("minus", "kp_sub"):
                reg(_K[k], lambda v: self._speed(False))
            reg(_K["L"], self._loop)
            reg(_K["N"], self._nodes)
            reg(_K["G"], self._glyphs)
            reg(_K["P"], self._screenshot)
            reg(_K["R"], self._reset)
            reg(_K["H"], self._help)
            reg(_K["Q"], self._quit)
            reg(_K["rbracket"], lambda v: self._point_size(1.25))
            reg(_K["lbracket"], lambda v: self._point_size(0.8))
            self._say(KEY_HELP, newline=True)
            frame_dt = 1.0 / self.seq.fps
            start = last = time.perf_counter()
            while not self._closing:
                if not vis.poll_events():
                    break
                now = time.perf_counter()
                i = self.state.tick(now - last)
                last = now
                if i != self._shown:
                    self._show(i)
                    vis.update_renderer()
                    if i == 0 or i % 10 == 0 or not self.state.playing:
                        self._say(self.state.describe(self.seq.times))
                else:
                    time.sleep(min(0.004, frame_dt / 4))
                if on_tick is not None:
                    on_tick(self, now - start)
                if duration is not None and now - start >= duration:
                    break
        finally:
            vis.destroy_window()
            self._say("", newline=True) if self._status else None
        return self.frames_shown

"""The interactive player: real-time playback in an Open3D window (legacy VisualizerWithKeyCallback).

Plays at the sequence's fps (frames are skipped when drawing is slower). Keys: space play/pause, left/right
step, +/- speed, L loop, N node graph, G glyphs/points, P screenshot, R reset view, [ ] point size, H help,
Esc/Q quit.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .backends import set_legacy_camera
from .framing import Framing, auto_point_size, frame_bbox
from .playback import PlaybackState
from .runtime import OffscreenUnavailable, ensure_runtime_dir, has_display, import_open3d
from .scene import SceneGeometry
from .sequence import MAX_GLYPHS, LoadedSequence

KEY_HELP = """keys: space play/pause | <- -> step | + - speed | L loop | N node graph | G glyphs/points |
      P screenshot | R reset view | [ ] point size | H help | Esc/Q quit"""

# GLFW key codes
_K = {"space": 32, "left": 263, "right": 262, "equal": 61, "kp_add": 334, "minus": 45, "kp_sub": 333,
      "L": 76, "N": 78, "P": 80, "R": 82, "H": 72, "G": 71, "Q": 81, "lbracket": 91, "rbracket": 93}


class Player:
    """Interactive real-time playback of `seq` in an Open3D window of `size` (W, H) pixels.

    `point_size` pixels (default :func:`auto_point_size`); `glyphs` starts with ellipsoids (G toggles);
    `background` RGB in [0,1] (default the sequence's); `loop`, `speed` the initial playback settings;
    `screenshot_dir` where P saves PNGs; `up` the world up axis of the framing camera; `verbose` prints the
    status line. The key handlers (``_toggle``, ``_step``, ...) return True when the view must be redrawn."""

    def __init__(self, seq: LoadedSequence, size: tuple[int, int] = (1280, 800), point_size: float | None = None,
                 glyphs: bool = False, background: Sequence[float] | None = None, loop: bool = True,
                 speed: float = 1.0, screenshot_dir: str | os.PathLike = ".", up: Sequence[float] = (0, 0, 1),
                 verbose: bool = True):
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
        self.scene = SceneGeometry(self.o3d, self.seq, not self.scene.glyphs)
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

    def _bind_keys(self, vis) -> None:
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

    # -- main loop --------------------------------------------------------------------------------
    def run(self, duration: float | None = None, on_tick: Callable[["Player", float], None] | None = None) -> int:
        """Open the window and play until it is closed (or for `duration` seconds). Returns frames shown.
        `on_tick(player, elapsed_seconds)` is called once per loop iteration (scripting, tests). Raises
        OffscreenUnavailable without a display (unless `duration` is given: then Open3D may render headless
        through EGL) or when the window cannot be opened."""
        if not has_display() and duration is None:
            raise OffscreenUnavailable("no display ($DISPLAY is not set): use --video/--frames for headless "
                                       "rendering, or run under `xvfb-run -a` / with X forwarding")
        self.o3d = o3d = import_open3d()
        ensure_runtime_dir()
        vis = self.vis = o3d.visualization.VisualizerWithKeyCallback()
        title = f"dyngauss: {self.seq.path.name} ({self.seq.count} frames, {self.seq.num_points} points)"
        if not vis.create_window(window_name=title, width=self.size[0], height=self.size[1]):
            raise OffscreenUnavailable("could not open an Open3D window")
        self._closing = False
        try:
            self.scene = SceneGeometry(o3d, self.seq, self.want_glyphs)
            vis.add_geometry(self.scene.geom)
            framing = self._framing()
            ro = vis.get_render_option()
            ro.point_size = float(self.point_size or auto_point_size(self.seq, framing))
            ro.background_color = np.asarray(self.background, np.float64)
            ro.mesh_show_back_face = True
            set_legacy_camera(o3d, vis, framing)
            self._bind_keys(vis)
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

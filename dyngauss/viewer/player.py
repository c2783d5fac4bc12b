"""The interactive player: real-time playback in an Open3D window (legacy VisualizerWithKeyCallback).

Plays at the sequence's fps (frames are skipped when drawing is slower). Keys: space play/pause, left/right
step, +/- speed, L loop, N node graph, G glyphs/points, P screenshot, R reset view, [ ] point size, H help,
Esc/Q quit.

Splat view (``splats=`` a :class:`~dyngauss.viewer.splats.SplatRenderer`, `dyngauss play --splats`): the window
shows an Open3D Image geometry holding the rasterized Gaussians, re-rendered whenever the frame or the view
control's camera changes (the mouse still orbits, pans and zooms the view control). G then switches between
splats and points, [ ] scale the Gaussians, N draws the node graph into the image; the other keys are unchanged.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .backends import set_legacy_camera
from .framing import Framing, auto_point_size, frame_bbox
from .playback import PlaybackState
from .runtime import OffscreenUnavailable, ensure_runtime_dir, has_display, import_open3d
from .scene import SceneGeometry
from .sequence import MAX_GLYPHS, LoadedSequence

if TYPE_CHECKING:
    from .splats import SplatRenderer

KEY_HELP = """keys: space play/pause | <- -> step | + - speed | L loop | N node graph | G glyphs/points |
      P screenshot | R reset view | [ ] point size | H help | Esc/Q quit"""
SPLAT_KEY_HELP = """keys: space play/pause | <- -> step | + - speed | L loop | N node graph | G splats/points |
      P screenshot | R reset view | [ ] splat / point size | H help | Esc/Q quit"""

# GLFW key codes
_K = {"space": 32, "left": 263, "right": 262, "equal": 61, "kp_add": 334, "minus": 45, "kp_sub": 333,
      "L": 76, "N": 78, "P": 80, "R": 82, "H": 72, "G": 71, "Q": 81, "lbracket": 91, "rbracket": 93}


class Player:
    """Interactive real-time playback of `seq` in an Open3D window of `size` (W, H) pixels.

    `point_size` pixels (default :func:`auto_point_size`); `glyphs` starts with ellipsoids (G toggles);
    `background` RGB in [0,1] (default the sequence's); `loop`, `speed` the initial playback settings;
    `screenshot_dir` where P saves PNGs; `up` the world up axis of the framing camera; `verbose` prints the
    status line; `splats` shows the rasterized Gaussians (see the module doc). The key handlers (``_toggle``,
    ``_step``, ...) return True when the view must be redrawn."""

    def __init__(self, seq: LoadedSequence, size: tuple[int, int] = (1280, 800), point_size: float | None = None,
                 glyphs: bool = False, background: Sequence[float] | None = None, loop: bool = True,
                 speed: float = 1.0, screenshot_dir: str | os.PathLike = ".", up: Sequence[float] = (0, 0, 1),
                 verbose: bool = True, splats: "SplatRenderer | None" = None):
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
        self.splats = splats
        self.show_splats = splats is not None
        self.splat_renders = 0
        self._image = None  # the Open3D Image geometry of the splat view
        self._splat_key: tuple | None = None  # what the image shows: (frame, camera, scale, nodes)

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
        if self.show_splats:
            self._refresh_splats(frame=i)
        else:
            self.scene.set_frame(i)
            self.vis.update_geometry(self.scene.geom)
            if self.show_nodes and self.scene.lines is not None:
                self.vis.update_geometry(self.scene.lines)
        self._shown = i
        self.frames_shown += 1

    # -- splat view -------------------------------------------------------------------------------
    def _refresh_splats(self, frame: int | None = None) -> bool:
        """Re-render the splat image when the frame, the view control's camera, the splat scale or the node
        overlay changed since the last render; returns whether it did."""
        from .splats import camera_from_o3d

        i = self.state.frame if frame is None else frame
        p = self.vis.get_view_control().convert_to_pinhole_camera_parameters()
        K, E = np.asarray(p.intrinsic.intrinsic_matrix), np.asarray(p.extrinsic)
        w, h = int(p.intrinsic.width), int(p.intrinsic.height)
        key = (i, w, h, K.tobytes(), E.tobytes(), self.splats.scale, self.show_nodes)
        if key == self._splat_key:
            return False
        img = self.splats.render(i, camera_from_o3d(K, E, w, h), nodes=self.show_nodes)
        self.splat_renders += 1
        if self._image is not None and np.asarray(self._image).shape == img.shape:
            np.asarray(self._image)[...] = img
            self.vis.update_geometry(self._image)
        else:  # first image, or the window was resized
            if self._image is not None:
                self.vis.remove_geometry(self._image, reset_bounding_box=False)
            self._image = self.o3d.geometry.Image(np.ascontiguousarray(img))
            self.vis.add_geometry(self._image, reset_bounding_box=False)
        self._splat_key = key
        return True

    def _set_splat_view(self, vis, on: bool) -> None:
        """Swap the 3D geometries (points/glyphs, node lines) for the splat image, or back."""
        geoms = [self.scene.geom] + ([self.scene.lines] if self.show_nodes and self.scene.lines is not None else [])
        if on:
            for g in geoms:
                vis.remove_geometry(g, reset_bounding_box=False)
            self.show_splats = True
            self._splat_key = None
            self._refresh_splats()
        else:
            if self._image is not None:
                vis.remove_geometry(self._image, reset_bounding_box=False)
                self._image = None
            self.show_splats = False
            self.scene.set_frame(self.state.frame)
            for g in geoms:
                vis.add_geometry(g, reset_bounding_box=False)

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
        if self.show_splats:
            self._refresh_splats()  # the overlay is drawn into the splat image
        elif self.show_nodes:
            self.scene.set_frame(self.state.frame)
            vis.add_geometry(self.scene.lines, reset_bounding_box=False)
        else:
            vis.remove_geometry(self.scene.lines, reset_bounding_box=False)
        return True

    def _glyphs(self, vis) -> bool:
        if self.splats is not None:  # splat view: G switches between splats and points/glyphs
            self._set_splat_view(vis, not self.show_splats)
            self._say(f"showing {'splats (' + self.splats.name + ')' if self.show_splats else 'points'}",
                      newline=True)
            return True
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
        if self.show_splats:
            from .splats import splat_scale_step

            self.splats.scale = splat_scale_step(self.splats.scale, factor)
            self._say(f"splat scale {self.splats.scale:.3g}x", newline=True)
            return True
        ro = self.vis.get_render_option()
        ro.point_size = float(np.clip(ro.point_size * factor, 1.0, 25.0))
        return True

    def _help(self, vis) -> bool:
        self._say(SPLAT_KEY_HELP if self.splats is not None else KEY_HELP, newline=True)
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
        what = f"splats, {self.splats.name}" if self.splats is not None else "points"
        title = f"dyngauss: {self.seq.path.name} ({self.seq.count} frames, {self.seq.num_points} {what})"
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
            if self.show_splats:  # the points set the view control's bounding box, then make way for the image
                self._set_splat_view(vis, True)
            self._bind_keys(vis)
            self._say(SPLAT_KEY_HELP if self.splats is not None else KEY_HELP, newline=True)
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
                elif self.show_splats and self._refresh_splats():  # the mouse moved the camera
                    vis.update_renderer()
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

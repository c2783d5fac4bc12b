"""The web viewer: a viser server that shows a dynamic Gaussian scene in a browser, with a time slider.

Open ``http://HOST:PORT`` in a browser. The Gaussians are drawn by viser's client-side Gaussian-splat renderer
(the browser's GPU sorts and blends them; camera moves never wait on the server); the server sends the posed
Gaussians once per shown time step (32 bytes per Gaussian: 581 kB for 18.8k). Server-side rendering streamed as
images (nerfview style) was measured and not chosen: on a 2-core CPU server our rasterizer takes 50-100 ms per
640x480 view of 18.8k Gaussians (110-250 ms at 1920x1080), every camera move would wait for one, and during a
live training that time would come out of training (numbers: docs/viewer.md).

Controls (the panel on the right): the time slider, play/pause, speed, loop; the training cameras as frustums
(a click flies the view to that camera and moves the slider to its time; "Test view" flies to the first test
camera); the node graph of a node field; motion trails (the 3D tracks) of picked Gaussians (the ones that move
most, or Shift+drag a box); "Export this time" writes the Gaussians at the slider's time as a 3DGS PLY (also
offered as a download).

Threads: viser runs its own server thread; one worker thread (daemon) advances the playback clock and sends
frames, always the newest requested time (requests in between are skipped, never queued). Data comes from a
:class:`dyngauss.viewer.web_source.Source`.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np

from .web_cameras import ViewCamera, scene_up
from .web_clock import SPEEDS, PlaybackClock
from .web_frame import SplatFrame
from .web_overlays import edge_segments, most_moving, select_in_rect, trail_segments
from .web_source import Source, sample_times

TRAIN_RGB = (70, 110, 200)
TEST_RGB = (240, 130, 20)
NODE_RGB = (230, 60, 40)
SELECTED_RGB = (255, 0, 200)
MIN_OPACITY = 1.0 / 255.0        # Gaussians below this are not sent
TRAIL_CANDIDATES = 3000          # "most moving" ranks this many random visible Gaussians
TRAIL_REFRESH_S = 5.0            # trails follow a changing source (live training) at most this often


class WebViewer:
    """Serve `source` on http://host:port (port 0: any free port; a busy port: the next free one).

    Args:
        source: what to show (:class:`~dyngauss.viewer.web_source.ModelSource` / ``SequenceSource``).
        host / port: where to listen (127.0.0.1: this machine only; forward the port over ssh, or use 0.0.0.0).
        start_time: the initial time (default: the start of the source's range).
        export_dir: where "Export this time" writes PLYs (default: ./dyngauss_view_exports).
        trail_count: how many Gaussians "Pick the most moving" selects.
        zoom: the initial view's distance to the scene as a multiple of the start camera's (the first test
            camera, else the first camera; > 1 moves back).
        verbose: let viser print its banner.

    The server starts at once; :meth:`close` stops it. Thread-safe: :meth:`set_time`, :meth:`play`,
    :meth:`pause` and :meth:`wait_shown` may be called from any thread.
    """

    def __init__(self, source: Source, host: str = "127.0.0.1", port: int = 8080, *, start_time: float | None = None,
                 export_dir: str | Path | None = None, trail_count: int = 48, zoom: float = 1.0,
                 verbose: bool = False):
        import viser

        self.source = source
        self.export_dir = Path(export_dir) if export_dir is not None else Path("dyngauss_view_exports")
        self._verbose = verbose
        with self._quiet():  # viser prints a banner box; the callers print the URL in their own words
            self.server = viser.ViserServer(host=host, port=port, label=f"dyngauss: {source.label}",
                                            verbose=verbose)
        lo, hi = source.time_range
        frames = max(len(source.key_times), 2)
        self.clock = PlaybackClock(lo, hi, duration_s=max(frames / max(source.fps, 1e-3), 1.0),
                                   t=lo if start_time is None else start_time)
        self._cond = threading.Condition()
        self._closed = False
        self.frames_sent = 0
        self.shown: tuple[float, int] | None = None   # (time, source revision) of the last frame sent
        self.last_error: str | None = None
        self._splats = None
        self._frame: SplatFrame | None = None
        self._trail_rows = np.zeros(0, np.int64)
        self._trail_key: tuple | None = None
        self._trail_count = int(trail_count)
        self._zoom = float(zoom)
        self._extent = 1.0
        self._trail_paths = self._trail_now = self._node_points = self._node_edges = None
        try:
            self._setup_scene()
            self._build_gui()
        except BaseException:
            with self._quiet():
                self.server.stop()
            raise
        self._thread = threading.Thread(target=self._run, name="dyngauss-web-viewer", daemon=True)
        self._thread.start()

    # ---- public --------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        host = self.server.get_host()
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{self.port}"

    @property
    def time(self) -> float:
        with self._cond:
            return self.clock.t

    def set_time(self, t: float) -> float:
        """Show time t (clamped to the range); returns the time set."""
        with self._cond:
            t = self.clock.seek(t)
            self._cond.notify_all()
        self._slider.value = t
        return t

    def play(self) -> None:
        with self._cond:
            self.clock.play()
            self._cond.notify_all()
        self._play_button.label = "Pause"

    def pause(self) -> None:
        with self._cond:
            self.clock.pause()
            self._cond.notify_all()
        self._play_button.label = "Play"

    def refresh(self) -> None:
        """Wake the worker (e.g. after the source changed)."""
        with self._cond:
            self._cond.notify_all()

    def wait_shown(self, t: float | None = None, revision: int | None = None, timeout: float = 30.0) -> bool:
        """Block until a frame at time t (default: any) of at least `revision` has been sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                s = self.shown
                if s is not None and (t is None or abs(s[0] - t) < 1e-9) and (revision is None or s[1] >= revision):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))

    def show_nodes(self, on: bool = True) -> None:
        """Show (or hide) the node-graph overlay (node fields only)."""
        self._show_nodes.value = bool(on) and self.source.has_nodes
        self._invalidate()

    def client_count(self) -> int:
        return len(self.server.get_clients())

    def export_now(self, client=None) -> Path:
        """Write the Gaussians at the current time to ``export_dir`` as a PLY; returns the path. With a
        `client`, the file is also sent to that browser as a download."""
        t = self.time
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.source.label).strip("_") or "scene"
        path = self.export_dir / f"{label}_t{t:.4f}.ply"
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.source.export_ply(t, path)
        if client is not None:
            client.send_file_download(path.name, path.read_bytes())
            client.add_notification("Exported", f"time {t:.4f} -> {path.resolve()}", auto_close_seconds=8.0)
        return path

    def close(self) -> None:
        """Stop the worker and the server (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        with self._quiet():
            self.server.stop()

    def _quiet(self):
        """Context: stdout swallowed unless verbose (viser's banner and "Server stopped" lines)."""
        import contextlib
        import io

        return contextlib.nullcontext() if self._verbose else contextlib.redirect_stdout(io.StringIO())

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl+C), then close."""
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.close()

    # ---- scene setup ---------------------------------------------------------------------------------
    def _setup_scene(self) -> None:
        src, scene = self.source, self.server.scene
        try:
            lo, hi = src.bounds()
        except LookupError:  # a live source before its first model
            lo, hi = -np.ones(3), np.ones(3)
        center = (np.asarray(lo) + np.asarray(hi)) / 2
        self._center = center
        self._extent = float(max(np.linalg.norm(np.asarray(hi) - np.asarray(lo)), 1e-6))
        up = scene_up(src.cameras)
        if up is not None:
            scene.set_up_direction(up)
        bg = np.asarray(src.background, np.float64)
        if not np.allclose(bg, 1.0):
            scene.set_background_image(np.full((4, 4, 3), np.rint(bg * 255), np.uint8), format="png")
        self._frustums = []
        for i, cam in enumerate(src.cameras):
            h = scene.add_camera_frustum(
                f"/cameras/{cam.split}/{i:04d}", fov=cam.fov_y, aspect=cam.aspect, scale=0.06 * self._extent,
                thickness=0.003 * self._extent, color=TEST_RGB if cam.split != "train" else TRAIN_RGB,
                image=cam.thumbnail, wxyz=cam.wxyz, position=cam.position)
            h.on_click(self._on_frustum_click(cam))
            self._frustums.append(h)
        start = next((c for c in src.cameras if c.split != "train"), src.cameras[0] if src.cameras else None)
        ic = self.server.initial_camera
        self._hidden_frustum: int | None = None
        if start is not None:
            self._hide_frustum(src.cameras.index(start))
            look = start.position + start.forward * self._look_distance(start)
            ic.position = look - start.forward * self._look_distance(start) * self._zoom
            ic.look_at = look
            ic.up = start.up
            ic.fov = start.fov_y
        else:
            d = np.array([1.0, -1.0, 0.6])  # no cameras: from the front-right, above, the bounds filling the view
            ic.position = center + d / np.linalg.norm(d) * 1.5 * self._extent * self._zoom
            ic.look_at = center
        scene.on_rect_select(modifier="shift")(self._on_rect_select)

    def _look_distance(self, cam: ViewCamera) -> float:
        d = float(np.dot(self._center - cam.position, cam.forward))
        return d if d > 1e-6 else self._extent

    def _on_frustum_click(self, cam: ViewCamera):
        def callback(event) -> None:
            self.fly_to(event.client, cam)
        return callback

    def _hide_frustum(self, index: int | None) -> None:
        """Hide the frustum of the camera the view is at (its thumbnail would fill the view); show the one
        hidden before."""
        show = bool(getattr(self, "_show_cams", None) is None or self._show_cams.value)
        if self._hidden_frustum is not None:
            self._frustums[self._hidden_frustum].visible = show
        self._hidden_frustum = index
        if index is not None:
            self._frustums[index].visible = False

    def fly_to(self, client, cam: ViewCamera) -> None:
        """Move a browser's view to camera `cam` and the slider to its time (when it has one); that camera's
        frustum is hidden while the view is there."""
        idx = next((i for i, c in enumerate(self.source.cameras) if c is cam), None)
        self._hide_frustum(idx)
        with client.atomic():
            client.camera.fov = cam.fov_y
            client.camera.position = cam.position
            client.camera.look_at = cam.position + cam.forward * self._look_distance(cam)
            client.camera.up_direction = cam.up
        if cam.time is not None:
            self.set_time(cam.time)

    # ---- GUI -----------------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        gui, src = self.server.gui, self.source
        gui.configure_theme(control_width="medium", show_share_button=False)
        self._info = gui.add_markdown(self._info_text())
        lo, hi = src.time_range
        with gui.add_folder("Time"):
            self._slider = gui.add_slider("time", min=lo, max=hi, step=(hi - lo) / 1000.0, initial_value=self.clock.t)
            self._play_button = gui.add_button("Play", icon=None)
            self._speed = gui.add_dropdown("speed", tuple(f"{s:g}x" for s in SPEEDS), initial_value="1x")
            self._loop = gui.add_checkbox("loop", initial_value=True)
        with gui.add_folder("Scene"):
            self._show_cams = gui.add_checkbox("cameras", initial_value=bool(src.cameras),
                                               disabled=not src.cameras)
            self._test_view = gui.add_button("Test view", disabled=not any(c.split != "train" for c in src.cameras))
            self._show_nodes = gui.add_checkbox("node graph", initial_value=False, disabled=not src.has_nodes)
            self._export = gui.add_button("Export this time (PLY)")
        with gui.add_folder("Trails"):
            self._show_trails = gui.add_checkbox("show trails", initial_value=True)
            self._pick = gui.add_button("Pick the most moving")
            self._clear = gui.add_button("Clear")
            gui.add_markdown("Shift+drag a box: trails of the Gaussians in it.")

        @self._slider.on_update
        def _(event) -> None:
            if event.client is None:  # set from Python (playback): already in the clock
                return
            with self._cond:
                self.clock.seek(self._slider.value)
                self._cond.notify_all()

        @self._play_button.on_click
        def _(_) -> None:
            self.pause() if self.clock.playing else self.play()

        @self._speed.on_update
        def _(_) -> None:
            with self._cond:
                self.clock.speed = float(self._speed.value.rstrip("x"))

        @self._loop.on_update
        def _(_) -> None:
            with self._cond:
                self.clock.loop = bool(self._loop.value)

        @self._show_cams.on_update
        def _(_) -> None:
            for i, h in enumerate(self._frustums):
                h.visible = bool(self._show_cams.value) and i != self._hidden_frustum

        @self._test_view.on_click
        def _(event) -> None:
            cam = next((c for c in self.source.cameras if c.split != "train"), None)
            if cam is not None and event.client is not None:
                self.fly_to(event.client, cam)

        @self._show_nodes.on_update
        def _(_) -> None:
            self._invalidate()

        @self._export.on_click
        def _(event) -> None:
            try:
                self.export_now(event.client)
            except Exception as e:  # a failed export is reported in the browser, the viewer goes on
                if event.client is not None:
                    event.client.add_notification("Export failed", f"{type(e).__name__}: {e}", color="red")

        @self._pick.on_click
        def _(_) -> None:
            self.pick_most_moving(self._trail_count)

        @self._clear.on_click
        def _(_) -> None:
            self.select_rows(np.zeros(0, np.int64))

        @self._show_trails.on_update
        def _(_) -> None:
            self._invalidate(trails=True)

    def _info_text(self, extra: str = "") -> str:
        s = f"**{self.source.label}**  \n{self.source.info}"
        return s + (f"  \n{extra}" if extra else "")

    # ---- trails --------------------------------------------------------------------------------------
    def select_rows(self, rows: np.ndarray) -> None:
        """Show trails for these Gaussian rows (empty: none)."""
        with self._cond:
            self._trail_rows = np.asarray(rows, np.int64)
            self._trail_key = None
            self._cond.notify_all()

    def pick_most_moving(self, count: int) -> np.ndarray:
        """Select the `count` visible Gaussians (of up to TRAIL_CANDIDATES random ones) with the longest tracks."""
        frame = self._frame or self.source.frame(self.time)
        cand = np.flatnonzero(frame.visible(0.1))
        if len(cand) > TRAIL_CANDIDATES:
            cand = np.sort(np.random.default_rng(0).choice(cand, TRAIL_CANDIDATES, replace=False))
        times = sample_times(self.source.key_times, self.source.time_range, 20)
        rows = most_moving(self.source.tracks(cand, times), cand, count)
        self.select_rows(rows)
        return rows

    def _on_rect_select(self, event) -> None:
        frame = self._frame
        cam = event.client.camera
        if frame is None:
            return
        rows = select_in_rect(frame.means, frame.visible(0.1), cam.wxyz, cam.position, cam.fov, cam.aspect,
                              event.screen_min, event.screen_max, max_count=256)
        self.select_rows(rows)

    def _draw_trails(self) -> None:
        if self._trail_paths is not None:
            self._trail_paths.remove()
            self._trail_paths = None
        rows = self._trail_rows
        if len(rows) == 0 or not self._show_trails.value:
            return
        times = sample_times(self.source.key_times, self.source.time_range, 40)
        seg, col = trail_segments(self.source.tracks(rows, times))
        if len(seg):
            self._trail_paths = self.server.scene.add_line_segments("/trails/paths", seg, col, thickness=3.0,
                                                                    thickness_units="screen")

    # ---- the worker ----------------------------------------------------------------------------------
    def _invalidate(self, trails: bool = False) -> None:
        with self._cond:
            self.shown = None
            if trails:
                self._trail_key = None
            self._cond.notify_all()

    def _run(self) -> None:
        last = time.perf_counter()
        while True:
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(1 / 30 if self.clock.playing else 0.25)
                if self._closed:
                    return
                now = time.perf_counter()
                was_playing = self.clock.playing
                t = self.clock.advance(now - last)
                last = now
                stopped = was_playing and not self.clock.playing
                rev = self.source.revision
                due = self.shown is None or self.shown != (t, rev)
                trail_key = (len(self._trail_rows), id(self._trail_rows), bool(self._show_trails.value))
                trails_due = self._trail_key is None or trail_key != self._trail_key[0] or (
                    rev != self._trail_key[1] and len(self._trail_rows)
                    and now - self._trail_key[2] >= TRAIL_REFRESH_S)
            try:
                if was_playing:
                    self._slider.value = t
                if stopped:
                    self._play_button.label = "Play"
                if due:
                    self._draw(t, rev)
                if trails_due:
                    self._trail_key = (trail_key, rev, now)
                    self._draw_trails()
                    self._draw_selected()
            except LookupError as e:  # live viewer before the first model
                self.last_error = str(e)
            except Exception as e:  # keep serving; show what went wrong
                self.last_error = f"{type(e).__name__}: {e}"
                self._info.content = self._info_text(f"error: {self.last_error}")
                time.sleep(0.5)

    def _draw(self, t: float, rev: int) -> None:
        frame = self.source.frame(t)
        keep = frame.visible(MIN_OPACITY)
        shown = frame if keep.all() else frame.subset(keep)
        means, cov, rgb, opa = shown.means, shown.covariances(), shown.rgb, shown.opacities[:, None]
        if self._splats is None:
            self._splats = self.server.scene.add_gaussian_splats("/gaussians", means, cov, rgb, opa)
        else:
            self._splats.set_gaussians(means, cov, rgb, opa)
        self._frame = frame
        self._draw_nodes(t)
        self._draw_selected()
        self._info.content = self._info_text(self._time_text(t))
        with self._cond:
            self.frames_sent += 1
            self.shown = (t, rev)
            self._cond.notify_all()

    def _time_text(self, t: float) -> str:
        kt = self.source.key_times
        if not kt:
            return f"t = {t:.3f}"
        i = int(np.argmin(np.abs(np.asarray(kt) - t)))
        return f"t = {t:.3f} (frame {i + 1} of {len(kt)} at t = {kt[i]:.3f})"

    def _draw_nodes(self, t: float) -> None:
        scene = self.server.scene
        ov = self.source.nodes(t) if self._show_nodes.value and self.source.has_nodes else None
        for name in ("_node_points", "_node_edges"):
            h = getattr(self, name, None)
            if h is not None:
                h.remove()
                setattr(self, name, None)
        if ov is None or len(ov.positions) == 0:
            return
        self._node_points = scene.add_point_cloud("/nodes/points", ov.positions, NODE_RGB,
                                                  point_size=0.006 * self._extent, point_shape="circle")
        if len(ov.edges):
            self._node_edges = scene.add_line_segments("/nodes/edges", edge_segments(ov.positions, ov.edges),
                                                       NODE_RGB, thickness=1.5, thickness_units="screen")

    def _draw_selected(self) -> None:
        if self._trail_now is not None:
            self._trail_now.remove()
            self._trail_now = None
        rows, frame = self._trail_rows, self._frame
        if frame is None or len(rows) == 0 or not self._show_trails.value:
            return
        rows = rows[rows < len(frame)]
        self._trail_now = self.server.scene.add_point_cloud(
            "/trails/now", frame.means[rows], SELECTED_RGB, point_size=0.004 * self._extent, point_shape="circle")

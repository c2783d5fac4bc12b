"""Offscreen GL back-ends for rendering a sequence without a window, behind one small interface.

1. "legacy": ``open3d.visualization.Visualizer(visible=False)``; Open3D >= 0.19 falls back to headless EGL
   (Mesa llvmpipe on CPU) when no X display exists, or uses the X server in ``$DISPLAY`` (e.g. Xvfb).
2. "filament": ``open3d.visualization.rendering.OffscreenRenderer`` (headless Filament; on a CPU-only machine it
   needs a software Vulkan driver: apt ``libvulkan1 mesa-vulkan-drivers``). About 8x slower.

A back-end has ``name``, ``o3d``, ``add(name, geom, kind)``, ``update(name, geom, kind)``, ``remove(name)``,
``setup(framing, point_size, background)``, ``render() -> uint8 [H,W,3]`` and ``close()``; kind is "points",
"mesh" or "lines". :func:`open_offscreen` starts the first one that works. Cameras are OpenCV pinholes
(:class:`~dyngauss.viewer.framing.Framing`), which is what both Open3D paths take.
"""
from __future__ import annotations

import os

import numpy as np

from .framing import Framing
from .probe import IN_PROBE_ENV, probe_offscreen
from .runtime import OffscreenUnavailable, ensure_runtime_dir, import_open3d

__all__ = ["BACKENDS", "FilamentBackend", "LegacyBackend", "open_offscreen", "set_legacy_camera"]


def set_legacy_camera(o3d, vis, framing: Framing) -> bool:
    """Put the pinhole `framing` (K, OpenCV extrinsic, size) on a legacy Visualizer's view control, with wide
    near/far planes. Returns whether Open3D accepted the parameters."""
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


class LegacyBackend:
    """open3d.visualization.Visualizer (hidden window; headless EGL when there is no display)."""

    name = "legacy"

    def __init__(self, width: int, height: int):
        self.o3d = import_open3d("Error")  # hides GLFW's "no platform" warning before the EGL fallback
        ensure_runtime_dir()
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


class FilamentBackend:
    """open3d.visualization.rendering.OffscreenRenderer (headless Filament)."""

    name = "filament"

    def __init__(self, width: int, height: int):
        self.o3d = import_open3d("Error")
        ensure_runtime_dir()
        from open3d.visualization import rendering

        self.rendering = rendering
        if not os.environ.get(IN_PROBE_ENV):
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
    """The first offscreen back-end that starts at `width` x `height` pixels (auto: legacy, then filament).
    Raises ValueError for an unknown name, OffscreenUnavailable (why each failed, what to install) when none
    starts."""
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
        "X server (apt: xvfb; then run the player under `xvfb-run -a`), or install a software Vulkan driver "
        "(apt: libvulkan1 mesa-vulkan-drivers) for the Filament path")

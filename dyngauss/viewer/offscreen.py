"""Rendering a whole sequence without a window: every frame, from the fixed framing camera, into PNGs, a video
(:mod:`dyngauss.io.video`) and/or a callback."""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..io.video import VideoWriter
from .backends import open_offscreen
from .framing import auto_point_size, frame_bbox
from .scene import SceneGeometry
from .sequence import LoadedSequence

if TYPE_CHECKING:
    from .splats import SplatRenderer


@dataclass
class RenderStats:
    """What :func:`render_offscreen` did: back-end name, frames rendered, seconds spent rendering (video
    finishing excluded), files written (PNGs, then the video)."""

    backend: str
    frames: int
    seconds: float
    files: list[Path] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _write_png(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    atomic_write_bytes(path, [iio.imwrite("<bytes>", img, extension=".png")], fsync=False)


def render_offscreen(seq: LoadedSequence, *, video: str | os.PathLike | None = None,
                     frames_dir: str | os.PathLike | None = None, size: tuple[int, int] = (960, 720),
                     fps: float | None = None, point_size: float | None = None, glyphs: bool = False,
                     nodes: bool = False, backend: str = "auto", background: Sequence[float] | None = None,
                     up: Sequence[float] = (0, 0, 1), on_frame: Callable[[int, np.ndarray], None] | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     splats: "SplatRenderer | None" = None) -> RenderStats:
    """Render every frame of `seq` with the fixed bounding-box camera (:func:`frame_bbox`, `up` = world up).

    Outputs: PNGs ``frames_dir/frame_0000.png``..., a video (any :data:`dyngauss.io.video.VIDEO_SUFFIXES`;
    written atomically, at `fps`, default the sequence's), and/or ``on_frame(i, uint8 [H,W,3])``.
    `size` (W, H) pixels (odd sizes are padded by the video writer for ffmpeg formats); `point_size` pixels
    (default :func:`auto_point_size`); `background` RGB in [0,1] (default the sequence's); `glyphs` draws
    ellipsoids when the sequence has them; `nodes` draws the node graph. `backend`: auto | legacy | filament.
    `splats` (a :class:`~dyngauss.viewer.splats.SplatRenderer`): draw the rasterized Gaussians instead, with the
    same camera; no GL context is needed then (`backend`, `point_size`, `glyphs` are unused; the background is
    the renderer's). Raises ValueError (nothing to do, size < 8, bad video path: VideoError) and
    OffscreenUnavailable.
    """
    if video is None and frames_dir is None and on_frame is None:
        raise ValueError("nothing to do: give video, frames_dir or on_frame")
    W, H = int(size[0]), int(size[1])
    if W < 8 or H < 8:
        raise ValueError(f"image size {W}x{H} too small")
    framing = frame_bbox(seq.bbox, W, H, up=up)
    ps = float(point_size) if point_size else auto_point_size(seq, framing)
    bg = background if background is not None else seq.background
    files: list[Path] = []
    with ExitStack() as stack:
        # the writer first: a bad video path fails before the GL context starts; a failure discards its file
        writer = stack.enter_context(VideoWriter(video, float(fps or seq.fps))) if video is not None else None
        if splats is not None:
            draw, name = _splat_drawer(splats, framing, nodes), f"splats:{splats.name}"
        else:
            draw, name = _gl_drawer(stack, seq, framing, W, H, ps, bg, glyphs, nodes, backend)
        if frames_dir is not None:
            frames_dir = Path(frames_dir)
            frames_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for i in range(seq.count):
            img = draw(i)
            if frames_dir is not None:
                files.append(frames_dir / f"frame_{i:04d}.png")
                _write_png(files[-1], img)
            if writer is not None:
                writer.append(img)
            if on_frame is not None:
                on_frame(i, img)
            if progress is not None:
                progress(i + 1, seq.count)
        seconds = time.perf_counter() - t0
    if video is not None:
        files.append(Path(video))
    return RenderStats(name, seq.count, seconds, files)


def _gl_drawer(stack: ExitStack, seq: LoadedSequence, framing, W: int, H: int, ps: float, bg, glyphs: bool,
               nodes: bool, backend: str) -> tuple[Callable[[int], np.ndarray], str]:
    """(draw(i) -> uint8 [H,W,3] through an Open3D offscreen back-end closed by `stack`, the back-end's name)."""
    be = open_offscreen(W, H, backend)
    stack.callback(be.close)
    scene = SceneGeometry(be.o3d, seq, glyphs)
    draw_nodes = nodes and scene.lines is not None
    be.add("main", scene.geom, scene.kind)
    if draw_nodes:
        be.add("nodes", scene.lines, "lines")
    be.setup(framing, ps, bg)

    def draw(i: int) -> np.ndarray:
        scene.set_frame(i)
        be.update("main", scene.geom, scene.kind)
        if draw_nodes:
            be.update("nodes", scene.lines, "lines")
        return be.render()

    return draw, be.name


def _splat_drawer(splats: "SplatRenderer", framing, nodes: bool) -> Callable[[int], np.ndarray]:
    from .splats import camera_from_framing

    cam = camera_from_framing(framing)
    return lambda i: splats.render(i, cam, nodes=nodes)

"""The one video writer: rendered frames -> .mp4/.mkv/.mov/.avi/.webm (ffmpeg) or .gif (Pillow), atomically.

Used by the Open3D player's offscreen renderer (:func:`dyngauss.viewer.render_offscreen`) and by
``dyngauss render`` (rasterized camera paths). Frames are uint8 RGB arrays [H, W, 3], all the same size.

* ffmpeg formats go through ``imageio`` + ``imageio-ffmpeg`` (H.264 ``libx264``, yuv420p, for
  .mp4/.mkv/.mov/.avi; VP9 ``libvpx-vp9`` for .webm). yuv420p needs even sizes: a frame with an odd width or
  height is padded by one replicated edge column/row (33x25 -> 34x26).
* .gif frames are collected and written with Pillow when the writer closes (GIFs are small; Pillow merges
  identical consecutive frames into one longer frame, so a still scene reads back as fewer frames).
* Atomic: frames go to a hidden temporary file next to the destination (``.NAME.XXXX.tmp.mp4``), which is
  renamed over the destination (``os.replace``) only when every frame is written; on an error, or with no
  frame at all, the temporary file is removed and an existing destination is left untouched.

Errors: :class:`VideoError` (a ``ValueError``) naming the file and the cause: an unknown extension, a bad fps,
an unwritable folder, a frame of the wrong shape/dtype/size, no frames, a missing imageio-ffmpeg.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["FFMPEG_CODECS", "VIDEO_SUFFIXES", "VideoError", "VideoWriter", "check_video_path", "write_video"]

# extension -> ffmpeg encoder; .gif is written with Pillow
FFMPEG_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "libx264",
                 ".webm": "libvpx-vp9"}
VIDEO_SUFFIXES = tuple(FFMPEG_CODECS) + (".gif",)


class VideoError(ValueError):
    """A video cannot be written (message names the file and the cause)."""


def check_video_path(path: str | os.PathLike) -> str:
    """The lower-case extension of `path` when it is one of VIDEO_SUFFIXES; raises VideoError otherwise (call it
    before expensive work so a typo fails at once)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise VideoError(f"{path}: unknown video extension {Path(path).suffix!r}; "
                         f"use one of {', '.join(VIDEO_SUFFIXES)}")
    return suffix


class VideoWriter:
    """Streaming, atomic video writer; a context manager.

        with VideoWriter("out.mp4", fps=30) as w:
            for img in frames:          # uint8 [H, W, 3]
                w.append(img)
        # out.mp4 now exists (renamed from its temporary file); w.count frames, w.size = (W, H) as written

    `fps` frames per second (finite, > 0); `quality` imageio's ffmpeg quality 0-10 (ignored for .gif).
    The extension and fps are checked here, before anything is rendered; the temporary file is created by
    :meth:`open` (``__enter__``, or the first :meth:`append`). Leaving the ``with`` block through an exception
    discards the temporary file.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, quality: int = 8):
        self.path = Path(path)
        self.suffix = check_video_path(self.path)
        fps = float(fps)
        if not (math.isfinite(fps) and fps > 0):
            raise VideoError(f"{self.path}: fps must be a positive number, got {fps}")
        self.fps, self.quality = fps, int(quality)
        self.count = 0
        self.size: tuple[int, int] | None = None  # (W, H) of the input frames
        self._tmp: Path | None = None
        self._ffmpeg = None
        self._gif: list[np.ndarray] = []
        self.closed = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def open(self) -> "VideoWriter":
        """Create the destination folder and the temporary file. Raises VideoError when they cannot be."""
        if self.closed:
            raise VideoError(f"{self.path}: the writer is already closed")
        if self._tmp is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{self.suffix}",
                                       dir=self.path.parent)
            os.close(fd)
        except OSError as e:
            raise VideoError(f"{self.path}: cannot write here: {e}") from None
        self._tmp = Path(tmp)
        return self

    def __enter__(self) -> "VideoWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def append(self, frame: np.ndarray) -> None:
        """Add one uint8 RGB frame [H, W, 3] (the same size as the first one)."""
        img = np.asarray(frame)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise VideoError(f"{self.path}: frame {self.count} must be uint8 [H, W, 3], "
                             f"got {img.dtype} {list(img.shape)}")
        h, w = img.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif self.size != (w, h):
            raise VideoError(f"{self.path}: frame {self.count} is {w}x{h}, the first was "
                             f"{self.size[0]}x{self.size[1]}; all frames must have one size")
        self.open()
        if self.suffix == ".gif":
            self._gif.append(img.copy())
        else:
            if h % 2 or w % 2:  # yuv420p: pad to even sizes by edge replication
                img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if self._ffmpeg is None:
                self._ffmpeg = self._open_ffmpeg()
            try:
                self._ffmpeg.append_data(img)
            except Exception as e:  # noqa: BLE001 - ffmpeg's errors are plain RuntimeError/OSError/IOError
                raise VideoError(f"{self.path}: ffmpeg failed on frame {self.count}: {e}") from e
        self.count += 1

    def close(self) -> Path:
        """Finish the file and rename it to :attr:`path`. Raises VideoError when no frame was written."""
        if self.closed:
            raise VideoError(f"{self.path}: the writer is already closed")
        if self.count == 0:
            self.abort()
            raise VideoError(f"{self.path}: no frames to write")
        try:
            if self._ffmpeg is not None:
                w, self._ffmpeg = self._ffmpeg, None
                w.close()
            else:
                import imageio.v3 as iio3

                iio3.imwrite(self._tmp, np.stack(self._gif), plugin="pillow", extension=".gif",
                             duration=1000.0 / self.fps, loop=0)
                self._gif = []
            _fsync(self._tmp)
            os.chmod(self._tmp, 0o644)  # mkstemp made it private; a video is an ordinary output file
            os.replace(self._tmp, self.path)
        except BaseException as e:
            self.abort()
            if isinstance(e, (OSError, RuntimeError)):
                raise VideoError(f"{self.path}: cannot finish the video: {e}") from e
            raise
        self._tmp = None
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written so far (the temporary file); the destination is not touched."""
        if self._ffmpeg is not None:
            try:
                self._ffmpeg.close()
            except Exception:  # noqa: BLE001 - already failing; the temporary file goes anyway
                pass
            self._ffmpeg = None
        self._gif = []
        if self._tmp is not None:
            try:
                self._tmp.unlink()
            except FileNotFoundError:
                pass
            self._tmp = None
        self.closed = True

    # -- helpers ------------------------------------------------------------------------------------
    def _open_ffmpeg(self):
        try:
            import imageio.v2 as iio
            import imageio_ffmpeg  # noqa: F401 - the ffmpeg binary imageio's plugin runs
        except ImportError as e:
            raise VideoError(f"{self.path}: writing {self.suffix} needs imageio and imageio-ffmpeg "
                             f"(pip install imageio imageio-ffmpeg): {e}") from None
        try:
            return iio.get_writer(str(self._tmp), format="FFMPEG", mode="I", fps=self.fps,
                                  codec=FFMPEG_CODECS[self.suffix], quality=self.quality, macro_block_size=1,
                                  ffmpeg_log_level="error")
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"{self.path}: cannot start ffmpeg: {e}") from e


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float, *, quality: int = 8) -> int:
    """Write uint8 RGB frames [H, W, 3] (any iterable, consumed lazily) to `path` atomically; returns the frame
    count. See :class:`VideoWriter` for formats, even-size padding and errors."""
    with VideoWriter(path, fps, quality=quality) as w:
        for img in frames:
            w.append(img)
    return w.count

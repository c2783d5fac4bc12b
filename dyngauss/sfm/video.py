"""Decode an even subsample of a video's frames (imageio-ffmpeg), with their original frame indices.

Frames are decoded by ffmpeg (display rotation of phone videos applied) as RGB uint8; an integer stride is
used so that the kept frames are equally spaced in time: ``--fps F`` keeps every ``round(fps_video / F)``-th
frame, ``--max-frames M`` every ``ceil(N / M)``-th, ``--step K`` every K-th.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import PrepareError

__all__ = ["VideoInfo", "probe_video", "choose_stride", "decode_frames", "resize_frame", "frame_times"]


@dataclass
class VideoInfo:
    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - pinned in requirements.txt
        raise PrepareError("imageio-ffmpeg is required to read videos: pip install imageio-ffmpeg", "video") from e
    # imageio-ffmpeg logs a warning when ffmpeg rotates the frames (phone videos): that is what we want
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    return imageio_ffmpeg


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise PrepareError(f"video not found: {path}", "video")
    if not path.is_file():
        raise PrepareError(f"video path is not a file: {path}", "video")
    if not os.access(path, os.R_OK):
        raise PrepareError(f"video is not readable (permissions): {path}", "video")
    if path.stat().st_size == 0:
        raise PrepareError(f"video file is empty: {path}", "video")
    return path


def _short(err: Exception, n: int = 300) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    # ffmpeg's last lines say what went wrong ("Invalid data found when processing input", ...)
    text = " | ".join(lines[-3:]) if lines else type(err).__name__
    return text if len(text) <= n else "..." + text[-n:]


def _open(path: Path):
    iff = _ffmpeg()
    gen = iff.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(gen)
    except (RuntimeError, OSError, IOError, StopIteration, IndexError, AttributeError, ValueError) as e:
        gen.close()
        raise PrepareError(f"cannot read video {path}: not a video file ffmpeg can decode ({_short(e)})",
                           "video") from None
    return gen, meta


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count (exact: ffmpeg decodes the stream once), frame rate and decoded frame size."""
    path = _check_file(path)
    gen, meta = _open(path)
    gen.close()
    iff = _ffmpeg()
    try:
        n, secs = iff.count_frames_and_secs(str(path))
    except (RuntimeError, OSError) as e:
        raise PrepareError(f"cannot count the frames of {path} ({_short(e)})", "video") from None
    w, h = meta.get("size", (0, 0))
    fps = float(meta.get("fps") or 0.0)
    if not n or w <= 0 or h <= 0:
        raise PrepareError(f"video {path} has no decodable frames", "frames")
    return VideoInfo(path, int(n), fps, int(w), int(h), float(secs or meta.get("duration") or 0.0))


def choose_stride(num_frames: int, fps_video: float, *, fps: float | None = None, max_frames: int | None = None,
                  step: int | None = None) -> int:
    """Integer stride keeping frames equally spaced in time (see the module docstring)."""
    if step is not None:
        if step < 1:
            raise PrepareError(f"--step must be >= 1, got {step}", "args")
        return int(step)
    if fps is not None:
        if not fps > 0:
            raise PrepareError(f"--fps must be positive, got {fps}", "args")
        if not fps_video > 0:
            raise PrepareError("the video does not state its frame rate; use --max-frames or --step instead of --fps",
                               "args")
        return max(1, int(round(fps_video / fps)))
    if max_frames is not None:
        if max_frames < 2:
            raise PrepareError(f"--max-frames must be >= 2, got {max_frames}", "args")
        return max(1, math.ceil(num_frames / max_frames))
    return 1


def resize_frame(img: np.ndarray, width: int, interpolation: str = "area") -> np.ndarray:
    """Resize to ``width`` keeping the aspect ratio (height rounded to an integer)."""
    import cv2

    h, w = img.shape[:2]
    if width == w:
        return img
    height = max(1, int(round(h * width / w)))
    interp = {"area": cv2.INTER_AREA if width < w else cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}[interpolation]
    return cv2.resize(img, (int(width), height), interpolation=interp)


def decode_frames(path: str | os.PathLike, indices, resize: int | None = None,
                  on_frame: Callable[[int, np.ndarray], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (original frame index, RGB uint8 [H,W,3]) for the requested indices (sorted), decoding the video once.

    Stops early after the last requested index. Fewer frames than requested are yielded when the stream is
    shorter than its header said (the caller checks the count).
    """
    path = _check_file(path)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    gen, meta = _open(path)
    w, h = meta["size"]
    nbytes = w * h * 3
    want = iter(wanted)
    nxt = next(want)
    try:
        for i, buf in enumerate(gen):
            if i < nxt:
                continue
            if len(buf) != nbytes:
                raise PrepareError(f"{path}: frame {i} has {len(buf)} bytes, expected {w}x{h}x3", "video")
            img = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            if resize:
                img = resize_frame(img, resize)
            yield i, img
            nxt = next(want, None)
            if nxt is None:
                break
    except RuntimeError as e:
        raise PrepareError(f"error while decoding {path}: {_short(e)}", "video") from None
    finally:
        gen.close()


def frame_times(indices) -> np.ndarray:
    """t in [0, 1] by original frame index, normalised over the kept frames' span."""
    idx = np.asarray(indices, np.float64)
    if len(idx) < 2 or idx[-1] == idx[0]:
        return np.zeros(len(idx))
    return (idx - idx[0]) / (idx[-1] - idx[0])

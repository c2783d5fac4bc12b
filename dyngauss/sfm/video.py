"""Decode a video frame by frame with the frames' real presentation timestamps (PTS), and choose which to keep.

Phones record variable-frame-rate (VFR) video: frame durations vary (1/30 s, then 1/10 s while the phone is busy,
...). A reader that puts frames on a constant-rate grid (ffmpeg's default for image pipes, so imageio-ffmpeg's
``read_frames``) duplicates some frames and drops others, and a time taken from the frame index is wrong. Here
ffmpeg decodes with ``-fps_mode passthrough`` (every decoded frame exactly once, no duplication or dropping) and
the ``showinfo`` filter prints each frame's PTS to stderr, so:

* :func:`probe_video` decodes the stream once (like counting frames) and returns every frame's PTS (seconds,
  relative to the first frame), the frame size after the display rotation, and the header's nominal rate;
* :func:`select_frames` picks the frames to keep on a regular grid of *real* time (``--fps``, ``--max-frames``)
  or every K-th frame (``--step``);
* :func:`decode_frames` decodes again and yields the wanted frames as RGB uint8, matched to the probe by PTS;
* :func:`frame_times` maps PTS of the kept frames to t in [0, 1] over the kept span.

Uses the ffmpeg binary that imageio-ffmpeg ships (or ``IMAGEIO_FFMPEG_EXE``); no ffprobe needed.
"""
from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import PrepareError

__all__ = ["VideoInfo", "probe_video", "select_frames", "decode_frames", "resize_frame", "frame_times"]


@dataclass
class VideoInfo:
    """What :func:`probe_video` found.

    num_frames: decoded frames (each once). times: [num_frames] float64 PTS in seconds relative to the first frame
    (strictly increasing). fps: average rate (num_frames - 1) / duration, 0 for one frame; nominal_fps: the rate
    the header states (may differ for VFR video). width / height: decoded frame size after the display rotation.
    duration: last PTS minus first PTS (s). vfr: frame intervals vary by more than 5 %.
    timestamps: ``"pts"`` or ``"frame_rate"`` (the stream had no PTS: times are index / nominal_fps).
    start: the first frame's PTS (s) in the stream's clock (``times`` are relative to it).
    notes: things worth telling the user (dropped repeated timestamps, a truncated stream, ...).
    """

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nominal_fps: float = 0.0
    vfr: bool = False
    timestamps: str = "pts"
    notes: list[str] = field(default_factory=list)
    start: float = 0.0


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


def _short(err: Exception | str, n: int = 300) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    # ffmpeg's last lines say what went wrong ("Invalid data found when processing input", ...)
    text = " | ".join(lines[-3:]) if lines else (type(err).__name__ if isinstance(err, Exception) else "")
    return text if len(text) <= n else "..." + text[-n:]


def _header(path: Path) -> dict:
    """imageio-ffmpeg's parse of the stream header (fps, size, rotate, ...); PrepareError for a non-video."""
    iff = _ffmpeg()
    gen = iff.read_frames(str(path), pix_fmt="rgb24")
    try:
        return next(gen)
    except (RuntimeError, OSError, IOError, StopIteration, IndexError, AttributeError, ValueError) as e:
        raise PrepareError(f"cannot read video {path}: not a video file ffmpeg can decode ({_short(e)})",
                           "video") from None
    finally:
        gen.close()


# ----------------------------------------------------------------------------------------------- showinfo parsing

_TB = re.compile(r"config in time_base:\s*(\d+)/(\d+)")
_FRAME = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:\s*(\S+).*?\bs:(\d+)x(\d+)")


@dataclass
class _Frame:
    n: int
    pts: float | None  # seconds, None when the frame has no timestamp
    width: int
    height: int


class _ShowinfoLog:
    """Parses ffmpeg's stderr (showinfo lines) into frames; keeps the other lines' tail for error messages."""

    def __init__(self):
        self.frames: list[_Frame] = []
        self.tail: list[str] = []
        self._tb: tuple[int, int] | None = None
        self.done = False
        self.cond = threading.Condition()

    def feed(self, line: str) -> None:
        if "showinfo" in line.lower() or "Parsed_showinfo" in line:
            m = _TB.search(line)
            if m and int(m.group(2)) > 0:
                self._tb = (int(m.group(1)), int(m.group(2)))
                return
            m = _FRAME.search(line)
            if m:
                raw = m.group(2)
                if raw == "NOPTS":
                    t = None
                elif self._tb is not None:
                    t = int(raw) * self._tb[0] / self._tb[1]
                else:
                    t = float(m.group(3))
                with self.cond:
                    self.frames.append(_Frame(int(m.group(1)), t, int(m.group(4)), int(m.group(5))))
                    self.cond.notify_all()
            return
        self.tail.append(line.rstrip())
        del self.tail[:-20]

    def pump(self, stream) -> None:
        try:
            for raw in iter(stream.readline, b""):
                self.feed(raw.decode("utf-8", "replace"))
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_for(self, k: int, timeout: float = 60.0) -> _Frame | None:
        """The k-th frame's entry (waits for the reader thread); None when the stream ended without it."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.frames) > k or self.done, timeout)
            return self.frames[k] if len(self.frames) > k else None


def _sync_args(mode: str) -> list[str]:
    # -fps_mode since ffmpeg 5.1; older builds (a system ffmpeg through IMAGEIO_FFMPEG_EXE) know -vsync
    return ["-fps_mode", "passthrough"] if mode == "fps_mode" else ["-vsync", "passthrough"]


def _cmd(path: Path, sync: str, output: list[str]) -> list[str]:
    exe = _ffmpeg().get_ffmpeg_exe()
    return [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-i", str(path), "-map", "0:v:0",
            "-an", "-sn", "-dn", "-vf", "showinfo", *_sync_args(sync), *output]


def _unknown_option(tail: Sequence[str]) -> bool:
    return any("Unrecognized option" in ln and "fps_mode" in ln for ln in tail)


def _run_probe(path: Path) -> tuple[_ShowinfoLog, int]:
    for sync in ("fps_mode", "vsync"):
        log = _ShowinfoLog()
        try:
            proc = subprocess.run(_cmd(path, sync, ["-f", "null", "-"]), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, check=False)
        except OSError as e:
            raise PrepareError(f"cannot run ffmpeg to read {path}: {e}", "video") from None
        for line in proc.stderr.decode("utf-8", "replace").splitlines():
            log.feed(line)
        if proc.returncode != 0 and not log.frames and _unknown_option(log.tail) and sync == "fps_mode":
            continue
        return log, proc.returncode
    raise AssertionError("unreachable")  # pragma: no cover


# ----------------------------------------------------------------------------------------------- probe

def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Decode the video once and return every frame's PTS and the frame size (see :class:`VideoInfo`).

    Frames whose PTS does not increase (a repeated or out-of-order timestamp: a frame that is never shown on
    its own) are skipped and reported in ``notes``. Raises PrepareError (kind ``video`` or ``frames``)."""
    path = _check_file(path)
    meta = _header(path)
    log, rc = _run_probe(path)
    frames = log.frames
    if not frames:
        why = _short("\n".join(log.tail)) if rc != 0 else "no video frames"
        raise PrepareError(f"video {path} has no decodable frames ({why})", "frames")
    notes: list[str] = []
    if rc != 0:
        notes.append(f"ffmpeg stopped with an error after {len(frames)} frames (the file may be truncated): "
                     f"{_short(chr(10).join(log.tail))}")
    sizes = {(f.width, f.height) for f in frames}
    if len(sizes) > 1:
        raise PrepareError(f"video {path} changes its frame size mid-stream ({sorted(sizes)}); re-encode it to one "
                           "size first (e.g. ffmpeg -i in.mp4 -vf scale=W:H out.mp4)", "video")
    w, h = sizes.pop()
    nominal = float(meta.get("fps") or 0.0)
    if any(f.pts is None for f in frames):
        if not nominal > 0:
            raise PrepareError(f"video {path} has frames without timestamps and no frame rate in its header",
                               "video")
        times = np.arange(len(frames), dtype=np.float64) / nominal
        start, stamps = 0.0, "frame_rate"
        notes.append("the stream has frames without timestamps: times come from the header's frame rate")
    else:
        pts = np.array([f.pts for f in frames], np.float64)
        keep = [0]
        for k in range(1, len(pts)):
            if pts[k] > pts[keep[-1]]:
                keep.append(k)
        if len(keep) < len(pts):
            notes.append(f"{len(pts) - len(keep)} frames repeat or go back in time (same or earlier timestamp "
                         "than the frame before) and are skipped")
        times = pts[keep] - pts[0]
        start, stamps = float(pts[0]), "pts"
    n = len(times)
    duration = float(times[-1] - times[0]) if n > 1 else 0.0
    dts = np.diff(times)
    vfr = bool(n > 2 and dts.max() > 1.05 * dts.min())
    return VideoInfo(path, n, (n - 1) / duration if duration > 0 else 0.0, int(w), int(h), duration,
                     times=times, nominal_fps=nominal, vfr=vfr, timestamps=stamps, notes=notes, start=start)


# ----------------------------------------------------------------------------------------------- selection

def select_frames(times: np.ndarray, *, fps: float | None = None, max_frames: int | None = None,
                  step: int | None = None) -> tuple[list[int], dict]:
    """Indices (into ``times``, increasing, each frame at most once) of the frames to keep, and how they were
    chosen (``{"mode", "interval_s"?, "step"?}``).

    ``step=K``: every K-th frame. ``fps=F``: on the real-time grid t0 + k/F, the frame nearest to each grid time.
    ``max_frames=M``: the same on a grid of ``ceil(N / M)`` median frame intervals (every ``ceil(N/M)``-th
    frame of a constant-rate video), or of span / (M - 1) when that grid would hold more than M times (VFR):
    at most M frames spread over the whole video. None of them: every frame. Where a VFR video has a gap
    longer than the grid step, the nearest frame serves one grid time only (frames are never repeated).
    Raises PrepareError(kind="args") for invalid values."""
    t = np.asarray(times, np.float64)
    n = len(t)
    if step is not None:
        if step < 1:
            raise PrepareError(f"--step must be >= 1, got {step}", "args")
        return list(range(0, n, int(step))), {"mode": "step", "step": int(step)}
    if fps is not None:
        if not (fps > 0 and math.isfinite(fps)):
            raise PrepareError(f"--fps must be positive, got {fps}", "args")
        interval, limit, mode = 1.0 / fps, None, "fps"
    elif max_frames is not None:
        if max_frames < 2:
            raise PrepareError(f"--max-frames must be >= 2, got {max_frames}", "args")
        stride = max(1, math.ceil(n / max_frames))
        if stride == 1:
            return list(range(n)), {"mode": "max_frames", "interval_s": None}
        interval, limit, mode = float(np.median(np.diff(t))) * stride, int(max_frames), "max_frames"
        if math.floor((t[-1] - t[0]) / interval + 1e-6) + 1 > max_frames:
            # VFR: long frames make the span longer than M grid steps; spread the M frames over all of it
            interval = (t[-1] - t[0]) / (max_frames - 1)
    else:
        return list(range(n)), {"mode": "all"}
    if n < 2 or not interval > 0:
        return list(range(n)), {"mode": mode, "interval_s": interval}
    grid = t[0] + interval * np.arange(int(math.floor((t[-1] - t[0]) / interval + 1e-6)) + 1)
    pos = np.clip(np.searchsorted(t, grid), 1, n - 1)
    nearest = np.where(np.abs(t[pos - 1] - grid) <= np.abs(t[pos] - grid), pos - 1, pos)
    kept = sorted(set(int(i) for i in nearest))
    if limit is not None:
        kept = kept[:limit]
    return kept, {"mode": mode, "interval_s": interval}


def frame_times(stamps) -> np.ndarray:
    """t in [0, 1]: timestamps (seconds, or frame indices) normalised over the kept frames' span."""
    s = np.asarray(stamps, np.float64)
    if len(s) < 2 or s[-1] == s[0]:
        return np.zeros(len(s))
    return (s - s[0]) / (s[-1] - s[0])


# ----------------------------------------------------------------------------------------------- decoding

def resize_frame(img: np.ndarray, width: int, interpolation: str = "area") -> np.ndarray:
    """Resize to ``width`` keeping the aspect ratio (height rounded to an integer)."""
    import cv2

    h, w = img.shape[:2]
    if width == w:
        return img
    height = max(1, int(round(h * width / w)))
    interp = {"area": cv2.INTER_AREA if width < w else cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}[interpolation]
    return cv2.resize(img, (int(width), height), interpolation=interp)


def _read_exact(stream, nbytes: int) -> bytes:
    chunks, got = [], 0
    while got < nbytes:
        b = stream.read(nbytes - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _probe_index(info: VideoInfo, entry: _Frame | None, k: int) -> int:
    """The probe's frame index of the k-th frame of a second decoding pass (showinfo entry ``entry``), or -1
    when it is none of the probe's frames (a repeated timestamp the probe skipped)."""
    if info.timestamps != "pts":
        return k if k < info.num_frames else -1
    if entry is None or entry.pts is None:
        return -1
    t = entry.pts - info.start
    j = int(np.searchsorted(info.times, t))
    for c in (j - 1, j):
        if 0 <= c < info.num_frames and abs(info.times[c] - t) <= 1e-9 * max(1.0, abs(t)):
            return c
    return -1


def decode_frames(path: str | os.PathLike, indices, resize: int | None = None,
                  info: VideoInfo | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, RGB uint8 [H,W,3]) for the requested indices into :func:`probe_video`'s frames
    (``info``; probed here when None), in increasing order, decoding the video once more with every frame
    passed through once (no constant-rate grid).

    Frames are matched to the probe by PTS, so a frame the probe skipped (repeated timestamp) never shifts the
    others. Stops after the last requested frame. Fewer frames than requested are yielded when the stream ends
    early (the caller checks the count). Raises PrepareError when ffmpeg cannot run or a frame is cut short."""
    path = _check_file(path)
    info = info or probe_video(path)
    wanted = set(int(i) for i in indices)
    if not wanted:
        return
    if min(wanted) < 0 or max(wanted) >= info.num_frames:
        raise IndexError(f"frame indices must be in [0, {info.num_frames}), got {min(wanted)}..{max(wanted)}")
    w, h = info.width, info.height
    nbytes = w * h * 3
    for sync in ("fps_mode", "vsync"):
        log = _ShowinfoLog()
        try:
            proc = subprocess.Popen(_cmd(path, sync, ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise PrepareError(f"cannot run ffmpeg to read {path}: {e}", "video") from None
        reader = threading.Thread(target=log.pump, args=(proc.stderr,), daemon=True)
        reader.start()
        seen: set[int] = set()
        k = 0
        try:
            while len(seen) < len(wanted):
                buf = _read_exact(proc.stdout, nbytes)
                if len(buf) < nbytes:
                    if buf:
                        raise PrepareError(f"{path}: frame {k} has {len(buf)} bytes, expected {w}x{h}x3", "video")
                    break
                i = _probe_index(info, log.wait_for(k), k)
                k += 1
                if i in wanted and i not in seen:
                    seen.add(i)
                    img = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
                    yield i, resize_frame(img, resize) if resize else img
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
            proc.stderr.close()
        if k == 0 and sync == "fps_mode" and _unknown_option(log.tail):
            continue
        return

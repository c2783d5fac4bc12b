"""Neural 3D Video (DyNeRF) / LLFF-style multi-camera video captures.

A folder holds ``poses_bounds.npy`` and one video per camera (``cam00.mp4``, ``cam01.mp4``, ...; any of
:data:`VIDEO_EXTENSIONS`), the videos synchronised frame by frame at one constant frame rate. Row i of
``poses_bounds.npy`` (N x 17, float) belongs to the i-th video in natural name order (cam2 before cam10), as in
LLFF's ``imgs2poses``: 15 numbers of a 3x5 matrix (row-major) then the scene's near and far depth for that camera.
The 3x5 matrix is [R | c | hwf]: the columns of R are the camera's axes in world coordinates in LLFF's order
[down, right, back] (the camera looks along -back), c its centre, hwf = (image height, width, focal length in
pixels). :func:`llff_to_viewmat` converts to the OpenCV world-to-camera ``Camera.viewmat`` (x right, y down, z
forward: x = right, y = down, z = -back); :func:`viewmat_to_llff` is the inverse. The principal point is the
image centre. When the videos are not hwf's size (e.g. downscaled copies) K is rescaled to them (same aspect ratio
required).

Splits: ``test`` = the cameras named by ``test_camera`` (comma-separated video stems; the convention, and the
default, is ``cam00`` held out), ``train`` = every other camera; ``test_camera=""`` gives ``train`` only.
Frames: every time step of every camera of the split, ordered by time then camera (a
:class:`~dyngauss.data.multiview.MultiViewSplit`); ``time_stride`` keeps every k-th video frame and
``max_frames`` at most that many time steps; t = frame / (frames in the videos - 1) (dyngauss/data/multiview.py).

Decoding (imageio-ffmpeg's ffmpeg): nothing at load time but each video's header and frame count (a stream copy,
no decoding). A frame is decoded with its chunk — :data:`CHUNK_FRAMES` consecutive video frames of one camera —
in one ffmpeg pass that seeks to the chunk's first wanted frame (frame-accurate for constant-rate video: the
seek target is half a frame before it) and stops after its last; frames are area-downscaled and kept as uint8 in
the split's cache (dyngauss/data/frames.py: budget ``data.frame_cache_gb``). Memory for full N3V: see
frames.py; to train today's single-camera trainer (which holds its training split on the device as float32) use
``data.downscale`` 2..4 and ``data.time_stride``.

Bounds: the box holding every camera's optical-axis points at its near and far depth (``bbox_source ==
"bounds"``). Errors: :class:`~dyngauss.data.dnerf.DatasetError` naming the file for a poses file of the wrong
shape or with a non-rotation, missing videos (or more videos than poses), videos of different sizes or frame
counts (unless ``max_frames`` keeps to the shortest), unreadable videos, an unknown test camera or split.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .camera import Camera, CameraError, check_c2w, check_intrinsics
from .dnerf import DatasetError, check_dataset_folder
from .frames import Decoded, to_u8
from .images import area_resize
from .multiview import (DEFAULT_CACHE_GB, FrameSpec, MultiViewSplit, assemble_split, check_load_options,
                        select_source_frames, source_time)

__all__ = ["POSES_FILE", "VIDEO_EXTENSIONS", "DEFAULT_TEST_CAMERA", "CHUNK_FRAMES", "is_n3v_folder",
           "n3v_splits", "load_n3v", "read_poses_bounds", "find_videos", "llff_to_viewmat", "viewmat_to_llff",
           "parse_test_cameras"]

POSES_FILE = "poses_bounds.npy"
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
DEFAULT_TEST_CAMERA = "cam00"
# Consecutive video frames of one camera decoded in one ffmpeg pass (the cache's unit).
CHUNK_FRAMES = 30

# OpenCV camera axes (right, down, forward) from LLFF's (down, right, back) columns, and back.
_LLFF_TO_CV = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def llff_to_viewmat(pose: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """LLFF [3,5] pose -> (OpenCV world-to-camera [4,4] float64, (height, width, focal)); the rotation block is
    checked (:func:`~dyngauss.data.camera.check_c2w`, CameraError)."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (3, 5):
        raise CameraError(f"an LLFF pose is 3x5, got {pose.shape}")
    c2w = np.eye(4)
    c2w[:3, :3] = pose[:, :3] @ _LLFF_TO_CV
    c2w[:3, 3] = pose[:, 3]
    c2w, _ = check_c2w(c2w)
    h, w, f = (float(v) for v in pose[:, 4])
    return np.linalg.inv(c2w), (h, w, f)


def viewmat_to_llff(viewmat: np.ndarray, height: float, width: float, focal: float) -> np.ndarray:
    """OpenCV world-to-camera [4,4] + image size and focal (pixels) -> LLFF [3,5] pose (inverse of
    :func:`llff_to_viewmat`)."""
    c2w = np.linalg.inv(np.asarray(viewmat, np.float64))
    out = np.zeros((3, 5))
    out[:, :3] = c2w[:3, :3] @ _LLFF_TO_CV.T
    out[:, 3] = c2w[:3, 3]
    out[:, 4] = (height, width, focal)
    return out


def is_n3v_folder(folder: Path) -> bool:
    return (Path(folder) / POSES_FILE).is_file()


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def find_videos(folder: Path) -> list[Path]:
    """The camera videos of a folder (files with a video extension), in natural name order."""
    vids = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            and not p.name.startswith(".")]
    return sorted(vids, key=lambda p: _natural_key(p.name))


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(poses [N,3,5], near/far bounds [N,2]) of a ``poses_bounds.npy``; DatasetError naming the file when it is
    unreadable, not N x 17, not finite, or a bound is not 0 < near < far."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"file not found: {path}") from None
    except Exception as e:  # ValueError (not an npy), OSError, EOFError
        raise DatasetError(f"cannot read {path}: {e}") from e
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0 or arr.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: expected an N x 17 array of numbers (a 3x5 LLFF pose per camera, then near "
                           f"and far), got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{path}: row {r} has non-finite values")
    poses, bounds = arr[:, :15].reshape(-1, 3, 5), arr[:, 15:]
    for r, (near, far) in enumerate(bounds):
        if not 0.0 < near < far:
            raise DatasetError(f"{path}: row {r}: near/far bounds must satisfy 0 < near < far, got {near:g}, {far:g}")
    return poses, bounds


def parse_test_cameras(test_camera: str | Sequence[str]) -> list[str]:
    """Camera names of a ``test_camera`` option: comma-separated names (``"cam00"``, ``"cam00,cam10"``) or a list;
    ``""`` / ``"none"`` = none."""
    items = test_camera.split(",") if isinstance(test_camera, str) else list(test_camera)
    names = [str(s).strip() for s in items if str(s).strip()]
    return [] if [n.lower() for n in names] == ["none"] else names


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - a dependency in requirements.txt
        raise DatasetError("imageio-ffmpeg is required to read videos: pip install imageio-ffmpeg") from e
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    return imageio_ffmpeg


def _short(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = " | ".join(lines[-2:]) if lines else type(err).__name__
    return text if len(text) <= 300 else "..." + text[-300:]


def probe_video(path: Path) -> tuple[int, int, int, float]:
    """(width, height, frame count, fps) of a video: the header and a stream copy (no decoding). DatasetError
    naming the file when it is missing, empty or not a video ffmpeg can read."""
    iff = _ffmpeg()
    if not path.is_file():
        raise DatasetError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise DatasetError(f"video file is empty: {path}")
    gen = iff.read_frames(str(path), pix_fmt="rgb24")
    try:
        head = next(gen)
        n, _ = iff.count_frames_and_secs(str(path))
    except (RuntimeError, OSError, StopIteration, IndexError, ValueError, KeyError) as e:
        raise DatasetError(f"cannot read video {path}: not a video ffmpeg can decode ({_short(e)})") from None
    finally:
        gen.close()
    w, h = (int(v) for v in head["size"])
    fps = float(head.get("fps") or 0.0)
    if n <= 0 or w <= 0 or h <= 0:
        raise DatasetError(f"cannot read video {path}: no video frames")
    if not (math.isfinite(fps) and fps > 0):
        raise DatasetError(f"video {path}: no frame rate in its header (a constant-rate video is needed)")
    return w, h, int(n), fps


def decode_video_frames(path: Path, wanted: Sequence[int], size: tuple[int, int], fps: float):
    """Yield (frame number, rgb uint8 [H,W,3]) for the sorted frame numbers `wanted` of a constant-rate video of
    `size` = (W, H): one ffmpeg pass from half a frame before the first wanted frame (an input seek: ffmpeg decodes
    from the key frame before it and drops what precedes the target) to the last. DatasetError naming the file
    when ffmpeg fails or the video ends early."""
    iff = _ffmpeg()
    wanted = sorted(int(f) for f in wanted)
    if not wanted:
        return
    first = wanted[0]
    inp = ["-ss", f"{(first - 0.5) / fps:.6f}"] if first > 0 else None
    W, H = size
    need = set(wanted)
    gen = iff.read_frames(str(path), pix_fmt="rgb24", input_params=inp, output_params=["-fps_mode", "passthrough"])
    f = first
    try:
        next(gen)
        for raw in gen:
            if f in need:
                if len(raw) != W * H * 3:
                    raise DatasetError(f"video {path}: frame {f} has {len(raw)} bytes, expected {W}x{H}x3")
                yield f, np.frombuffer(raw, np.uint8).reshape(H, W, 3)
            if f >= wanted[-1]:
                return
            f += 1
    except DatasetError:
        raise
    except (RuntimeError, OSError, StopIteration, ValueError) as e:
        raise DatasetError(f"cannot decode video {path} (frames {first}..{wanted[-1]}): {_short(e)}") from None
    finally:
        gen.close()
    raise DatasetError(f"video {path} ended after frame {f - 1}, before frame {wanted[-1]} (a truncated video, or "
                       "one shorter than its stream header says)")


def _split_cameras(folder: Path, names: list[str], test_camera) -> dict[str, list[int]]:
    test = parse_test_cameras(test_camera)
    unknown = [t for t in test if t not in names]
    if unknown:
        raise DatasetError(f"{folder}: test camera {', '.join(map(repr, unknown))} is not one of the videos "
                           f"({', '.join(names)}); set data.test_camera to a video's name without extension, or "
                           "'' for no test split")
    out = {"train": [i for i, n in enumerate(names) if n not in test]}
    if test:
        out["test"] = [names.index(t) for t in test]
    if not out["train"]:
        raise DatasetError(f"{folder}: every camera ({', '.join(names)}) is a test camera; nothing is left to train")
    return out


def _checked_videos(folder: Path, n_poses: int) -> list[Path]:
    pp = folder / POSES_FILE
    videos = find_videos(folder)
    if not videos:
        raise DatasetError(f"{folder}: {POSES_FILE} but no camera videos ({', '.join(VIDEO_EXTENSIONS)}; "
                           "Neural 3D Video layout: cam00.mp4, cam01.mp4, ...)")
    if len(videos) != n_poses:
        names = [v.stem for v in videos]
        hint = ""
        if len(videos) < n_poses and all(re.fullmatch(r"cam\d+", n) for n in names):
            width = max(len(n) - 3 for n in names)
            expected = [f"cam{i:0{width}d}" for i in range(n_poses)]
            missing = [e for e in expected if e not in names]
            if missing:
                hint = f"; missing: {', '.join(m + videos[0].suffix for m in missing)}"
        raise DatasetError(f"{pp} has {n_poses} camera poses but {folder} has {len(videos)} videos "
                           f"({', '.join(v.name for v in videos)}){hint}: one video per pose row is needed")
    return videos


def n3v_splits(path: str | os.PathLike, test_camera: str = DEFAULT_TEST_CAMERA) -> list[str]:
    """``["train", "test"]`` (``["train"]`` without test cameras); DatasetError when the poses or videos are
    unusable or the test camera does not exist."""
    folder = check_dataset_folder(path)
    poses, _ = read_poses_bounds(folder / POSES_FILE)
    videos = _checked_videos(folder, len(poses))
    return list(_split_cameras(folder, [v.stem for v in videos], test_camera))


def load_n3v(path: str | os.PathLike, split: str = "train", downscale: float = 1,
             background: Sequence[float] = (1.0, 1.0, 1.0), frames: Sequence[int] | slice | None = None,
             time_stride: int = 1, max_frames: int = 0, test_camera: str = DEFAULT_TEST_CAMERA,
             cache_gb: float = DEFAULT_CACHE_GB, chunk_frames: int = CHUNK_FRAMES) -> MultiViewSplit:
    """One split of a Neural 3D Video folder (module docstring), decoded lazily.

    downscale: image size divided by this (area resize; K as ``Camera.scaled``); background: unused (videos have
    no alpha), kept for the loader interface; frames: optional subset of rows of the split; time_stride /
    max_frames: time steps kept (every k-th video frame, at most this many; 0 = all); test_camera: the held-out
    cameras; cache_gb: the decoded-frame cache budget; chunk_frames: video frames per decode pass.
    Raises DatasetError naming the file (module docstring)."""
    folder = check_dataset_folder(path)
    downscale, bg = check_load_options(downscale, background, time_stride, max_frames, cache_gb)
    pp = folder / POSES_FILE
    poses, bounds = read_poses_bounds(pp)
    videos = _checked_videos(folder, len(poses))
    names = [v.stem for v in videos]
    splits = _split_cameras(folder, names, test_camera)
    if split not in splits:
        raise DatasetError(f"{folder}: no split {split!r} in a Neural 3D Video folder (it has "
                           f"{', '.join(splits)}; the test split is data.test_camera={test_camera!r})")
    probes = [probe_video(v) for v in videos]
    sizes = {(w, h) for w, h, _, _ in probes}
    if len(sizes) > 1:
        w0, h0 = probes[0][:2]
        odd = next(v for v, p in zip(videos, probes) if p[:2] != (w0, h0))
        raise DatasetError(f"videos differ in size: {videos[0]} is {w0}x{h0}, {odd} is "
                           f"{probes[videos.index(odd)][0]}x{probes[videos.index(odd)][1]}")
    counts = [p[2] for p in probes]
    n_source = min(counts)
    keep = select_source_frames(max(counts), time_stride, max_frames)
    if min(counts) != max(counts) and keep[-1] >= n_source:
        lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
        raise DatasetError(f"videos have different frame counts: {videos[lo]} has {counts[lo]}, {videos[hi]} has "
                           f"{counts[hi]} (synchronised cameras need one count; to use the common part set "
                           f"data.max_frames so that the last kept frame is below {n_source})")
    keep = [f for f in keep if f < n_source]
    cams_full: list[Camera] = []
    for i, (v, (W, H, _, _)) in enumerate(zip(videos, probes)):
        where = f"{pp}: row {i} ({v.name})"
        try:
            viewmat, (ph, pw, focal) = llff_to_viewmat(poses[i])
        except CameraError as e:
            raise DatasetError(f"{where}: pose {e}") from None
        if not (ph > 0 and pw > 0 and focal > 0):
            raise DatasetError(f"{where}: height, width and focal (last column) must be positive, got "
                               f"{ph:g}, {pw:g}, {focal:g}")
        sx, sy = W / pw, H / ph
        if abs(sx - sy) > 0.02 * max(sx, sy):
            raise DatasetError(f"{where}: the video is {W}x{H} but the pose's image is {pw:g}x{ph:g} (a different "
                               "aspect ratio)")
        fx, fy = focal * sx, focal * sy
        try:
            check_intrinsics(fx, fy, W / 2.0, H / 2.0, W, H)
        except CameraError as e:
            raise DatasetError(f"{where}: {e}") from None
        K = np.array([[fx, 0.0, W / 2.0], [0.0, fy, H / 2.0], [0.0, 0.0, 1.0]])
        cams_full.append(Camera(K, viewmat, W, H, name=names[i], meta={"file_path": str(v)}))

    cam_rows = splits[split]
    chunk = max(1, int(chunk_frames))
    specs: list[FrameSpec] = []
    for k, f in enumerate(keep):
        t = source_time(f, n_source)
        for ci, row in enumerate(cam_rows):
            base = cams_full[row]
            cam = Camera(base.K, base.viewmat, base.width, base.height, time=t, name=f"{names[row]}_{f:06d}",
                         meta={"file_path": str(videos[row]), "camera": names[row], "frame": f, "split": split})
            specs.append(FrameSpec(cam, ci, k, (row, f // chunk), {"video": videos[row], "frame": f,
                                                                    "fps": probes[row][3]}))

    def decode(group: list[FrameSpec], width: int, height: int) -> list[Decoded]:
        video, fps = group[0].data["video"], group[0].data["fps"]
        W, H = group[0].camera.width, group[0].camera.height
        by_frame = {s.data["frame"]: j for j, s in enumerate(group)}
        out: list[Decoded | None] = [None] * len(group)
        for f, rgb in decode_video_frames(video, sorted(by_frame), (W, H), fps):
            if (width, height) != (W, H):
                rgb = to_u8(area_resize(rgb.astype(np.float32) * np.float32(1 / 255), width, height))
            out[by_frame[f]] = (np.ascontiguousarray(rgb), None, None)
        return out  # type: ignore[return-value]

    # bounds: the optical-axis points of the split's cameras at their near and far depths
    ends = []
    for row in cam_rows:
        V = cams_full[row].viewmat.double().numpy()
        o, d = -V[:3, :3].T @ V[:3, 3], V[2, :3]
        ends += [o + bounds[row, 0] * d, o + bounds[row, 1] * d]
    ends = np.array(ends)
    bbox = np.stack([ends.min(0), ends.max(0)])
    meta = {"format": "n3v", "poses_file": str(pp), "videos": [str(videos[r]) for r in cam_rows],
            "cameras": [names[r] for r in cam_rows], "test_cameras": parse_test_cameras(test_camera),
            "source_frames": n_source, "fps": probes[cam_rows[0]][3], "time_stride": int(time_stride),
            "max_frames": int(max_frames), "near_far": bounds[cam_rows].tolist(), "points": None}
    return assemble_split(folder, split, specs, [names[r] for r in cam_rows],
                          [source_time(f, n_source) for f in keep], keep, decode, downscale=downscale, background=bg,
                          has_alpha=False, has_mask=False, frames=frames, cache_gb=cache_gb, bbox=bbox,
                          bbox_source="bounds", meta=meta)

"""Video -> D-NeRF-format folder with structure-from-motion poses (the logic of ``tools/prepare_video.py``).

Stages: decode (even subsample, times by frame index) -> extract (SIFT, one shared SIMPLE_RADIAL camera, moving
objects masked) -> match (sequential) -> map (incremental) -> write (undistorted pinhole frames, normalised
poses, sparse points, summary). Everything is built in ``OUT.tmp-XXXX`` next to ``OUT`` and renamed at the end,
so a failed or interrupted run never leaves a folder that looks complete.

Output folder::

    frames/NNNNNN.png            undistorted frames (NNNNNN = frame index in the video), registered frames only
    transforms.json              all registered frames; transforms_train.json / transforms_test.json split them
                                 (every K-th registered frame is test). Top level: camera_model PINHOLE, fl_x, fl_y,
                                 cx, cy, w, h, camera_angle_x/y, k1=k2=p1=p2=0. Per frame: file_path
                                 ("./frames/NNNNNN", no extension, as D-NeRF), time (frame index normalised over
                                 the kept frames' span), frame_index, transform_matrix (OpenGL camera-to-world).
    points3d.ply                 sparse SfM points in the normalised frame (x y z float, red green blue uchar)
    sfm.json                     summary: counts, reprojection error, camera, normalisation (maps back to the
                                 SfM frame), timings, versions
    colmap/sparse/               the COLMAP model (SfM frame, distorted camera) for other tools

Normalised frame: the point the cameras look at is the origin, the mean camera "up" is +z, the cameras are on
average at -y, and the mean camera distance to the origin is 4 (D-NeRF-like; our default bounds are +-1.5).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.ply import write_points_ply
from .colmap import SfmOptions, import_pycolmap, run_sfm
from .errors import PrepareError
from .normalize import (baseline_ratio, camera_centers, compute_normalization, transform_w2c,
                        w2c_to_opengl_c2w)
from .undistort import Undistorter
from .video import choose_stride, decode_frames, frame_times, probe_video

__all__ = ["PrepareOptions", "prepare_video", "check_masks", "DEFAULT_MAX_FRAMES"]

DEFAULT_MAX_FRAMES = 75
MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class PrepareOptions:
    """Options of :func:`prepare_video` (the tool's flags).

    fps / max_frames / step: how to subsample (at most one; default ``max_frames=75``).
    masks: folder of moving-object masks (white = moving), one per video frame or one per kept frame, sorted by
        name, each the size of the video frames.
    resize: output width in pixels (aspect kept), applied before SfM.
    test_every: every K-th registered frame goes to the test split (0: no test split).
    min_registered: fraction of the kept frames that must register.
    min_baseline: camera travel / scene depth below which the camera counts as static.
    """

    fps: float | None = None
    max_frames: int | None = None
    step: int | None = None
    masks: str | os.PathLike | None = None
    resize: int | None = None
    test_every: int = 10
    min_frames: int = 8
    min_registered: float = 0.7
    min_baseline: float = 0.02
    target_mean_distance: float = 4.0
    mask_dilate: int | None = None
    keep_sparse: bool = True
    overwrite: bool = False
    sfm: SfmOptions = field(default_factory=SfmOptions)


# ----------------------------------------------------------------------------------------------- masks

def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS)


def check_masks(folder: str | os.PathLike, num_video_frames: int, kept: list[int], size: tuple[int, int]) -> dict[int, Path]:
    """Validate a masks folder against the video and return {frame index: mask file} for the kept frames.

    Accepted: one mask per video frame (the i-th file, sorted by name, belongs to frame i) or one per kept frame.
    Every mask must have the video's frame size (W, H). Raises PrepareError(kind="masks")."""
    from PIL import Image

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PrepareError(f"masks folder not found: {folder}", "masks")
    files = _list_images(folder)
    if len(files) == num_video_frames:
        chosen = {i: files[i] for i in kept}
    elif len(files) == len(kept):
        chosen = dict(zip(kept, files))
    else:
        raise PrepareError(
            f"masks folder {folder} has {len(files)} images, but the video has {num_video_frames} frames "
            f"({len(kept)} kept): give one mask per video frame (or one per kept frame), sorted by name "
            "like the frames", "masks")
    W, H = size
    for i, p in chosen.items():
        try:
            with Image.open(p) as im:
                w, h = im.size
        except Exception as e:
            raise PrepareError(f"mask {p} cannot be read: {e}", "masks") from None
        if (w, h) != (W, H):
            raise PrepareError(f"mask {p.name} is {w}x{h} but the video frames are {W}x{H}: masks must have the "
                               "size of the video frames", "masks")
    return chosen


def _colmap_mask(path: Path, size: tuple[int, int], dilate: int) -> np.ndarray:
    """COLMAP mask (255 = use features, 0 = ignore) from a user mask (white = moving), resized to ``size``."""
    import cv2
    from PIL import Image

    with Image.open(path) as im:
        m = np.asarray(im.convert("L")) > 127
    W, H = size
    if m.shape != (H, W):
        m = cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    if dilate > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        m = cv2.dilate(m.astype(np.uint8), k) > 0
    return np.where(m, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- writing

def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _pycolmap_version() -> str:
    try:
        return str(import_pycolmap().__version__)
    except Exception:
        return "unknown"


def _make_tmp(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise PrepareError(f"cannot create the output folder next to {out}: {e}", "output") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    return tmp


def _install(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished tmp folder to ``out`` (replacing an existing one when allowed)."""
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise PrepareError(f"output {out} exists (use --overwrite to replace it)", "output")
        old = out.with_name(f"{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


# ----------------------------------------------------------------------------------------------- pipeline

def prepare_video(video: str | os.PathLike, out: str | os.PathLike, opts: PrepareOptions | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Turn a video into a D-NeRF-format folder at ``out`` (see the module docstring). Returns the summary
    written to ``out/sfm.json``. Raises PrepareError (nothing is left at ``out`` or next to it) on failure."""
    opts = opts or PrepareOptions()
    log = log or (lambda s: print(s, flush=True))
    t_start = time.perf_counter()
    video = Path(video).expanduser()
    out = Path(out).expanduser().absolute()
    seconds: dict[str, float] = {}

    if sum(v is not None for v in (opts.fps, opts.max_frames, opts.step)) > 1:
        raise PrepareError("give at most one of --fps, --max-frames, --step", "args")
    if opts.resize is not None and opts.resize < 16:
        raise PrepareError(f"--resize must be at least 16 pixels, got {opts.resize}", "args")
    if opts.test_every < 0 or opts.test_every == 1:
        raise PrepareError(f"--test-every must be 0 (no test split) or >= 2, got {opts.test_every}", "args")
    if (out.exists() or out.is_symlink()) and not opts.overwrite:
        raise PrepareError(f"output {out} exists (use --overwrite to replace it)", "output")
    if video.exists() and out.resolve() == video.resolve().parent:
        raise PrepareError(f"--out {out} is the video's folder; choose a new folder", "output")

    # ------------------------------------------------------------------ decode (probe first: cheap errors)
    t0 = time.perf_counter()
    info = probe_video(video)
    max_frames = opts.max_frames
    if opts.fps is None and opts.step is None and max_frames is None:
        max_frames = DEFAULT_MAX_FRAMES
    stride = choose_stride(info.num_frames, info.fps, fps=opts.fps, max_frames=max_frames, step=opts.step)
    kept = list(range(0, info.num_frames, stride))
    if max_frames is not None:
        kept = kept[:max_frames]
    advice = ("use a longer video, or keep more frames (a higher --fps or --max-frames, a smaller --step)")
    if len(kept) < opts.min_frames:
        raise PrepareError(f"too few frames: the video has {info.num_frames} frames and {len(kept)} are kept "
                           f"(every {stride}); need at least {opts.min_frames}: {advice}", "frames")
    masks = None
    if opts.masks is not None:
        masks = check_masks(opts.masks, info.num_frames, kept, (info.width, info.height))

    tmp = _make_tmp(out)
    try:
        work = tmp / "_work"
        img_dir = work / "images"
        img_dir.mkdir(parents=True)
        mask_dir = work / "masks" if masks is not None else None
        if mask_dir is not None:
            mask_dir.mkdir()
        import imageio.v3 as iio

        decoded: list[int] = []
        size = None
        dilate = opts.mask_dilate
        for i, img in decode_frames(video, kept, resize=opts.resize):
            name = f"{i:06d}.png"
            iio.imwrite(img_dir / name, img)
            size = (img.shape[1], img.shape[0])
            if masks is not None:
                if dilate is None:
                    dilate = max(2, round(0.01 * max(size)))
                iio.imwrite(mask_dir / f"{name}.png", _colmap_mask(masks[i], size, dilate))
            decoded.append(i)
        seconds["decode"] = time.perf_counter() - t0
        if len(decoded) < opts.min_frames:
            raise PrepareError(f"too few frames decoded: {len(decoded)} of {len(kept)} requested from {video} "
                               f"(need at least {opts.min_frames}); the file may be truncated: {advice}", "frames")
        times = dict(zip(decoded, frame_times(decoded)))
        log(f"[decode] {seconds['decode']:.1f} s: {len(decoded)} frames of {info.num_frames} (every {stride}, "
            f"{info.fps:g} fps video) at {size[0]}x{size[1]}{', masks' if masks else ''}")

        # ------------------------------------------------------------------ extract / match / map
        names = [f"{i:06d}.png" for i in decoded]
        try:
            res = run_sfm(img_dir, names, work, opts.sfm, mask_dir=mask_dir, log=log)
        except PrepareError:
            raise
        except (RuntimeError, ValueError, OSError) as e:
            raise PrepareError(f"structure-from-motion failed: {e}", "sfm") from e
        seconds.update(res.seconds)
        n_reg, n = len(res.registered), len(names)
        unregistered = [int(nm[:6]) for nm in names if nm not in res.w2c]
        if n_reg < max(3, math.ceil(opts.min_registered * n)):
            raise PrepareError(
                f"too few frames registered: {n_reg} of {n} ({100.0 * n_reg / n:.0f}%, need "
                f"{100 * opts.min_registered:.0f}%). Try more frames (a higher --fps or --max-frames, so that "
                "consecutive frames overlap more), --loop-closure, --masks for large moving objects, a slower camera "
                "and a scene with more texture.", "registration")
        w2c = np.stack([res.w2c[nm] for nm in res.registered])
        ratio = baseline_ratio(w2c, res.points)
        if ratio < opts.min_baseline:
            raise PrepareError(
                f"the camera barely moves: its centres span {100 * ratio:.2f}% of the scene depth (need "
                f"{100 * opts.min_baseline:.0f}%), so structure-from-motion cannot triangulate the scene. Move the "
                "camera around the object (walk sideways / around it) instead of filming from one spot.", "static")

        # ------------------------------------------------------------------ normalise + write
        t0 = time.perf_counter()
        sim, ninfo = compute_normalization(w2c, res.points, opts.target_mean_distance)
        w2c_n = transform_w2c(w2c, sim)
        c2w_gl = w2c_to_opengl_c2w(w2c_n)
        pts = sim.apply(res.points) if len(res.points) else np.zeros((0, 3))
        keep = np.linalg.norm(pts, axis=1) <= 10.0 * opts.target_mean_distance
        W, H = res.width, res.height
        und = Undistorter(res.camera_model, res.camera_params, W, H)
        K = und.K
        frames_dir = tmp / "frames"
        frames_dir.mkdir()
        recs = []
        for k, nm in enumerate(res.registered):
            img = iio.imread(img_dir / nm)
            iio.imwrite(frames_dir / nm, und(img))
            i = int(nm[:6])
            recs.append({"file_path": f"./frames/{i:06d}", "time": float(times[i]), "frame_index": i,
                         "transform_matrix": c2w_gl[k].tolist()})
        fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
        head = {"camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": W, "h": H,
                "camera_angle_x": 2.0 * math.atan(0.5 * W / fx), "camera_angle_y": 2.0 * math.atan(0.5 * H / fy),
                "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
        te = opts.test_every
        test = [r for k, r in enumerate(recs) if te and k % te == 0]
        train = [r for k, r in enumerate(recs) if not (te and k % te == 0)]
        _write_json(tmp / "transforms.json", {**head, "frames": recs})
        _write_json(tmp / "transforms_train.json", {**head, "frames": train})
        if test:
            _write_json(tmp / "transforms_test.json", {**head, "frames": test})
        write_points_ply(tmp / "points3d.ply", pts[keep], res.colors[keep])
        if opts.keep_sparse and res.reconstruction is not None:
            sp = tmp / "colmap" / "sparse"
            sp.mkdir(parents=True)
            res.reconstruction.write(str(sp))
        shutil.rmtree(work)
        seconds["write"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_start
        C = camera_centers(w2c_n)
        summary = {
            "video": str(video.absolute()),
            "video_frames": info.num_frames, "video_fps": info.fps, "video_size": [info.width, info.height],
            "stride": stride, "frames_requested": len(kept), "frames_decoded": len(decoded),
            "frames_registered": n_reg, "registered_fraction": n_reg / n,
            "unregistered_frame_indices": unregistered,
            "train_frames": len(train), "test_frames": len(test), "test_every": te,
            "image_size": [W, H], "resize": opts.resize, "masks": str(Path(opts.masks).absolute()) if masks else None,
            "mean_reproj_error_px": res.mean_reproj_error,
            "num_points3d": int(len(res.points)), "num_points3d_written": int(keep.sum()),
            "num_models": res.num_models,
            "features_per_frame": {"median": float(np.median(list(res.features.values()))),
                                   "min": int(min(res.features.values())), "max": int(max(res.features.values()))},
            "camera": {"model": res.camera_model, "params": res.camera_params, "focal_px": res.focal,
                       "width": W, "height": H},
            "pinhole": {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "undistort_focal_scale": und.scale},
            "baseline_ratio": ratio,
            "normalization": {**sim.to_dict(), **ninfo, "target_mean_distance": opts.target_mean_distance},
            "camera_distance_normalized": {"mean": float(np.linalg.norm(C, axis=1).mean()),
                                           "min": float(np.linalg.norm(C, axis=1).min()),
                                           "max": float(np.linalg.norm(C, axis=1).max())},
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "options": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(opts).items()},
            "versions": {"pycolmap": _pycolmap_version(), "python": sys.version.split()[0]},
        }
        _write_json(tmp / "sfm.json", summary)
        _install(tmp, out, opts.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[write] {seconds['write']:.1f} s: {out} ({len(train)} train / {len(test)} test frames, "
        f"{int(keep.sum())} points)")
    log(f"done in {seconds['total']:.1f} s: {n_reg}/{n} frames registered"
        + (f" (unregistered: {unregistered})" if unregistered else "")
        + f", mean reprojection error {res.mean_reproj_error:.3f} px, focal {fx:.1f} px")
    return summary

"""Video -> D-NeRF-format folder, with structure-from-motion poses or one fixed camera (``dyngauss prepare-video``).

Stages: probe (every frame's presentation timestamp, video.py) -> select (a regular grid of real time, or every
K-th frame) -> decode (each kept frame once) -> camera check (does the camera move at all? camera_motion.py, a
few milliseconds) -> either

* structure-from-motion: extract (SIFT, one shared SIMPLE_RADIAL camera, moving objects masked) -> match
  (sequential) -> map (incremental) -> plausibility (focal / field of view, feature coverage: plausibility.py)
  -> write (undistorted pinhole frames, normalised poses, sparse points, summary); or
* ``fixed_camera``: write the frames as they are, with one pinhole camera of the given (default 60 degree)
  horizontal field of view at the same pose for every frame; the deformation field explains all motion.

A fixed camera is refused in structure-from-motion mode (``PrepareError`` kind ``static``, exit 2) before any
feature is extracted, with what to do. Everything is built in ``OUT.tmp-XXXX`` next to ``OUT`` and renamed at
the end, so a failed or interrupted run never leaves a folder that looks complete.

Output folder::

    frames/NNNNNN.png            frames (NNNNNN = index among the video's distinct frames), registered frames only;
                                 undistorted in SfM mode, as decoded in fixed-camera mode
    transforms.json              all written frames; transforms_train.json / transforms_test.json split them
                                 (every K-th frame is test). Top level: camera_model PINHOLE, fl_x, fl_y,
                                 cx, cy, w, h, camera_angle_x/y, k1=k2=p1=p2=0. Per frame: file_path
                                 ("./frames/NNNNNN", no extension, as D-NeRF), time (the frame's presentation
                                 timestamp normalised over the kept frames' span), timestamp (seconds since the
                                 video's first frame), frame_index, transform_matrix (OpenGL camera-to-world).
    points3d.ply                 sparse SfM points in the normalised frame (x y z float, red green blue uchar);
                                 not written in fixed-camera mode (training starts from random points)
    sfm.json                     summary: mode, counts, sampling, camera check, reprojection error, camera,
                                 normalisation (maps back to the SfM frame), warnings, timings, versions
    colmap/sparse/               the COLMAP model (SfM frame, distorted camera) for other tools (SfM mode)

Normalised frame: the point the cameras look at is the origin, the mean camera "up" is +z, the cameras are on
average at -y, and the mean camera distance to the origin is 4 (D-NeRF-like; our default bounds are +-1.5). The
fixed camera sits at (0, -4, 0) looking at the origin with +z up, so the same configs and bounds apply.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..geometry.look_at import look_at_viewmat
from ..io.ply import write_points_ply
from .camera_motion import Stillness, StillnessConfig, measure_stillness, thumbnail
from .colmap import SfmOptions, import_pycolmap, run_sfm
from .errors import PrepareError
from .masks import check_masks, colmap_mask, moving_thumbnail
from .normalize import (baseline_ratio, camera_centers, compute_normalization, transform_w2c,
                        w2c_to_opengl_c2w)
from .output import frame_record, install, make_tmp, pinhole_header, write_json, write_splits
from .plausibility import FOV_RANGE, check_focal, focal_from_fov
from .undistort import Undistorter
from .video import VideoInfo, decode_frames, frame_times, probe_video, select_frames

__all__ = ["PrepareOptions", "prepare_video", "check_masks", "DEFAULT_MAX_FRAMES", "DEFAULT_FIXED_FOV"]

DEFAULT_MAX_FRAMES = 75
DEFAULT_FIXED_FOV = 60.0


@dataclass
class PrepareOptions:
    """Options of :func:`prepare_video` (the tool's flags).

    fps / max_frames / step: how to subsample (at most one; default ``max_frames=75``), on real time (video.py).
    masks: folder of moving-object masks (white = moving), one per video frame or one per kept frame, sorted by
        name, each the size of the video frames.
    resize: output width in pixels (aspect kept), applied before SfM.
    test_every: every K-th written frame goes to the test split (0: no test split).
    min_registered: fraction of the kept frames that must register.
    min_baseline: camera travel / scene depth below which the camera counts as static.
    fixed_camera: no SfM: one fixed pinhole camera of horizontal field of view ``fov`` (default
        ``DEFAULT_FIXED_FOV`` degrees) for every frame.
    fov: the camera's horizontal field of view (degrees) when known: the fixed camera's, or in SfM mode the
        value the estimated focal must agree with (within a factor ``fov_tolerance``).
    fov_range: horizontal fields of view (degrees) a real camera can have; an SfM focal outside is refused.
    camera_check: refuse a fixed camera before SfM (camera_motion.py; ``--skip-camera-check`` turns it off).
    min_coverage: warn when triangulated features cover less of the frame than this (plausibility.py).
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
    fixed_camera: bool = False
    fov: float | None = None
    fov_range: tuple[float, float] = FOV_RANGE
    fov_tolerance: float = 1.5
    camera_check: bool = True
    stillness: StillnessConfig = field(default_factory=StillnessConfig)
    min_coverage: float = 0.3
    sfm: SfmOptions = field(default_factory=SfmOptions)


def _pycolmap_version() -> str:
    try:
        return str(import_pycolmap().__version__)
    except Exception:
        return "unknown"


# ----------------------------------------------------------------------------------------------- camera check

def _static_error(st: Stillness) -> PrepareError:
    fixed = ("If the camera really stood still, run again with --fixed-camera [--fov DEG]: one fixed camera for "
             "every frame, and the deformation field explains all the motion.")
    if st.verdict == "static_textured":
        return PrepareError(
            f"the camera barely moves: {100 * st.textured_still_fraction:.0f}% of the textured background stays "
            "still over the whole clip (a camera on a tripod or a table), so structure-from-motion has no "
            f"parallax to work with and would explain the moving object as a rigid scene. {fixed} Otherwise film "
            "while walking around the object (the camera must travel, not only turn).", "static")
    return PrepareError(
        f"the camera looks fixed: {100 * st.border_still_fraction:.0f}% of the frame border and "
        f"{100 * st.still_fraction:.0f}% of the whole frame never change, and what never changes has no texture "
        "(a plain background), so every feature lies on the moving object and structure-from-motion would "
        f"explain its motion as an orbiting camera with a wrong focal length. {fixed} If the camera does move "
        "around the object in front of a plain backdrop, film with some texture in the background (and give "
        "--masks for the object); --skip-camera-check runs structure-from-motion anyway (only right for a rigid "
        "object).",
        "static")


def _video_summary(video: Path, info: VideoInfo, sampling: dict, kept: list[int], decoded: list[int]) -> dict:
    return {"video": str(video.absolute()), "video_frames": info.num_frames, "video_fps": info.fps,
            "video_fps_nominal": info.nominal_fps, "video_duration_s": info.duration, "video_vfr": info.vfr,
            "video_timestamps": info.timestamps, "video_notes": info.notes,
            "video_size": [info.width, info.height], "sampling": sampling, "stride": sampling.get("step"),
            "frames_requested": len(kept), "frames_decoded": len(decoded)}


def _options_dict(opts: PrepareOptions) -> dict:
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(opts).items()}


# ----------------------------------------------------------------------------------------------- pipeline

def _check_args(opts: PrepareOptions) -> None:
    if sum(v is not None for v in (opts.fps, opts.max_frames, opts.step)) > 1:
        raise PrepareError("give at most one of --fps, --max-frames, --step", "args")
    if opts.resize is not None and opts.resize < 16:
        raise PrepareError(f"--resize must be at least 16 pixels, got {opts.resize}", "args")
    if opts.test_every < 0 or opts.test_every == 1:
        raise PrepareError(f"--test-every must be 0 (no test split) or >= 2, got {opts.test_every}", "args")
    if opts.fov is not None:
        focal_from_fov(opts.fov, 100)  # range check
    lo, hi = opts.fov_range
    if not 0.0 < lo < hi < 180.0:
        raise PrepareError(f"fov_range must satisfy 0 < low < high < 180 degrees, got {opts.fov_range}", "args")
    if opts.fixed_camera and opts.masks is not None:
        raise PrepareError("--masks only steer structure-from-motion, which --fixed-camera does not run: drop "
                           "--masks (or --fixed-camera)", "args")


def prepare_video(video: str | os.PathLike, out: str | os.PathLike, opts: PrepareOptions | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Turn a video into a D-NeRF-format folder at ``out`` (see the module docstring). Returns the summary
    written to ``out/sfm.json``. Raises PrepareError (nothing is left at ``out`` or next to it) on failure:
    kind ``static`` for a camera that does not move (unless ``opts.fixed_camera``), ``implausible`` for an SfM
    camera no real camera has, and the kinds of :class:`~dyngauss.sfm.errors.PrepareError`."""
    opts = opts or PrepareOptions()
    log = log or (lambda s: print(s, flush=True))
    t_start = time.perf_counter()
    video = Path(video).expanduser()
    out = Path(out).expanduser().absolute()
    seconds: dict[str, float] = {}

    _check_args(opts)
    if (out.exists() or out.is_symlink()) and not opts.overwrite:
        raise PrepareError(f"output {out} exists (use --overwrite to replace it)", "output")
    if video.exists() and out.resolve() == video.resolve().parent:
        raise PrepareError(f"--out {out} is the video's folder; choose a new folder", "output")

    # ------------------------------------------------------------------ probe + select (cheap errors first)
    t0 = time.perf_counter()
    info = probe_video(video)
    seconds["probe"] = time.perf_counter() - t0
    max_frames = opts.max_frames
    if opts.fps is None and opts.step is None and max_frames is None:
        max_frames = DEFAULT_MAX_FRAMES
    kept, sampling = select_frames(info.times, fps=opts.fps, max_frames=max_frames, step=opts.step)
    advice = "use a longer video, or keep more frames (a higher --fps or --max-frames, a smaller --step)"
    if len(kept) < opts.min_frames:
        raise PrepareError(f"too few frames: the video has {info.num_frames} frames and {len(kept)} are kept "
                           f"({_sampling_text(sampling)}); need at least {opts.min_frames}: {advice}", "frames")
    masks = None
    if opts.masks is not None:
        masks = check_masks(opts.masks, info.num_frames, kept, (info.width, info.height))

    tmp = make_tmp(out)
    try:
        # -------------------------------------------------------------- decode (+ thumbnails for the camera check)
        t0 = time.perf_counter()
        work = tmp / "_work"
        img_dir = tmp / "frames" if opts.fixed_camera else work / "images"
        img_dir.mkdir(parents=True)
        mask_dir = work / "masks" if masks is not None else None
        if mask_dir is not None:
            mask_dir.mkdir()
        import imageio.v3 as iio

        decoded: list[int] = []
        thumbs: list[np.ndarray] = []
        moving: list[np.ndarray] = []
        size = None
        dilate = opts.mask_dilate
        for i, img in decode_frames(video, kept, resize=opts.resize, info=info):
            name = f"{i:06d}.png"
            iio.imwrite(img_dir / name, img)
            size = (img.shape[1], img.shape[0])
            thumbs.append(thumbnail(img, opts.stillness.width))
            if masks is not None:
                if dilate is None:
                    dilate = max(2, round(0.01 * max(size)))
                iio.imwrite(mask_dir / f"{name}.png", colmap_mask(masks[i], size, dilate))
                moving.append(moving_thumbnail(masks[i], thumbs[-1].shape[::-1]))
            decoded.append(i)
        seconds["decode"] = time.perf_counter() - t0
        if len(decoded) < opts.min_frames:
            raise PrepareError(f"too few frames decoded: {len(decoded)} of {len(kept)} requested from {video} "
                               f"(need at least {opts.min_frames}); the file may be truncated: {advice}", "frames")
        times = dict(zip(decoded, frame_times(info.times[decoded])))
        log(f"[decode] {seconds['decode'] + seconds['probe']:.1f} s: {len(decoded)} frames of {info.num_frames} "
            f"({_sampling_text(sampling)}; {_rate_text(info)}) at {size[0]}x{size[1]}{', masks' if masks else ''}")
        for note in info.notes:
            log(f"[decode] note: {note}")

        # -------------------------------------------------------------- does the camera move?
        st = measure_stillness(thumbs, moving or None, opts.stillness)
        seconds["camera_check"] = st.seconds
        log(f"[camera] {1000 * st.seconds:.0f} ms: {_stillness_text(st)}")
        if opts.fixed_camera:
            if st.verdict == "moving":
                log("[camera] warning: the camera seems to move (the frame border changes); --fixed-camera "
                    "assumes it does not, so the deformation field will also have to explain the camera's motion")
            summary = _write_fixed(tmp, video, info, sampling, kept, decoded, times, size, st, opts, seconds,
                                   t_start)
        else:
            if st.static and opts.camera_check:
                raise _static_error(st)
            summary = _run_and_write_sfm(tmp, video, info, sampling, kept, decoded, times, st, masks, mask_dir,
                                         opts, seconds, t_start, log)
        shutil.rmtree(work, ignore_errors=True)
        write_json(tmp / "sfm.json", summary)
        install(tmp, out, opts.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_train, n_test = summary["train_frames"], summary["test_frames"]
    log(f"[write] {seconds['write']:.1f} s: {out} ({n_train} train / {n_test} test frames"
        + (f", {summary['num_points3d_written']} points)" if summary["mode"] == "sfm" else ", one fixed camera)"))
    if summary["mode"] == "sfm":
        unreg = summary["unregistered_frame_indices"]
        log(f"done in {seconds['total']:.1f} s: {summary['frames_registered']}/{len(decoded)} frames registered"
            + (f" (unregistered: {unreg})" if unreg else "")
            + f", mean reprojection error {summary['mean_reproj_error_px']:.3f} px, focal "
              f"{summary['pinhole']['fl_x']:.1f} px ({summary['fov_deg']:.0f} degrees)")
        for w in summary["warnings"]:
            log(f"warning: {w}")
    else:
        log(f"done in {seconds['total']:.1f} s: fixed camera, horizontal field of view {summary['fov_deg']:g} "
            f"degrees ({summary['fov_source']})")
    return summary


def _sampling_text(sampling: dict) -> str:
    if sampling["mode"] == "step":
        return f"every {sampling['step']}"
    if sampling.get("interval_s"):
        return f"one every {sampling['interval_s']:.3g} s"
    return "all"


def _rate_text(info: VideoInfo) -> str:
    if info.vfr:
        return f"variable frame rate, {info.fps:.3g} fps on average, times from timestamps"
    return f"{info.fps:.3g} fps video"


def _stillness_text(st: Stillness) -> str:
    what = {"moving": "the camera moves", "static_textured": "the camera stands still (textured background)",
            "static_plain": "the camera stands still or films a plain backdrop",
            "no_texture": "no verdict (almost no texture)", "too_few_frames": "no verdict (too few frames)"}
    return (f"{what.get(st.verdict, st.verdict)}: {100 * st.still_fraction:.0f}% of the frame and "
            f"{100 * st.border_still_fraction:.0f}% of its border never change, "
            f"{100 * st.textured_still_fraction:.0f}% of the textured pixels are still")


def _write_fixed(tmp: Path, video: Path, info: VideoInfo, sampling: dict, kept: list[int], decoded: list[int],
                 times: dict[int, float], size: tuple[int, int], st: Stillness, opts: PrepareOptions,
                 seconds: dict[str, float], t_start: float) -> dict:
    """Fixed-camera mode: frames are already in tmp/frames; one pinhole camera at (0, -d, 0) looking at the
    origin with +z up (the normalised frame of SfM outputs), the same for every frame."""
    t0 = time.perf_counter()
    W, H = size
    fov = opts.fov if opts.fov is not None else DEFAULT_FIXED_FOV
    f = focal_from_fov(fov, W)
    d = opts.target_mean_distance
    c2w = w2c_to_opengl_c2w(look_at_viewmat((0.0, -d, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)))[0] + 0.0
    head = pinhole_header(f, f, 0.5 * W, 0.5 * H, W, H)
    recs = [frame_record(i, times[i], info.times[i], c2w) for i in decoded]
    train, test = write_splits(tmp, head, recs, opts.test_every)
    seconds["write"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    return {
        "mode": "fixed_camera", **_video_summary(video, info, sampling, kept, decoded),
        "frames_registered": len(decoded), "train_frames": len(train), "test_frames": len(test),
        "test_every": opts.test_every, "image_size": [W, H], "resize": opts.resize,
        "fov_deg": fov, "fov_source": "--fov" if opts.fov is not None else "default",
        "camera": {"model": "PINHOLE", "focal_px": f, "width": W, "height": H,
                   "transform_matrix": c2w.tolist()},
        "pinhole": {"fl_x": f, "fl_y": f, "cx": 0.5 * W, "cy": 0.5 * H},
        "camera_motion": st.to_dict(), "warnings": [] if st.verdict != "moving" else
        ["the camera seems to move (camera check): --fixed-camera assumes it does not"],
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "options": _options_dict(opts),
        "versions": {"python": sys.version.split()[0]},
    }


def _run_and_write_sfm(tmp: Path, video: Path, info: VideoInfo, sampling: dict, kept: list[int],
                       decoded: list[int], times: dict[int, float], st: Stillness, masks, mask_dir: Path | None,
                       opts: PrepareOptions, seconds: dict[str, float], t_start: float, log) -> dict:
    import imageio.v3 as iio

    work = tmp / "_work"
    img_dir = work / "images"
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
            "camera around the object (walk sideways / around it) instead of filming from one spot, or, if the "
            "camera really stood still, run again with --fixed-camera [--fov DEG].", "static")
    # ------------------------------------------------------------------ plausibility
    fov = check_focal(res.focal, res.width, opts.fov_range, opts.fov, opts.fov_tolerance)
    warnings = []
    if res.coverage is not None and res.coverage < opts.min_coverage:
        warnings.append(
            f"the triangulated features cover only {100 * res.coverage:.0f}% of the frame (median over frames, "
            "8x8 grid): the poses rest on that part alone; if it is the moving object they are wrong (give "
            "--masks for it, or use --fixed-camera if the camera did not move)")

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
        recs.append(frame_record(int(nm[:6]), times[int(nm[:6])], info.times[int(nm[:6])], c2w_gl[k]))
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    train, test = write_splits(tmp, pinhole_header(fx, fy, cx, cy, W, H), recs, opts.test_every)
    write_points_ply(tmp / "points3d.ply", pts[keep], res.colors[keep])
    if opts.keep_sparse and res.reconstruction is not None:
        sp = tmp / "colmap" / "sparse"
        sp.mkdir(parents=True)
        res.reconstruction.write(str(sp))
    seconds["write"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    C = camera_centers(w2c_n)
    return {
        "mode": "sfm", **_video_summary(video, info, sampling, kept, decoded),
        "frames_registered": n_reg, "registered_fraction": n_reg / n,
        "unregistered_frame_indices": unregistered,
        "train_frames": len(train), "test_frames": len(test), "test_every": opts.test_every,
        "image_size": [W, H], "resize": opts.resize, "masks": str(Path(opts.masks).absolute()) if masks else None,
        "mean_reproj_error_px": res.mean_reproj_error,
        "num_points3d": int(len(res.points)), "num_points3d_written": int(keep.sum()),
        "num_models": res.num_models,
        "features_per_frame": {"median": float(np.median(list(res.features.values()))),
                               "min": int(min(res.features.values())), "max": int(max(res.features.values()))},
        "camera": {"model": res.camera_model, "params": res.camera_params, "focal_px": res.focal,
                   "width": W, "height": H},
        "pinhole": {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "undistort_focal_scale": und.scale},
        "fov_deg": fov, "feature_coverage": res.coverage, "camera_motion": st.to_dict(), "warnings": warnings,
        "baseline_ratio": ratio,
        "normalization": {**sim.to_dict(), **ninfo, "target_mean_distance": opts.target_mean_distance},
        "camera_distance_normalized": {"mean": float(np.linalg.norm(C, axis=1).mean()),
                                       "min": float(np.linalg.norm(C, axis=1).min()),
                                       "max": float(np.linalg.norm(C, axis=1).max())},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "options": _options_dict(opts),
        "versions": {"pycolmap": _pycolmap_version(), "python": sys.version.split()[0]},
    }

"""A thin pycolmap (4.x) wrapper: SIFT extraction with one shared camera, sequential (or exhaustive) matching,
incremental mapping, and undistortion to a pinhole camera.

Every step works on a COLMAP database in a work folder; failures that the user can act on raise
``PrepareError`` with a diagnosis (too little texture, a static camera, too few frames registered).
pycolmap is imported lazily so the rest of the package works without it.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import PrepareError
from .plausibility import feature_coverage

__all__ = ["SfmOptions", "SfmResult", "import_pycolmap", "extract_features", "feature_counts", "match_features",
           "match_motion", "run_mapping", "run_sfm"]


def import_pycolmap(verbose: bool = False):
    try:
        import pycolmap
    except ImportError as e:
        raise PrepareError("pycolmap is required for structure-from-motion: pip install pycolmap==4.2.1",
                           "sfm") from e
    # glog: INFO=0, WARNING=1, ERROR=2. COLMAP prints a lot of INFO; keep warnings and errors only.
    try:
        pycolmap.logging.minloglevel = 0 if verbose else 2
        pycolmap.logging.stderrthreshold = 0 if verbose else 2
    except Exception:  # pragma: no cover - logging interface differs between versions
        pass
    return pycolmap


@dataclass
class SfmOptions:
    """Options of the SfM stages (defaults: what the shipped tool uses).

    camera_model: COLMAP model of the single shared camera (SIMPLE_RADIAL: f, cx, cy, k).
    matcher: ``sequential`` (neighbours in time, for videos) or ``exhaustive`` (all pairs; small sets only).
    overlap: sequential matching window (each frame is matched with the next ``overlap`` frames, plus frames
        at quadratic offsets).
    loop_closure: also match "keyframes" (an even subset of at most ``loop_keyframes`` frames) with each other,
        so that a camera coming back to an earlier view closes the loop (no vocabulary tree needed).
    max_num_features: SIFT features per image.
    min_features: median SIFT features per image below which the video is rejected as too textureless.
    fast_mapping: cheaper bundle adjustment schedule (global BA when the model grew by 40 % instead of 10 %,
        fewer iterations and refinement rounds): ~2x faster mapping. Same accuracy on 30 frames of casual_twist,
        but on 75 frames it settled on a 1.6 % too long focal (0.5 deg / 0.8 % pose errors instead of 0.2 deg /
        0.4 %) in 3 of 4 seeds, so it is off by default (``--fast``).
    seed: random seed of RANSAC and the mapper (-1: random).
    """

    camera_model: str = "SIMPLE_RADIAL"
    matcher: str = "sequential"
    overlap: int = 10
    loop_closure: bool = False
    loop_keyframes: int = 25
    max_num_features: int = 8192
    min_features: int = 150
    fast_mapping: bool = False
    num_threads: int = 0
    seed: int = 0
    verbose: bool = False

    def threads(self) -> int:
        return int(self.num_threads) if self.num_threads and self.num_threads > 0 else (os.cpu_count() or 1)


@dataclass
class SfmResult:
    """The largest reconstructed model, in COLMAP's world frame.

    names: all input image names (in order); registered: names of registered images (subset, same order).
    w2c: name -> OpenCV world-to-camera [4,4]. camera_model / camera_params / width / height: the shared camera.
    points / colors / point_errors: sparse points [P,3] float64, RGB uint8 [P,3], reprojection error [P] px.
    coverage: median fraction of an 8x8 grid over the frame holding triangulated features (plausibility.py).
    """

    names: list[str]
    registered: list[str]
    w2c: dict[str, np.ndarray]
    camera_model: str
    camera_params: list[float]
    width: int
    height: int
    points: np.ndarray
    colors: np.ndarray
    point_errors: np.ndarray
    mean_reproj_error: float
    num_models: int
    features: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reconstruction: object = None
    coverage: float | None = None

    @property
    def focal(self) -> float:
        return float(self.camera_params[0])


# ----------------------------------------------------------------------------------------------- stages

def extract_features(database: Path, image_dir: Path, names: Sequence[str], opts: SfmOptions,
                     mask_dir: Path | None = None) -> None:
    """SIFT features of every image into ``database``; one shared camera (CameraMode.SINGLE).

    ``mask_dir`` holds COLMAP masks ``<image name>.png`` (black = ignore features there)."""
    pycolmap = import_pycolmap(opts.verbose)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = opts.camera_model
    if mask_dir is not None:
        reader.mask_path = str(mask_dir)
    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = opts.threads()
    ext.use_gpu = False
    ext.sift.max_num_features = int(opts.max_num_features)
    pycolmap.extract_features(str(database), str(image_dir), image_names=list(names),
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=ext, device=pycolmap.Device.cpu)


def feature_counts(database: Path) -> dict[str, int]:
    """Image name -> number of SIFT keypoints."""
    pycolmap = import_pycolmap()
    db = pycolmap.Database.open(str(database))
    try:
        return {im.name: int(db.num_keypoints_for_image(im.image_id)) for im in db.read_all_images()}
    finally:
        db.close()


def _loop_pairs(names: Sequence[str], overlap: int, max_keyframes: int) -> list[tuple[str, str]]:
    n = len(names)
    stride = max(1, math.ceil(n / max(2, max_keyframes)))
    keys = list(range(0, n, stride))
    return [(names[a], names[b]) for i, a in enumerate(keys) for b in keys[i + 1:] if b - a > overlap]


def match_features(database: Path, names: Sequence[str], opts: SfmOptions, work_dir: Path) -> None:
    """Match and geometrically verify image pairs (sequential window, optional keyframe loop closure)."""
    pycolmap = import_pycolmap(opts.verbose)
    mopt = pycolmap.FeatureMatchingOptions()
    mopt.num_threads = opts.threads()
    mopt.use_gpu = False
    ver = pycolmap.TwoViewGeometryOptions()
    ver.ransac.random_seed = int(opts.seed)
    if opts.matcher == "exhaustive":
        pycolmap.match_exhaustive(str(database), matching_options=mopt, verification_options=ver,
                                  device=pycolmap.Device.cpu)
        return
    if opts.matcher != "sequential":
        raise PrepareError(f"unknown matcher {opts.matcher!r} (choose sequential or exhaustive)", "args")
    pair = pycolmap.SequentialPairingOptions()
    pair.overlap = int(opts.overlap)
    pair.quadratic_overlap = True
    pair.loop_detection = False  # needs a vocabulary tree; see loop_closure below
    pair.num_threads = opts.threads()
    pycolmap.match_sequential(str(database), matching_options=mopt, pairing_options=pair,
                              verification_options=ver, device=pycolmap.Device.cpu)
    if opts.loop_closure:
        pairs = _loop_pairs(names, opts.overlap, opts.loop_keyframes)
        if pairs:
            pf = Path(work_dir) / "loop_pairs.txt"
            pf.write_text("".join(f"{a} {b}\n" for a, b in pairs))
            imp = pycolmap.ImportedPairingOptions()
            imp.match_list_path = str(pf)
            pycolmap.match_image_pairs(str(database), matching_options=mopt, pairing_options=imp,
                                       verification_options=ver, device=pycolmap.Device.cpu)


def match_motion(database: Path) -> dict:
    """How much matched features move between images: per matched pair the median displacement of its
    matches (verified inliers when available) as a fraction of the image diagonal; and the number of pairs
    that passed geometric verification. A static camera gives ~0 motion on the background."""
    pycolmap = import_pycolmap()
    db = pycolmap.Database.open(str(database))
    try:
        images = {im.image_id: im for im in db.read_all_images()}
        cams = {c.camera_id: c for c in db.read_all_cameras()}
        kps = {}

        def kp(i):
            if i not in kps:
                kps[i] = np.asarray(db.read_keypoints(i))[:, :2]
            return kps[i]

        pair_ids, tvgs = db.read_two_view_geometries()
        verified = {pid: g for pid, g in zip(pair_ids, tvgs) if len(g.inlier_matches) > 0}
        pair_ids_m, matches = db.read_all_matches()
        disp = []
        for pid, m in zip(pair_ids_m, matches):
            g = verified.get(pid)
            m = np.asarray(g.inlier_matches) if g is not None else np.asarray(m)
            if len(m) < 8:
                continue
            a, b = pycolmap.pair_id_to_image_pair(pid)
            cam = cams[images[a].camera_id]
            diag = math.hypot(cam.width, cam.height)
            d = np.linalg.norm(kp(a)[m[:, 0]] - kp(b)[m[:, 1]], axis=1)
            disp.append(float(np.median(d)) / diag)
        return {"num_pairs": len(pair_ids_m), "num_verified": len(verified),
                "median_displacement": float(np.median(disp)) if disp else 0.0,
                "max_displacement": float(np.max(disp)) if disp else 0.0}
    finally:
        db.close()


def _pipeline_options(opts: SfmOptions, pycolmap):
    p = pycolmap.IncrementalPipelineOptions()
    p.num_threads = opts.threads()
    p.random_seed = int(opts.seed)
    p.mapper.random_seed = int(opts.seed)
    p.triangulation.random_seed = int(opts.seed)
    p.multiple_models = True
    p.max_num_models = 5
    p.extract_colors = True
    p.ba_refine_focal_length = True
    p.ba_refine_extra_params = True
    p.ba_refine_principal_point = False
    if opts.fast_mapping:
        # Global BA only when the model grew by 40 % (default 10 %), fewer iterations and refinement rounds:
        # most of COLMAP's time on a short video goes into repeated global BAs of a model that is already good.
        p.ba_global_frames_ratio = 1.4
        p.ba_global_points_ratio = 1.4
        p.ba_global_max_num_iterations = 30
        p.ba_global_max_refinements = 2
        p.ba_local_max_num_iterations = 15
        p.ba_local_max_refinements = 1
    return p


def run_mapping(database: Path, image_dir: Path, out_dir: Path, opts: SfmOptions) -> tuple[object, int]:
    """Incremental mapping; returns (largest Reconstruction or None, number of models)."""
    pycolmap = import_pycolmap(opts.verbose)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    models = pycolmap.incremental_mapping(str(database), str(image_dir), str(out_dir),
                                          options=_pipeline_options(opts, pycolmap))
    if not models:
        return None, 0
    best = max(models.values(), key=lambda r: r.num_reg_images())
    return best, len(models)


def _w2c(image) -> np.ndarray:
    M = np.eye(4)
    M[:3, :4] = np.asarray(image.cam_from_world().matrix(), np.float64)
    return M


def run_sfm(image_dir: Path, names: Sequence[str], work_dir: Path, opts: SfmOptions,
            mask_dir: Path | None = None, log: Callable[[str], None] = print) -> SfmResult:
    """Extract, match and map ``names`` in ``image_dir``; work files go to ``work_dir``.

    Raises PrepareError for too little texture, a static camera, or no reconstruction."""
    import_pycolmap(opts.verbose)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "database.db"
    if db.exists():
        db.unlink()
    names = list(names)
    seconds = {}
    threads = opts.threads()

    t0 = time.perf_counter()
    log(f"[extract] SIFT features of {len(names)} frames ({threads} threads"
        f"{', masked' if mask_dir is not None else ''}) ...")
    extract_features(db, image_dir, names, opts, mask_dir)
    feats = feature_counts(db)
    seconds["extract"] = time.perf_counter() - t0
    counts = np.array([feats.get(n, 0) for n in names])
    med = int(np.median(counts)) if len(counts) else 0
    log(f"[extract] {seconds['extract']:.1f} s: features per frame median {med}, min {int(counts.min())}, "
        f"max {int(counts.max())}")
    if med < opts.min_features:
        raise PrepareError(
            f"too little texture: the frames have a median of {med} SIFT features (need at least "
            f"{opts.min_features}); {int((counts < opts.min_features).sum())} of {len(names)} frames are below. "
            "Film a scene with more texture and detail (not a blank wall or flat colours), in better light, "
            "without motion blur; or do not --resize the frames as small.", "texture")

    t0 = time.perf_counter()
    log(f"[match] {opts.matcher} matching (overlap {opts.overlap}"
        f"{', loop closure' if opts.loop_closure else ''}) ...")
    match_features(db, names, opts, work_dir)
    motion = match_motion(db)
    seconds["match"] = time.perf_counter() - t0
    log(f"[match] {seconds['match']:.1f} s: {motion['num_verified']} of {motion['num_pairs']} pairs verified, "
        f"median feature motion {100 * motion['median_displacement']:.2f}% of the image diagonal")
    static_hint = ("the camera barely moves: structure-from-motion needs the camera itself to travel (walk "
                   "around the object, move sideways), not only to turn or stay on a tripod, so that the scene is "
                   "seen from different positions")
    if motion["num_verified"] > 0 and motion["max_displacement"] < 0.004:
        raise PrepareError(f"{static_hint} (matched features move at most "
                           f"{100 * motion['max_displacement']:.2f}% of the image diagonal between frames)", "static")

    t0 = time.perf_counter()
    log(f"[map] incremental mapping ({'fast' if opts.fast_mapping else 'default'} bundle adjustment) ...")
    rec, n_models = run_mapping(db, image_dir, work_dir / "sparse", opts)
    seconds["map"] = time.perf_counter() - t0
    if rec is None or rec.num_reg_images() == 0:
        if motion["num_verified"] == 0:
            raise PrepareError(
                f"structure-from-motion failed: no two frames could be matched ({motion['num_pairs']} pairs tried). "
                "Use more frames (--fps / --max-frames), a video with more texture and slower camera motion, "
                "or --masks for large moving objects.", "registration")
        if motion["median_displacement"] < 0.02:
            raise PrepareError(f"structure-from-motion found no initial pair: {static_hint} (median feature motion "
                               f"{100 * motion['median_displacement']:.2f}% of the image diagonal)", "static")
        raise PrepareError(
            f"structure-from-motion failed: no model could be built from {len(names)} frames. Try more frames "
            "(--fps / --max-frames), --loop-closure, --masks for the moving object, or a video with more texture "
            "and more camera movement.", "registration")
    log(f"[map] {seconds['map']:.1f} s: {rec.num_reg_images()} of {len(names)} frames registered in the largest "
        f"of {n_models} model(s), {rec.num_points3D()} points")

    cam = next(iter(rec.cameras.values()))
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    registered = [n for n in names if n in by_name]
    w2c = {n: _w2c(by_name[n]) for n in registered}
    ids = list(rec.points3D.keys())
    pts = np.array([rec.points3D[i].xyz for i in ids], np.float64).reshape(-1, 3)
    cols = np.array([rec.points3D[i].color for i in ids], np.uint8).reshape(-1, 3)
    errs = np.array([rec.points3D[i].error for i in ids], np.float64)
    coverage = feature_coverage(
        (np.array([p.xy for p in by_name[n].points2D if p.has_point3D()], np.float64).reshape(-1, 2)
         for n in registered), int(cam.width), int(cam.height))
    return SfmResult(names=names, registered=registered, w2c=w2c, camera_model=cam.model_name,
                     camera_params=[float(v) for v in cam.params], width=int(cam.width), height=int(cam.height),
                     points=pts, colors=cols, point_errors=errs,
                     mean_reproj_error=float(rec.compute_mean_reprojection_error()), num_models=n_models,
                     features={n: int(feats.get(n, 0)) for n in names}, seconds=seconds, reconstruction=rec,
                     coverage=coverage)

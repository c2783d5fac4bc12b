"""The built-in scene's synchronised multi-camera mode (``SyntheticConfig.n_cameras >= 2``), written in the Panoptic /
Dynamic3DGaussians layout that dyngauss/data/panoptic.py reads.

The object, its motion and the renderer are those of dyngauss/data/synthetic.py. ``n_cameras`` fixed cameras
look at the origin from the sphere of radius ``camera_radius``: azimuths evenly spaced (offset drawn from the
seed), elevations alternating between 20% and 55% of ``elevation_deg``'s range. Every camera sees every one of
the ``n_train`` time steps t_i = i / (n_train - 1). Camera 0 is held out (``test_meta.json``, the Neural 3D Video
convention of cam00 as the test view), cameras 1.. are ``train_meta.json``. ``n_val``, ``n_test`` and ``n_video``
are not used in this mode.

Files (all deterministic for a config):

* ``train_meta.json`` / ``test_meta.json``: ``w``, ``h``, per time step per camera ``k`` (3x3, pixels), ``w2c``
  (4x4 OpenCV world-to-camera), ``fn`` (``"<cam>/<step:06d>.png"``), ``cam_id``;
* ``ims/<cam>/<step:06d>.png``: RGBA, straight alpha = coverage of supersample^2 samples, transparent background;
* ``seg/<cam>/<step:06d>.png``: 8-bit grey foreground mask, 255 where the coverage is >= 0.5;
* ``depths/<cam>/<step:06d>.npz`` key ``depth``: float32 [H,W] camera z-depth of the exact ray cast through pixel
  centres, +inf on background (``depths`` rather than ``depth`` so that no loader takes it for a video's depth);
* ``init_pt_cld.npz`` key ``data`` [M,7]: x y z r g b seg of up to :data:`INIT_POINTS` pixels of the training
  cameras at t = 0 back-projected with their depth (colour: the pixel's straight rgb; seg 1: all object), as
  Dynamic3DGaussians made its initial points from the capture's depth sensors;
* ``gt_tracks.npz``: as the monocular scene's (``rest_xyz``, ``tri_index``, ``bary``, ``point_ids``) with
  ``times_train`` / ``times_test`` [T] and ``xyz_train`` / ``xyz_test`` [P,T,3];
* ``meta.json`` (generator, config, config hash, ``object_bbox_all_times``, cameras, conventions, checks) and the
  ``.complete`` marker, written last.
"""
from __future__ import annotations

import json
import math
import time as _time
from pathlib import Path

import numpy as np
from PIL import Image

from .camera import look_at_viewmat
from .images import save_npz, write_png

__all__ = ["INIT_POINTS", "TEST_CAMERAS", "multiview_cameras", "write_multiview_scene", "read_depth"]

INIT_POINTS = 4000
TEST_CAMERAS = (0,)
_ELEV_FRACTIONS = (0.2, 0.55)


def multiview_cameras(cfg) -> list[tuple[np.ndarray, float, float]]:
    """(OpenCV world-to-camera [4,4], azimuth deg, elevation deg) of each of the ``cfg.n_cameras`` fixed
    cameras (module docstring)."""
    from .synthetic import _eye

    n = int(cfg.n_cameras)
    rng = np.random.default_rng([int(cfg.seed), 7])
    offset = rng.uniform(0.0, 2.0 * math.pi / n)
    lo, hi = cfg.elevation_deg
    out = []
    for i in range(n):
        az = offset + 2.0 * math.pi * i / n
        el = math.radians(lo + _ELEV_FRACTIONS[i % 2] * (hi - lo))
        V = look_at_viewmat(_eye(az, el, cfg.camera_radius), (0, 0, 0), (0, 0, 1))
        out.append((V, math.degrees(az) % 360.0, math.degrees(el)))
    return out


def _meta_json(cams: list[int], views: list, K: np.ndarray, T: int, W: int, H: int) -> dict:
    return {"w": W, "h": H,
            "k": [[K.tolist() for _ in cams] for _ in range(T)],
            "w2c": [[views[c][0].tolist() for c in cams] for _ in range(T)],
            "fn": [[f"{c}/{t:06d}.png" for c in cams] for t in range(T)],
            "cam_id": [list(cams) for _ in range(T)]}


def _write_mask(path: Path, alpha: np.ndarray) -> None:
    Image.fromarray(np.where(alpha >= 0.5, 255, 0).astype(np.uint8), mode="L").save(
        path, format="PNG", optimize=False, compress_level=6)


def write_multiview_scene(root: Path, cfg) -> None:
    """Write the multi-camera scene of `cfg` into the (empty) folder `root` (module docstring)."""
    from . import synthetic as syn

    t0 = _time.perf_counter()
    root = Path(root)
    W = H = int(cfg.resolution)
    K = syn._camera_K(cfg)
    T = int(cfg.n_train)
    times = np.arange(T) / (T - 1)
    mesh = syn.rest_mesh(cfg)
    views = multiview_cameras(cfg)
    n = len(views)
    test = [c for c in TEST_CAMERAS if c < n]
    train = [c for c in range(n) if c not in test]
    q = syn._pixel_centres(W, H, 1)
    rng = np.random.default_rng([int(cfg.seed), 11])
    init_p, init_c = [], []
    cover = {c: [] for c in range(n)}
    border = {c: 0 for c in range(n)}
    for c in range(n):
        for sub in ("ims", "seg", "depths"):
            (root / sub / str(c)).mkdir(parents=True)
    for ti, t in enumerate(times):
        posed = syn.deform_points(mesh.verts, t, cfg)
        for c, (V, _, _) in enumerate(views):
            rgb, alpha = syn.render_view(t, V, K, W, H, cfg, mesh=mesh)
            name = f"{ti:06d}"
            write_png(root / "ims" / str(c) / f"{name}.png", rgb, alpha)
            _write_mask(root / "seg" / str(c) / f"{name}.png", alpha)
            _, _, depth = syn.raycast(posed, mesh.faces, V, K, W, H, q)
            depth = depth.reshape(H, W).astype(np.float32)
            save_npz(root / "depths" / str(c) / f"{name}.npz", depth=depth)
            cover[c].append(float(alpha.mean()))
            border[c] += bool(alpha[0].any() or alpha[-1].any() or alpha[:, 0].any() or alpha[:, -1].any())
            if ti == 0 and c in train:
                ok = np.isfinite(depth) & (alpha >= 0.5)
                rows, cols = np.nonzero(ok)
                z = depth[rows, cols].astype(np.float64)
                pc = np.stack([(cols + 0.5 - K[0, 2]) / K[0, 0] * z, (rows + 0.5 - K[1, 2]) / K[1, 1] * z, z], -1)
                Rm, tv = V[:3, :3], V[:3, 3]
                init_p.append((pc - tv) @ Rm)          # camera -> world: R^T (p - t)
                init_c.append(rgb[rows, cols])
    pts, cols = np.concatenate(init_p), np.concatenate(init_c)
    if len(pts) > INIT_POINTS:
        keep = np.sort(rng.choice(len(pts), INIT_POINTS, replace=False))
        pts, cols = pts[keep], cols[keep]
    save_npz(root / "init_pt_cld.npz",
             data=np.concatenate([pts, cols, np.ones((len(pts), 1))], 1).astype(np.float32))

    for split, cams in (("train", train), ("test", test)):
        if cams:
            with open(root / f"{split}_meta.json", "w") as f:
                json.dump(_meta_json(cams, views, K, T, W, H), f)

    trk_tri, trk_bary = syn._sample_tracks(mesh, cfg.n_tracks, rng)
    xyz = np.stack([syn._track_xyz(mesh, trk_tri, trk_bary, t, cfg) for t in times], 1).astype(np.float32)
    tracks = {"point_ids": np.arange(cfg.n_tracks, dtype=np.int32), "tri_index": trk_tri, "bary": trk_bary,
              "rest_xyz": (mesh.verts[mesh.faces[trk_tri]] * trk_bary.astype(np.float64)[:, :, None]).sum(1)
              .astype(np.float32).reshape(cfg.n_tracks, 3)}
    for split, cams in (("train", train), ("test", test)):
        if cams:
            tracks[f"times_{split}"] = times.astype(np.float32)
            tracks[f"xyz_{split}"] = xyz.reshape(cfg.n_tracks, T, 3)
    save_npz(root / "gt_tracks.npz", **tracks)

    meta = {
        "scene": syn.family(cfg.motion).describe(cfg)["scene"] + "_multiview",
        "description": (f"The built-in {'twisting bar' if cfg.motion == 'twist' else cfg.motion + ' scene'} "
                        f"(dyngauss.data.synthetic) seen by {n} fixed synchronised cameras "
                        f"at {T} time steps, in the Panoptic / Dynamic3DGaussians layout; camera(s) "
                        f"{', '.join(map(str, test))} held out as the test split."),
        "generator": "dyngauss.data.synthetic",
        "generator_version": syn.GENERATOR_VERSION,
        "layout": "panoptic",
        "config": cfg.to_dict(),
        "config_hash": syn.config_hash(cfg),
        "seed": cfg.seed,
        "resolution": [W, H],
        "camera_angle_x": cfg.camera_angle_x,
        "focal_px": float(K[0, 0]),
        "camera_radius": cfg.camera_radius,
        "n_cameras": n,
        "n_times": T,
        "cameras": [{"cam_id": c, "azimuth_deg": round(az, 6), "elevation_deg": round(el, 6),
                     "split": "test" if c in test else "train"} for c, (_, az, el) in enumerate(views)],
        "frame_counts": {"train": T * len(train), "test": T * len(test)},
        "n_tracks": cfg.n_tracks,
        "n_init_points": int(len(pts)),
        "mesh": {"n_vertices": int(len(mesh.verts)), "n_triangles": int(len(mesh.faces))},
        "object_bbox_all_times": syn.object_bbox(cfg).tolist(),
        "conventions": {
            "world": "z up; object inside object_bbox_all_times",
            "w2c": "world-to-camera 4x4, OpenCV camera (x right, y down, looks along +z)",
            "k": "pixels; pixel (col,row) centre at (col+0.5,row+0.5)",
            "time": "step i of n_times is t = i/(n_times-1); every camera at every step",
            "images": "RGBA PNG, 8 bit, straight alpha (coverage), transparent background",
            "seg": "grey PNG, 255 where coverage >= 0.5",
            "depths": "depths/<cam>/<step>.npz key 'depth': float32 [H,W] camera z-depth at pixel centres, +inf "
                      "on background",
            "gt_tracks": "as the monocular scene; xyz_<split> [P,T,3] at times_<split> (both splits: all steps)",
        },
        "checks": {"alpha_coverage_min_mean_max": {str(c): [round(min(v), 4), round(float(np.mean(v)), 4),
                                                          round(max(v), 4)] for c, v in cover.items()},
                   "frames_touching_border": {str(c): f"{b}/{T}" for c, b in border.items()}},
    }
    with open(root / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
    marker = {"generator_version": syn.GENERATOR_VERSION, "config_hash": syn.config_hash(cfg),
              "seconds": round(_time.perf_counter() - t0, 3)}
    with open(root / syn.COMPLETE_MARKER, "w") as f:   # written last: the folder is complete
        json.dump(marker, f)


def read_depth(folder: Path, cam: int | str, step: int) -> np.ndarray:
    """Depth map float32 [H,W] of camera `cam` at time step `step` of a scene written here (+inf: background)."""
    from .dnerf import DatasetError

    p = Path(folder) / "depths" / str(cam) / f"{int(step):06d}.npz"
    try:
        with np.load(p, allow_pickle=False) as z:
            return np.asarray(z["depth"], np.float32)
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"cannot read depth {p}: {e}") from e

"""`dyngauss make-synthetic`: generate the built-in synthetic scene (D-NeRF format with depth / flow / track
ground truth).

    dyngauss make-synthetic                      # into the cache ($DYNGAUSS_CACHE or ~/.cache/dyngauss)
    dyngauss make-synthetic --out data/bar --res 256 --seed 1
    dyngauss make-synthetic --multiview --out data/bar_mv   # 8 fixed cameras x 30 time steps, Panoptic layout
    dyngauss make-synthetic --cameras 12 --n-train 60       # 12 cameras x 60 time steps (into the cache)
    dyngauss make-synthetic --motion limb --train-camera orbit --depth --out data/limb_orbit

Prints the scene folder (stdout; the time taken goes to stderr). With --out, an existing synthetic scene there is
replaced; any other existing non-empty folder is refused unless --force. With --multiview / --cameras N the
scene is seen by N (default 8) fixed synchronised cameras at each of --n-train time steps (default 30 then),
camera 0 held out as the test split (dyngauss/data/synthetic_multiview.py); --n-val/--n-test/--n-video are unused.
--motion picks the object and its motion (twist, limb, blob, two_objects, spin; dyngauss/data/motion_families.py);
--train-camera orbit films the training frames with one smoothly moving camera instead of a random camera per
frame (monocular only); --depth also writes exact depth per training frame (train/depth_XXX.npz).
`python tools/make_synthetic.py ...` is the same command. Exit codes: 0 ok, 2 bad arguments / refused folder.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

MULTIVIEW_CAMERAS = 8   # --multiview defaults: fixed cameras ...
MULTIVIEW_TIMES = 30    # ... and time steps

def main(argv: list[str] | None = None) -> int:
    from ..data.synthetic import MOTIONS, TRAIN_CAMERAS, SyntheticConfig, ensure_scene, generate

    d = SyntheticConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the cache path)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="cache root when --out is not given")
    ap.add_argument("--res", type=int, default=d.resolution, help="image width = height")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--n-train", type=int, default=None,
                    help=f"training frames; time steps with --multiview (default {d.n_train}, multi-view "
                         f"{MULTIVIEW_TIMES})")
    ap.add_argument("--n-val", type=int, default=d.n_val)
    ap.add_argument("--n-test", type=int, default=d.n_test)
    ap.add_argument("--n-video", type=int, default=d.n_video)
    ap.add_argument("--n-tracks", type=int, default=d.n_tracks)
    ap.add_argument("--supersample", type=int, default=d.supersample)
    ap.add_argument("--motion-scale", type=float, default=d.motion_scale)
    ap.add_argument("--multiview", action="store_true",
                    help=f"synchronised fixed cameras (--cameras, default {MULTIVIEW_CAMERAS}) instead of one "
                         "random camera per frame")
    ap.add_argument("--cameras", type=int, default=None, help="number of fixed cameras (>= 2; implies --multiview)")
    ap.add_argument("--motion", choices=MOTIONS, default=d.motion, help="object and motion family")
    ap.add_argument("--train-camera", choices=TRAIN_CAMERAS, default=d.train_camera,
                    help="training cameras: a random camera per frame, or one smoothly moving (orbiting) camera")
    ap.add_argument("--depth", action="store_true", help="also write exact depth per training frame")
    ap.add_argument("--force", action="store_true", help="replace --out even if it is not a synthetic scene")
    a = ap.parse_args(argv)
    multi = a.multiview or a.cameras is not None
    n_cameras = (a.cameras if a.cameras is not None else MULTIVIEW_CAMERAS) if multi else 0
    n_train = a.n_train if a.n_train is not None else (MULTIVIEW_TIMES if multi else d.n_train)
    try:
        cfg = SyntheticConfig(resolution=a.res, seed=a.seed, n_train=n_train, n_val=a.n_val, n_test=a.n_test,
                              n_video=a.n_video, n_tracks=a.n_tracks, supersample=a.supersample,
                              motion_scale=a.motion_scale, n_cameras=n_cameras, motion=a.motion,
                              train_camera=a.train_camera, train_depth=a.depth)
    except ValueError as e:
        ap.error(str(e))
    t0 = time.perf_counter()
    try:
        path = generate(a.out, cfg, force=a.force) if a.out else ensure_scene(cfg, cache_dir=a.cache_dir)
    except FileExistsError as e:
        ap.error(str(e))
    print(f"# {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

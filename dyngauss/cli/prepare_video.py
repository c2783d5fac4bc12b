"""`dyngauss prepare-video`: prepare your own video for training: decode frames, estimate the camera and its
poses with structure-from-motion (pycolmap), and write a D-NeRF-format folder.

    dyngauss prepare-video my_video.mp4 --out data/my_scene                 # at most 75 frames
    dyngauss prepare-video my_video.mp4 --out data/my_scene --fps 10 --resize 640
    dyngauss prepare-video my_video.mp4 --out data/my_scene --masks my_masks/   # white = moving object
    dyngauss prepare-video tripod.mp4 --out data/my_scene --fixed-camera --fov 65  # a camera that did not move
    dyngauss train --config video data.path=data/my_scene out=runs/my_scene

Film it like this: walk around the object (the camera must travel, not only turn), keep the motion slow and the
scene textured, and use --masks when a large part of the frame moves. A camera that stands still (tripod, table)
is detected before structure-from-motion and refused (exit 2); for such a video use --fixed-camera [--fov DEG]:
one fixed camera for every frame, and the deformation field explains all motion. Frame times come from the
video's timestamps (variable-frame-rate phone videos included); --fps / --max-frames sample real time.
The output holds frames/, transforms.json, transforms_train.json, transforms_test.json (every --test-every-th
frame), points3d.ply (not with --fixed-camera) and sfm.json (summary and the transform back to the SfM frame).
It is built in OUT.tmp-XXXX and renamed when complete.
`python tools/prepare_video.py ...` is the same command.
Exit codes: 0 ok, 2 bad input (the message says what to try) or an output that cannot be written (disk
full, read-only: one `error:` line naming the path), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", help="input video (any format ffmpeg reads: mp4, mov, ...)")
    ap.add_argument("--out", help="output folder (default: ./<video name>_dnerf)")
    sub = ap.add_mutually_exclusive_group()
    sub.add_argument("--fps", type=float, help="keep about N frames per second of real time (by timestamp)")
    sub.add_argument("--max-frames", type=int, help="keep at most N evenly spaced frames (default 75)")
    sub.add_argument("--step", type=int, help="keep every N-th frame")
    ap.add_argument("--masks", help="folder of moving-object masks (white = moving), one per video frame sorted "
                    "by name (or one per kept frame), each the size of the video frames")
    ap.add_argument("--resize", type=int, help="output width in pixels (aspect ratio kept)")
    ap.add_argument("--test-every", type=int, default=10, help="every K-th frame is a test frame (0: none; default 10)")
    ap.add_argument("--matcher", choices=("sequential", "exhaustive"), default="sequential")
    ap.add_argument("--overlap", type=int, default=10, help="sequential matching window in frames (default 10)")
    ap.add_argument("--loop-closure", action="store_true",
                    help="also match keyframes across the whole video (for videos that come back to earlier views)")
    ap.add_argument("--max-features", type=int, default=8192, help="SIFT features per frame (default 8192)")
    ap.add_argument("--min-registered", type=float, default=0.7,
                    help="fraction of frames that must register (default 0.7)")
    ap.add_argument("--fixed-camera", action="store_true",
                    help="the camera did not move (tripod, table): skip structure-from-motion and write one fixed "
                    "pinhole camera for every frame (--fov, default 60 degrees); the deformation field explains "
                    "all motion")
    ap.add_argument("--fov", type=float, help="the camera's horizontal field of view in degrees: the fixed camera's "
                    "with --fixed-camera, otherwise the value the estimated focal length must agree with")
    ap.add_argument("--skip-camera-check", action="store_true",
                    help="run structure-from-motion even when the frames look like a fixed camera (only right for "
                    "a camera moving around a rigid object in front of a plain backdrop)")
    ap.add_argument("--fast", action="store_true", help="cheaper bundle-adjustment schedule: about 2x faster "
                    "mapping, often slightly less accurate on long sequences (default: COLMAP's schedule)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    ap.add_argument("-v", "--verbose", action="store_true", help="show COLMAP's log")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    args = ap.parse_args(argv)

    from ..sfm.colmap import SfmOptions
    from ..sfm.errors import PrepareError
    from ..sfm.prepare import PrepareOptions, prepare_video

    out = Path(args.out) if args.out else Path.cwd() / f"{Path(args.video).stem}_dnerf"
    sfm = SfmOptions(matcher=args.matcher, overlap=args.overlap, loop_closure=args.loop_closure,
                     max_num_features=args.max_features, fast_mapping=args.fast, num_threads=args.threads,
                     verbose=args.verbose)
    opts = PrepareOptions(fps=args.fps, max_frames=args.max_frames, step=args.step, masks=args.masks,
                          resize=args.resize, test_every=args.test_every, min_registered=args.min_registered,
                          overwrite=args.overwrite, sfm=sfm, fixed_camera=args.fixed_camera, fov=args.fov,
                          camera_check=not args.skip_camera_check)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    try:
        prepare_video(args.video, out, opts, log=log)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output cannot be written (disk full, read-only, permission denied)
        from ..io import describe_os_error

        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (nothing written)", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"train with: dyngauss train --config video data.path={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

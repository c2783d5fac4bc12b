"""Play a PLY sequence (`dyngauss export`) in real time in Open3D, or render it headless to a video / PNGs.

    dyngauss play runs/x/ply                                      # window (needs a display)
    dyngauss play runs/x/ply --video out.mp4                      # headless: every frame -> mp4 (or .gif)
    dyngauss play runs/x/ply --frames renders/ --size 640 480 --nodes
    dyngauss play runs/x/ply --glyphs                             # oriented ellipsoids (<= 2000 Gaussians)
    dyngauss play runs/x/ply --splats                             # rasterized Gaussians (C++ CPU kernel / gsplat)
(`python tools/play.py ...` is the same command.)

Window keys: space play/pause | <- -> step | + - speed | L loop | N node graph | G glyphs | P screenshot |
R reset view | [ ] point size | H help | Esc/Q quit. With --splats the window shows the rasterized Gaussians
(re-rendered from the current view; G: splats/points, [ ]: splat size); headless --splats needs no GL at all.

Headless rendering picks the first offscreen path that works (Open3D legacy Visualizer through EGL or an X
server such as `xvfb-run -a`, then Filament's OffscreenRenderer) and says what to install if none does.
Exit codes: 0 ok, 2 bad arguments / unreadable sequence / --video or --frames not writable (one `error:` line),
3 no display or offscreen rendering.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .progress import progress_printer


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seq", help="sequence folder (sequence.json + frame_*.ply), or one PLY file")
    out = ap.add_argument_group("headless output (no window)")
    out.add_argument("--video", help="write every frame to this video (.mp4/.mkv/.mov/.avi/.webm or .gif)")
    out.add_argument("--frames", help="write every frame as PNG into this folder (frame_0000.png ...)")
    out.add_argument("--backend", default="auto", choices=("auto", "legacy", "filament"),
                     help="offscreen renderer (default: the first that works)")
    ap.add_argument("--fps", type=float, default=None, help="playback / video rate (default: the manifest's)")
    ap.add_argument("--point-size", type=float, default=None, help="pixels (default: from the Gaussians' scale)")
    ap.add_argument("--glyphs", action="store_true", help="oriented ellipsoid per Gaussian (small sets only)")
    ap.add_argument("--max-glyphs", type=int, default=2000)
    ap.add_argument("--nodes", action="store_true", help="draw the node graph (headless; N toggles in the window)")
    ap.add_argument("--splats", action="store_true",
                    help="show the rasterized Gaussians instead of points (gaussians frames only)")
    ap.add_argument("--splat-backend", default="auto", choices=("auto", "cpu", "gsplat", "torch"),
                    help="rasterizer for --splats: auto = gsplat on a CUDA GPU, else the C++ CPU kernel")
    ap.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None,
                    help="image/window size (default 960 720 headless, 1280 800 window)")
    ap.add_argument("--opacity-threshold", type=float, default=0.05, help="hide Gaussians below this opacity")
    ap.add_argument("--background", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                    help="background colour in [0,1] (default: the manifest's, else white)")
    ap.add_argument("--up", type=float, nargs=3, default=(0.0, 0.0, 1.0), metavar=("X", "Y", "Z"),
                    help="world up axis for the camera (default +z, D-NeRF/Blender)")
    ap.add_argument("--no-loop", action="store_true", help="window: stop at the last frame")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--screenshot-dir", default=".", help="where P saves screenshots")
    ap.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)  # smoke tests: auto-close
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the player (window) or the headless renderer; returns the exit code (0, 2 or 3)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning
    args = build_parser().parse_args(argv)
    from ..io.video import VideoError, check_video_path
    from ..viewer import OffscreenUnavailable, Player, SequenceLoadError, load_sequence, render_offscreen

    if args.fps is not None and not args.fps > 0:
        print(f"error: --fps must be positive, got {args.fps}", file=sys.stderr)
        return 2
    try:
        if args.video:
            check_video_path(args.video)
    except VideoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        seq = load_sequence(args.seq, opacity_threshold=args.opacity_threshold, glyphs=args.glyphs,
                            max_glyphs=args.max_glyphs, fps=args.fps)
    except (SequenceLoadError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"loaded {seq.count} frames x {seq.num_points} points ({seq.fmt}) at {seq.fps:g} fps"
          f"{', node graph' if seq.nodes else ''} from {seq.path}")
    splats = None
    if args.splats:
        from ..render.cpu_backend import KernelUnavailableError
        from ..viewer.splats import SplatError, SplatRenderer

        try:
            splats = SplatRenderer(seq, backend=args.splat_backend, background=args.background)
        except (SplatError, KernelUnavailableError) as e:
            print(f"error: --splats: {e}", file=sys.stderr)
            return 2
        print(f"splats: rasterized with {splats.name}")
    try:
        if args.video or args.frames:
            size = tuple(args.size) if args.size else (960, 720)
            st = render_offscreen(seq, video=args.video, frames_dir=args.frames, size=size, fps=args.fps,
                                  point_size=args.point_size, glyphs=args.glyphs, nodes=args.nodes,
                                  backend=args.backend, background=args.background, up=args.up,
                                  progress=progress_printer("rendering"), splats=splats)
            print(f"{st.frames} frames in {st.seconds:.2f} s ({st.fps:.1f} FPS, {st.backend} renderer)"
                  + "".join(f"\n  -> {p}" for p in ([Path(args.frames)] if args.frames else [])
                            + ([Path(args.video)] if args.video else [])))
        else:
            size = tuple(args.size) if args.size else (1280, 800)
            player = Player(seq, size=size, point_size=args.point_size, glyphs=args.glyphs,
                            background=args.background, loop=not args.no_loop, speed=args.speed,
                            screenshot_dir=args.screenshot_dir, up=args.up, splats=splats)
            n = player.run(duration=args.duration)
            print(f"shown {n} frame updates")
    except OffscreenUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except ValueError as e:  # bad size, bad video path (VideoError), unknown backend
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --video / --frames not writable, disk full: one line naming the path
        from ..io import describe_os_error

        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`dyngauss export`: export a trained model as a per-frame PLY sequence (frame_0000.ply ... + sequence.json).

    dyngauss export --run runs/x                        # training times (or 30 frames) -> runs/x/ply
    dyngauss export --run runs/x --frames 60 --fps 30
    dyngauss export --ckpt runs/x/checkpoints/ckpt_003000.pt --times 0 0.25 0.5 --out /tmp/seq
    dyngauss export --run runs/x --format points --opacity-threshold 0.1 --out runs/x/ply_points
    dyngauss export --run runs/x --sh-degree 3          # SH padded with zeros to degree 3 (SIBR, graphdeco, 3DGS.cpp)
    dyngauss export --run runs/x --supersplat           # + runs/x/ply_supersplat: drop it on SuperSplat (timeline)

Then play it:  dyngauss play runs/x/ply
`python tools/export_ply.py ...` is the same command.
Exit codes: 0 ok, 2 bad arguments / missing or incompatible checkpoint / unwritable output (disk full,
read-only, permission denied: one `error:` line naming the folder; a previous export there stays as it was).
Temporary folders that a killed export left next to the output (.NAME.tmp-*) are removed when the next export
to it starts.
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from .progress import progress_printer  # noqa: E402


def _default_out(src: Path, is_run: bool, fmt: str) -> Path:
    name = "ply" if fmt == "gaussians" else "ply_points"
    if is_run and src.is_dir():
        return src / name
    ck = src.resolve()
    if ck.parent.name == "checkpoints":
        return ck.parent.parent / name
    return ck.with_name(ck.stem + "_" + name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder (its latest checkpoint is used)")
    src.add_argument("--ckpt", help="checkpoint file (.pt)")
    when = ap.add_mutually_exclusive_group()
    when.add_argument("--frames", type=int, help="N evenly spaced times in [0, 1]")
    when.add_argument("--times", type=float, nargs="+", help="explicit times in [0, 1]")
    ap.add_argument("--fps", type=float, default=None, help="playback rate stored in sequence.json "
                    "(default: the run's export.fps, else 30)")
    ap.add_argument("--format", choices=("gaussians", "points"), default="gaussians")
    ap.add_argument("--sh-degree", type=int, choices=(-1, 0, 1, 2, 3), default=None,
                    help="SH degree of the gaussians PLYs: -1 = the model's own; higher pads f_rest with zeros "
                    "(graphdeco's load_ply, SIBR and 3DGS.cpp need 3); lower than the model's is an error "
                    "(default: the run's export.sh_degree, else -1)")
    ap.add_argument("--opacity-threshold", type=float, default=0.05,
                    help="points format: keep Gaussians with canonical opacity >= this (default 0.05)")
    ap.add_argument("--no-nodes", action="store_true", help="do not write the node graph (nodes_*.ply)")
    ap.add_argument("--out", help="output folder (default: RUN/ply, or RUN/ply_points for --format points)")
    ap.add_argument("--supersplat", action="store_true",
                    help="also write OUT_supersplat/: the frames only (hard links), a folder SuperSplat opens as one "
                    "animation (dyngauss.export.supersplat)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    src_path = Path(args.run or args.ckpt)
    if not src_path.exists():
        print(f"error: {'run folder' if args.run else 'checkpoint'} not found: {src_path}", file=sys.stderr)
        return 2
    if args.fps is not None and not args.fps > 0:
        print(f"error: --fps must be positive, got {args.fps}", file=sys.stderr)
        return 2
    if args.sh_degree not in (None, -1) and args.format == "points":
        print("error: --sh-degree applies to --format gaussians (points carry no SH)", file=sys.stderr)
        return 2
    from ..export.sequence import SequenceError, export_sequence, load_manifest, times_for
    from ..model import CheckpointError, DynamicGaussians

    try:
        model = DynamicGaussians.load(src_path, device=args.device)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: cannot load {src_path}: {e}", file=sys.stderr)
        return 2
    try:
        times = times_for(frames=args.frames, times=args.times, train_times=list(model.train_times))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = model.config
    fps = args.fps or float(getattr(getattr(cfg, "export", None), "fps", 0) or 30.0)
    sh_degree = args.sh_degree if args.sh_degree is not None else \
        int(getattr(getattr(cfg, "export", None), "sh_degree", -1))
    out = Path(args.out) if args.out else _default_out(src_path, bool(args.run), args.format)
    extra = {"step": model.info.step}
    bg = getattr(getattr(cfg, "data", None), "background", None)
    if bg is not None:
        extra["background"] = [float(v) for v in list(bg)[:3]]

    progress = progress_printer("exporting frame", args.quiet)
    try:
        seq = export_sequence(model, times, out, fmt=args.format, fps=fps,
                              opacity_threshold=args.opacity_threshold, source=str(Path(model.info.path).resolve()),
                              node_graph=False if args.no_nodes else None, extra=extra, progress=progress,
                              sh_degree=sh_degree if args.format == "gaussians" else None)
    except SequenceError as e:
        print(f"error: export failed: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # OutputError: disk full, read-only, permission denied, a parent that is a file
        from ..io import describe_os_error

        print(f"error: export failed: {describe_os_error(e)}", file=sys.stderr)
        return 2
    m = load_manifest(seq)
    if args.supersplat:
        from ..export.supersplat import supersplat_folder

        try:
            print(f"SuperSplat folder (drop it on SuperSplat) -> {supersplat_folder(seq)}")
        except (SequenceError, OSError) as e:
            print(f"error: --supersplat: {e}", file=sys.stderr)
            return 2
    if not args.quiet:
        nodes = f", node graph ({m['num_nodes']} nodes)" if m.get("nodes") else ""
        print(f"wrote {m['count']} frames x {m['num_gaussians']} {m['format']} at {m['fps']:g} fps{nodes} -> {seq}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

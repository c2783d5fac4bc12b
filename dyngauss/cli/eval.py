"""`dyngauss eval`: evaluate a run: render a split, write RUN/metrics.json and RUN/renders/<split>/.

    dyngauss eval --run runs/default [--data PATH] [--split test] [--twist-slices 6]

--twist-slices N also prints the axial twist error of the 3D tracks (dyngauss/eval/twist.py): for N slices
along the object's rest long axis (--twist-axis), how many degrees the model turns each cross-section about
the axis compared with the ground truth, at a few times of the track split; saved to RUN/twist_error.json.
`python tools/eval.py ...` is the same command. Exit codes: 0 ok, 1 dataset / checkpoint / kernel error,
2 bad arguments, or an output that cannot be written (disk full, read-only, permission denied: one `error:`
line naming the path; earlier outputs stay as they were).
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder (or a checkpoint file inside one)")
    ap.add_argument("--data", default=None, help="dataset folder (default: the one the run was trained on)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--backend", default=None, help="render backend (default: the run's)")
    ap.add_argument("--no-renders", action="store_true", help="do not write PNG renders")
    ap.add_argument("--twist-slices", type=int, default=0, help="also report the axial twist error (0 = off)")
    ap.add_argument("--twist-axis", choices=("x", "y", "z"), default="z", help="the object's rest long axis")
    args = ap.parse_args(argv)
    if args.twist_slices < 0 or args.twist_slices == 1:
        ap.error("--twist-slices must be 0 (off) or >= 2")
    from ..data.dnerf import DatasetError
    from ..data.loaders import load_split, split_options
    from ..eval.evaluate import evaluate_run
    from ..render.cpu_backend import KernelUnavailableError
    from ..model import CheckpointError, DynamicGaussians

    try:
        model = DynamicGaussians.load(args.run)
        run_dir = Path(args.run) if Path(args.run).is_dir() else model.info.path.parent.parent
        data = Path(args.data) if args.data else Path(model.info.dataset or "")
        cfg = model.config
        split = load_split(data, args.split, **split_options(cfg.data))
        metrics = evaluate_run(model, split, run_dir, args.split, backend=args.backend or cfg.render.backend,
                               save_renders=not args.no_renders, lpips=cfg.eval.lpips, data_path=data)
        twist = None
        if args.twist_slices:
            try:
                twist = _twist_report(model, data, run_dir, args.twist_slices, "xyz".index(args.twist_axis), metrics)
            except (ValueError, KeyError) as e:  # bad slice count, a split without tracks
                raise DatasetError(f"twist error: {e}") from e
    except (DatasetError, CheckpointError, KernelUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # metrics.json / renders not writable, disk full: one line naming the path, exit 2
        from ..io import describe_os_error

        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    print(f"{args.split}: PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  LPIPS {metrics['lpips']}  "
          f"FPS {metrics['fps']:.1f}  Gaussians {metrics['num_gaussians']}  -> {run_dir / 'metrics.json'}")
    if metrics.get("track_epe") is not None or metrics.get("flow_epe_px") is not None:
        print(f"motion: flow EPE {metrics.get('flow_epe_px')} px  track EPE {metrics.get('track_epe')} "
              f"({metrics.get('track_epe_rel')} of the extent; strided references "
              f"{metrics.get('track_epe_strided_rel')})")
    if twist is not None:
        print(twist)
    return 0


def _twist_report(model, data: Path, run_dir: Path, slices: int, axis: int, metrics: dict) -> str:
    """Axial twist error table (degrees) for the run's track split; also written to RUN/twist_error.json."""
    import json

    import torch

    from ..data.dnerf import DatasetError, load_tracks
    from ..eval.motion import track_epe
    from ..eval.twist import axial_twist_error, slice_edges
    from ..io import atomic_write_text

    tracks = load_tracks(data)  # DatasetError naming gt_tracks.npz when it is missing or unreadable
    if "rest_xyz" not in tracks:
        raise DatasetError("--twist-slices needs rest_xyz in gt_tracks.npz")
    split = metrics.get("track_split") or "video"
    with torch.no_grad():
        te = track_epe(model, tracks, split=split, return_pred=True)
    rest = tracks["rest_xyz"][:, axis]
    err = axial_twist_error(te["pred"], te["gt"], rest, slices)
    times = [float(t) for t in tracks[f"times_{split}"]]
    edges = [float(v) for v in slice_edges(rest, slices)]
    atomic_write_text(run_dir / "twist_error.json", json.dumps(
        {"split": split, "times": times, "slice_edges": edges, "twist_error_deg": err.tolist()}, indent=1))
    cols = sorted({len(times) // 4, len(times) // 2, 3 * len(times) // 4, len(times) - 1})
    lines = [f"axial twist error (degrees, prediction minus truth; {split} split, reference t={times[0]:.2f}):",
             "  rest slice        " + " ".join(f"t={times[j]:5.2f}" for j in cols)]
    for s in range(slices):
        lines.append(f"  [{edges[s]:+.2f}, {edges[s + 1]:+.2f}]  " + " ".join(f"{err[s, j]:+7.1f}" for j in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Evaluate a run: render a split, write RUN/metrics.json and RUN/renders/<split>/.

    python tools/eval.py --run runs/default [--data PATH] [--split test]
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder (or a checkpoint file inside one)")
    ap.add_argument("--data", default=None, help="dataset folder (default: the one the run was trained on)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--backend", default=None, help="render backend (default: the run's)")
    ap.add_argument("--no-renders", action="store_true", help="do not write PNG renders")
    args = ap.parse_args(argv)
    from dyngauss.data.dnerf import DatasetError
    from dyngauss.data.loaders import load_split
    from dyngauss.eval.evaluate import evaluate_run
    from dyngauss.train.checkpoint import CheckpointError, load_model

    try:
        model = load_model(args.run)
        run_dir = Path(args.run) if Path(args.run).is_dir() else model.path.parent.parent
        data = Path(args.data) if args.data else Path(model.extra.get("dataset") or "")
        cfg = model.cfg
        split = load_split(data, args.split, downscale=cfg.data.downscale, background=tuple(cfg.data.background))
        metrics = evaluate_run(model, split, run_dir, args.split, backend=args.backend or cfg.render.backend,
                               save_renders=not args.no_renders, lpips=cfg.eval.lpips, data_path=data)
    except (DatasetError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.split}: PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  LPIPS {metrics['lpips']}  "
          f"FPS {metrics['fps']:.1f}  Gaussians {metrics['num_gaussians']}  -> {run_dir / 'metrics.json'}")
    if metrics.get("track_epe") is not None or metrics.get("flow_epe_px") is not None:
        print(f"motion: flow EPE {metrics.get('flow_epe_px')} px  track EPE {metrics.get('track_epe')} "
              f"({metrics.get('track_epe_rel')} of the extent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Train a dynamic Gaussian scene, evaluate it and export a PLY sequence.

    python tools/train.py                                   # built-in default scene, CPU
    python tools/train.py --config configs/default.yaml train.iters=500 out=runs/x
    python tools/train.py data.path=../shared/data/twist deform.kind=nodes out=runs/twist
    python tools/train.py --resume out=runs/x               # continue from the latest checkpoint
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dyngauss.config import ConfigError, load_config  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: configs/default.yaml)")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in `out`")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.iters=500 deform.kind=mlp")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from dyngauss.data.dnerf import DatasetError
    from dyngauss.train.checkpoint import CheckpointError
    from dyngauss.train.run import run_job
    from dyngauss.train.trainer import TrainingError

    try:
        run_job(cfg, resume=args.resume)
    except (DatasetError, CheckpointError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`dyngauss train`: train a dynamic Gaussian scene, evaluate it and export a PLY sequence.

    dyngauss train                                          # built-in synthetic scene, CPU (config: default)
    dyngauss train --config nodes train.iters=500 out=runs/x    # a shipped config by name (see below)
    dyngauss train --config my.yaml data.path=../shared/data/twist deform.kind=nodes out=runs/twist
    dyngauss train --resume out=runs/x                      # continue from the latest checkpoint

--config takes a YAML file, or the name of a shipped config (`nodes`, `nodes.yaml` or `configs/nodes.yaml` when
no such file exists here). `python tools/train.py ...` is the same command.
Exit codes: 0 ok, 1 dataset / checkpoint / training / kernel error, 2 bad config or override.
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402

DEFAULT_CONFIG = "default"


def _parser() -> argparse.ArgumentParser:
    from ..resources import config_names

    names = ", ".join(config_names()) or "none found"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT_CONFIG,
                    help=f"YAML file or shipped config name (default: {DEFAULT_CONFIG}; shipped: {names})")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in `out`")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.iters=500 deform.kind=mlp")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ..config import ConfigError, load_config
    from ..resources import find_config

    try:
        cfg = load_config(find_config(args.config), args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from ..data.dnerf import DatasetError
    from ..render.cpu_backend import KernelUnavailableError
    from ..model import CheckpointError
    from ..train.run import run_job
    from ..train.trainer import TrainingError

    try:
        run_job(cfg, resume=args.resume)
    except (DatasetError, CheckpointError, TrainingError, KernelUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

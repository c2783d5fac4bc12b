#!/usr/bin/env python
"""`python tools/play.py ...` = `dyngauss play ...`: see dyngauss/cli/play.py (or --help)."""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep; must precede torch/open3d
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's dyngauss, installed or not

from dyngauss.cli.play import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

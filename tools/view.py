#!/usr/bin/env python
"""`python tools/view.py ...` = `dyngauss view ...`: see dyngauss/cli/view.py (or --help)."""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep; must precede torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's dyngauss, installed or not

from dyngauss.cli.view import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

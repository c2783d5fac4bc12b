#!/usr/bin/env python
"""Thin wrapper: `python tools/compare_poses.py ...` is `dyngauss compare-poses ...`.

The command and its options live in dyngauss/cli/compare_poses.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not

from dyngauss.cli.compare_poses import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

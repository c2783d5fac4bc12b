#!/usr/bin/env python
"""Thin wrapper: `python tools/export_ply.py ...` is `dyngauss export ...`.

The command and its options live in dyngauss/cli/export.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not

from dyngauss.cli.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Thin wrapper: `python tools/eval.py ...` is `dyngauss eval ...`.

The command and its options live in dyngauss/cli/eval.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not

from dyngauss.cli.eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

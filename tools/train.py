#!/usr/bin/env python
"""Thin wrapper: `python tools/train.py ...` is `dyngauss train ...`.

The command and its options live in dyngauss/cli/train.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not

from dyngauss.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Thin wrapper: `python tools/prepare_video.py ...` is `dyngauss prepare-video ...`.

The command and its options live in dyngauss/cli/prepare_video.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not

from dyngauss.cli.prepare_video import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

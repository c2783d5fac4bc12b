"""Small helpers shared by the command-line tools in tools/."""
from __future__ import annotations

import sys
from typing import Callable


def progress_printer(label: str, quiet: bool = False) -> Callable[[int, int], None]:
    """Progress callback: an updating line on a terminal, one final line otherwise."""
    tty = sys.stdout.isatty()

    def cb(i: int, n: int) -> None:
        if quiet or (not tty and i < n):
            return
        print(f"\r{label} {i}/{n}", end="" if i < n else "\n", flush=True)
    return cb

"""Atomic file writes: a reader (or a crash) sees the old file or the complete new one, never a torn one.

Every writer of run outputs (checkpoints, metrics, configs, renders, PLY, flow caches) goes through
:func:`atomic_write`: the bytes go to a temporary file in the destination folder, are flushed (and fsync'ed),
then renamed over the destination with ``os.replace``; on any error the temporary file is removed.
Needs only the standard library, so numpy-only modules (export/ply.py, the viewer) can use it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], fsync: bool = True) -> Path:
    """Call ``write(f)`` on a binary temporary file next to `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, chunks: Iterable[bytes | memoryview], fsync: bool = True) -> Path:
    """Write the byte `chunks` to `path` atomically."""
    def write(f: BinaryIO) -> None:
        for c in chunks:
            f.write(c)

    return atomic_write(path, write, fsync)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), fsync)

"""Atomic file writes: a reader (or a crash) sees the old file or the complete new one, never a torn one.

Every writer of run outputs (checkpoints, metrics, configs, renders, PLY, flow caches) goes through
:func:`atomic_write`: the bytes go to a temporary file in the destination folder, are flushed (and fsync'ed),
then renamed over the destination with ``os.replace``; on any error the temporary file is removed.

Failures of the file system (disk full, permission denied, read-only file system, a path that is a file, a
parent that is a file) are raised as :class:`OutputError`, an ``OSError`` whose message names the destination
and the cause in one line; torch.save's ``inline_container.cc ... unexpected pos`` (its report of a short
write) is one of them. The temporary file's name holds the writer's host and pid
(``.NAME.<host>-<pid>.XXXXXXXX.tmp``), so that the leftover of a killed writer can be told from the file of a
live one (:mod:`dyngauss.io.stale`).
Needs only the standard library, so numpy-only modules (export/ply.py, the viewer) can use it.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from .stale import writer_tag

__all__ = ["OutputError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "describe_os_error",
           "ensure_writable_dir", "free_bytes", "output_error", "require_free_space"]

# torch.save reports a failed write of its zip container as a RuntimeError with one of these
_TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed", "file write failed")


class OutputError(OSError):
    """An output could not be written. ``path``: the output (file or folder) concerned; ``errno`` the OS error
    number (ENOSPC, EACCES, EROFS, ENOTDIR, EEXIST, ...); ``cause``: a short human reason.
    ``str(e)`` is one line: ``cannot write PATH: CAUSE``."""

    def __init__(self, path: str | os.PathLike, err: int, cause: str):
        super().__init__(err, cause, str(path))
        self.path = Path(path)
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.cause}"

    def __reduce__(self):
        return (OutputError, (str(self.path), self.errno, self.cause))


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes this process may still write on the file system holding `folder` (or its nearest existing
    ancestor); None when unknown."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except (OSError, AttributeError):
        return None
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return int(blocks) * int(st.f_frsize)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _file_ancestor(path: Path) -> Path | None:
    """The first ancestor of `path` (or `path`'s parent chain) that exists and is not a folder."""
    for p in reversed(path.parents):
        if p.exists() and not p.is_dir():
            return p
    return None


def _errno_of(exc: BaseException) -> tuple[int | None, OSError | None]:
    """(errno, the OSError) found in `exc` or the exceptions it was raised from / while handling."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno, e
        e = e.__cause__ or e.__context__
    return None, None


def is_write_failure(exc: BaseException) -> bool:
    """True for an exception that reports a failed write: an OSError, or torch.save's RuntimeError about its
    container (raised when the file system refused bytes, e.g. a full disk)."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, RuntimeError):
        return _errno_of(exc)[0] is not None or any(s in str(exc) for s in _TORCH_WRITE_FAILURES)
    return False


def output_error(path: str | os.PathLike, exc: BaseException) -> OutputError:
    """The :class:`OutputError` for a failed write of `path` (an OSError, torch.save's short-write RuntimeError,
    or an OutputError about a file inside `path`, whose cause is kept)."""
    path = Path(path)
    if isinstance(exc, OutputError):
        return exc if exc.path == path else OutputError(path, exc.errno or errno.EIO, exc.cause)
    err, os_exc = _errno_of(exc)
    free = free_bytes(path.parent)
    if err is None:  # torch's RuntimeError without the OSError: a short write, almost always a full disk
        err = errno.ENOSPC if free is not None and free < (1 << 20) else errno.EIO
    if err in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        what = "no space left on the device" if err == errno.ENOSPC else "disk quota exceeded"
        cause = what + (f" ({_mb(free)} free; free some space and try again)" if free is not None else "")
    elif err in (errno.EACCES, errno.EPERM):
        cause = "permission denied" + (f" ({os_exc.filename})" if os_exc and os_exc.filename
                                       and Path(os_exc.filename) != path else "")
    elif err == errno.EROFS:
        cause = "read-only file system"
    elif err == errno.ENOTDIR or (err == errno.EEXIST and _file_ancestor(path / "x") is not None):
        f = _file_ancestor(path / "x")
        cause = f"{f} is a file, not a folder" if f is not None else "a parent is not a folder"
    elif err == errno.EISDIR:
        cause = "it is a folder, not a file"
    elif err == errno.ENAMETOOLONG:
        cause = "file name too long"
    else:
        strerror = (os_exc.strerror if os_exc is not None else None) or str(exc)
        cause = strerror[0].lower() + strerror[1:] if strerror else f"errno {err}"
    return OutputError(path, err, cause)


def require_free_space(path: str | os.PathLike, need: int) -> None:
    """Raise :class:`OutputError` (ENOSPC, naming `path`) when the file system that will hold `path` has fewer
    than `need` bytes free; does nothing when the free space is unknown. A cheap check before a long write."""
    path = Path(path)
    free = free_bytes(path.parent)
    if free is not None and free < need:
        raise OutputError(path, errno.ENOSPC, f"no space left on the device (needs about {_mb(need)}, "
                          f"{_mb(free)} free; free some space and try again)")


def describe_os_error(exc: OSError) -> str:
    """One line for any OSError: an OutputError's message, else ``FILE: reason``."""
    if isinstance(exc, OutputError):
        return str(exc)
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [n for n in (exc.filename, getattr(exc, "filename2", None)) if n]
    return f"{' -> '.join(map(str, names))}: {reason}" if names else reason


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create folder `path` (and its parents) if needed and check that a file can be created in it.

    Raises :class:`OutputError` (path exists as a file, a parent is a file, permission denied, read-only file
    system, disk full) before any work is done.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, errno.EEXIST, "it exists and is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-test.{writer_tag()}.", suffix=".tmp", dir=path)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise output_error(path, e) from None
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], fsync: bool = True,
                 size_hint: int | None = None) -> Path:
    """Call ``write(f)`` on a binary temporary file next to `path`, then rename it to `path`.

    `size_hint`: the expected size in bytes; when given, a file system with less free space is refused before
    anything is written. Raises :class:`OutputError` for file-system failures (the previous `path`, if any, is
    left untouched and the temporary file removed); other exceptions of `write` propagate unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if size_hint:
            require_free_space(path, size_hint)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise output_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        err = output_error(path, e) if is_write_failure(e) else None  # before unlinking: free space as it was
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if err is not None:
            raise err from e
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

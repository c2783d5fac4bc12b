"""Temporary files and folders left behind by killed writers: naming, staleness, removal.

Writers build their output under a hidden temporary name next to the destination and rename it at the end
(:mod:`dyngauss.io.atomic`, the PLY sequence export). A writer killed meanwhile (kill -9, power loss) leaves
that temporary entry behind: an empty or partial ``.ckpt_000800.pt.*.tmp``, a ``.ply.tmp-*`` folder of
frames. The next run of the same tool removes them with :func:`remove_stale_temps`.

Names. A temporary entry's name holds a *writer tag* ``<host>-<pid>`` (:func:`writer_tag`: 8 hex digits of
the host name's CRC-32, then the pid)::

    .NAME.<host>-<pid>.XXXXXXXX.tmp        a file (atomic_write)
    .NAME.tmp-<host>-<pid>-XXXXXXXX        a folder being built (export)
    .NAME.old-<host>-<pid>-XXXXXXXX        the previous version, moved aside while the new one is installed

Staleness (never remove what a live writer still uses):

* a tag of this host whose pid is not running (or a zombie): stale at once;
* otherwise (no tag: written by an older dyngauss or by another tool; a tag of another host, e.g. on a shared
  file system; a running pid, which may be a reused one): stale only when nothing in it was modified for
  ``max_age_s`` (default one hour). A live writer keeps touching its entry: every chunk of a file, every file
  added to a folder.

An ``.old-`` folder is removed only when its destination ``NAME`` exists; otherwise it may be the only copy
of the previous output (a writer killed between its two renames) and is left for the tool that knows how to
put it back (:func:`dyngauss.export.sequence.export_sequence` does).
Standard library only.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["STALE_AGE_S", "Leftover", "is_temp_name", "pid_alive", "remove_stale_temps", "stale_reason",
           "writer_tag"]

STALE_AGE_S = 3600.0

# hidden temporary names of dyngauss writers: atomic_write (.N.x.tmp), the video writer (.N.x.tmp.mp4),
# eval/plots (.N.tmp123.png), folder writers (.N.tmp-x / .N.old-x)
_TEMP_FILE_RE = re.compile(r"^\..+\.tmp(?:\d*\.[A-Za-z0-9]+)?$")
_TEMP_DIR_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[^./]+$")
_TAG_RE = re.compile(r"(?:^|[.-])(?P<host>[0-9a-f]{8})-(?P<pid>\d+)(?=[.-]|$)")


def _host_id() -> str:
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')) & 0xFFFFFFFF:08x}"


def writer_tag(pid: int | None = None) -> str:
    """``<host>-<pid>`` of this process (or of `pid` on this host), for temporary names."""
    return f"{_host_id()}-{os.getpid() if pid is None else int(pid)}"


def pid_alive(pid: int) -> bool:
    """True when process `pid` runs on this host (a zombie, killed but not reaped yet, counts as dead)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill would terminate it there: unknown, so treated as alive (the age rule decides)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def is_temp_name(name: str) -> bool:
    """True for the hidden temporary names dyngauss writers use (see the module docstring)."""
    return _TEMP_FILE_RE.match(name) is not None or _TEMP_DIR_RE.match(name) is not None


def _newest_mtime(p: Path) -> float:
    """Latest modification time of `p` and, for a folder, of everything in it (symlinks not followed)."""
    try:
        newest = p.lstat().st_mtime
    except OSError:
        return time.time()
    if p.is_dir() and not p.is_symlink():
        for root, dirs, files in os.walk(p):
            for n in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
                except OSError:
                    pass
    return newest


def stale_reason(p: Path, max_age_s: float = STALE_AGE_S, now: float | None = None) -> str | None:
    """Why temporary entry `p` is stale (a short phrase), or None when a writer may still be using it."""
    tags = list(_TAG_RE.finditer(p.name))  # the writer's tag follows the destination's name: take the last
    m = tags[-1] if tags else None
    if m is not None and m.group("host") == _host_id():
        pid = int(m.group("pid"))
        if pid != os.getpid() and not pid_alive(pid):
            return f"left by pid {pid}, which is no longer running"
    age = (time.time() if now is None else now) - _newest_mtime(p)
    if age > max_age_s:
        return f"untouched for {age / 60:.0f} min"
    return None


@dataclass
class Leftover:
    """A stale temporary entry found (and removed, unless ``removed`` is False) by :func:`remove_stale_temps`."""

    path: Path
    reason: str
    removed: bool = True
    is_dir: bool = False


def _candidates(folder: Path, recursive: bool, names: Callable[[str], bool]) -> Iterable[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    for p in entries:
        if is_temp_name(p.name) and names(p.name):
            yield p
        elif recursive and p.is_dir() and not p.is_symlink():
            yield from _candidates(p, recursive, names)


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = False,
                       names: Callable[[str], bool] | None = None, max_age_s: float = STALE_AGE_S,
                       log: Callable[[str], None] | None = None) -> list[Leftover]:
    """Remove the stale temporary files and folders of dyngauss writers in `folder` (and its sub-folders when
    `recursive`; temporary folders are removed whole, never entered). `names` further filters the entry
    names (e.g. the siblings of one output). Entries a live writer may still use are kept; an ``.old-``
    folder whose destination is missing is kept too. Each removal is reported through `log`. Returns what
    was found; a removal that fails (permissions) is reported and skipped, never raised."""
    found: list[Leftover] = []
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for p in _candidates(folder, recursive, names or (lambda n: True)):
        why = stale_reason(p, max_age_s)
        if why is None:
            continue
        m = _TEMP_DIR_RE.match(p.name)
        is_dir = p.is_dir() and not p.is_symlink()
        if m is not None and m.group("kind") == "old" and not (p.parent / m.group("name")).exists():
            found.append(Leftover(p, why + f"; kept: it may be the only copy of {p.parent / m.group('name')}",
                                  removed=False, is_dir=is_dir))
        else:
            try:
                if is_dir:
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except FileNotFoundError:
                continue
            except OSError as e:
                found.append(Leftover(p, f"{why}; cannot remove it: {e.strerror or e}", removed=False,
                                      is_dir=is_dir))
            else:
                found.append(Leftover(p, why, is_dir=is_dir))
        if log is not None:
            lo = found[-1]
            kind = "folder" if lo.is_dir else "file"
            log(f"note: removed stale temporary {kind} {lo.path} ({lo.reason})" if lo.removed
                else f"warning: stale temporary {kind} {lo.path} not removed ({lo.reason})")
    return found

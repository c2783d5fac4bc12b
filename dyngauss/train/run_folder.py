"""One writer per run folder: the ``RUN/.lock`` file, and what a fresh run does with a folder that holds a run.

Lock file: ``RUN/.lock`` is a small JSON record ``{"pid", "host", "started", "pid_start", "argv"}`` created
atomically (written to a temporary file, then hard-linked to ``.lock``, which fails when one exists), removed
when the holder ends normally. A lock left by a killed training is *stale* when it names this host and a pid
that is no longer running (or that now belongs to a process started at another time: ``pid_start`` is the
process start time from ``/proc/<pid>/stat`` on Linux); a stale lock is taken over with a message. A lock of
another host cannot be checked from here: it is refused with the command that removes it. A process that
already holds the lock may enter it again (nested use: :func:`~dyngauss.train.run.run_job` inside the train
command).

Fresh run into a folder with checkpoints: refused (:class:`RunFolderError`) unless ``overwrite``, which moves
the folder's previous contents (all but the lock) into a sibling ``RUN.old-<YYYYmmdd-HHMMSS>`` folder: nothing
is deleted, and the new run never mixes its checkpoints with the old ones.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..io.stale import pid_alive

LOCK_NAME = ".lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (it holds a run and neither --resume nor --overwrite was given)."""


class RunBusyError(RunFolderError):
    """Another training holds the run folder's lock (or a lock that cannot be checked from this host)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def process_start_ticks(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None where there
    is no /proc or no such process. Distinguishes a live process from a later one that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class LockInfo:
    """What a lock file records about its holder."""

    pid: int
    host: str
    started: str                          # local time, ISO 8601 with offset
    pid_start: int | None = None          # process_start_ticks(pid) when the lock was taken
    argv: list[str] = field(default_factory=list)

    @classmethod
    def current(cls) -> "LockInfo":
        return cls(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   pid_start=process_start_ticks(os.getpid()), argv=list(sys.argv))

    @classmethod
    def parse(cls, text: str) -> "LockInfo":
        """Raises ValueError for anything but a lock record."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("host"), str):
            raise ValueError("not a lock record (needs integer 'pid' and string 'host')")
        ps = data.get("pid_start")
        return cls(pid=data["pid"], host=data["host"], started=str(data.get("started", "?")),
                   pid_start=ps if isinstance(ps, int) else None, argv=list(data.get("argv") or []))

    def same_holder(self, other: "LockInfo") -> bool:
        return (self.pid, self.host, self.started, self.pid_start) == \
            (other.pid, other.host, other.started, other.pid_start)

    def running_here(self) -> bool:
        """The holder (on this host) is still running: its pid is alive and was not reused since."""
        if not pid_alive(self.pid):
            return False
        now = process_start_ticks(self.pid)
        return self.pid_start is None or now is None or now == self.pid_start


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/.lock`` for the block (creates `run_dir` if needed).

    Raises :class:`RunBusyError` at once when another live training on this host holds it, when a lock of
    another host is there, or when the lock file is unreadable; the message says what to do. A stale lock is
    taken over (message through `log`). Re-entering from the process that holds it is a no-op."""

    def __init__(self, run_dir: str | os.PathLike, log: Callable[[str], None] = _stderr):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.log = log
        self.info: LockInfo | None = None
        self._owned = False
        self._made_dir = False

    # ---- the file -------------------------------------------------------------------------------
    def _create(self, me: LockInfo) -> bool:
        """Create the lock file holding `me`; False when one exists already."""
        tmp = self.run_dir / f"{LOCK_NAME}.{me.pid}.tmp"
        tmp.write_text(json.dumps(asdict(me)))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create instead
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(asdict(me)))
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self) -> LockInfo | None:
        """The holder recorded in the lock file; None when it vanished. RunBusyError when unreadable."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunBusyError(f"cannot read the lock file {self.path} ({e.strerror or e}); if no training is "
                               f"writing into {self.run_dir}, remove it: rm {self.path}") from None
        try:
            return LockInfo.parse(text)
        except ValueError as e:
            raise RunBusyError(f"the lock file {self.path} is not readable ({e}); if no training is writing into "
                               f"{self.run_dir}, remove it: rm {self.path}") from None

    def _take_over(self, stale: LockInfo) -> None:
        """Remove the stale lock `stale` unless another process replaced it meanwhile (then it stays)."""
        aside = self.run_dir / f"{LOCK_NAME}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = LockInfo.parse(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if moved is None or not moved.same_holder(stale):  # a fresh lock of someone else: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        aside.unlink(missing_ok=True)

    # ---- acquire / release ----------------------------------------------------------------------
    def acquire(self) -> "RunLock":
        self._made_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        me = LockInfo.current()
        for _ in range(5):
            if self._create(me):
                self.info, self._owned = me, True
                return self
            held = self._read()
            if held is None:
                continue  # released meanwhile
            if held.host == me.host and held.pid == me.pid and held.running_here():
                self.info, self._owned = held, False  # this process holds it already
                return self
            if held.host != me.host:
                raise RunBusyError(
                    f"{self.run_dir} is locked by a training on host {held.host!r} (pid {held.pid}, started "
                    f"{held.started}); it cannot be checked from {me.host!r}. If no training writes into this "
                    f"folder anymore, remove the lock: rm {self.path}")
            if held.running_here():
                raise RunBusyError(
                    f"{self.run_dir} is in use by another training (pid {held.pid}, started {held.started}, lock "
                    f"{self.path}); wait for it to end or stop it, or train into another out= folder")
            self._take_over(held)
            self.log(f"note: took over the stale lock {self.path} of pid {held.pid} (started {held.started}; "
                     "that process is no longer running)")
        raise RunBusyError(f"could not take the lock {self.path}: other processes keep replacing it")

    def release(self) -> None:
        if not self._owned:
            return
        self._owned = False
        try:
            held = LockInfo.parse(self.path.read_text())
        except (OSError, ValueError):
            return
        if self.info is not None and held.same_holder(self.info):
            self.path.unlink(missing_ok=True)
            if self._made_dir and not any(self.run_dir.iterdir()):  # a job that failed before writing anything
                self.run_dir.rmdir()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------
def run_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint files ``RUN/checkpoints/ckpt_*.pt`` (any step, sorted by name)."""
    cdir = Path(run_dir) / "checkpoints"
    return sorted(cdir.glob("ckpt_*.pt")) if cdir.is_dir() else []


def _aside_dir(run_dir: Path) -> Path:
    real = run_dir.resolve()
    base = real.with_name(f"{real.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    cand, n = base, 1
    while cand.exists():
        n += 1
        cand = base.with_name(f"{base.name}-{n}")
    return cand


def prepare_fresh_run(run_dir: str | os.PathLike, overwrite: bool = False,
                      log: Callable[[str], None] = _stderr) -> Path | None:
    """Make `run_dir` ready for a new training (call it while holding the folder's :class:`RunLock`).

    A folder without checkpoints is used as it is. One with checkpoints raises :class:`RunFolderError`
    (naming --resume and --overwrite) unless `overwrite`: then its contents, all but the lock file, move to a
    new sibling folder ``<run>.old-<YYYYmmdd-HHMMSS>``, whose path is returned (None when nothing moved)."""
    run_dir = Path(run_dir)
    ckpts = run_checkpoints(run_dir)
    if not ckpts:
        return None
    if not overwrite:
        raise RunFolderError(
            f"{run_dir} already holds a run ({len(ckpts)} checkpoint(s), latest {ckpts[-1].name}); continue it "
            f"with `dyngauss train --resume out={run_dir}`, start over with --overwrite (moves its contents to "
            f"{run_dir}.old-<time>), or train into another out= folder")
    aside = _aside_dir(run_dir)
    aside.mkdir()
    for entry in sorted(run_dir.iterdir()):
        if entry.name != LOCK_NAME:
            os.rename(entry, aside / entry.name)
    log(f"--overwrite: moved the previous contents of {run_dir} to {aside}")
    return aside

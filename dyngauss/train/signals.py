"""Safe stops: SIGINT (Ctrl-C) and SIGTERM during training end with a checkpoint, never a traceback.

Two scopes:

* :class:`StopSignals`, installed by ``Trainer.train()`` for its loop only: the first SIGINT/SIGTERM just records
  the signal; the loop finishes the step it is in, writes a checkpoint (unless that step was unhealthy, see
  train/guard.py) and raises :class:`TrainingInterrupted`. A **second** signal stops at once, by raising
  :class:`Interrupted` from the handler: a checkpoint being written is abandoned, and the atomic writer
  (io/atomic.py) removes its temporary file, so the previous checkpoints stay intact and nothing torn is left.
  (Waiting for the save instead would make a second Ctrl-C do nothing when a save hangs on a slow disk.)
  The previous handlers are restored when the loop ends, however it ends.
* :func:`raise_on_signals`, installed by the ``dyngauss train`` command around the whole job: outside the training
  loop (loading data, evaluating, exporting) a signal raises :class:`Interrupted` at once, so ``finally`` blocks
  run (the run-folder lock is released) and the command exits 130 / 143 with one line instead of a traceback.

Exit codes follow the shell convention 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
Handlers can only be installed in the main thread; elsewhere both scopes install nothing (signals keep whatever
effect they had).
"""
from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def resume_command(run_dir: str | Path) -> str:
    """The command line that continues the run in `run_dir`."""
    return f"dyngauss train --resume out={shlex.quote(str(run_dir))}"


class Interrupted(KeyboardInterrupt):
    """A stop signal ended the work. `signum`; `exit_code` = 128 + signum (130 SIGINT, 143 SIGTERM).

    A KeyboardInterrupt, so ``except Exception`` does not swallow it and interactive sessions treat it as Ctrl-C.
    """

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"interrupted by {signal_name(signum)}")
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class TrainingInterrupted(Interrupted):
    """Raised by ``Trainer.train()`` after a stop signal.

    `step`: the step reached; `checkpoint`: the file written for this stop, or (when none could be written:
    a second signal, or the last step was unhealthy) the newest checkpoint on disk, or None; `saved`: whether
    `checkpoint` was written for this stop; `run_dir`. ``str(e)`` is the message for the user, with the command
    that continues the run.
    """

    def __init__(self, signum: int, step: int, run_dir: str | Path, checkpoint: Path | None, saved: bool,
                 why_not_saved: str = ""):
        self.step, self.run_dir, self.checkpoint, self.saved = int(step), Path(run_dir), checkpoint, saved
        name = signal_name(signum)
        if saved:
            text = f"interrupted by {name} at step {step}: saved {checkpoint}"
        else:
            text = f"interrupted by {name} at step {step}: {why_not_saved or 'no checkpoint written'}; " + \
                (f"the newest checkpoint is {checkpoint}" if checkpoint else "no checkpoint of this run exists")
        if checkpoint is not None:
            text += f"\ncontinue with: {resume_command(run_dir)}"
        super().__init__(signum, text)


class StopSignals:
    """Context manager for the training loop: the first SIGINT/SIGTERM sets :attr:`signum` (the loop polls it);
    a second raises :class:`Interrupted`. Restores the previous handlers on exit."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.signum is None:
            self.signum = signum
            return
        raise Interrupted(signum, f"interrupted again by {signal_name(signum)}: stopped at once")

    def __enter__(self) -> "StopSignals":
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


def _raise(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Interrupted(signum)


def raise_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Callable[[], None]:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; elsewhere nothing changes).

    Returns the function that puts the previous handlers back."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in signals:
            previous[s] = signal.signal(s, _raise)

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        previous.clear()

    return restore


@contextlib.contextmanager
def signals_raise(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """:func:`raise_on_signals` for the duration of a ``with`` block."""
    restore = raise_on_signals(signals)
    try:
        yield
    finally:
        restore()


def interrupt_report(exc: KeyboardInterrupt, run_dir: str | Path | None) -> tuple[str, int]:
    """(message, exit code) for a stop signal that ended ``dyngauss train``.

    A :class:`TrainingInterrupted` carries its own message; any other interrupt (while loading, evaluating or
    exporting, or a plain KeyboardInterrupt) names the newest checkpoint of `run_dir` and how to continue: a
    resumed run that has no steps left evaluates and exports again."""
    code = getattr(exc, "exit_code", 130)
    if isinstance(exc, TrainingInterrupted):
        return str(exc), code
    name = signal_name(getattr(exc, "signum", signal.SIGINT))
    if run_dir is None:
        return f"interrupted by {name}", code
    from ..model.checkpoint import list_checkpoints

    try:
        ckpts = list_checkpoints(run_dir) if Path(run_dir).is_dir() else []
    except OSError:
        ckpts = []
    if not ckpts:
        return f"interrupted by {name}; no checkpoint written in {run_dir}", code
    return (f"interrupted by {name} outside the training loop (loading, evaluation or export); the newest "
            f"checkpoint is {ckpts[-1]}\ncontinue with: {resume_command(run_dir)}"), code

"""Checkpoint files: atomic writes of finite weights, versioned format, newest readable file of a run folder.

A checkpoint is a ``torch.save`` dict with ``format == "dyngauss"`` and an integer ``version``:

* model part (:meth:`DynamicGaussians.state_payload`): ``cfg`` (the run config as a dict), ``sh_degree``,
  ``gaussians`` / ``deform`` / ``backward`` state dicts, ``train_times``, ``num_frames``, ``step``,
  ``train_seconds``, ``scene_scale``, ``dataset``;
* training part (written by the trainer, ignored by :func:`model_from_payload`): optimizer, densification
  strategy and random-stream states for an exact resume.

Reading a run folder takes its newest checkpoint that reads cleanly: a truncated or corrupt newer file (a copy
cut short, a disk that failed) is skipped with a warning line naming it and why, for the previous intact one;
when none reads, :class:`CheckpointError` lists them all. Writes are atomic (:mod:`dyngauss.io.atomic`): a
full disk or an unwritable folder raises :class:`dyngauss.io.OutputError` and leaves the previous checkpoint
as it was; :func:`remove_stale_run_temps` removes what a killed writer left in a run folder.

Versions: 1 — flat ``deform`` config and densify keys with our own names (before docs/design.md's typed field
configs); 2 — the current layout. A version-1 file is upgraded on read when its config converts; anything
else raises :class:`CheckpointError` naming the version found and the versions this release reads.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..io import atomic_write
from ..io.stale import Leftover, remove_stale_temps

FORMAT = "dyngauss"
CKPT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or incompatible with this version of dyngauss."""


def _all_finite(state: Any) -> bool:
    if isinstance(state, torch.Tensor):
        return bool(torch.isfinite(state).all()) if state.is_floating_point() else True
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_all_finite(v) for v in state)
    return True


def _tensor_bytes(state: Any, seen: set[int] | None = None) -> int:
    """Bytes of the distinct tensor storages in a nested dict/list payload (about the size torch.save writes)."""
    seen = set() if seen is None else seen
    if isinstance(state, torch.Tensor):
        try:
            s = state.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
            return state.numel() * state.element_size()
        key = s.data_ptr()
        if key in seen and key != 0:
            return 0
        seen.add(key)
        return s.nbytes()
    if isinstance(state, dict):
        return sum(_tensor_bytes(v, seen) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in state)
    return 0


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Atomically write `payload` to `path`; refuses (CheckpointError) to write non-finite model weights.

    Raises :class:`dyngauss.io.OutputError` when the file cannot be written (disk full, also when the free
    space is known up front to be smaller than the tensors; permission denied; read-only file system; a parent
    that is a file); `path`'s previous content, if any, is left intact.
    """
    path = Path(path)
    for key in ("gaussians", "deform", "backward"):
        if key in payload and not _all_finite(payload[key]):
            raise CheckpointError(f"refusing to write {path}: non-finite values in {key}")
    return atomic_write(path, lambda f: torch.save(payload, f), size_hint=_tensor_bytes(payload))


def list_checkpoints(run_or_dir: str | Path) -> list[Path]:
    """The ``ckpt_*.pt`` files of a run folder (its ``checkpoints/``) or a folder, oldest step first."""
    p = Path(run_or_dir)
    cdir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    return sorted(cdir.glob("ckpt_*.pt"), key=lambda q: (len(q.stem), q.stem))


def _warn_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _quick_check(p: Path) -> str | None:
    """Why file `p` cannot be a complete checkpoint, from its size and zip directory only (cheap: reads the
    file's tail); None when it looks complete. torch.save writes a zip archive whose directory comes last, so a
    file cut short has none. A legacy (pre-zip) torch file is left for torch.load to judge."""
    try:
        size = p.stat().st_size
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with zipfile.ZipFile(p):
            return None
    except zipfile.BadZipFile:
        try:
            with open(p, "rb") as f:
                legacy = f.read(1) == b"\x80"  # a pickle protocol header
        except OSError as e:
            return f"cannot read it: {e.strerror or e}"
        return None if legacy else f"truncated or corrupt ({size} bytes, no complete zip directory)"
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"


def _no_readable(cdir: Path, skipped: list[tuple[Path, str]]) -> CheckpointError:
    listing = "; ".join(f"{q.name}: {why}" for q, why in skipped)
    return CheckpointError(f"no readable checkpoint in {cdir} ({len(skipped)} tried, newest first: {listing})")


def _report_skipped(skipped: list[tuple[Path, str]], used: Path, warn: Callable[[str], None] | None) -> None:
    if warn is not None:
        for q, why in skipped:
            warn(f"warning: skipped checkpoint {q}: {why}; using {used.name}")


def find_checkpoint(path: str | Path, warn: Callable[[str], None] | None = _warn_stderr) -> Path:
    """A checkpoint file, or the newest ``ckpt_*.pt`` of a run folder (its RUN/checkpoints/) that is complete.

    For a folder, newer files that are empty or cut short (no zip directory) are skipped, each with a
    ``warning:`` line through `warn` (default: stderr) naming it and why; CheckpointError lists them when no
    file is complete. A file given by name is returned as it is (CheckpointError when it does not exist).
    """
    p = Path(path)
    if p.is_dir():
        return _newest(p, lambda q: (q, _quick_check(q)), warn)[0]
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def _newest(run_or_dir: Path, attempt: Callable[[Path], tuple[Any, str | None]],
            warn: Callable[[str], None] | None) -> tuple[Any, list[tuple[Path, str]]]:
    """(attempt's value for the newest checkpoint it accepts, [(newer skipped file, why)]).

    `attempt(q)` returns (value, None) to accept q or (anything, reason) to skip it; the skipped files are
    reported through `warn` when one is accepted, listed in the CheckpointError when none is."""
    cands = list_checkpoints(run_or_dir)
    cdir = run_or_dir / "checkpoints" if (run_or_dir / "checkpoints").is_dir() else run_or_dir
    if not cands:
        raise CheckpointError(f"no checkpoint (ckpt_*.pt) found in {cdir}")
    skipped: list[tuple[Path, str]] = []
    for q in reversed(cands):
        value, why = attempt(q)
        if why is None:
            _report_skipped(skipped, q, warn)
            return value, skipped
        skipped.append((q, why))
    raise _no_readable(cdir, skipped)


def _upgrade(payload: dict, p: Path) -> dict:
    """Bring an older checkpoint dict to CKPT_VERSION (config keys renamed since), or raise CheckpointError."""
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{p}: checkpoint version {version!r} is not supported by this dyngauss "
                              f"(reads versions {', '.join(map(str, READABLE_VERSIONS))}); retrain, or load it with "
                              "the dyngauss release that wrote it")
    if version == CKPT_VERSION:
        return payload
    from ..config import ConfigError, upgrade_config_dict

    try:
        payload["cfg"] = upgrade_config_dict(payload.get("cfg") or {}, from_version=int(version))
    except ConfigError as e:
        raise CheckpointError(f"{p}: checkpoint version {version} config cannot be converted: {e}") from None
    payload["version"] = CKPT_VERSION
    return payload


def read_checkpoint(path: str | Path, warn: Callable[[str], None] | None = _warn_stderr) -> dict:
    """Load a checkpoint dict (CPU) from a file, or the newest readable one of a run folder, upgraded to
    CKPT_VERSION.

    Raises CheckpointError for a missing, corrupt, foreign or unsupported file. For a run folder, newer files
    that do not read cleanly are skipped for the previous one, each with a ``warning:`` line through `warn`
    (default: stderr) naming the file and why; CheckpointError lists them all when none reads. The file's path
    is under ``payload["_path"]``, the skipped ones under ``payload["_skipped"]`` ([(path, reason)]).
    """
    p = Path(path)
    if not p.is_dir():
        payload = _read_file(find_checkpoint(p))
        payload["_skipped"] = []
        return payload

    def attempt(q: Path) -> tuple[dict | None, str | None]:
        why = _quick_check(q)
        if why is not None:
            return None, why
        try:
            return _read_file(q), None
        except CheckpointError as e:  # the reason without the file's name, on one line
            return None, str(e).replace(f"{q}: ", "").replace(f" {q}", "").splitlines()[0][:300]

    payload, skipped = _newest(p, attempt, warn)
    payload["_skipped"] = skipped
    return payload


def _read_file(p: Path) -> dict:
    """Load and upgrade one checkpoint file (CheckpointError naming it when it is not one)."""
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt files
        detail = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot read checkpoint {p}: {type(e).__name__}: {detail}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a dyngauss checkpoint")
    payload = _upgrade(payload, p)
    payload["_path"] = p
    return payload


def model_from_payload(payload: dict):
    """Build a :class:`DynamicGaussians` (CPU) from a checkpoint dict read by :func:`read_checkpoint`."""
    from ..config import ConfigError, config_from_dict
    from .dynamic import CheckpointInfo, DynamicGaussians
    from .gaussians import Gaussians

    p = payload.get("_path")
    try:
        cfg = config_from_dict(payload["cfg"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{p}: checkpoint config is incompatible: {e}") from None
    times = list(payload.get("train_times") or [])
    try:
        g = Gaussians.empty_like_state(payload["gaussians"], payload["sh_degree"])
        g.load_state_dict(payload["gaussians"])
        field = cfg.deform.build(num_frames=payload.get("num_frames"), frame_times=times or None)
        field.load_state_dict(payload["deform"])
        backward = None
        if payload.get("backward"):
            backward = cfg.deform.build_backward(num_frames=payload.get("num_frames"), frame_times=times or None,
                                                 required=True)
            backward.load_state_dict(payload["backward"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{p}: checkpoint weights are incompatible: {e}") from None
    info = CheckpointInfo(path=p, step=int(payload.get("step", 0)),
                          train_seconds=float(payload.get("train_seconds") or 0.0),
                          scene_scale=float(payload.get("scene_scale") or 1.0),
                          dataset=str(payload.get("dataset") or ""), version=int(payload["version"]))
    return DynamicGaussians(g, field, backward, times, config=cfg, info=info)


def remove_stale_run_temps(run_dir: str | Path, log: Callable[[str], None] | None = _warn_stderr) -> list[Leftover]:
    """Remove what killed writers left in a run folder: temporary checkpoint / config / metrics / render files
    (``.NAME.*.tmp``) and temporary export folders (``.ply.tmp-*``), in RUN and its sub-folders. Only stale
    entries go (see :mod:`dyngauss.io.stale`: their writer's pid is dead on this host, or they were untouched
    for an hour), never those of a live writer. Each removal is reported through `log`."""
    return remove_stale_temps(run_dir, recursive=True, log=log)

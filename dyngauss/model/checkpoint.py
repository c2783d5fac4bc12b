"""Checkpoint files: atomic writes of finite weights, versioned format, newest readable file of a run folder.

A checkpoint is a ``torch.save`` dict with ``format == "dyngauss"`` and an integer ``version``:

* model part (:meth:`DynamicGaussians.state_payload`): ``cfg`` (the run config as a dict), ``sh_degree``,
  ``gaussians`` / ``deform`` / ``backward`` state dicts, ``train_times``, ``num_frames``, ``step``,
  ``train_seconds``, ``scene_scale``, ``dataset``;
* training part (written by the trainer, ignored by :func:`model_from_payload`): optimizer, densification
  strategy and random-stream states for an exact resume.

Versions: 1 — flat ``deform`` config and densify keys with our own names (before docs/design.md's typed field
configs); 2 — the current layout. A version-1 file is upgraded on read when its config converts; anything
else raises :class:`CheckpointError` naming the version found and the versions this release reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write

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


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Atomically write `payload` to `path`; refuses (CheckpointError) to write non-finite model weights."""
    path = Path(path)
    for key in ("gaussians", "deform", "backward"):
        if key in payload and not _all_finite(payload[key]):
            raise CheckpointError(f"refusing to write {path}: non-finite values in {key}")
    return atomic_write(path, lambda f: torch.save(payload, f))


def list_checkpoints(run_or_dir: str | Path) -> list[Path]:
    """The ``ckpt_*.pt`` files of a run folder (its ``checkpoints/``) or a folder, oldest step first."""
    p = Path(run_or_dir)
    cdir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    return sorted(cdir.glob("ckpt_*.pt"), key=lambda q: (len(q.stem), q.stem))


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest ``ckpt_*.pt`` in RUN/checkpoints/ when given a run folder."""
    p = Path(path)
    if p.is_dir():
        cands = list_checkpoints(p)
        if not cands:
            cdir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
            raise CheckpointError(f"no checkpoint (ckpt_*.pt) found in {cdir}")
        return cands[-1]
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


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


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict (CPU) from a file, or the newest of a run folder, upgraded to CKPT_VERSION.

    Raises CheckpointError for missing, corrupt, foreign or unsupported files. The file's path is under
    ``payload["_path"]``.
    """
    p = find_checkpoint(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt files
        raise CheckpointError(f"cannot read checkpoint {p}: {type(e).__name__}: {e}") from None
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

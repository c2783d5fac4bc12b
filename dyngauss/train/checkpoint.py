"""Checkpoints: written atomically (temp file + rename, never a half-written or non-finite file), loaded
back into a model for evaluation/export or into a trainer for an exact resume."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write

from ..config import Config, ConfigError, config_from_dict
from ..data.camera import Camera
from ..deform.base import DeformField
from ..deform.factory import build_deform
from ..model.gaussians import Gaussians

CKPT_VERSION = 1


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


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest `ckpt_*.pt` in RUN/checkpoints/ when given a run folder."""
    p = Path(path)
    if p.is_dir():
        cdir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        cands = sorted(cdir.glob("ckpt_*.pt"), key=lambda q: (len(q.stem), q.stem))
        if not cands:
            raise CheckpointError(f"no checkpoint (ckpt_*.pt) found in {cdir}")
        return cands[-1]
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict (CPU), with clear errors for missing, corrupt or foreign files."""
    p = find_checkpoint(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt files
        raise CheckpointError(f"cannot read checkpoint {p}: {type(e).__name__}: {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != "dyngauss":
        raise CheckpointError(f"{p} is not a dyngauss checkpoint")
    if payload.get("version") != CKPT_VERSION:
        raise CheckpointError(f"{p}: checkpoint version {payload.get('version')} unsupported (need {CKPT_VERSION})")
    payload["_path"] = p
    return payload


@dataclass
class LoadedModel:
    """A trained model ready to render/export: canonical Gaussians + deformation field + its config."""

    gaussians: Gaussians
    deform: DeformField
    cfg: Config
    step: int
    path: Path
    train_times: list[float]
    cameras: dict[str, list[Camera]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def frame_for_time(self, t: float, tol: float = 1e-6) -> int | None:
        """Index of a training time equal to t (for per-frame codes), else None."""
        for i, tt in enumerate(self.train_times):
            if abs(tt - t) <= tol:
                return i
        return None


def model_from_payload(payload: dict, device: str | torch.device = "cpu") -> tuple[Gaussians, DeformField, Config]:
    try:
        cfg = config_from_dict(payload["cfg"])
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"checkpoint config is incompatible: {e}") from None
    try:
        g = Gaussians.empty_like_state(payload["gaussians"], payload["sh_degree"])
        g.load_state_dict(payload["gaussians"])
        deform = build_deform(cfg.deform, num_frames=payload.get("num_frames"),
                              frame_times=payload.get("train_times") or None)
        deform.load_state_dict(payload["deform"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint weights are incompatible: {e}") from None
    return g.to(device), deform.to(device), cfg


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a trained model from a checkpoint file or a run folder (latest checkpoint)."""
    payload = read_checkpoint(path)
    g, deform, cfg = model_from_payload(payload, device)
    g.eval()
    deform.eval()
    return LoadedModel(g, deform, cfg, int(payload["step"]), payload["_path"], list(payload.get("train_times", [])),
                       {}, {"train_seconds": payload.get("train_seconds", 0.0),
                            "scene_scale": payload.get("scene_scale", 1.0), "dataset": payload.get("dataset", "")})

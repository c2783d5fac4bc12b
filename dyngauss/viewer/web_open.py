"""Open what `dyngauss view PATH` names as a web-viewer source: a run folder, a checkpoint file or an exported
PLY sequence folder.

* a folder with ``sequence.json``: :class:`~dyngauss.viewer.web_source.SequenceSource` (no torch needed);
* a checkpoint file, or a run folder with readable checkpoints: :class:`~dyngauss.viewer.web_source.ModelSource`
  of :meth:`dyngauss.model.DynamicGaussians.load` (the newest readable checkpoint of a run);
* a run folder without checkpoints but with a complete ``ply/`` export: that sequence.

Cameras: a model's come from its dataset (``model.info.dataset``); a sequence's from `dataset`, else from the
``data.path`` of the run's ``config.yaml`` next to it. Where the dataset cannot be read the scene is shown
without cameras and the notes say why. Errors: :class:`ViewOpenError` naming the path and the cause.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .web_cameras import dataset_cameras


class ViewOpenError(ValueError):
    """PATH is neither a run folder, a checkpoint nor a sequence folder (or cannot be read)."""


@dataclass
class Opened:
    """A source, where its "Export this time" PLYs go, and notes for the user."""

    source: object
    export_dir: Path
    notes: list[str] = field(default_factory=list)


def _run_config_data(run_dir: Path):
    """The data section of RUN/config.yaml, or None."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return None
    try:
        from ..config import load_config

        return load_config(cfg_path).data
    except Exception:  # an unreadable config only costs the cameras
        return None


def open_sequence(seq_dir: Path, dataset: str | None, cameras: bool) -> Opened:
    from ..export.sequence import SequenceError
    from .web_source import SequenceSource

    notes: list[str] = []
    cams = []
    data = _run_config_data(seq_dir.parent)
    ds = dataset or (data.path if data is not None else "")
    if cameras and ds:
        cams, note = dataset_cameras(ds, data)
        notes.append(note)
    elif cameras:
        notes.append("no cameras: pass --dataset DIR to show a dataset's cameras")
    try:
        src = SequenceSource(seq_dir, cams, label=f"{seq_dir.parent.name}/{seq_dir.name}")
    except SequenceError as e:
        raise ViewOpenError(str(e)) from None
    return Opened(src, seq_dir.parent / "view_exports", notes)


def open_model(path: Path, device: str, dataset: str | None, cameras: bool) -> Opened:
    from ..config import resolve_device
    from ..model.dynamic import DynamicGaussians
    from .web_source import ModelSource

    model = DynamicGaussians.load(path, device=resolve_device(device))  # CheckpointError: caller
    ckpt = Path(model.info.path) if model.info.path else path
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    notes = [f"model: {ckpt} (step {model.info.step}, {len(model)} Gaussians, {model.kind} field)"]
    cams = []
    if cameras:
        cams, note = dataset_cameras(dataset or model.info.dataset, getattr(model.config, "data", None))
        notes.append(note)
    label = run_dir.name if path.is_dir() else f"{run_dir.name}/{ckpt.name}"
    return Opened(ModelSource(model, cams, label=label), run_dir / "view_exports", notes)


def open_path(path: str | Path, device: str = "auto", dataset: str | None = None, cameras: bool = True) -> Opened:
    """The source for `path` (see module docstring)."""
    from ..model.checkpoint import CheckpointError

    p = Path(path).expanduser()
    if not p.exists():
        raise ViewOpenError(f"{p}: no such file or folder (give a run folder, a checkpoint or a sequence folder)")
    if p.is_dir() and (p / "sequence.json").is_file():
        return open_sequence(p, dataset, cameras)
    try:
        return open_model(p, device, dataset, cameras)
    except CheckpointError as e:
        if p.is_dir() and (p / "ply" / "sequence.json").is_file():
            opened = open_sequence(p / "ply", dataset, cameras)
            opened.notes.insert(0, f"no readable checkpoint in {p} ({e}); showing its export {p / 'ply'}")
            return opened
        raise ViewOpenError(f"{p}: not a sequence folder (no sequence.json) and no model: {e}") from None

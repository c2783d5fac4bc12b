"""The web viewer inside a training process (``train.viewer=true``): watch the model as it trains.

Design (as nerfstudio's viewer, whose training also never waits on the browser): the trainer calls the
:class:`LiveViewer` after each step (a step hook). Every ``train.viewer_every`` steps, and only while a browser
is connected, it copies the model to the CPU under ``torch.no_grad`` (:func:`snapshot_model`: the checkpoint
payload rebuilt as a new model, so the copy shares no storage with the training tensors) and hands the copy to
the viewer's :class:`~dyngauss.viewer.web_source.ModelSource`. The viewer's own thread poses that copy at the
slider's time and sends it; the training thread never renders, never sends and never waits on a socket. With
no browser connected the hook costs one modulo and one dictionary lookup per step.

The trainer is duck-typed (``.model``, ``.step``, ``.scene``, ``.run_dir``): this module does not import
dyngauss.train.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .web_cameras import split_cameras


def snapshot_model(model):
    """A CPU copy of a :class:`dyngauss.model.DynamicGaussians` (no backward field, eval mode) that shares no
    storage with `model`: its checkpoint payload rebuilt by :func:`dyngauss.model.checkpoint.model_from_payload`
    (which copies every tensor into new parameters), the same path as saving and loading a checkpoint. A model
    that no checkpoint can rebuild (no run config, a field of its own) is deep-copied instead."""
    import copy

    import torch

    from ..model.checkpoint import CheckpointError, model_from_payload
    from ..model.dynamic import DynamicGaussians

    with torch.no_grad():
        try:
            payload = model.state_payload()
            payload["backward"] = None
            payload["_path"] = None
            snap = model_from_payload(payload)
            snap.info.path = None
        except CheckpointError:
            snap = DynamicGaussians(copy.deepcopy(model.gaussians).cpu(), copy.deepcopy(model.deform).cpu(), None,
                                    model.train_times, config=model.config, info=copy.copy(model.info))
        for p in snap.parameters():
            p.requires_grad_(False)
            p.grad = None
    return snap.eval()


def _trainer_cameras(trainer) -> list:
    """The training cameras and those of the evaluation split the trainer loaded (with thumbnails)."""
    scene = trainer.scene
    cams = split_cameras(scene.train, "train")
    name = getattr(scene, "eval_split", None)
    if name:
        try:
            cams += split_cameras(scene.split(name), name)
        except (KeyError, LookupError, ValueError):
            pass
    return cams


class LiveViewer:
    """A :class:`~dyngauss.viewer.web.WebViewer` on a training run; call it after every step (``hook(trainer)``).

    Args:
        trainer: the trainer (``.model``, ``.step``, ``.scene``, ``.run_dir``, ``.cfg``).
        port: the port (a busy one: the next free one).
        every: take a snapshot every this many steps (while a browser is connected).
        host: the interface to listen on.
    """

    def __init__(self, trainer, port: int, every: int, host: str = "127.0.0.1"):
        from .web import WebViewer
        from .web_source import ModelSource

        self.every = max(1, int(every))
        run_dir = Path(trainer.run_dir)
        fps = getattr(getattr(trainer.cfg, "export", None), "fps", None)
        self.source = ModelSource(None, _trainer_cameras(trainer), label=f"{run_dir.name} (training)", fps=fps)
        self.source.publish(snapshot_model(trainer.model), step=trainer.step)
        self.viewer = WebViewer(self.source, host=host, port=port, export_dir=run_dir / "view_exports")
        self.snapshots = 0
        self.snapshot_seconds = 0.0

    @property
    def url(self) -> str:
        return self.viewer.url

    def __call__(self, trainer) -> None:
        """The step hook: hand over a snapshot when due and someone is watching."""
        if trainer.step % self.every or not self.viewer.server.get_clients():
            return
        t0 = time.perf_counter()
        self.source.publish(snapshot_model(trainer.model), step=trainer.step)
        self.snapshot_seconds += time.perf_counter() - t0
        self.snapshots += 1
        self.viewer.refresh()

    def close(self) -> None:
        self.viewer.close()


def start_live_viewer(train_cfg, trainer, log: Callable[[str], None] = print) -> LiveViewer | None:
    """The live viewer of `trainer` when ``train_cfg.viewer`` is on (port ``viewer_port``, a snapshot every
    ``viewer_every`` steps), registered as a step hook; None when off. A viewer that cannot start (e.g. viser
    missing) is reported through `log` and training goes on without it."""
    enabled, port, every = train_cfg.viewer, train_cfg.viewer_port, train_cfg.viewer_every
    if not enabled:
        return None
    try:
        live = LiveViewer(trainer, port=port, every=every)
    except (ImportError, OSError, RuntimeError) as e:
        log(f"warning: live viewer not started ({type(e).__name__}: {e}); training goes on without it")
        return None
    trainer.step_hooks.append(live)
    log(f"live viewer at {live.url} (a new snapshot every {live.every} steps while a browser is connected)")
    return live

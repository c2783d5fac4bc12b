"""The main job: train, evaluate on the held-out split, export the PLY sequence (tools/train.py).

The job holds the run folder's lock (:class:`~dyngauss.train.run_folder.RunLock`) from start to end, refuses a
fresh run into a folder that holds checkpoints unless `overwrite` (:func:`prepare_fresh_run`), and evaluates and
exports the checkpoint its trainer wrote last (by path, never "the newest file in the folder").

Under torchrun (train/distributed.py) every rank trains; rank 0 alone holds the lock and prepares the folder.
After training every rank evaluates its share of the evaluation frames (eval/evaluate.py: rank r renders frames
r, r+W, ... and writes their renders); rank 0 gathers them, computes the motion metrics, writes metrics.json
and exports alone (the other ranks wait for it at a last barrier, then end)."""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from ..config import Config, resolve_device
from ..model.dynamic import DynamicGaussians
from .run_folder import RunFolderError, RunLock, prepare_fresh_run
from .trainer import Trainer


def run_job(cfg: Config, resume: bool = False, log=print, overwrite: bool = False) -> dict:
    """Train (or continue), then evaluate and export as configured. Returns the metrics dict.

    `resume` continues from the newest checkpoint of ``cfg.out`` with `cfg` as given (the train command builds
    it with :func:`dyngauss.train.resume.resume_config`). Raises RunBusyError when another training holds the
    folder, RunFolderError for a fresh run into a folder with checkpoints without `overwrite`."""
    from .distributed import init_distributed

    dist, device = init_distributed(resolve_device(cfg.train.device))  # one process unless torchrun started it
    try:
        with RunLock(cfg.out) if dist.is_main else nullcontext():
            if not resume and dist.is_main:
                prepare_fresh_run(cfg.out, overwrite=overwrite)
            try:
                dist.barrier()  # the other ranks read the folder once rank 0 prepared it
            except RuntimeError as e:  # rank 0 stopped (busy or refused folder): its own message says why
                raise RunFolderError(f"rank {dist.rank}: rank 0 stopped before training (its error says why)") from e
            result = _train_eval_export(cfg, resume, log if dist.is_main else (lambda *a, **k: None), dist, device)
            # the ranks that ended early wait for rank 0's export: a rank tearing down its process group while
            # rank 0 still holds connections to it can abort in gloo's teardown ("terminate called without an
            # active exception", seen once in CI). Only on success: a failed rank leaves, and torchrun stops the rest
            dist.barrier()
            return result
    finally:
        dist.close()


def _train_eval_export(cfg: Config, resume: bool, log, dist=None, device=None) -> dict:
    t0 = time.perf_counter()
    trainer = Trainer(cfg, resume=resume, dist=dist, device=device)
    log(f"dataset: {trainer.scene.path}  ({len(trainer.cameras)} training frames, backend={trainer.backend}, "
        f"deform={cfg.deform.kind}, {len(trainer.gaussians)} initial Gaussians)")
    from ..viewer.web_live import start_live_viewer

    live = start_live_viewer(cfg.train, trainer, log) if trainer.dist.is_main else None  # None unless train.viewer
    try:
        trainer.train()
    finally:
        if live is not None:
            live.close()
    run_dir = Path(cfg.out)
    dist = trainer.dist
    model = _eval_model(trainer)
    metrics: dict = {}
    from ..eval.evaluate import evaluate_run, write_skipped_metrics

    split_name = trainer.scene.eval_split  # resolved and loaded before training (train/scene.py): alike on all ranks
    if split_name is None:
        if not dist.is_main:
            return {}
        metrics = write_skipped_metrics(model, run_dir, trainer.scene.eval_note)
        log(trainer.scene.eval_note)
    else:  # every rank evaluates its share of the frames; rank 0 gathers them and writes metrics.json
        metrics = evaluate_run(model, trainer.scene.split(split_name), run_dir, split_name,
                               backend=cfg.render.backend, save_renders=cfg.eval.save_renders,
                               lpips=cfg.eval.lpips, data_path=trainer.scene.path, rank=dist.rank, world=dist.world)
        if not dist.is_main:  # rank 0 reports, exports and ends alone
            return {}
        log(f"{split_name} PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  "
            f"{metrics['num_gaussians']} Gaussians  {metrics['fps']:.1f} FPS  "
            f"train {metrics['train_seconds']:.0f} s")
    if metrics.get("track_epe") is not None:
        flow = metrics.get("flow_epe_px")  # None without a video split
        log(f"motion: flow EPE {'n/a' if flow is None else f'{flow:.3f}'} px  track EPE {metrics['track_epe']:.4f} "
            f"({100 * metrics['track_epe_rel']:.2f}% of the extent; strided references "
            f"{100 * metrics['track_epe_strided_rel']:.2f}%)")
    if cfg.export.enabled:
        from ..export.sequence import export_sequence, times_for

        times = times_for(frames=cfg.export.frames)
        seq = export_sequence(model, times, run_dir / "ply", fmt=cfg.export.format, fps=cfg.export.fps,
                              sh_degree=cfg.export.sh_degree,
                              extra={"background": list(cfg.data.background)})
        log(f"exported {len(times)} frames to {seq}")
    log(f"total {time.perf_counter() - t0:.0f} s; run folder {run_dir}")
    return metrics


def _eval_model(trainer: Trainer) -> DynamicGaussians:
    """The model to evaluate, on the device it trained on (gsplat on a GPU). Rank 0: the checkpoint this
    training wrote last, by path. Other ranks: the same parameters from their own memory (training keeps them
    identical to rank 0's, checked every ``train.dist_check_every`` steps), so no shared file system is needed.
    A collective: when any rank fails, every rank raises (none is left waiting in the evaluation)."""
    from ..model.checkpoint import model_from_payload

    dist = trainer.dist
    ckpt = trainer.last_checkpoint or trainer.save()  # on every rank: save() is collective
    model, error = None, None
    try:
        if dist.is_main:
            model = DynamicGaussians.load(ckpt, device=trainer.device)
        else:
            model = model_from_payload(trainer.model.state_payload()).eval().to(trainer.device)
    except Exception as e:  # noqa: BLE001 - every rank learns of it below, then it is raised
        if not dist.enabled:
            raise
        error = e
    if dist.any(error is not None, device=trainer.device):
        if error is not None:
            raise error
        raise RuntimeError(f"rank {dist.rank}: another rank could not load the model for evaluation (its error "
                           "says why)")
    return model

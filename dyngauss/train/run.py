"""The main job: train, evaluate on the held-out split, export the PLY sequence (tools/train.py)."""
from __future__ import annotations

import time
from pathlib import Path

from ..config import Config
from ..model.dynamic import DynamicGaussians
from .trainer import Trainer


def run_job(cfg: Config, resume: bool = False, log=print) -> dict:
    """Train (or continue), then evaluate and export as configured. Returns the metrics dict."""
    t0 = time.perf_counter()
    trainer = Trainer(cfg, resume=resume)
    log(f"dataset: {trainer.scene.path}  ({len(trainer.cameras)} training frames, backend={trainer.backend}, "
        f"deform={cfg.deform.kind}, {len(trainer.gaussians)} initial Gaussians)")
    trainer.train()
    run_dir = Path(cfg.out)
    model = DynamicGaussians.load(run_dir, device=trainer.device)  # evaluate where it trained (gsplat on a GPU)
    metrics: dict = {}
    from ..eval.evaluate import evaluate_run

    split_name = cfg.data.eval_split
    metrics = evaluate_run(model, trainer.scene.split(split_name), run_dir, split_name,
                           backend=cfg.render.backend, save_renders=cfg.eval.save_renders, lpips=cfg.eval.lpips,
                           data_path=trainer.scene.path)
    log(f"{split_name} PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  "
        f"{metrics['num_gaussians']} Gaussians  {metrics['fps']:.1f} FPS  "
        f"train {metrics['train_seconds']:.0f} s")
    if metrics.get("track_epe") is not None:
        log(f"motion: flow EPE {metrics.get('flow_epe_px'):.3f} px  track EPE {metrics['track_epe']:.4f} "
            f"({100 * metrics['track_epe_rel']:.2f}% of the extent; strided references "
            f"{100 * metrics['track_epe_strided_rel']:.2f}%)")
    if cfg.export.enabled:
        from ..export.sequence import export_sequence, times_for

        times = times_for(frames=cfg.export.frames)
        seq = export_sequence(model, times, run_dir / "ply", fmt=cfg.export.format, fps=cfg.export.fps,
                              extra={"background": list(cfg.data.background)})
        log(f"exported {len(times)} frames to {seq}")
    log(f"total {time.perf_counter() - t0:.0f} s; run folder {run_dir}")
    return metrics

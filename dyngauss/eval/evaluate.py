"""Render an evaluation split, compute PSNR/SSIM/(LPIPS), timing and size, save renders, write metrics.json."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write, atomic_write_text
from ..model.dynamic import DynamicGaussians
from .metrics import LpipsMetric, psnr, ssim


def _save_png(path: Path, img: torch.Tensor) -> None:
    from PIL import Image

    arr = (img.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    atomic_write(path, lambda f: Image.fromarray(arr).save(f, format="PNG"), fsync=False)


def render_names(split) -> list[str]:
    """One unique output name per camera of a split (no extension; may contain ``/``), for
    ``renders/<split>/<name>.png``.

    The frame's name (its file stem, e.g. ``r_007``) when those are unique in the split. When they collide
    (multi-camera layouts: ``cam00/0000.png`` ... ``cam03/0000.png``) every frame is named by its image path
    relative to the dataset folder, without the extension and without the folders all frames share
    (``cam00/0000``); names that still repeat (one image listed twice) get ``_2``, ``_3``, ... Frames without a
    name are ``000``, ``001``, ... (their row)."""
    cams = split.cameras
    names = [c.name or f"{i:03d}" for i, c in enumerate(cams)]
    if len(set(names)) < len(names):
        root = Path(getattr(split, "path", "") or "")
        rel = []
        for i, c in enumerate(cams):
            fp = (c.meta or {}).get("file_path")
            if not fp:
                rel.append(None)
                continue
            p = Path(fp)
            try:
                p = p.resolve().relative_to(root.resolve())
            except (ValueError, OSError):  # an image outside the dataset folder: its folder and file name
                p = Path(*p.parts[-2:])
            parts = tuple(q for q in p.with_suffix("").parts if q not in ("", ".", "..", "/"))
            rel.append(parts or None)
        full = [r for r in rel if r]
        common = 0
        if len(full) == len(rel) and full:
            while all(len(r) > common + 1 and r[common] == full[0][common] for r in full):
                common += 1
        names = ["/".join(r[common:]) if r else n for r, n in zip(rel, names)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0) + 1
        seen[n] = k
        out.append(n if k == 1 else f"{n}_{k}")
    # a suffixed name could equal another frame's own name: number until unique
    taken: set[str] = set()
    for i, n in enumerate(out):
        base, k = n, 1
        while n in taken:
            k += 1
            n = f"{base}_{k}"
        taken.add(n)
        out[i] = n
    return out


@torch.no_grad()
def evaluate_split(model: DynamicGaussians, split, run_dir: Path | None, split_name: str, backend: str = "auto",
                   save_renders: bool = True, lpips: bool = True) -> dict:
    """Metrics of one split (a DNeRFSplit). FPS counts the deformation field evaluation and the rasterization."""
    device = model.device
    bg = model.background()
    lp = LpipsMetric() if lpips else None
    ps, ss, ls, secs = [], [], [], []
    names = render_names(split)
    for i, cam in enumerate(split.cameras):
        t = float(cam.time)
        t0 = time.perf_counter()
        out = model.render(cam, t, background=bg, backend=backend)
        if device.type == "cuda":  # kernels run asynchronously: time the finished frame
            torch.cuda.synchronize(device)
        secs.append(time.perf_counter() - t0)
        img, gt = out.rgb[0].clamp(0, 1), split.images[i].to(device)
        ps.append(float(psnr(img, gt)))
        ss.append(float(ssim(img, gt)))
        if lp is not None and lp.available:
            ls.append(lp(img, gt))
        if save_renders and run_dir is not None:
            _save_png(run_dir / "renders" / split_name / f"{names[i]}.png", img)
    warm = secs[1:] if len(secs) > 1 else secs  # the first call may include kernel loading
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "lpips": float(np.mean(ls)) if ls else None,
            "fps": float(1.0 / np.mean(warm)) if warm else None, "num_frames": len(ps),
            "psnr_per_frame": [round(p, 4) for p in ps], "frame_names": names}


def write_metrics(run_dir: Path, metrics: dict) -> Path:
    """Atomically write RUN/metrics.json (flat JSON object)."""
    return atomic_write_text(Path(run_dir) / "metrics.json", json.dumps(metrics, indent=2))


def write_skipped_metrics(model: DynamicGaussians, run_dir: Path, reason: str) -> dict:
    """metrics.json of a run whose evaluation was skipped (no evaluation split): the run's facts, ``split``
    None, the image metrics None and ``eval_skipped`` = `reason`. Returns the dict."""
    metrics = {"split": None, "psnr": None, "ssim": None, "lpips": None, "fps": None,
               "num_gaussians": len(model.gaussians), "train_seconds": model.info.train_seconds,
               "steps": model.info.step, "deform_kind": model.kind, "num_eval_frames": 0,
               "eval_skipped": reason}
    write_metrics(run_dir, metrics)
    return metrics


def evaluate_run(model: DynamicGaussians, scene_split, run_dir: Path, split_name: str = "test", backend: str = "auto",
                 save_renders: bool = True, lpips: bool = True, data_path: str | Path | None = None,
                 motion: bool = True) -> dict:
    """Evaluate and write metrics.json with psnr, ssim, lpips, fps, num_gaussians, train_seconds, and, when the
    dataset has ground truth (video/ flow, gt_tracks.npz), flow_epe_px, track_epe, track_epe_rel."""
    m = evaluate_split(model, scene_split, run_dir, split_name, backend, save_renders, lpips)
    metrics = {"split": split_name, "psnr": m["psnr"], "ssim": m["ssim"], "lpips": m["lpips"], "fps": m["fps"],
               "num_gaussians": len(model.gaussians), "train_seconds": model.info.train_seconds,
               "steps": model.info.step, "deform_kind": model.kind, "num_eval_frames": m["num_frames"],
               "psnr_per_frame": m["psnr_per_frame"]}
    if motion:
        from .motion import evaluate_motion

        path = Path(data_path) if data_path else Path(model.info.dataset or "")
        if str(path) and path.is_dir():
            metrics.update(evaluate_motion(model, path, backend, plots_dir=Path(run_dir) / "plots"))
    write_metrics(run_dir, metrics)
    return metrics

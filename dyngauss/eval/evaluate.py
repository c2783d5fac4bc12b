"""Render an evaluation split, compute PSNR/SSIM/(LPIPS), timing and size, save renders, write metrics.json.

Under torch.distributed the split's frames are shared over the ranks and the per-frame results gathered
(:mod:`dyngauss.eval.shards`, :func:`evaluate_split`); motion metrics and metrics.json stay with rank 0."""
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
                   save_renders: bool = True, lpips: bool = True, rank: int = 0, world: int = 1) -> dict:
    """Metrics of one split (a DNeRFSplit): PSNR, SSIM, LPIPS (when `lpips` and its weights are on disk) per
    frame and their means over the split, and FPS (the deformation field evaluation plus the rasterization).

    Distributed (`world` > 1, torch.distributed initialised, see :mod:`dyngauss.eval.shards`): rank `rank`
    renders and scores only frames ``rank, rank + world, ...`` and writes only those renders
    (``run_dir/renders/<split_name>/<name>.png`` when `save_renders`); the per-frame results are gathered on
    every rank and put back in the split's order, so the returned dict is the one a single process computes
    (means over the same values in the same order; FPS from the per-frame times, each rank's first frame left
    out as warm-up as a single process leaves out its first). Every rank must call this (a collective, also
    with an empty share). A rank that fails raises its own error after the gather, the other ranks a
    RuntimeError naming it, so no rank is left waiting.

    Returns: ``psnr``, ``ssim`` (means), ``lpips`` (mean, None unless every frame has one), ``fps`` (None
    without frames), ``num_frames``, ``psnr_per_frame`` (rounded to 4 decimals), ``frame_names``, and the
    unrounded per-frame lists ``ssim_per_frame``, ``lpips_per_frame``, ``seconds_per_frame``, ``frame_ranks``
    (the rank that evaluated each frame)."""
    from .shards import check_rank, frame_share, gather_records

    check_rank(rank, world)
    run_dir = None if run_dir is None else Path(run_dir)
    names = render_names(split)
    records, error = [], None
    try:
        device = model.device
        bg = model.background()
        lp = LpipsMetric() if lpips else None
        for k, i in enumerate(frame_share(len(split.cameras), rank, world)):
            cam = split.cameras[i]
            t0 = time.perf_counter()
            out = model.render(cam, float(cam.time), background=bg, backend=backend)
            if device.type == "cuda":  # kernels run asynchronously: time the finished frame
                torch.cuda.synchronize(device)
            sec = time.perf_counter() - t0
            img, gt = out.rgb[0].clamp(0, 1), split.images[i].to(device)
            records.append({"index": i, "psnr": float(psnr(img, gt)), "ssim": float(ssim(img, gt)),
                            "lpips": lp(img, gt) if lp is not None and lp.available else None,
                            "seconds": sec, "warm": k > 0, "rank": rank})  # warm: not this rank's first call
            if save_renders and run_dir is not None:
                _save_png(run_dir / "renders" / split_name / f"{names[i]}.png", img)
    except Exception as e:  # noqa: BLE001 - reported to every rank after the gather, then raised
        if world == 1:
            raise
        error = e
    gathered = gather_records({"records": records, "error": None if error is None else
                               f"{type(error).__name__}: {error}"}, world)
    if error is not None:
        raise error
    failed = [(r, g["error"]) for r, g in enumerate(gathered) if g["error"] is not None]
    if failed:
        raise RuntimeError(f"evaluation of split {split_name!r} failed on rank {failed[0][0]}: {failed[0][1]}")
    recs = sorted((x for g in gathered for x in g["records"]), key=lambda x: x["index"])
    ps, ss, ls = [x["psnr"] for x in recs], [x["ssim"] for x in recs], [x["lpips"] for x in recs]
    secs = [x["seconds"] for x in recs]
    warm = [x["seconds"] for x in recs if x["warm"]] or secs  # the first call may include kernel loading
    has_lpips = bool(ls) and all(v is not None for v in ls)
    return {"psnr": float(np.mean(ps)) if ps else float("nan"), "ssim": float(np.mean(ss)) if ss else float("nan"),
            "lpips": float(np.mean(ls)) if has_lpips else None,
            "fps": float(1.0 / np.mean(warm)) if warm else None, "num_frames": len(ps),
            "psnr_per_frame": [round(p, 4) for p in ps], "frame_names": names,
            "ssim_per_frame": ss, "lpips_per_frame": ls, "seconds_per_frame": secs,
            "frame_ranks": [x["rank"] for x in recs]}


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
                 motion: bool = True, rank: int = 0, world: int = 1) -> dict:
    """Evaluate and write metrics.json with psnr, ssim, lpips, fps, num_gaussians, train_seconds, and, when the
    dataset has ground truth (video/ flow, gt_tracks.npz), flow_epe_px, track_epe, track_epe_rel.

    Distributed (`world` > 1; every rank calls this with its `rank`): the image metrics are split over the
    ranks and gathered (:func:`evaluate_split`; each rank writes its own frames' renders). The motion metrics
    (:func:`dyngauss.eval.motion.evaluate_motion`: flow EPE over the video split, track EPE) and every file that
    is not one frame's render (metrics.json, plots/) are computed and written by rank 0 alone, after the
    gather, so the other ranks may leave as soon as this returns; metrics.json is the one a single process
    writes (same keys, same per-frame order, same means; ``fps`` is timed on W processes sharing the
    machine(s)). Returns the metrics on rank 0; on the other ranks the image metrics only (nothing written)."""
    m = evaluate_split(model, scene_split, run_dir, split_name, backend, save_renders, lpips, rank=rank, world=world)
    metrics = {"split": split_name, "psnr": m["psnr"], "ssim": m["ssim"], "lpips": m["lpips"], "fps": m["fps"],
               "num_gaussians": len(model.gaussians), "train_seconds": model.info.train_seconds,
               "steps": model.info.step, "deform_kind": model.kind, "num_eval_frames": m["num_frames"],
               "psnr_per_frame": m["psnr_per_frame"]}
    if rank != 0:
        return metrics
    if motion:
        from .motion import evaluate_motion

        path = Path(data_path) if data_path else Path(model.info.dataset or "")
        if str(path) and path.is_dir():
            metrics.update(evaluate_motion(model, path, backend, plots_dir=Path(run_dir) / "plots"))
    write_metrics(run_dir, metrics)
    return metrics

#!/usr/bin/env python
"""GPU benchmark (issue "GPU path"): full training on a D-NeRF scene with each deformation field, then test
PSNR/SSIM, render FPS at the dataset resolution including the deformation field, the deformed/static render
time ratio, the cached-field (playback) and CUDA-graph-replayed field ratios and peak GPU memory.

    python tools/bench_gpu.py                                  # ../shared/data/twist, mlp and nodes, CUDA
    python tools/bench_gpu.py --fields mlp --iters 20000 --out runs/bench_gpu
    python tools/bench_gpu.py --device cpu --iters 200 --downscale 4      # a CPU smoke run of the same code

Training, evaluation and timing run in this process on --device (evaluation of metrics.json by the main job
stays on the CPU kernel; the FPS reported here is measured on --device). Prints a table and writes
OUT/bench_gpu.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dyngauss.config import load_config  # noqa: E402
from dyngauss.io import atomic_write_text  # noqa: E402


def bench_field(kind: str, args) -> dict:
    from dyngauss.eval.timing import time_renders
    from dyngauss.model import DynamicGaussians
    from dyngauss.train.run import run_job
    from dyngauss.train.scene import load_scene

    out = Path(args.out) / kind
    overrides = [f"data.path={args.data}", f"out={out}", f"deform.kind={kind}", f"train.device={args.device}",
                 f"data.downscale={args.downscale}", "export.enabled=false", *args.overrides]
    if args.iters:
        overrides.append(f"train.iters={args.iters}")
    if args.time_limit:
        overrides.append(f"train.time_limit_s={args.time_limit}")
    cfg = load_config(ROOT / args.config, overrides)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    metrics = run_job(cfg, log=lambda *a: print(f"[{kind}]", *a, flush=True))
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None
    model = DynamicGaussians.load(out, device=dev)
    test = load_scene(cfg).split("test")
    timing = time_renders(model, test.cameras, backend=cfg.render.backend, reps=args.reps)
    return {"field": kind, "train_seconds": metrics["train_seconds"], "job_wall_seconds": wall,
            "iters": cfg.train.iters, "steps": metrics["steps"], "psnr": metrics["psnr"], "ssim": metrics["ssim"],
            "num_gaussians": metrics["num_gaussians"], "resolution": [test.width, test.height],
            "peak_gpu_mib": peak, "track_epe_rel": metrics.get("track_epe_rel"), **timing}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "twist"))
    ap.add_argument("--config", default="configs/dnerf.yaml")
    ap.add_argument("--fields", nargs="+", default=["mlp", "nodes"])
    ap.add_argument("--iters", type=int, default=0, help="0: the config's")
    ap.add_argument("--downscale", type=int, default=1)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="stop each field's training after this many seconds (then evaluate); 0: off")
    ap.add_argument("--out", default="runs/bench_gpu")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = ap.parse_intermixed_args(argv)  # overrides may come before and after options
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: CUDA is not available (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    dev_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for k in args.fields:  # one field failing must not lose the other's figures
        try:
            rows.append(bench_field(k, args))
        except Exception:  # noqa: BLE001 - reported, and the exit status says so
            traceback.print_exc()
            failed.append(k)
        atomic_write_text(out / "bench_gpu.json", json.dumps({"device": dev_name, "torch": torch.__version__,
                                                              "rows": rows, "failed": failed}, indent=1))
    print(f"\ndevice: {dev_name}, torch {torch.__version__}")
    head = ("field", "steps", "train s", "PSNR", "SSIM", "N", "track %", "FPS def", "FPS stat", "def/stat",
            "cache/stat", "graph/stat", "peak MiB")
    print(" ".join(f"{h:>9s}" for h in head))
    for r in rows:
        track = f"{100 * r['track_epe_rel']:.2f}" if r["track_epe_rel"] is not None else "-"
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        cells = (r["field"], r["steps"], f"{r['train_seconds']:.0f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
                 r["num_gaussians"], track, f"{r['deformed_fps']:.1f}", f"{r['static_fps']:.1f}",
                 f"{r['deformed_over_static']:.2f}", f"{r['cached_over_static']:.2f}",
                 f"{r['graphed_over_static']:.2f}" if "graphed_over_static" in r else "-", peak)
        print(" ".join(f"{str(c):>9s}" for c in cells))
    if failed:
        print(f"error: the benchmark failed for {', '.join(failed)} (traceback above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

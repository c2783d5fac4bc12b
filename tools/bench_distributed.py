#!/usr/bin/env python
"""Distributed-training benchmark (issue 21): steps/s and images/s of 1 process vs N processes (torchrun, gloo
on CPU / nccl on CUDA) at the same global batch on the built-in scene.

    python tools/bench_distributed.py                         # B = 2: 1 vs 2 processes, CPU
    python tools/bench_distributed.py --batch 4 --procs 1 2 4 --steps 40 --device cuda
    python tools/bench_distributed.py --resolution 64 --points 4000 --steps 30 --out runs/bench_dist   # quicker

Each configuration trains --steps steps (densification off, so every step has the same work) after --warmup
untimed steps; rank 0 times the steps (the collectives included) and writes OUT/<procs>.json. Prints a table
and writes OUT/bench_distributed.json. Numbers on a shared machine (other jobs on its cores) vary between runs:
compare the ratio from one invocation only.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _overrides(a) -> list[str]:
    return [f"data.path={a.scene}", f"out={a.out}/run", f"train.iters={a.steps + a.warmup}", "train.warmup_iters=0",
            f"model.num_points={a.points}", "densify.enabled=false", "train.progress=false", "train.save_every=0",
            f"train.batch_size={a.batch}", f"train.device={a.device}", "train.dist_check_every=0"]


def worker(a) -> int:
    """One rank: build the trainer, run the untimed then the timed steps, rank 0 writes OUT/<world>.json."""
    import torch

    from dyngauss.config import load_config, resolve_device
    from dyngauss.train.distributed import init_distributed
    from dyngauss.train.trainer import Trainer

    cfg = load_config(None, _overrides(a))
    dist, device = init_distributed(resolve_device(cfg.train.device))
    try:
        t = Trainer(cfg, dist=dist, device=device)
        for _ in range(a.warmup):
            t.train_step()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            t.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dist.barrier()
        dt = time.perf_counter() - t0
        if dist.is_main:
            res = {"procs": dist.world, "batch": a.batch, "steps": a.steps, "seconds": dt,
                   "steps_per_s": a.steps / dt, "images_per_s": a.steps * a.batch / dt,
                   "gaussians": len(t.gaussians), "device": str(device)}
            (Path(a.out) / f"{dist.world}.json").write_text(json.dumps(res, indent=1))
    finally:
        dist.close()
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    ap.add_argument("--batch", type=int, default=2, help="global batch (cameras per step), the same for all")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each process")
    ap.add_argument("--out", default="runs/bench_distributed")
    ap.add_argument("--scene", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    if any(n > a.batch for n in a.procs):
        ap.error(f"--batch {a.batch} is smaller than a process count in --procs {a.procs}")
    from dyngauss.data.synthetic import SyntheticConfig, generate

    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene = generate(out / "scene", SyntheticConfig(resolution=a.resolution, n_train=16, n_val=1, n_test=1,
                                                    n_video=0, n_tracks=16, supersample=1))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    rows = []
    for n in a.procs:
        args = [str(Path(__file__).resolve()), "--worker", "--scene", str(scene), "--out", str(out),
                *(f"--{k}={getattr(a, k)}" for k in ("batch", "steps", "warmup", "points", "device"))]
        cmd = [sys.executable, *args] if n == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr",
             "127.0.0.1", "--master_port", str(_free_port()), *args]
        (out / f"{n}.json").unlink(missing_ok=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout[-2000:] + r.stderr[-4000:], file=sys.stderr)
            return 1
        rows.append(json.loads((out / f"{n}.json").read_text()))
    base = rows[0]["steps_per_s"]
    print(f"global batch {a.batch}, {a.resolution}px, {a.points} Gaussians, {a.device}, "
          f"OMP_NUM_THREADS={a.threads}, {os.cpu_count()} CPUs")
    print(f"{'procs':>5} {'steps/s':>9} {'images/s':>9} {'speed-up':>9}")
    for r in rows:
        r["speedup"] = r["steps_per_s"] / base
        print(f"{r['procs']:>5} {r['steps_per_s']:>9.2f} {r['images_per_s']:>9.2f} {r['speedup']:>9.2f}")
    (out / "bench_distributed.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

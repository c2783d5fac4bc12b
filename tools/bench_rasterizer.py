"""Benchmark the C++ CPU rasterizer against the torch reference: time and peak memory.

Usage: python tools/bench_rasterizer.py [--sizes 10000 50000 200000] [--repeats 3] [--threads 2]
                                        [--res 400] [--max-ref 50000] [--omp-wait passive]

Every (size, backend, mode) runs in its own subprocess so peak memory can be read from ru_maxrss: the
figure is the rise of the process's resident-set high-water mark during one call (scene and imports
excluded). "fwd" renders without autograd (inference); "fwd+bwd" renders with gradients and backpropagates
a loss into means, quats, scales, opacities and colours. Times are the median of --repeats calls after that
first (warm-up) call.

On a machine whose cores are busy with other work, OpenMP's default wait policy (threads spin for a while
between and at the end of parallel regions) makes every multi-threaded run, the reference's and ours, several
times slower and very noisy. --omp-wait passive sets OMP_WAIT_POLICY=PASSIVE in the measuring subprocesses
(it must be set before torch is imported); --threads 1 avoids the problem altogether.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def make_scene(n: int, res: int, seed: int = 0) -> dict:
    """n random Gaussians in front of a 60-degree camera, spread over the whole view (and a little beyond).

    Projected standard deviations are 0.5-2.5 px per axis, so each Gaussian covers a few to tens of pixels."""
    g = torch.Generator().manual_seed(seed)
    f = 0.5 * res / math.tan(math.radians(30))
    z = 3.0 + 4.0 * torch.rand(n, generator=g)
    half = 1.05 * z * (0.5 * res / f)  # a little beyond the frustum so borders are exercised
    xy = (torch.rand(n, 2, generator=g) * 2 - 1) * half[:, None]
    sigma_px = torch.exp(torch.empty(n, 3).uniform_(math.log(0.5), math.log(2.5), generator=g))
    return {
        "means": torch.cat([xy, z[:, None]], 1),
        "quats": torch.randn(n, 4, generator=g),
        "scales": sigma_px * z[:, None] / f,
        "opacities": 0.05 + 0.9 * torch.rand(n, generator=g),
        "colors": torch.rand(1, n, 3, generator=g),
        "viewmats": torch.eye(4)[None],
        "Ks": torch.tensor([[[f, 0.0, res / 2], [0.0, f, res / 2], [0.0, 0.0, 1.0]]]),
        "res": res,
    }


def render_fn(backend: str):
    """(project, rasterize) pair of one backend."""
    if backend == "cpu":
        from dyngauss.render import cpu_backend as cb
        cb.build_extension()
        return cb.project, cb.rasterize_pixels
    from dyngauss.render import torch_reference as ref
    return ref.project_gaussians, ref.rasterize_pixels


def run_once(backend: str, scene: dict, backward: bool) -> None:
    """One forward (and backward) pass of `backend` over `scene`."""
    project, rasterize = render_fn(backend)
    res = scene["res"]
    names = ("means", "quats", "scales", "opacities", "colors")
    params = {k: scene[k].clone().requires_grad_(backward) for k in names}
    with torch.set_grad_enabled(backward):
        m2, con, dep, ext, _ = project(params["means"], params["quats"], params["scales"], scene["viewmats"],
                                       scene["Ks"], res, res, eps2d=0.3, near=0.01, far=1e10)
        img, alpha = rasterize(m2, con, params["colors"], params["opacities"], dep, ext, res, res, 16)
        if backward:
            (img.sum() * 0.5 + alpha.sum() * 0.25).backward()


def maxrss_mib() -> float:
    """Peak resident set of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args: argparse.Namespace) -> None:
    """Measure one (size, backend, mode) and print a JSON line."""
    torch.set_num_threads(args.threads)
    scene = make_scene(args.n, args.res)
    render_fn(args.backend)  # import / load the kernel before the memory baseline
    backward = args.mode == "fwd+bwd"
    base = maxrss_mib()
    t0 = time.perf_counter()
    run_once(args.backend, scene, backward)
    first = time.perf_counter() - t0
    peak = maxrss_mib() - base
    times = [first] if args.repeats == 0 else []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run_once(args.backend, scene, backward)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"ms": 1000 * statistics.median(times), "mib": peak}))


def measure(n: int, backend: str, mode: str, args: argparse.Namespace) -> dict | None:
    """Run one measurement in a fresh subprocess; None when it failed."""
    cmd = [sys.executable, __file__, "--worker", "--n", str(n), "--backend", backend, "--mode", mode,
           "--repeats", str(args.repeats), "--threads", str(args.threads), "--res", str(args.res)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.omp_wait != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait.upper()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"[{backend} {mode} n={n}] failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(x: float | None, spec: str, missing: str = "skipped") -> str:
    return missing if x is None else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 200000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--res", type=int, default=400, help="image width = height")
    p.add_argument("--max-ref", type=int, default=50000, help="skip the torch reference above this many Gaussians")
    p.add_argument("--omp-wait", choices=["inherit", "passive", "active"], default="inherit",
                   help="OMP_WAIT_POLICY of the measuring subprocesses (passive: robust on a busy machine)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--backend", choices=["cpu", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["fwd", "fwd+bwd"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    from dyngauss.render import cpu_backend
    cpu_backend.build_extension()  # compile once here, not inside a timed subprocess
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    wait = os.environ.get("OMP_WAIT_POLICY", "default") if args.omp_wait == "inherit" else args.omp_wait
    print(f"{args.res}x{args.res}, tile 16, {args.threads} thread(s), float32, median of {args.repeats} "
          f"(load average {load} on {os.cpu_count()} CPUs, OMP wait policy {wait}); "
          f"memory = peak RSS rise during one call")
    head = (f"{'N':>8} {'mode':>8} | {'C++ ms':>9} {'torch ms':>10} {'speedup':>8} | "
            f"{'C++ MiB':>8} {'torch MiB':>9}")
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        for mode in ("fwd", "fwd+bwd"):
            c = measure(n, "cpu", mode, args)
            r = measure(n, "torch", mode, args) if n <= args.max_ref else None
            speed = (r["ms"] / c["ms"]) if (c and r) else None
            print(f"{n:>8} {mode:>8} | {fmt(c and c['ms'], '9.1f', 'failed'):>9} "
                  f"{fmt(r and r['ms'], '10.1f'):>10} {fmt(speed, '7.1f') + ('x' if speed else ''):>8} | "
                  f"{fmt(c and c['mib'], '8.1f', 'failed'):>8} {fmt(r and r['mib'], '9.1f'):>9}", flush=True)


if __name__ == "__main__":
    main()

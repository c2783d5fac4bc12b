#!/usr/bin/env python
"""Motion benchmark over scene families (issue 20): train the CPU protocol on every scene of the built-in
generator's motion families, in both camera protocols, and on ``../shared/data/twist``; report test PSNR, flow
EPE and 3D track EPE (first-time and strided references) per scene and variant, the spread over seeds, and the
family mean, in one table (printed, and written as JSON and Markdown).

    python tools/bench_motion.py                               # the family: ~60 min on 2 cores
    python tools/bench_motion.py --quick                       # CI-sized smoke run (two small scenes, < 2 min)
    python tools/bench_motion.py --seeds 0 1 --variants mlp nodes
    python tools/bench_motion.py --variant warp=deform.kind=mlp,motion.photo_warp_weight=0.1 --variants none mlp warp
    python tools/bench_motion.py --scenes limb:random blob:orbit twist-shared --jobs 2 --out runs/bench_motion

Scenes: ``FAMILY:CAMERA`` (FAMILY one of dyngauss.data.motion_families' families: twist, limb, blob,
two_objects, spin; CAMERA ``random`` = one teleporting random camera per training frame, ``orbit`` = consecutive
frames of a smoothly moving camera, like a phone, ``camsN`` = N fixed synchronised cameras, camera 0 held out:
the multi-view protocol of issue 21, not in the default set) and ``twist-shared`` (the shared Blender scene, when
present). Built-in variant ``tracking`` is the per-Gaussian field (configs/tracking.yaml), meant for camsN.

Protocols (the CPU protocol of issue 20):
  * built-in scenes: the main job's config (configs/default.yaml) at ``--resolution`` (default 96) for
    ``--iters`` (default 2000) steps; the generator writes the scene once into the cache.
  * twist-shared: ``configs/dnerf.yaml`` with ``data.downscale=4`` (100 px), ``--twist-iters`` (default 3000)
    steps, SH degree 1, a 64 x 4 field with time PE 4, 10k initial points; its motion section and field keys
    start from the defaults (:func:`default_motion_overrides`), so each variant sets the same motion
    configuration as on the built-in scenes (``nodes`` = dnerf.yaml as shipped).

Variants are sets of config overrides applied on top of the protocol: the built-in ``none`` (static baseline),
``mlp`` (the default dense field, with the defaults' temporal curriculum and depth term), ``nodes``
(configs/nodes.yaml's node field), ``mlp-old`` (the defaults before the curriculum and the depth term: the
baseline of docs/benchmark.md) and ``bases`` (motion bases), plus any given with
``--variant NAME=key=value,key=value``. A run whose ``metrics.json`` exists with the same job spec is reused, so
an interrupted benchmark continues where it stopped (``--fresh`` re-runs everything).

Every run trains in its own process with one thread (``--jobs`` at a time). Reported per scene and variant:
mean and sample standard deviation over the seeds of test PSNR (dB), flow EPE (px), track EPE and strided track
EPE (% of the scene extent), train seconds; the family mean averages the scenes' means (built-in scenes only, and
with twist-shared when it ran). Numbers on a shared machine vary in time, not in quality: the metrics of a run
depend only on its config and seed (train/streams.py), the seconds on the load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_TWIST = ROOT.parent / "shared" / "data" / "twist"

FAMILIES = ("twist", "limb", "blob", "two_objects", "spin")
CAMERAS = ("random", "orbit")
METRICS = (("psnr", "PSNR dB", 1.0), ("flow_epe_px", "flow EPE px", 1.0),
           ("track_epe_rel", "track %", 100.0), ("track_epe_strided_rel", "strided %", 100.0),
           ("train_seconds", "train s", 1.0))
BUILTIN_VARIANTS = {
    "none": ["deform.kind=none"],
    "mlp": ["deform.kind=mlp"],
    # configs/nodes.yaml on the main job
    "nodes": ["deform.kind=nodes", "deform.anneal_steps=1000", "deform.node_pivot=center",
              "motion.flow_weight=0.5", "motion.track_weight=0.5", "motion.track_max_span=40",
              "deform.lr=3e-3", "deform.lr_final=3e-5"],
    # the defaults before the temporal curriculum and the depth term (the baseline of docs/benchmark.md)
    "mlp-old": ["deform.kind=mlp", "train.time_window=1", "motion.depth_weight=0"],
    "bases": ["deform.kind=bases"],                               # Shape of Motion's motion bases
    # configs/tracking.yaml on the main job (per-Gaussian SE(3) per frame; multi-camera scenes, camsN)
    "tracking": ["deform.kind=tracking", "deform.lr=1e-2", "deform.lr_final=1e-4", "deform.rot_lr=1e-2",
                 "motion.rigidity_weight=0.1", "motion.rotation_weight=0.1", "motion.isometry_weight=0.1",
                 "motion.rigidity_dt=0.05"],
}


@dataclass
class Job:
    """One training: scene, variant, seed, the full command-line overrides and where it runs."""

    scene: str
    variant: str
    seed: int
    config: str
    overrides: list[str]
    out: str
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def spec(self) -> dict:
        return {"scene": self.scene, "variant": self.variant, "seed": self.seed, "config": self.config,
                "overrides": self.overrides}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=key=value,key=value`` -> (NAME, ["key=value", ...]). Raises ValueError on a malformed spec."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--variant {text!r}: expected NAME=key=value[,key=value...]")
    items = [s.strip() for s in rest.split(",") if s.strip()]
    if not items or any("=" not in s for s in items):
        raise ValueError(f"--variant {text!r}: every item must be key=value")
    return name, items


def scene_protocol(scene: str, a: argparse.Namespace) -> tuple[str, list[str]]:
    """(config file, overrides) of the CPU protocol for `scene`. Raises ValueError for an unknown scene."""
    if scene == "twist-shared":
        config = ROOT / "configs" / "dnerf.yaml"
        return str(config), default_motion_overrides(config) + [
            f"data.path={a.twist_path}", "data.downscale=4", f"train.iters={a.twist_iters}",
            "model.sh_degree=1", "deform.width=64", "deform.depth=4", "deform.time_freqs=4",
            "model.num_points=10000", "densify.refine_stop_iter=2000"]
    family, _, camera = scene.partition(":")
    n_cams = int(camera[4:]) if camera.startswith("cams") and camera[4:].isdigit() else 0
    if family not in FAMILIES or (camera not in CAMERAS and n_cams < 2):
        raise ValueError(f"unknown scene {scene!r}: use FAMILY:CAMERA with FAMILY in {FAMILIES} and CAMERA in "
                         f"{CAMERAS} or camsN (N >= 2 fixed synchronised cameras), or twist-shared")
    cams = [f"data.synthetic_cameras={n_cams}"] if n_cams else [f"data.synthetic_train_camera={camera}"]
    return str(ROOT / "configs" / "default.yaml"), [
        f"data.synthetic_motion={family}", *cams,
        f"data.synthetic_resolution={a.resolution}", f"data.synthetic_train_frames={a.frames}",
        f"train.iters={a.iters}"] + list(a.protocol)


def default_motion_overrides(config: Path) -> list[str]:
    """Overrides that put `config`'s motion section and its network field's shared keys (learning rates, encodings,
    coarse-to-fine window, ...) back to the defaults (dyngauss.config.Config, = configs/default.yaml), so that a
    variant means the same on every protocol: configs/dnerf.yaml extends nodes.yaml's motion configuration, which
    the ``mlp`` variant must not inherit (the ``nodes`` variant sets it again). Empty for a config that keeps the
    defaults. Raises dyngauss.config.ConfigError for an unreadable config."""
    import dataclasses

    sys.path.insert(0, str(ROOT))
    from dyngauss.config import Config, load_config
    from dyngauss.deform.config import NetworkFieldConfig

    cfg, ref = load_config(config), Config()
    out = [f"motion.{f.name}={json.dumps(getattr(ref.motion, f.name))}" for f in dataclasses.fields(ref.motion)
           if getattr(cfg.motion, f.name) != getattr(ref.motion, f.name)]
    if isinstance(cfg.deform, NetworkFieldConfig) and isinstance(ref.deform, NetworkFieldConfig):
        out += [f"deform.{f.name}={json.dumps(getattr(ref.deform, f.name))}"
                for f in dataclasses.fields(NetworkFieldConfig)
                if f.name != "kind" and getattr(cfg.deform, f.name) != getattr(ref.deform, f.name)]
    return out


def _field_kind(overrides: list[str]) -> str:
    """The deform.kind a list of overrides ends with (mlp, the default, when none is given)."""
    kinds = [o.split("=", 1)[1] for o in overrides if o.startswith("deform.kind=")]
    return kinds[-1] if kinds else "mlp"


def make_jobs(a: argparse.Namespace, variants: dict[str, list[str]]) -> list[Job]:
    jobs = []
    for scene in a.scenes:
        config, protocol = scene_protocol(scene, a)
        for v in a.variants:
            base = protocol
            if _field_kind(variants[v]) not in ("mlp", "nodes"):   # the protocol's network-field keys do not apply
                base = [o for o in protocol if not o.startswith("deform.")]
            for seed in a.seeds:
                over = base + variants[v] + [f"train.seed={seed}", "train.progress=false", "export.enabled=false",
                                             "eval.save_renders=false", "train.save_every=0",
                                             "train.image_log_every=0"] + list(a.extra)
                out = Path(a.out) / "runs" / scene.replace(":", "-") / f"{v}-s{seed}"
                jobs.append(Job(scene, v, seed, config, over + [f"out={out}"], str(out)))
    return jobs


def check_jobs(jobs: list[Job]) -> str:
    """Load every job's config (no work done): the first config error as one line naming the scene and
    variant, "" when all are valid, so a typo in --variant / --protocol / --extra stops before any training."""
    sys.path.insert(0, str(ROOT))
    from dyngauss.config import ConfigError, load_config

    for j in jobs:
        try:
            load_config(j.config, [o for o in j.overrides if not o.startswith("out=")])
        except (ConfigError, ValueError, OSError) as e:
            return f"{j.scene} {j.variant}: {e}"
    return ""


def run_job(job: Job, fresh: bool, cache_dir: str | None) -> Job:
    """Train `job` in a subprocess (one thread) unless its metrics with the same spec exist."""
    out = Path(job.out)
    spec_file, metrics_file = out / "bench_job.json", out / "metrics.json"
    if not fresh and spec_file.is_file() and metrics_file.is_file():
        try:
            if json.loads(spec_file.read_text()) == job.spec():
                job.metrics = json.loads(metrics_file.read_text())
                return job
        except (OSError, ValueError):
            pass
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    if cache_dir:
        env["DYNGAUSS_CACHE"] = cache_dir
    cmd = [sys.executable, "-m", "dyngauss", "train", "--overwrite", "--config", job.config, *job.overrides]
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    job.seconds = time.perf_counter() - t0
    if rc != 0 or not metrics_file.is_file():
        tail = log.read_text(errors="replace").splitlines()[-5:]
        job.error = f"exit {rc}: " + " | ".join(tail)
        return job
    job.metrics = json.loads(metrics_file.read_text())
    spec_file.write_text(json.dumps(job.spec(), indent=2))
    return job


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaN, NaN when none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarise(jobs: list[Job], scenes: list[str], variants: list[str]) -> dict:
    """Per (scene, variant): mean/std over seeds of each metric; per variant: the family mean of the scene means
    (built-in scenes, and all scenes)."""
    rows = {}
    for s in scenes:
        for v in variants:
            got = [j for j in jobs if j.scene == s and j.variant == v and j.metrics]
            if not got:
                continue
            row = {"seeds": [j.seed for j in got]}
            for key, _, _ in METRICS:
                m, sd = _mean_std([j.metrics.get(key) for j in got])
                row[key] = {"mean": m, "std": sd, "per_seed": [j.metrics.get(key) for j in got]}
            rows[f"{s}|{v}"] = row
    family = {}
    for v in variants:
        for group, members in (("builtin", [s for s in scenes if s != "twist-shared"]), ("all", scenes)):
            means = {key: [rows[f"{s}|{v}"][key]["mean"] for s in members if f"{s}|{v}" in rows]
                     for key, _, _ in METRICS}
            n = len([s for s in members if f"{s}|{v}" in rows])
            if n:
                family[f"{group}|{v}"] = {"scenes": n, **{k: _mean_std(x)[0] for k, x in means.items()}}
    return {"rows": rows, "family": family}


def _fmt(row: dict, key: str, mult: float) -> str:
    m, sd = row[key]["mean"], row[key]["std"]
    if not math.isfinite(m):
        return "–"
    digits = 0 if key == "train_seconds" else 2
    return f"{m * mult:.{digits}f}" + (f" ± {sd * mult:.{digits}f}" if len(row["seeds"]) > 1 else "")


def table(summary: dict, scenes: list[str], variants: list[str]) -> str:
    head = "| scene | variant | seeds | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRICS))]
    for s in scenes:
        for v in variants:
            row = summary["rows"].get(f"{s}|{v}")
            if row:
                lines.append(f"| {s} | {v} | {len(row['seeds'])} | "
                             + " | ".join(_fmt(row, k, m) for k, _, m in METRICS) + " |")
    for group in ("builtin", "all"):
        for v in variants:
            f = summary["family"].get(f"{group}|{v}")
            if f:
                vals = " | ".join("–" if not math.isfinite(f[k]) else
                                  f"{f[k] * m:.{0 if k == 'train_seconds' else 2}f}" for k, _, m in METRICS)
                lines.append(f"| **mean {group} ({f['scenes']})** | {v} | | {vals} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=None, help="FAMILY:CAMERA ... and/or twist-shared "
                    "(default: every family x both cameras, and twist-shared when present)")
    ap.add_argument("--variants", nargs="+", default=None, help="variant names (default: none mlp nodes)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=key=value,...",
                    help="define a variant (repeatable); name it in --variants to run it")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--resolution", type=int, default=96, help="built-in scenes: image size (px)")
    ap.add_argument("--frames", type=int, default=60, help="built-in scenes: training frames")
    ap.add_argument("--iters", type=int, default=2000, help="built-in scenes: training steps")
    ap.add_argument("--twist-iters", type=int, default=3000)
    ap.add_argument("--twist-path", default=str(SHARED_TWIST))
    ap.add_argument("--protocol", nargs="*", default=[], help="extra overrides of the built-in protocol")
    ap.add_argument("--extra", nargs="*", default=[], help="extra overrides for every run")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    ap.add_argument("--out", default="runs/bench_motion")
    ap.add_argument("--cache-dir", default=None, help="where the generated scenes go (default: the cache)")
    ap.add_argument("--fresh", action="store_true", help="re-run jobs whose results exist")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: limb:random and blob:orbit at 32 px, 40 steps, variants none and mlp")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    variants = dict(BUILTIN_VARIANTS)
    try:
        for text in a.variant:
            name, items = parse_variant(text)
            variants[name] = items
    except ValueError as e:
        ap.error(str(e))
    if a.quick:
        a.scenes = a.scenes or ["limb:random", "blob:orbit"]
        a.variants = a.variants or ["none", "mlp"]
        a.resolution, a.frames, a.iters = 32, 12, 40
        a.protocol = ["train.warmup_iters=10", "densify.refine_start_iter=15", "densify.refine_stop_iter=30",
                      "densify.refine_every=10", "model.num_points=800", "data.synthetic_seed=0"] + a.protocol
    if a.scenes is None:
        a.scenes = [f"{f}:{c}" for f in FAMILIES for c in CAMERAS]
        if Path(a.twist_path).is_dir():
            a.scenes.append("twist-shared")
    a.variants = a.variants or ["none", "mlp", "nodes"]
    unknown = [v for v in a.variants if v not in variants]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}: define them with --variant NAME=key=value,...")
    try:
        for s in a.scenes:
            scene_protocol(s, a)
    except ValueError as e:
        ap.error(str(e))
    if "twist-shared" in a.scenes and not Path(a.twist_path).is_dir():
        ap.error(f"twist-shared: no scene at {a.twist_path} (--twist-path)")
    if a.jobs < 1:
        ap.error("--jobs must be >= 1")

    jobs = make_jobs(a, variants)
    bad = check_jobs(jobs)
    if bad:
        ap.error(bad)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(jobs)} trainings, {a.jobs} at a time -> {out}", flush=True)
    t0 = time.perf_counter()
    done: list[Job] = []
    with ThreadPoolExecutor(a.jobs) as pool:
        for j in pool.map(lambda j: run_job(j, a.fresh, a.cache_dir), jobs):
            done.append(j)
            state = "error: " + j.error if j.error else (
                f"PSNR {j.metrics.get('psnr', float('nan')):.2f}  track {100 * (j.metrics.get('track_epe_rel') or math.nan):.2f}%")
            print(f"[{len(done)}/{len(jobs)}] {j.scene} {j.variant} s{j.seed}: {state}", flush=True)
    summary = summarise(done, a.scenes, a.variants)
    text = table(summary, a.scenes, a.variants)
    print(text)
    result = {"protocol": {"resolution": a.resolution, "frames": a.frames, "iters": a.iters,
                           "twist_iters": a.twist_iters, "protocol_overrides": a.protocol, "extra": a.extra,
                           "quick": a.quick},
              "variants": {v: variants[v] for v in a.variants}, "seeds": a.seeds, "scenes": a.scenes,
              "wall_seconds": time.perf_counter() - t0, **summary,
              "jobs": [{**asdict(j), "metrics": {k: j.metrics.get(k) for k, _, _ in METRICS}} for j in done]}
    (out / "bench_motion.json").write_text(json.dumps(result, indent=2))
    (out / "bench_motion.md").write_text(text + "\n")
    failed = [j for j in done if j.error]
    for j in failed:
        print(f"failed: {j.scene} {j.variant} s{j.seed}: {j.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

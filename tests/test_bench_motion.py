"""tools/bench_motion.py (issue 20): variant parsing, scene protocols, the seed/family statistics against
numpy, and a CI-sized --quick run end to end (real trainings on generated family scenes)."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_motion", ROOT / "tools" / "bench_motion.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_motion"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_parse_variant():
    b = _bench()
    assert b.parse_variant("warp=deform.kind=mlp,motion.photo_warp_weight=0.1") == (
        "warp", ["deform.kind=mlp", "motion.photo_warp_weight=0.1"])
    for bad in ("warp", "=a=b", "warp=", "warp=novalue", "warp=a=1,b"):
        with pytest.raises(ValueError):
            b.parse_variant(bad)


def test_scene_protocol_rejects_unknown_scene():
    b = _bench()
    a = b._parser().parse_args([])
    config, over = b.scene_protocol("limb:orbit", a)
    assert config.endswith("default.yaml")
    assert "data.synthetic_motion=limb" in over and "data.synthetic_train_camera=orbit" in over
    for bad in ("limb", "limb:teleport", "octopus:random"):
        with pytest.raises(ValueError):
            b.scene_protocol(bad, a)


def test_unknown_variant_is_a_usage_error(tmp_path, capsys):
    b = _bench()
    with pytest.raises(SystemExit) as e:
        b.main(["--variants", "nope", "--scenes", "limb:random", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()        # refused before any work


def test_summary_statistics_match_numpy():
    b = _bench()
    rng = np.random.default_rng(0)
    jobs, truth = [], {}
    for s in ("limb:random", "blob:orbit"):
        for seed in (0, 1, 2):
            m = {k: float(rng.uniform(0.01, 30.0)) for k, _, _ in b.METRICS}
            jobs.append(b.Job(s, "mlp", seed, "c", [], "o", metrics=m))
            truth.setdefault(s, []).append(m)
    summ = b.summarise(jobs, ["limb:random", "blob:orbit"], ["mlp"])
    for s, ms in truth.items():
        vals = np.array([m["psnr"] for m in ms])
        row = summ["rows"][f"{s}|mlp"]
        assert row["psnr"]["mean"] == pytest.approx(vals.mean())
        assert row["psnr"]["std"] == pytest.approx(vals.std(ddof=1))
    fam = summ["family"]["builtin|mlp"]
    want = np.mean([np.mean([m["track_epe_strided_rel"] for m in ms]) for ms in truth.values()])
    assert fam["track_epe_strided_rel"] == pytest.approx(want) and fam["scenes"] == 2
    # a failed run (no metrics) is left out, a missing metric is not averaged as a number
    jobs.append(b.Job("limb:random", "mlp", 3, "c", [], "o", error="exit 1"))
    jobs[0].metrics["flow_epe_px"] = None
    summ = b.summarise(jobs, ["limb:random"], ["mlp"])
    assert summ["rows"]["limb:random|mlp"]["seeds"] == [0, 1, 2]
    assert math.isfinite(summ["rows"]["limb:random|mlp"]["flow_epe_px"]["mean"])


def test_quick_run_end_to_end(tmp_path):
    b = _bench()
    out = tmp_path / "bench"
    rc = b.main(["--quick", "--scenes", "limb:random", "--variants", "mlp", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--jobs", "1"])
    assert rc == 0
    res = json.loads((out / "bench_motion.json").read_text())
    row = res["rows"]["limb:random|mlp"]
    assert math.isfinite(row["psnr"]["mean"]) and row["psnr"]["mean"] > 8.0
    assert 0.0 < row["track_epe_rel"]["mean"] < 1.0 and 0.0 < row["track_epe_strided_rel"]["mean"] < 1.0
    assert row["flow_epe_px"]["mean"] > 0.0
    assert "limb:random" in (out / "bench_motion.md").read_text()
    # a second call reuses the finished run (same job spec) instead of training again
    log = out / "runs" / "limb-random" / "mlp-s0.log"
    stamp = log.stat().st_mtime_ns
    assert b.main(["--quick", "--scenes", "limb:random", "--variants", "mlp", "--out", str(out),
                   "--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]) == 0
    assert log.stat().st_mtime_ns == stamp


def test_bad_override_is_refused_before_any_training(tmp_path, capsys):
    b = _bench()
    for argv in (["--variant", "x=foo.bar=1", "--variants", "x"], ["--extra", "data.synthetic_motion=octopus"],
                 ["--resolution", "0"]):
        with pytest.raises(SystemExit) as e:
            b.main(["--scenes", "limb:random", "--out", str(tmp_path), *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "limb:random" in err and ("foo" in err or "octopus" in err or "resolution" in err)
    assert not (tmp_path / "runs").exists()


def test_the_nodes_variant_is_the_shipped_nodes_config():
    """The benchmark's built-in `nodes` variant on the main job = configs/nodes.yaml: same field, same motion
    losses (what docs/benchmark.md measured for `nodes` is what the shipped config trains)."""
    from dyngauss.config import load_config

    b = _bench()
    shipped = load_config(ROOT / "configs" / "nodes.yaml")
    variant = load_config(ROOT / "configs" / "default.yaml", b.BUILTIN_VARIANTS["nodes"])
    assert variant.deform == shipped.deform
    assert variant.motion == shipped.motion and variant.train == shipped.train


def test_a_variant_means_the_same_motion_on_twist_shared():
    """twist-shared runs configs/dnerf.yaml, which extends nodes.yaml's motion configuration: every built-in variant
    must still resolve to the motion losses it has on the built-in scenes (the `mlp` variant is the dense field
    with the default losses there too), the network fields to the same keys, and `nodes` to dnerf.yaml as
    shipped. (`bases` / `tracking` take the learning rates nodes.yaml writes out, as any `deform.kind=` override
    on a config file does: shared keys written in the file carry over.)"""
    from dyngauss.config import load_config

    b = _bench()
    a = b._parser().parse_args(["--twist-path", str(ROOT)])       # any folder: nothing is read here
    jobs = {(j.scene, j.variant): j for j in b.make_jobs(
        _set(a, scenes=["twist-shared", "limb:random"], variants=list(b.BUILTIN_VARIANTS), seeds=[0]),
        b.BUILTIN_VARIANTS)}
    protocol_keys = {"width", "depth", "time_freqs"}                # set by the twist-shared protocol
    for v in b.BUILTIN_VARIANTS:
        shared, builtin = (load_config(jobs[s, v].config, [o for o in jobs[s, v].overrides if not o.startswith("out=")])
                           for s in ("twist-shared", "limb:random"))
        assert shared.motion == builtin.motion, v
        assert shared.deform.kind == builtin.deform.kind, v
        if v in ("bases", "tracking"):
            continue
        diff = {k for k, val in vars(shared.deform).items() if vars(builtin.deform)[k] != val}
        assert diff <= protocol_keys, (v, diff)
    shipped = load_config(ROOT / "configs" / "dnerf.yaml")
    nodes = load_config(jobs["twist-shared", "nodes"].config,
                        [o for o in jobs["twist-shared", "nodes"].overrides if not o.startswith("out=")])
    assert nodes.motion == shipped.motion and nodes.deform == shipped.deform
    mlp = load_config(jobs["twist-shared", "mlp"].config,
                      [o for o in jobs["twist-shared", "mlp"].overrides if not o.startswith("out=")])
    assert mlp.deform.kind == "mlp" and mlp.motion.flow_weight == 0 and mlp.motion.track_weight == 0


def _set(a, **kw):
    """`a` with the given attributes replaced."""
    for k, v in kw.items():
        setattr(a, k, v)
    return a

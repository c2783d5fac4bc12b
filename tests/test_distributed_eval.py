"""Evaluation split over the ranks of a distributed run (issue 21, item 3): rank r renders frames r, r+W, ...,
rank 0 gathers the per-frame results and writes the metrics.json one process writes (gloo on loopback)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distributed_worker import tiny_overrides
from dyngauss.eval.shards import frame_share

WORKER = Path(__file__).with_name("distributed_eval_worker.py")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args, nproc: int = 2, ok: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                        "--master_addr", "127.0.0.1", "--master_port", str(_port()), *map(str, args)],
                       env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True, text=True,
                       timeout=300)
    assert (r.returncode == 0) == ok, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("evalscene") / "scene", cfg)


@pytest.fixture(scope="module")
def dist_run(scene, tmp_path_factory):
    """A 2-rank `dyngauss train` of 10 steps that evaluates (renders on, LPIPS off) at the end."""
    run = tmp_path_factory.mktemp("evalrun") / "run"
    _torchrun("-m", "dyngauss", "train", *tiny_overrides(scene, run, "train.iters=10", "train.batch_size=2"),
              "export.enabled=false", "eval.save_renders=true", "eval.lpips=false")
    return run


def test_frame_share_is_strided_disjoint_and_complete():
    assert frame_share(7, 0, 3) == [0, 3, 6] and frame_share(7, 2, 3) == [2, 5] and frame_share(2, 3, 4) == []
    for n, w in ((0, 2), (5, 1), (5, 2), (3, 5)):
        shares = [frame_share(n, r, w) for r in range(w)]
        assert sorted(i for s in shares for i in s) == list(range(n))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_two_rank_run_writes_the_metrics_of_one_process(dist_run, scene, tmp_path):
    """metrics.json of the 2-rank run vs a single-process evaluation of the same checkpoint: same keys, same
    frames in the same order, equal values (FPS aside: it is a timing); the same render files, equal images."""
    from dyngauss.data.loaders import load_split, split_options
    from dyngauss.eval.evaluate import evaluate_run
    from dyngauss.model import DynamicGaussians

    two = json.loads((dist_run / "metrics.json").read_text())
    model = DynamicGaussians.load(dist_run)
    assert model.info.step == 10
    split = load_split(scene, "test", **split_options(model.config.data))
    one = evaluate_run(model, split, tmp_path, "test", lpips=False, data_path=scene)
    assert one == json.loads((tmp_path / "metrics.json").read_text())
    assert two.keys() == one.keys() and two["num_eval_frames"] == one["num_eval_frames"] == 3
    assert two["fps"] > 0 and one["fps"] > 0
    for k, v in one.items():
        if k == "fps":
            continue
        if isinstance(v, float) or (isinstance(v, list) and v and isinstance(v[0], float)):
            assert two[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
        else:
            assert two[k] == v, k
    assert two["track_epe"] is not None  # the motion metrics (rank 0) are there too
    names = sorted(p.relative_to(tmp_path / "renders").as_posix() for p in (tmp_path / "renders").rglob("*.png"))
    assert names == sorted(p.relative_to(dist_run / "renders").as_posix()
                           for p in (dist_run / "renders").rglob("*.png")) and len(names) == 3
    for n in names:
        a = np.asarray(Image.open(tmp_path / "renders" / n), dtype=np.int16)
        b = np.asarray(Image.open(dist_run / "renders" / n), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, n


def test_each_rank_renders_only_its_share(dist_run, scene, tmp_path):
    """3 frames on 2 ranks: rank 0 renders frames 0 and 2, rank 1 frame 1; both get the gathered metrics, in
    the split's order, equal to the run's metrics.json; each rank wrote its own frames' renders."""
    _torchrun(WORKER, dist_run, scene, tmp_path / "out", tmp_path / "res")
    r0, r1 = torch.load(tmp_path / "res.0.pt"), torch.load(tmp_path / "res.1.pt")
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())  # rank 0 wrote it
    names = [f"r_{i:03d}" for i in range(3)]
    assert r0["rendered"] == [names[0], names[2]] and r1["rendered"] == [names[1]]
    assert saved["num_eval_frames"] == r1["metrics"]["num_eval_frames"] == 3
    assert saved["psnr_per_frame"] == r0["metrics"]["psnr_per_frame"] == r1["metrics"]["psnr_per_frame"]
    run_psnr = json.loads((dist_run / "metrics.json").read_text())["psnr_per_frame"]
    assert saved["psnr_per_frame"] == pytest.approx(run_psnr, abs=2e-4)
    assert sorted(p.stem for p in (tmp_path / "out" / "renders" / "test").glob("*.png")) == names


def test_more_ranks_than_frames_finishes(dist_run, scene, tmp_path):
    """One frame on two ranks: rank 1 renders nothing, still reaches the gather, and the run ends."""
    _torchrun(WORKER, dist_run, scene, tmp_path / "out", tmp_path / "res", 1)
    r0, r1 = torch.load(tmp_path / "res.0.pt"), torch.load(tmp_path / "res.1.pt")
    assert r0["rendered"] == ["r_000"] and r1["rendered"] == []
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["num_eval_frames"] == 1 and len(saved["psnr_per_frame"]) == 1
    assert saved["psnr"] == pytest.approx(saved["psnr_per_frame"][0], abs=1e-4) and saved["fps"] > 0


def test_a_failing_rank_stops_every_rank(dist_run, scene, tmp_path):
    """Rank 1's render raises: rank 0 does not wait forever; it stops with an error naming rank 1's failure and
    writes no metrics.json."""
    r = _torchrun(WORKER, dist_run, scene, tmp_path / "out", tmp_path / "res", ok=False,
                  env={"DISTRIBUTED_EVAL_WORKER_FAIL": "1"})
    out = r.stdout + r.stderr
    assert "failed on rank 1: ValueError: injected render failure" in out
    assert not (tmp_path / "out" / "metrics.json").exists()

"""Distributed training (torch.distributed, gloo on loopback, launched by torchrun as a user would):
two processes with one camera each equal one process with a batch of two; a distributed run resumes exactly;
two torchrun invocations (a two-node launch simulated on this machine) train together."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distributed_worker import tiny_overrides

WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*args, env=None, ok=True, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", *map(str, args)], env=env or _env(),
                       capture_output=True, text=True, timeout=timeout)
    assert (r.returncode == 0) == ok, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_two_processes_equal_one_process_with_the_global_batch(tiny_scene, tmp_path):
    """30 steps (densification every 3): B = 2 in one process vs 2 ranks with one camera each."""
    r = subprocess.run([sys.executable, str(WORKER), *map(str, (tiny_scene, tmp_path / "one", 30, tmp_path / "one")),
                        "train.batch_size=2"], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    _torchrun("--nproc_per_node", 2, "--master_addr", "127.0.0.1", "--master_port", _port(), WORKER, tiny_scene,
              tmp_path / "two", 30, tmp_path / "two", "train.batch_size=2")
    one = torch.load(tmp_path / "one.0.pt")
    r0, r1 = torch.load(tmp_path / "two.0.pt"), torch.load(tmp_path / "two.1.pt")
    assert r0["world"] == 2 and r1["rank"] == 1
    assert one["counts"] == r0["counts"] == r1["counts"]          # the same densify/prune decisions
    assert one["counts"][-1] > one["counts"][0]                     # ... and there were some
    assert r0["losses"] == pytest.approx(one["losses"], rel=1e-4)  # global mean loss of each step
    for name, p in one["params"].items():
        assert torch.equal(r0["params"][name], r1["params"][name]), name  # ranks stay identical
        # Adam (eps 1e-15) turns float-order noise of near-zero gradients into steps of up to lr: a loose bound
        # on the largest difference, a tight one on the mean
        diff = (r0["params"][name] - p).abs()
        assert float(diff.max()) < 2e-2 and float(diff.mean()) < 1e-4, name


def _cli_overrides(scene, out) -> list[str]:
    keep = [o for o in tiny_overrides(scene, out, "train.iters=12", "train.save_every=6", "train.batch_size=2")]
    return keep + ["export.frames=2", "eval.save_renders=false", "eval.lpips=false"]


def test_distributed_run_resumes_exactly(tiny_scene, tmp_path):
    """A 2-rank CLI run to step 12 (checkpoint at 6); the step-12 checkpoint removed, a 2-rank --resume from step
    6 writes the same step-12 model. Rank 0 alone wrote the run folder."""
    run = tmp_path / "run"
    _torchrun("--nproc_per_node", 2, "--master_port", _port(), "-m", "dyngauss", "train",
              *_cli_overrides(tiny_scene, run))
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("ckpt_*.pt")) == ["ckpt_000006.pt", "ckpt_000012.pt"]
    assert (run / "metrics.json").is_file() and not (run / ".lock").exists()
    ref = torch.load(ckpts / "ckpt_000012.pt", weights_only=False)
    (ckpts / "ckpt_000012.pt").unlink()
    _torchrun("--nproc_per_node", 2, "--master_port", _port(), "-m", "dyngauss", "train", "--resume", f"out={run}")
    again = torch.load(ckpts / "ckpt_000012.pt", weights_only=False)
    assert again["step"] == 12
    for k, v in ref["gaussians"].items():
        assert torch.allclose(again["gaussians"][k], v, rtol=1e-5, atol=1e-6), k
    for k, v in ref["deform"].items():
        assert torch.allclose(again["deform"][k], v, rtol=1e-5, atol=1e-6), k


def test_two_torchrun_invocations_train_together(tiny_scene, tmp_path):
    """`--nnodes 2` with a c10d rendezvous on 127.0.0.1: two launchers (as on two machines), one rank each."""
    run, port = tmp_path / "run", _port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "dyngauss-test"]
    procs = [subprocess.Popen([*cmd, "--node_rank", str(r), "-m", "dyngauss", "train",
                               *map(str, _cli_overrides(tiny_scene, run))], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert sum("test PSNR" in o for o in outs) == 1  # one rank (rank 0) evaluated and reported
    ckpt = torch.load(run / "checkpoints" / "ckpt_000012.pt", weights_only=False)
    assert ckpt["step"] == 12 and (run / "metrics.json").is_file()


def test_diverged_ranks_are_caught(tiny_scene, tmp_path):
    """Rank 1 nudges one coordinate after setup: the checksum comparison (every 5 steps here) stops the run."""
    r = _torchrun("--nproc_per_node", 2, "--master_port", _port(), WORKER, tiny_scene, tmp_path / "run", 6,
                  tmp_path / "res", "train.batch_size=2", env=_env(DISTRIBUTED_WORKER_PERTURB="1"), ok=False)
    assert "parameters differ at step 5" in r.stdout + r.stderr

"""Run folders (issue 18, cases 1-2): --resume continues with the run's own config, one writer per folder, a fresh
run never mixes with (or evaluates) an old run's checkpoints."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dyngauss.cli import eval as eval_cli
from dyngauss.cli import export as export_cli
from dyngauss.cli import train as train_cli
from dyngauss.config import load_config
from dyngauss.model.checkpoint import read_checkpoint

# a training of a few steps at 32 px: seconds on one core
QUICK = ["train.iters=6", "train.warmup_iters=2", "model.num_points=200", "densify.refine_start_iter=2",
         "densify.refine_every=3", "densify.refine_stop_iter=100", "train.progress=false", "train.save_every=0",
         "eval.lpips=false", "eval.save_renders=false", "export.frames=2"]
MLP = ["deform.kind=mlp", "deform.width=16", "deform.depth=2"]
NODES = ["deform.kind=nodes", "deform.width=16", "deform.depth=2", "deform.num_nodes=8"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=2, n_video=3, n_tracks=32, supersample=1)
    return generate(tmp_path_factory.mktemp("scene") / "tiny", cfg)


@pytest.fixture(scope="module")
def base_run(scene, tmp_path_factory):
    """A finished 6-step mlp run on the tiny scene (copy it before changing it)."""
    run = tmp_path_factory.mktemp("base") / "run"
    assert train_cli.main([f"data.path={scene}", f"out={run}", *QUICK, *MLP]) == 0
    return run


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _steps(run: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in sorted((run / "checkpoints").glob("ckpt_*.pt"))]


# ---- case 1: --resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "nodes"])
def test_resume_continues_with_the_runs_config(scene, tmp_path, kind, capsys):
    """`dyngauss train --resume out=RUN train.iters=9` (flag first or between overrides) keeps the run's dataset, field
    kind and shape, extends training, rewrites config.yaml with the merged config only; eval/export work after."""
    run = tmp_path / "run"
    field = MLP if kind == "mlp" else NODES
    assert train_cli.main([f"data.path={scene}", f"out={run}", *QUICK, *field]) == 0
    before = yaml.safe_load((run / "config.yaml").read_text())
    # the README's form (--resume first), and --resume between the overrides
    argv = ["--resume", f"out={run}", "train.iters=9"] if kind == "mlp" else [f"out={run}", "--resume", "train.iters=9"]
    assert train_cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "train.iters: 6 -> 9" in err

    payload = read_checkpoint(run)
    assert payload["step"] == 9 and _steps(run) == [6, 9]
    cfg = payload["cfg"]
    assert cfg["deform"]["kind"] == kind and cfg["deform"]["width"] == 16
    assert cfg["data"]["path"] == str(scene) and Path(payload["dataset"]) == Path(scene)
    if kind == "nodes":
        assert cfg["deform"]["num_nodes"] == 8 and payload["deform"]["node_pos"].shape[0] == 8
    after = yaml.safe_load((run / "config.yaml").read_text())
    before["train"]["iters"] = 9
    assert after == before, "config.yaml must be the run's config with only the given override applied"
    assert not (run / ".lock").exists()
    assert eval_cli.main(["--run", str(run), "--no-renders"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 9
    assert export_cli.main(["--run", str(run), "--frames", "2", "--out", str(tmp_path / "ply")]) == 0
    assert len(list((tmp_path / "ply").glob("frame_*.ply"))) == 2


def test_resume_flag_parses_before_between_and_after_overrides(tmp_path, capsys):
    run = tmp_path / "none"
    for argv in (["--resume", f"out={run}", "train.iters=9"], [f"out={run}", "--resume", "train.iters=9"],
                 [f"out={run}", "train.iters=9", "--resume"]):
        assert train_cli.main(argv) == 2
        assert f"nothing to resume: {run} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("override,key", [
    ("deform.kind=nodes", "deform.kind"), ("deform.width=32", "deform.width"), ("model.sh_degree=2", "model.sh_degree"),
    ("data.downscale=2", "data.downscale"), ("densify.enabled=false", "densify.enabled"),
    ("motion.cycle_weight=1.0", "motion.cycle_weight"), ("train.seed=3", "train.seed")])
def test_resume_refuses_fixed_keys_before_any_work(base_run, tmp_path, monkeypatch, capsys, override, key):
    run = _copy_run(base_run, tmp_path / "run")
    yaml_before = (run / "config.yaml").read_bytes()

    def no_work(*a, **k):
        raise AssertionError("a refused resume must not load data or build a trainer")

    monkeypatch.setattr("dyngauss.train.run.Trainer", no_work)
    monkeypatch.setattr("dyngauss.train.scene.load_scene", no_work)
    assert train_cli.main(["--resume", f"out={run}", "train.iters=9", override]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and key in err and override in err and "--overwrite" in err
    assert (run / "config.yaml").read_bytes() == yaml_before
    assert _steps(run) == [6] and not (run / ".lock").exists()


def test_resume_accepts_a_no_op_override_of_a_fixed_key(base_run, tmp_path):
    from dyngauss.train.resume import resume_config

    run = _copy_run(base_run, tmp_path / "run")
    cfg = resume_config(run, [f"out={run}", "deform.kind=mlp", "deform.width=16"])
    assert cfg.deform.kind == "mlp" and cfg.deform.width == 16


def test_resume_refuses_config_option_and_missing_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--resume", "--config", "nodes", f"out={tmp_path}"])
    assert e.value.code == 2 and "--config cannot be combined with --resume" in capsys.readouterr().err
    assert train_cli.main(["--resume", f"out={tmp_path / 'none'}"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    # a lock that created the run folder removes it again when nothing was written into it
    from dyngauss.train.run_folder import RunLock

    with RunLock(tmp_path / "r"):
        assert (tmp_path / "r" / ".lock").is_file()
    assert not (tmp_path / "r").exists()


def test_resume_applies_allowed_overrides(base_run, tmp_path):
    """Learning rates changed on resume reach the restored optimizers; a longer run re-aims the decays at the new
    end; an unchanged resume restores the stored decay factors exactly."""
    from dyngauss.train.resume import resume_config
    from dyngauss.train.trainer import Trainer

    run = _copy_run(base_run, tmp_path / "run")
    payload = read_checkpoint(run)
    saved_lr = {k: v["param_groups"][0]["lr"] for k, v in payload["optimizers"].items()}
    saved_deform_lr = payload["deform_optimizer"]["param_groups"][0]["lr"]

    same = Trainer(resume_config(run, [f"out={run}"]), resume=True)
    assert same.means_gamma == payload["lr_gammas"]["means"]
    assert same.deform_gamma == payload["lr_gammas"]["deform"]
    assert same.optimizers["scales"].param_groups[0]["lr"] == saved_lr["scales"]

    cfg = resume_config(run, [f"out={run}", "train.iters=10", "optim.scales_lr=0.01", "deform.lr=0.002",
                              "train.log_every=1", "export.frames=3"])
    assert cfg.train.iters == 10 and cfg.export.frames == 3
    t = Trainer(cfg, resume=True)
    assert t.step == 6
    assert t.optimizers["scales"].param_groups[0]["lr"] == pytest.approx(saved_lr["scales"] * 0.01 / 5e-3)
    assert t.optimizers["quats"].param_groups[0]["lr"] == saved_lr["quats"]
    assert t.deform_optimizer.param_groups[0]["lr"] == pytest.approx(saved_deform_lr * 0.002 / 1e-3)
    means_final = cfg.optim.means_lr_final * t.scene.scene_scale
    assert saved_lr["means"] * t.means_gamma ** 4 == pytest.approx(means_final, rel=1e-6)
    assert t.deform_optimizer.param_groups[0]["lr"] * t.deform_gamma ** 4 == \
        pytest.approx(cfg.deform.lr_final, rel=1e-6)
    for _ in range(4):
        t.train_step()
    assert t.optimizers["means"].param_groups[0]["lr"] == pytest.approx(means_final, rel=1e-5)


def test_resume_refuses_a_changed_dataset_and_accepts_a_moved_copy(scene, tmp_path, capsys):
    from dyngauss.train.resume import ResumeError, resume_config
    from dyngauss.train.trainer import Trainer

    data = shutil.copytree(scene, tmp_path / "data")
    run = tmp_path / "run"
    t = Trainer(load_config(None, [f"data.path={data}", f"out={run}", *QUICK, *MLP, "train.iters=2"]))
    t.train()
    assert read_checkpoint(run)["dataset_id"]["fingerprint"]

    moved = shutil.copytree(data, tmp_path / "moved")
    cfg = resume_config(run, [f"out={run}", f"data.path={moved}"])
    assert cfg.data.path == str(moved)
    assert "same fingerprint" in capsys.readouterr().err

    tf = data / "transforms_train.json"
    meta = json.loads(tf.read_text())
    meta["frames"][0]["time"] = 0.5 * float(meta["frames"][0]["time"]) + 0.01
    tf.write_text(json.dumps(meta))
    with pytest.raises(ResumeError, match="not the one this run trained on"):
        resume_config(run, [f"out={run}"])
    assert train_cli.main(["--resume", f"out={run}", "train.iters=4"]) == 2
    assert "camera files differ" in capsys.readouterr().err
    assert _steps(run) == [2]

    shutil.rmtree(data)
    with pytest.raises(ResumeError, match="data.path=NEW"):
        resume_config(run, [f"out={run}"])


# ---- case 2: one writer per run folder ---------------------------------------------------------------------
def _train_cmd(scene: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dyngauss", "train", f"data.path={scene}", f"out={run}", *QUICK, *MLP, *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_second_training_into_a_folder_in_use_fails_at_once(scene, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(_train_cmd(scene, run, "train.iters=100000", "train.time_limit_s=300"), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / ".lock").exists():
            assert first.poll() is None, f"the first training ended early: {first.stderr.read()}"
            assert time.monotonic() < deadline, "the first training never took the run folder's lock"
            time.sleep(0.2)
        lock = json.loads((run / ".lock").read_text())
        assert lock["pid"] == first.pid and lock["host"] == socket.gethostname()
        t0 = time.monotonic()
        second = subprocess.run(_train_cmd(scene, run, "train.iters=2"), env=_env(), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 3, second.stderr
        assert "in use by another training" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert time.monotonic() - t0 < 60
        assert first.poll() is None, "the first training must keep running"
        assert not list((run / "checkpoints").glob("ckpt_*.pt")), "the second training wrote a checkpoint"
    finally:
        first.kill()
        first.wait(timeout=60)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_is_taken_over_and_foreign_lock_refused(scene, tmp_path, capsys):
    from dyngauss.train.run_folder import RunBusyError, RunLock, process_start_ticks

    run = tmp_path / "run"
    run.mkdir()
    host = socket.gethostname()
    # another host: cannot be checked -> refused, with the way out
    (run / ".lock").write_text(json.dumps({"pid": 1, "host": host + "-elsewhere", "started": "x"}))
    assert train_cli.main([f"data.path={scene}", f"out={run}", *QUICK, *MLP]) == 3
    err = capsys.readouterr().err
    assert "-elsewhere" in err and f"rm {run / '.lock'}" in err
    assert not (run / "checkpoints").exists()

    # same host, dead pid -> taken over with a message, released at the end
    (run / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": host, "started": "x"}))
    assert train_cli.main([f"data.path={scene}", f"out={run}", *QUICK, *MLP]) == 0
    assert "stale lock" in capsys.readouterr().err
    assert _steps(run) == [6] and not (run / ".lock").exists()

    # a live pid that started at another time (reused pid) is stale too; a live holder is not
    parent = os.getppid()
    ticks = process_start_ticks(parent)
    if ticks is not None:
        (run / ".lock").write_text(json.dumps({"pid": parent, "host": host, "started": "x", "pid_start": ticks + 1}))
        with RunLock(run, log=lambda m: None) as lk:
            assert lk.info.pid == os.getpid()
        (run / ".lock").write_text(json.dumps({"pid": parent, "host": host, "started": "x", "pid_start": ticks}))
        with pytest.raises(RunBusyError, match="in use by another training"):
            RunLock(run).acquire()
    (run / ".lock").write_text("garbage")
    with pytest.raises(RunBusyError, match="rm "):
        RunLock(run).acquire()


def test_fresh_run_into_a_run_folder_needs_overwrite(base_run, scene, tmp_path, capsys):
    run = _copy_run(base_run, tmp_path / "run")
    old = read_checkpoint(run)
    assert train_cli.main([f"data.path={scene}", f"out={run}", *QUICK, *MLP, "train.iters=3"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert _steps(run) == [6] and not (run / ".lock").exists()

    assert train_cli.main([f"data.path={scene}", f"out={run}", *QUICK, *MLP, "train.iters=3", "--overwrite"]) == 0
    assert _steps(run) == [3], "old and new checkpoints must not mix"
    (aside,) = tmp_path.glob("run.old-*")
    assert torch.equal(read_checkpoint(aside / "checkpoints" / "ckpt_000006.pt")["gaussians"]["params.means"],
                       old["gaussians"]["params.means"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3, "the new run's checkpoint is the one evaluated"
    assert "--overwrite: moved" in capsys.readouterr().err


def test_run_job_evaluates_the_checkpoint_it_wrote(scene, tmp_path, monkeypatch):
    """Even with a later-named checkpoint in the folder, the job evaluates and exports its own by path."""
    from dyngauss.train import run as run_mod
    from dyngauss.train.trainer import Trainer

    train = Trainer.train

    def train_then_decoy(self):
        train(self)
        payload = torch.load(max((self.run_dir / "checkpoints").glob("ckpt_*.pt")), weights_only=False)
        payload["step"] = 999
        torch.save(payload, self.run_dir / "checkpoints" / "ckpt_999999.pt")

    monkeypatch.setattr(Trainer, "train", train_then_decoy)
    cfg = load_config(None, [f"data.path={scene}", f"out={tmp_path / 'run'}", *QUICK, *MLP, "train.iters=3"])
    metrics = run_mod.run_job(cfg, log=lambda m: None)
    assert metrics["steps"] == 3
    seq = json.loads((tmp_path / "run" / "ply" / "sequence.json").read_text())
    assert Path(seq["source"]).name == "ckpt_000003.pt"

"""Safe stops (train/signals.py): SIGINT / SIGTERM during training finish the step, write a checkpoint, print the
--resume command and exit 130 / 143 without a traceback; a second signal stops at once and leaves the previous
checkpoints intact; outside the training loop the command still exits with the signal's code."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dyngauss.config import load_config
from dyngauss.model.checkpoint import list_checkpoints, read_checkpoint
from dyngauss.train.signals import Interrupted, TrainingInterrupted
from dyngauss.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model.num_points=300", "train.warmup_iters=4", "deform.width=32", "deform.depth=2", "train.progress=false",
        "eval.lpips=false", "eval.save_renders=false", "export.enabled=false", "train.log_every=1000",
        "train.image_log_every=0"]


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools" / "train.py"), *args]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Poll until `path` exists (the run has made progress); fail if the process ends first."""
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended (rc {proc.returncode}) before {path.name}:\n{out}\n{err}")
        assert time.monotonic() < end, f"no {path} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_training_saves_and_exits_with_its_code(tiny_scene, tmp_path, sig, code):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(f"data.path={tiny_scene}", f"out={run}", "train.iters=1000000",
                                       "train.save_every=5", *FAST),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_for(run / "checkpoints" / "ckpt_000005.pt", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in out + err
    m = re.search(r"at step (\d+): saved (\S+ckpt_(\d+)\.pt)", err)
    assert m, err
    step = int(m.group(1))
    assert step >= 5 and int(m.group(3)) == step
    assert read_checkpoint(m.group(2))["step"] == step  # the step reached, complete and readable
    assert f"dyngauss train --resume out={run}" in err
    assert not list((run / "checkpoints").glob(".*tmp*")), "no temporary file left"
    if sig == signal.SIGINT:  # the printed command (plus a new end) continues from that checkpoint
        res = subprocess.run(_train_cmd("--resume", f"out={run}", f"train.iters={step + 2}"),
                             capture_output=True, text=True, env=_env(), timeout=600)
        assert res.returncode == 0, res.stderr
        assert read_checkpoint(run)["step"] == step + 2


@pytest.fixture
def trainer(tiny_scene, tmp_path):
    cfg = load_config(None, [f"data.path={tiny_scene}", f"out={tmp_path / 'r'}", "train.iters=40",
                             "train.save_every=2", *FAST])
    return Trainer(cfg)


def _signal_at(monkeypatch, sig, at_step: int) -> None:
    """Send `sig` to this process in the middle of training step `at_step`."""
    original = Trainer.train_step

    def train_step(self):
        if self.step == at_step:
            os.kill(os.getpid(), sig)
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_trainer_raises_training_interrupted_and_restores_handlers(trainer, monkeypatch):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _signal_at(monkeypatch, signal.SIGTERM, 6)
    with pytest.raises(TrainingInterrupted) as err:
        trainer.train()
    e = err.value
    assert isinstance(e, KeyboardInterrupt) and e.exit_code == 143 and e.saved
    assert e.step == 7 and e.checkpoint == trainer.run_dir / "checkpoints" / "ckpt_000007.pt"  # step 6 finished
    assert read_checkpoint(e.checkpoint)["step"] == 7
    assert "dyngauss train --resume out=" in str(e)
    assert {s: signal.getsignal(s) for s in before} == before, "the loop's handlers must not outlive it"


def test_second_signal_stops_at_once_and_keeps_the_old_checkpoint(trainer, monkeypatch):
    """The first SIGINT in step 5 asks for a checkpoint at step 6; a second SIGINT while it is being written
    abandons it: ckpt 4 stays the newest, intact, and no temporary file is left."""
    import torch

    _signal_at(monkeypatch, signal.SIGINT, 5)
    real_save = torch.save

    def save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("step") == 6:
            f.write(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler raises here at the latest
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(TrainingInterrupted) as err:
        trainer.train()
    e = err.value
    assert e.exit_code == 130 and not e.saved
    ckpts = list_checkpoints(trainer.run_dir)
    assert [c.name for c in ckpts] == ["ckpt_000002.pt", "ckpt_000004.pt"] and e.checkpoint == ckpts[-1]
    assert read_checkpoint(ckpts[-1])["step"] == 4
    assert not [p for p in (trainer.run_dir / "checkpoints").iterdir() if "tmp" in p.name]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signal_after_training_exits_with_its_code(tiny_scene, tmp_path, monkeypatch, capsys):
    """SIGTERM during the evaluation that follows training: exit 143, one message naming the checkpoint."""
    import dyngauss.eval.evaluate as evaluate
    from dyngauss.cli.train import main

    def evaluate_run(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        raise AssertionError("SIGTERM did not stop the evaluation")

    monkeypatch.setattr(evaluate, "evaluate_run", evaluate_run)
    run = tmp_path / "e"
    before = signal.getsignal(signal.SIGTERM)
    code = main([f"data.path={tiny_scene}", f"out={run}", "train.iters=3", "train.save_every=0", *FAST])
    err = capsys.readouterr().err
    assert code == 143
    assert f"newest checkpoint is {run / 'checkpoints' / 'ckpt_000003.pt'}" in err and "--resume" in err
    assert signal.getsignal(signal.SIGTERM) == before


def test_interrupt_while_loading_exits_130(tmp_path, monkeypatch, capsys):
    import dyngauss.train.run as run_mod
    from dyngauss.cli.train import main

    def run_job(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "run_job", run_job)
    assert main([f"out={tmp_path / 'k'}"]) == 130
    assert "interrupted by SIGINT" in capsys.readouterr().err
    assert Interrupted(signal.SIGTERM).exit_code == 143

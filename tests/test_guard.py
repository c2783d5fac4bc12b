"""The step guard (train/guard.py): blown-up updates are undone, no checkpoint is written after an unhealthy step,
last_good.json names a checkpoint from which a healthy step ran, and the stop message names it; normal training
is untouched (bit-identical with and without the guard)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dyngauss.config import load_config
from dyngauss.model.checkpoint import list_checkpoints, read_checkpoint
from dyngauss.train.guard import (LAST_GOOD, StepGuard, UpdateBounds, first_violation, largest_changes, lr_key,
                                  read_last_good, write_last_good)
from dyngauss.train.trainer import Trainer, TrainingError


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _cfg(scene, out, *extra):
    return load_config(None, [f"data.path={scene}", f"out={out}", "train.iters=12", "train.warmup_iters=4",
                              "model.num_points=300", "densify.refine_start_iter=2", "densify.refine_every=3",
                              "densify.refine_stop_iter=100", "train.progress=false", "train.save_every=0",
                              "deform.kind=mlp", "deform.width=32", "deform.depth=2", "model.sh_degree=1",
                              "model.sh_degree_interval=5", "train.log_every=1000", "train.image_log_every=0",
                              *extra])


def _blow_up_scales(monkeypatch, at_steps):
    """From the optimizer step of each step in `at_steps`, the scales learning rate is 1000 (for that step only;
    a range like range(8, 10**9) keeps it there)."""
    original = Trainer.train_step

    def train_step(self):
        group = self.optimizers["scales"].param_groups[0]
        sane = group["lr"]
        if self.step in at_steps:
            group["lr"] = 1000.0
        try:
            return original(self)
        finally:
            group["lr"] = sane

    monkeypatch.setattr(Trainer, "train_step", train_step)


def _state(t: Trainer) -> dict:
    """Every tensor a step may change: parameters, Adam states of every optimizer, densification state."""
    out = {f"p.{k}": v.detach().clone() for k, v in t.gaussians.params.items()}
    out.update({f"d.{k}": v.detach().clone() for k, v in t.deform.named_parameters()})  # (buffers: schedules)
    opts = dict(t.optimizers, deform=t.deform_optimizer)
    for name, opt in opts.items():
        for i, (p, st) in enumerate(opt.state.items()):
            for k, v in st.items():
                out[f"o.{name}.{i}.{k}"] = v.clone() if isinstance(v, torch.Tensor) else v
    out.update({f"s.{k}": v.clone() if isinstance(v, torch.Tensor) else v for k, v in t.strategy_state.items()})
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), f"{k} changed"
        else:
            assert a[k] == b[k], f"{k} changed"


# ---- pure parts -------------------------------------------------------------------------------------------
def test_violations_name_the_group_the_change_and_the_key():
    before = [torch.zeros(4), torch.zeros(3)]
    after = [torch.tensor([0.0, 0.1, -0.2, 0.0]), torch.tensor([0.0, -7.0, 1.0])]
    changes = largest_changes(before, after)
    assert changes.tolist() == pytest.approx([0.2, 7.0])
    assert first_violation(["quats", "scales"], changes, [1.0, 10.0]) is None
    reason = first_violation(["quats", "scales"], changes, [1.0, 5.0])
    assert "scales" in reason and "7" in reason and "optim.scales_lr" in reason
    nan = largest_changes([torch.zeros(2)], [torch.tensor([0.0, math.inf])])
    assert "non-finite" in first_violation(["deform.mlp"], nan, [1.0])
    assert lr_key("deform.nodes.radii") == "deform.node_lr" and lr_key("deform.backward") == "deform.lr"
    assert UpdateBounds().for_group("means", scene_scale=3.0) == 3.0


def test_step_guard_undoes_parameters_and_adam_state_bit_exactly():
    p = torch.nn.Parameter(torch.randn(5, 3))
    opt = torch.optim.Adam([{"params": [p], "lr": 1e-2, "name": "scales"}])
    guard = StepGuard()
    for lr, expect_undo in ((1e-2, False), (1e-2, False), (100.0, True)):
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.randn(5, 3)
        before_p = p.detach().clone()
        before_state = {k: v.clone() for k, v in opt.state[p].items()} if opt.state.get(p) else None
        guard.keep([opt])
        opt.step()
        reason = guard.judge()
        assert (reason is not None) == expect_undo
        if reason:
            guard.undo()
            assert torch.equal(p.detach(), before_p)
            assert before_state.keys() == opt.state[p].keys()
            for k, v in before_state.items():
                assert torch.equal(opt.state[p][k], v), k
    # a step that created the optimizer state is undone to "no state"
    q = torch.nn.Parameter(torch.zeros(3))
    opt2 = torch.optim.Adam([{"params": [q], "lr": 50.0, "name": "opacities"}])
    q.grad = torch.ones(3)
    guard.keep([opt2])
    opt2.step()
    assert guard.judge() is not None
    guard.undo()
    assert not opt2.state.get(q) and torch.equal(q.detach(), torch.zeros(3))


def test_last_good_record(tmp_path):
    assert read_last_good(tmp_path) is None
    (tmp_path / "ckpt_000004.pt").write_bytes(b"x")
    write_last_good(tmp_path, tmp_path / "ckpt_000004.pt", 4)
    assert read_last_good(tmp_path) == (tmp_path / "ckpt_000004.pt", 4)
    (tmp_path / "ckpt_000004.pt").unlink()
    assert read_last_good(tmp_path) is None, "a record naming a missing file is no record"
    (tmp_path / LAST_GOOD).write_text("{not json")
    assert read_last_good(tmp_path) is None


# ---- in the trainer ---------------------------------------------------------------------------------------
def test_normal_training_is_bit_identical_with_and_without_the_guard(tiny_scene, tmp_path, monkeypatch):
    a = Trainer(_cfg(tiny_scene, tmp_path / "a"))
    losses_a = [float(a.train_step()["loss"]) for _ in range(9)]
    monkeypatch.setattr(StepGuard, "keep", lambda self, optimizers: None)
    monkeypatch.setattr(StepGuard, "judge", lambda self: None)
    b = Trainer(_cfg(tiny_scene, tmp_path / "b"))
    losses_b = [float(b.train_step()["loss"]) for _ in range(9)]
    assert losses_a == losses_b
    _assert_same(_state(a), _state(b))


@pytest.mark.parametrize("kind", ["mlp", "nodes"])
def test_guard_does_not_fire_on_normal_training(tiny_scene, tmp_path, kind):
    extra = ("deform.kind=nodes", "deform.num_nodes=16") if kind == "nodes" else ()
    t = Trainer(_cfg(tiny_scene, tmp_path / kind, "train.iters=30", *extra))
    worst = 0.0
    for _ in range(30):
        logs = t.train_step()
        assert "skipped" not in logs, logs.get("unhealthy")
        worst = max(worst, *t.guard.headroom().values())
    assert 0 < worst < 0.05, f"normal updates reach {worst:.3g} of a bound: too close to firing"


def test_a_blown_up_update_is_undone_and_training_goes_on(tiny_scene, tmp_path, monkeypatch):
    t = Trainer(_cfg(tiny_scene, tmp_path / "u"))
    for _ in range(6):
        t.train_step()
    before = _state(t)
    _blow_up_scales(monkeypatch, {6})
    logs = t.train_step()
    assert logs.get("skipped") == 1 and "scales" in logs["unhealthy"] and "undone" in logs["unhealthy"]
    assert t.step == 7 and not t.last_step_healthy
    _assert_same(before, _state(t))  # parameters, optimizer and densification states as before the step
    logs = t.train_step()
    assert "skipped" not in logs and t.last_step_healthy
    assert all(torch.isfinite(v).all() for v in t.gaussians.params.values())
    assert float(t.gaussians.params["scales"].detach().abs().max()) < 20


def test_no_checkpoint_after_an_unhealthy_step_and_last_good(tiny_scene, tmp_path, monkeypatch):
    """save_every=4 with step 3 (-> 4) blown up: the save due at 4 waits for the next healthy step (5)."""
    run = tmp_path / "d"
    _blow_up_scales(monkeypatch, {3})
    t = Trainer(_cfg(tiny_scene, run, "train.save_every=4", "train.iters=10"))
    t.train()
    names = [c.name for c in list_checkpoints(run)]
    assert names == ["ckpt_000005.pt", "ckpt_000008.pt", "ckpt_000010.pt"]
    # ckpt 5 and 8 were each followed by a healthy step; 10 ends the run (no step ran from it)
    assert read_last_good(run / "checkpoints") == (run / "checkpoints" / "ckpt_000008.pt", 8)
    assert t.nan_skips_total == 1


def test_persistent_blow_up_stops_naming_a_checkpoint_that_resumes(tiny_scene, tmp_path, monkeypatch):
    """From step 8 on the scales learning rate is 1000: every update is undone, no checkpoint is written while
    it lasts, ckpt 8 (the step run from it blew up) is set aside, and the message names ckpt 4, which resumes."""
    run = tmp_path / "b"
    cfg = _cfg(tiny_scene, run, "train.save_every=4", "train.iters=60", "train.max_nan_skips=5")
    with monkeypatch.context() as m:
        _blow_up_scales(m, range(8, 10 ** 9))
        t = Trainer(cfg)
        with pytest.raises(TrainingError) as err:
            t.train()
    msg = str(err.value)
    good = run / "checkpoints" / "ckpt_000004.pt"
    assert f"last good checkpoint (a healthy step ran from it) is {good}" in msg
    assert "scales" in msg and "--resume" in msg and "rejected" in msg
    assert [c.name for c in list_checkpoints(run)] == ["ckpt_000004.pt"]
    assert (run / "checkpoints" / "rejected" / "ckpt_000008.pt").is_file()
    assert json.loads((run / "checkpoints" / LAST_GOOD).read_text())["checkpoint"] == "ckpt_000004.pt"
    for c in [good, run / "checkpoints" / "rejected" / "ckpt_000008.pt"]:
        assert float(read_checkpoint(c)["gaussians"]["params.scales"].abs().max()) < 20, "nothing poisoned saved"
    # resuming picks the good checkpoint, with its own (sane) learning rates, and trains healthy steps
    r = Trainer(cfg, resume=True)
    assert r.step == 4 and r.optimizers["scales"].param_groups[0]["lr"] == pytest.approx(5e-3)
    for _ in range(4):
        assert "skipped" not in r.train_step()
    assert read_last_good(run / "checkpoints")[0] == good


def test_a_run_that_never_had_a_healthy_step_writes_nothing(tiny_scene, tmp_path):
    run = tmp_path / "x"
    t = Trainer(_cfg(tiny_scene, run, "optim.scales_lr=1000", "train.save_every=2", "train.max_nan_skips=4"))
    with pytest.raises(TrainingError, match="No checkpoint of this run was followed by a healthy step"):
        t.train()
    assert list_checkpoints(run) == []

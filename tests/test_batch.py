"""Batched training (train.batch_size): B = 1 keeps the single-camera path, batches average per-camera losses,
cameras of one time share a rasterizer call, densification is fed n_cameras = B, sqrt learning-rate scaling."""
from __future__ import annotations

import pytest
import torch

from dyngauss.config import ConfigError, load_config
from dyngauss.train.distributed import Dist, shard
from dyngauss.train.trainer import Trainer

from distributed_worker import tiny_overrides


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _trainer(scene, out, *extra) -> Trainer:
    return Trainer(load_config(None, tiny_overrides(scene, out, *extra)))


def _grads(t: Trainer) -> list[torch.Tensor]:
    return [p.grad.clone() for p in t._trained_tensors() if p.grad is not None]


def test_batch_of_one_is_the_single_camera_step(tiny_scene, tmp_path, monkeypatch):
    """B = 1 trains through the single-camera code (never the batch path), and the batch path with B = 1 gives
    bit-identical loss and gradients for the same frame."""
    t = _trainer(tiny_scene, tmp_path / "a")
    monkeypatch.setattr(t, "compute_batch_loss", lambda step: pytest.fail("B=1 took the batch path"))
    for _ in range(4):
        t.train_step()

    a, b = _trainer(tiny_scene, tmp_path / "b"), _trainer(tiny_scene, tmp_path / "c")
    idx = a.sample_frame()
    loss_a, info_a, _ = a.compute_loss(idx, 0)
    loss_b, info_b, _ = b.compute_batch_loss(0)
    assert torch.equal(loss_a, loss_b)
    assert info_b["groups"][0]["n_cameras"] == 1 and len(info_b["groups"]) == 1
    loss_a.backward()
    loss_b.backward()
    ga, gb = _grads(a), _grads(b)
    assert len(ga) == len(gb) > 0 and all(torch.equal(x, y) for x, y in zip(ga, gb))


def test_batch_draws_the_frames_of_consecutive_single_steps(tiny_scene, tmp_path):
    one, two = _trainer(tiny_scene, tmp_path / "a"), _trainer(tiny_scene, tmp_path / "b", "train.batch_size=3")
    singles = [one.sample_frame() for _ in range(6)]
    batches = two.sample_batch()[0] + two.sample_batch()[0]
    assert batches == singles


def test_cameras_of_one_time_share_a_rasterizer_call(tiny_scene, tmp_path):
    """Two cameras of one time (here the same frame twice, with different random backgrounds) rendered by one
    call: the summed loss and the gradients equal those of two single renders."""
    t = _trainer(tiny_scene, tmp_path / "a", "train.batch_size=2")
    bgs = [torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.8, 0.2, 0.3])]
    loss, info, logs = t._group_loss([3, 3], bgs, 0)
    assert info["n_cameras"] == 2 and info["means2d"].shape[0] == 2
    loss.backward()
    g_group = _grads(t)
    t._zero_grad()
    single = t.compute_loss(3, 0, bg=bgs[0])[0] + t.compute_loss(3, 0, bg=bgs[1])[0]
    single.backward()
    assert float(loss.detach()) == pytest.approx(float(single.detach()), rel=1e-5)
    for x, y in zip(g_group, _grads(t)):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-7)


def test_batch_averages_losses_and_feeds_densification(tiny_scene, tmp_path):
    t = _trainer(tiny_scene, tmp_path / "a", "train.batch_size=2")
    loss, info, logs = t.compute_batch_loss(0)
    groups = info["groups"]
    assert sum(g["n_cameras"] == 2 for g in groups) == len(groups) >= 1  # gsplat undoes the 1/B of the mean
    assert float(loss.detach()) == pytest.approx(float(logs["loss"]), rel=1e-6)  # a mean, not a sum, of 2 camera losses
    t._zero_grad()
    n0 = len(t.gaussians)
    for _ in range(2):  # before the first refinement (step 3): the counts hold every view of both steps
        t.train_step()
    assert 2 < float(t.strategy_state["count"].max()) <= 2 * 2  # both cameras of a step were counted
    for _ in range(5):
        t.train_step()
    assert len(t.gaussians) > n0  # densification ran on the batch statistics


def test_sqrt_learning_rate_scaling(tiny_scene, tmp_path):
    base = _trainer(tiny_scene, tmp_path / "a", "train.batch_size=4")
    scaled = _trainer(tiny_scene, tmp_path / "b", "train.batch_size=4", "optim.batch_lr_scaling=sqrt")
    for name, opt in base.optimizers.items():
        assert scaled.optimizers[name].param_groups[0]["lr"] == pytest.approx(2 * opt.param_groups[0]["lr"])
    assert scaled.deform_optimizer.param_groups[0]["lr"] == base.deform_optimizer.param_groups[0]["lr"]


def test_batch_smaller_than_the_process_count_is_refused(tiny_scene, tmp_path):
    with pytest.raises(ConfigError, match="batch_size=1 is smaller than the number of processes"):
        Trainer(load_config(None, tiny_overrides(tiny_scene, tmp_path / "a")), dist=Dist(rank=0, world=2))


@pytest.mark.parametrize("n,world", [(4, 2), (5, 2), (3, 3), (7, 3)])
def test_shards_cover_the_batch_in_order(n, world):
    items = list(range(n))
    parts = [shard(items, r, world) for r in range(world)]
    assert sum(parts, []) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_changed_lr_scaling_on_resume_rescales_the_restored_rates(tiny_scene, tmp_path):
    t = _trainer(tiny_scene, tmp_path / "a", "train.batch_size=4")
    t.train_step()
    t.save()
    r = Trainer(load_config(None, tiny_overrides(tiny_scene, tmp_path / "a", "train.batch_size=4",
                                                 "optim.batch_lr_scaling=sqrt")), resume=True)
    for name, opt in t.optimizers.items():
        assert r.optimizers[name].param_groups[0]["lr"] == pytest.approx(2 * opt.param_groups[0]["lr"])


def test_time_sampling_renders_the_cameras_of_one_time_together(tmp_path):
    """train.batch_sampling=time on the multi-camera built-in scene: B distinct cameras of one time per step,
    posed once and rendered by one rasterizer call."""
    from dyngauss.data.synthetic import SyntheticConfig, generate

    scene = generate(tmp_path / "mv", SyntheticConfig(resolution=24, n_train=4, n_val=1, n_test=1, n_video=0,
                                                      n_tracks=16, supersample=1, n_cameras=4))
    t = _trainer(scene, tmp_path / "run", "train.batch_size=3", "train.batch_sampling=time")
    for _ in range(3):
        idxs, _ = t.sample_batch()
        assert len(idxs) == 3 and len(set(idxs)) == 3
        assert len({float(t.cameras[i].time) for i in idxs}) == 1
    loss, info, logs = t.compute_batch_loss(0)
    (group,) = info["groups"]
    assert group["n_cameras"] == 3 and group["means2d"].shape[0] == 3
    n0 = len(t.gaussians)
    for _ in range(4):
        logs = t.train_step()
    assert "skipped" not in logs and len(t.gaussians) != n0

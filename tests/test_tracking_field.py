"""deform.kind=tracking (Dynamic3DGaussians' per-Gaussian tracking): identity at init, exact frame rows, slerp
between frames (against scipy), gradients only into the frames used, rows following densification (with their
Adam moments), checkpoints, a tiny multi-camera training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from dyngauss.config import ConfigError, load_config
from dyngauss.data.camera import Camera
from dyngauss.deform.config import TrackingFieldConfig, field_config
from dyngauss.deform.tracking import TrackingField, parents_by_nearest
from dyngauss.geometry.quaternion import quat_to_matrix
from dyngauss.model import DynamicGaussians, Gaussians

TIMES = [0.0, 0.3, 0.7, 1.0]


def _field(n=20, times=TIMES, seed=0, radius=2.5, random_axes=True) -> tuple[TrackingField, torch.Tensor]:
    """A field with random rows for n Gaussians and a non-trivial scene frame; and the canonical means."""
    g = torch.Generator().manual_seed(seed)
    f = field_config("tracking").build(len(times), times)
    Q = torch.from_numpy(Rotation.random(random_state=seed).as_matrix()).float() if random_axes else None
    f.set_world_frame(torch.zeros(3), radius, Q)
    means = torch.randn(n, 3, generator=g)
    f.init_gaussians(n)
    with torch.no_grad():
        for p in list(f.rotvec) + list(f.offset):
            p.copy_(0.8 * torch.randn(p.shape, generator=g))
    return f, means


def _expected(f: TrackingField, means: torch.Tensor, R_local: np.ndarray, tau: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """World rotation matrices [N,3,3] and posed centres [N,3] of local rotations R_local [N,3,3] (about each
    centre, scene axes) and offsets tau [N,3] (scene radii), written out with numpy."""
    Q = f.world_rotation.double().numpy()
    r = float(f.world_radius)
    R = Q[None] @ R_local @ Q.T[None]
    return R, means.double().numpy() + r * tau @ Q.T


def _posed(f: TrackingField, means: torch.Tensor, t, frame=None) -> tuple[np.ndarray, np.ndarray]:
    m = f(means, t, frame)
    x = (quat_to_matrix(m.rot) @ means[..., None])[..., 0] + m.trans
    return quat_to_matrix(m.rot).detach().double().numpy(), x.detach().double().numpy()


def test_identity_at_init():
    f = field_config("tracking").build(5)
    f.set_world_frame(torch.tensor([1.0, 2.0, 3.0]), 7.0, torch.from_numpy(Rotation.random(random_state=1)
                                                                           .as_matrix()).float())
    g = Gaussians.from_points((torch.rand(30, 3) - 0.5).numpy(), torch.rand(30, 3).numpy(), sh_degree=0)
    model = DynamicGaussians(g, f, train_times=list(np.linspace(0, 1, 5)))
    assert f.num_gaussians == 0  # rows are made at the first call
    for t in (0.0, 0.25, 0.4, 1.0):
        p = model.pose(t)
        assert f.num_gaussians == 30
        assert torch.allclose(p.means, g.means, atol=1e-6)
        assert torch.allclose(p.rotations, torch.tensor([1.0, 0, 0, 0]).expand(30, 4), atol=1e-7)
        assert p.motion.dscale is None


def test_frame_rows_are_used_exactly():
    f, means = _field()
    for k in range(len(TIMES)):
        want_R, want_x = _expected(f, means, Rotation.from_rotvec(f.rotvec[k].detach().double().numpy()).as_matrix(),
                                   f.offset[k].detach().double().numpy())
        for frame in (k, None):  # the frame's index, or its time without one
            R, x = _posed(f, means, TIMES[k], frame)
            assert np.abs(R - want_R).max() < 1e-5 and np.abs(x - want_x).max() < 1e-5
    with pytest.raises(ValueError, match="frame 4 outside"):
        f(means, 1.0, 4)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.69, 0.95])
def test_between_frames_is_slerp_and_a_straight_centre_path(t):
    f, means = _field()
    lo = max(i for i, s in enumerate(TIMES) if s <= t)
    hi = lo + 1
    a = (t - TIMES[lo]) / (TIMES[hi] - TIMES[lo])
    w = f.table()[..., :3].double().numpy()
    tau = f.table()[..., 3:].double().numpy()
    R_local = np.stack([Slerp([TIMES[lo], TIMES[hi]], Rotation.from_rotvec(w[[lo, hi], i]))(t).as_matrix()
                        for i in range(means.shape[0])])
    want_R, want_x = _expected(f, means, R_local, (1 - a) * tau[lo] + a * tau[hi])
    R, x = _posed(f, means, t)
    assert np.abs(R - want_R).max() < 1e-5 and np.abs(x - want_x).max() < 1e-5
    # a CPU tensor time gives the same
    R2, x2 = _posed(f, means, torch.tensor(t))
    assert np.abs(R2 - R).max() < 1e-6 and np.abs(x2 - x).max() < 1e-6


def test_times_outside_the_frames_clamp():
    times = [0.2, 0.5, 0.8]
    f, means = _field(times=times)
    for t, k in ((0.0, 0), (0.2, 0), (0.9, 2), (1.0, 2)):
        R, x = _posed(f, means, t)
        R0, x0 = _posed(f, means, times[k], k)
        assert np.abs(R - R0).max() < 1e-6 and np.abs(x - x0).max() < 1e-6


def test_gradients_reach_only_the_frames_used():
    f, means = _field(random_axes=False)
    f(means, TIMES[2], 2).trans.square().sum().backward()
    got = [(p.grad is not None and float(p.grad.abs().sum()) > 0, q.grad is not None and float(q.grad.abs().sum()) > 0)
           for p, q in zip(f.rotvec, f.offset)]
    assert got == [(False, False), (False, False), (True, True), (False, False)]
    for p in f.parameters():
        p.grad = None
    f(means, 0.5).trans.square().sum().backward()  # between frames 1 and 2: both, nothing else
    assert [p.grad is not None for p in f.offset] == [False, True, True, False]
    # also at identical rows (the identity at init), where acos-based slerp has no derivative
    z = field_config("tracking").build(4, TIMES)
    z(means, 0.5).trans.square().sum().backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in list(z.rotvec)[1:3] + list(z.offset)[1:3])


def test_rows_subset_and_wrong_sizes():
    f, means = _field()
    rows = torch.tensor([3, 0, 7, 7])
    full, sub = f(means, 0.5), f.motion_of(means, 0.5, None, rows)
    assert torch.allclose(sub.rot, full.rot[rows]) and torch.allclose(sub.trans, full.trans[rows])
    with pytest.raises(ValueError, match="20 rows but 5 points"):
        f(means[:5], 0.5)
    with pytest.raises(ValueError, match="number of training frames"):
        TrackingFieldConfig().build(None)
    with pytest.raises(ValueError, match="must increase"):
        TrackingField(3, [0.0, 0.5, 0.5])
    with pytest.raises(ConfigError, match="motion.elastic_weight"):
        load_config(None, ["deform.kind=tracking", "motion.elastic_weight=0.01"])
    with pytest.raises(ConfigError, match="motion.cycle_weight"):
        load_config(None, ["deform.kind=tracking", "motion.cycle_weight=1"])


def test_remap_copies_parent_rows_and_adam_moments():
    f, means = _field(n=6, random_axes=False)
    opt = torch.optim.Adam(f.param_groups(1e-2))
    f(means, TIMES[1], 1).trans.sum().backward()
    opt.step()
    before = f.table()
    m_before = opt.state[f.offset[1]]["exp_avg"].clone()
    parents = torch.tensor([0, 2, 3, 5, 2, 2, 5])  # 1 and 4 pruned, 2 cloned twice, 5 once
    f.remap_gaussians(parents, opt)
    assert f.num_gaussians == 7 and torch.equal(f.table(), before[:, parents])
    assert torch.equal(opt.state[f.offset[1]]["exp_avg"], m_before[parents])
    assert f.offset[0] not in opt.state  # a frame that never had a gradient still has no state
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in f.offset]
    f(means[parents], TIMES[1], 1).trans.sum().backward()  # the optimizer steps the new tables
    opt.step()
    with pytest.raises(ValueError, match="parents must index"):
        f.remap_gaussians(torch.tensor([0, 9]))
    # nearest canonical centre: clones on their parent, split children near it
    old = torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0]])
    new = torch.cat([old[[2, 0]], old[[1, 1]] + torch.tensor([[0.3, 0, 0], [-0.2, 0.1, 0]])])
    assert parents_by_nearest(old, new).tolist() == [2, 0, 1, 1]


def _camera(size=24) -> Camera:
    K = torch.tensor([[30.0, 0, size / 2], [0, 30.0, size / 2], [0, 0, 1]])
    V = torch.eye(4)
    V[2, 3] = 4.0
    return Camera(K, V, size, size, time=0.0)


def test_save_load_round_trip_renders_the_same(tmp_path):
    cfg = load_config(None, ["deform.kind=tracking", "deform.rot_lr=3e-3"])
    f, _ = _field(n=40, radius=0.5)
    g = Gaussians.from_points((torch.rand(40, 3) - 0.5).numpy(), torch.rand(40, 3).numpy(), sh_degree=0)
    m = DynamicGaussians(g, f, train_times=TIMES, config=cfg)
    back = DynamicGaussians.load(m.save(tmp_path / "model.pt"))
    assert back.kind == "tracking" and back.deform.num_gaussians == 40
    assert float(back.deform.world_radius) == 0.5 and torch.equal(back.deform.world_rotation, f.world_rotation)
    assert back.deform.rot_lr_mult == pytest.approx(3e-3 / TrackingFieldConfig.lr)  # the tracking field's own lr
    with torch.no_grad():
        for t in (TIMES[1], 0.5):
            a, b = m.render(_camera(), t, backend="torch"), back.render(_camera(), t, backend="torch")
            assert (a.alpha > 0.05).any() and torch.equal(a.rgb, b.rgb)



def _tiny(tmp: Path, cache: Path, overrides: list[str]):
    return load_config(None, [
        f"out={tmp / 'run'}", f"data.cache_dir={cache}", "data.synthetic_resolution=32",
        "data.synthetic_train_frames=5", "data.synthetic_cameras=4", "model.num_points=300",
        "render.backend=torch", "train.warmup_iters=2", "train.progress=false", "train.save_every=0",
        "train.image_log_every=0", "deform.kind=tracking", "deform.lr=1e-2",
    ] + overrides)


def test_densify_step_moves_rows_with_their_gaussians(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = _tiny(tmp_path, cache, ["train.iters=8", "densify.refine_start_iter=3", "densify.refine_every=4",
                                  "densify.grow_grad2d=1e-12", "optim.sh0_lr=0"])
    tr = Trainer(cfg)
    for _ in range(4):  # the rows exist after the warm-up
        tr.train_step()
    g, n0 = tr.gaussians, len(tr.gaussians)
    assert tr.deform.num_gaussians == n0
    with torch.no_grad():  # an identity in every Gaussian's colour (copied by clones and splits; lr 0)
        g.params["sh0"][:, 0, 0] = torch.arange(n0) * 1e-3
        small = torch.arange(n0) % 2 == 0  # half duplicate, half split
        g.params["scales"][:] = torch.where(small[:, None], -12.0, float(np.log(0.2 * tr.scene.scene_scale)))
        g.params["opacities"][::7] = -10.0  # pruned
    seen = {}
    densify = tr._densify

    def spy(step, info):
        seen["table"] = tr.deform.table()
        seen["moments"] = {f: tr.deform_optimizer.state[p]["exp_avg"].clone()
                           for f, p in enumerate(tr.deform.offset) if p in tr.deform_optimizer.state}
        densify(step, info)

    tr._densify = spy
    tr.train_step()  # step 4: refine
    ids = (g.params["sh0"][:, 0, 0] * 1e3).round().long()
    n1 = len(g)
    assert n1 != n0 and len(set(ids.tolist())) < n1 and len(set(ids.tolist())) < n0  # clones and prunes
    assert tr.deform.num_gaussians == n1 and torch.equal(tr.deform.table(), seen["table"][:, ids])
    assert seen["moments"]
    for f, m in seen["moments"].items():
        assert torch.equal(tr.deform_optimizer.state[tr.deform.offset[f]]["exp_avg"], m[ids])
    for _ in range(3):  # training goes on with the new rows
        logs = tr.train_step()
    assert "skipped" not in logs


def test_tiny_multi_camera_training_lowers_the_loss(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = _tiny(tmp_path, cache, ["train.iters=40", "densify.refine_start_iter=10", "densify.refine_every=10",
                                  "motion.rigidity_weight=0.1", "motion.rotation_weight=0.1",
                                  "motion.isometry_weight=0.1", "motion.rigidity_samples=64",
                                  "motion.smooth_weight=0.1", "motion.smooth_samples=64"])
    tr = Trainer(cfg)
    logs, worst = [], 0.0
    for _ in range(cfg.train.iters):
        logs.append(tr.train_step())
        assert "skipped" not in logs[-1], logs[-1].get("unhealthy")
        worst = max(worst, *tr.guard.headroom().values())
    assert worst < 0.05  # the tables' high learning rate stays far from the step guard's bound
    losses = [float(lg["loss"]) for lg in logs]
    assert all(np.isfinite(losses))
    assert {"rigidity", "rotation", "isometry", "smooth"} <= set(logs[-1])  # the regularisers ran on the tables
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[2:12])
    assert tr.deform.num_gaussians == len(tr.gaussians)
    assert float(tr.deform.table().abs().max()) > 0  # the tables trained
    tr.save()
    back = DynamicGaussians.load(cfg.out)
    assert torch.equal(back.deform.table(), tr.deform.table())


def test_resume_after_densification_is_exact(tmp_path, cache):
    """Rows resized by densification, per-frame Adam states (some frames without one): a resumed run takes the
    step an uninterrupted one takes."""
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    extra = ["train.iters=20", "densify.refine_start_iter=3", "densify.refine_every=4", "densify.grow_grad2d=1e-6"]
    a = Trainer(_tiny(tmp_path / "a", cache, extra))
    losses_a = [float(a.train_step()["loss"]) for _ in range(7)]
    b = Trainer(_tiny(tmp_path / "b", cache, extra))
    for _ in range(6):
        b.train_step()
    assert b.deform.num_gaussians == len(b.gaussians) != 300  # densified
    b.save()
    c = Trainer(_tiny(tmp_path / "b", cache, extra), resume=True)
    assert torch.equal(c.deform.table(), b.deform.table())
    # 4 deformation steps of one frame each: at most 4 of the 5 frames have an Adam state
    assert len(c.deform_optimizer.state) == len(b.deform_optimizer.state) <= 2 * 4
    assert float(c.train_step()["loss"]) == pytest.approx(losses_a[6], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_time_path_matches_the_host_path():
    f, means = _field()
    f, means = f.cuda(), means.cuda()
    for t in (0.0, 0.5, 0.7, 1.0):
        a = f(means, t)
        b = f(means, torch.tensor(t, device="cuda"))
        assert torch.allclose(a.rot, b.rot, atol=1e-6) and torch.allclose(a.trans, b.trans, atol=1e-5)

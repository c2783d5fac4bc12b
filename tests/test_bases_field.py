"""deform.kind=bases (Shape of Motion's motion bases): identity at init, the blend against a per-Gaussian numpy /
scipy reference, one basis = one rigid motion, gradients against finite differences, rows following
densification (with Adam moments), checkpoints, config rules, and a tiny training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dyngauss.config import ConfigError, load_config
from dyngauss.deform.bases import BasesField, cosine_series, gram_schmidt_rotation
from dyngauss.deform.config import BasesFieldConfig, field_config
from dyngauss.geometry.quaternion import quat_to_matrix
from dyngauss.model import DynamicGaussians, Gaussians
from test_tracking_field import _camera  # the same small camera looking at the origin


def _field(n=30, K=5, J=4, seed=0, dtype=torch.float32, scale=0.6) -> tuple[BasesField, torch.Tensor]:
    """A field with random coefficients and logits in a non-trivial scene frame; and its canonical means."""
    g = torch.Generator().manual_seed(seed)
    f = field_config("bases", num_bases=K, time_freqs=J).build().to(dtype)
    Q = torch.from_numpy(Rotation.random(random_state=seed).as_matrix())
    f.set_world_frame(torch.tensor([0.5, -1.0, 2.0]), 2.5, Q)
    means = (torch.randn(n, 3, generator=g) * 2.0).to(dtype)
    f(means, 0.0)  # makes the pivots and rows
    with torch.no_grad():
        f.coef.copy_(scale * torch.randn(f.coef.shape, generator=g))
        f.logits.copy_(2.0 * torch.randn(f.logits.shape, generator=g))
    return f, means


def _posed(f: BasesField, means: torch.Tensor, t: float) -> tuple[np.ndarray, np.ndarray]:
    m = f(means, t)
    R = quat_to_matrix(m.rot)
    return R.detach().double().numpy(), ((R @ means[..., None])[..., 0] + m.trans).detach().double().numpy()


def _reference(f: BasesField, means: torch.Tensor, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Posed centres [N,3] and world rotations [N,3,3] written out Gaussian by Gaussian with scipy: the LBS of
    the bases' rigid maps in the scene frame, the rotation = polar-free Gram-Schmidt of the blended matrix."""
    coef = f.coef.detach().double().numpy()
    w = torch.softmax(f.logits.detach().double(), -1).numpy()
    c, r = f.world_center.double().numpy(), float(f.world_radius)
    Q, piv = f.world_rotation.double().numpy(), f.pivots.double().numpy()
    phi = np.cos(np.pi * t * np.arange(coef.shape[1]))
    v = np.einsum("j,kjc->kc", phi, coef)
    Rk = Rotation.from_rotvec(v[:, :3]).as_matrix()
    xs, Rs = [], []
    for i, x in enumerate(means.double().numpy()):
        u = Q.T @ (x - c) / r
        un = sum(w[i, k] * (Rk[k] @ (u - piv[k]) + piv[k] + v[k, 3:]) for k in range(len(Rk)))
        xs.append(c + r * Q @ un)
        M = sum(w[i, k] * Rk[k] for k in range(len(Rk)))
        b1 = M[:, 0] / np.linalg.norm(M[:, 0])
        b2 = M[:, 1] - b1 @ M[:, 1] * b1
        b2 /= np.linalg.norm(b2)
        Rs.append(Q @ np.stack([b1, b2, np.cross(b1, b2)], 1) @ Q.T)
    return np.array(Rs), np.array(xs)


def test_identity_at_init():
    f = field_config("bases").build()
    f.set_world_frame(torch.tensor([1.0, 2.0, 3.0]), 7.0,
                      torch.from_numpy(Rotation.random(random_state=1).as_matrix()).float())
    g = Gaussians.from_points((torch.rand(40, 3) - 0.5).numpy(), torch.rand(40, 3).numpy(), sh_degree=0)
    model = DynamicGaussians(g, f, train_times=[0.0, 0.5, 1.0])
    assert f.num_gaussians == 0  # rows are made at the first call
    for t in (0.0, 0.37, 1.0):
        m = f(model.gaussians.means, t)
        assert torch.allclose(m.rot, torch.tensor([1.0, 0, 0, 0]).expand(40, 4), atol=1e-6)
        assert float(m.trans.detach().abs().max()) < 1e-5
    assert f.num_gaussians == 40
    w = f.weights()
    assert torch.allclose(w.sum(-1), torch.ones(40)) and float(w.max(1).values.min()) > 1.0 / f.num_bases
    # each Gaussian weighs most the basis whose pivot is nearest (a soft partition of space)
    u = f.to_unit(model.gaussians.means.detach())
    assert torch.equal(w.argmax(1), torch.cdist(u, f.pivots).argmin(1))


@pytest.mark.parametrize("t", [0.0, 0.31, 0.77, 1.0])
def test_blend_matches_a_per_gaussian_reference(t):
    f, means = _field(dtype=torch.float64)
    R, x = _posed(f, means, t)
    R_ref, x_ref = _reference(f, means, t)
    assert np.abs(x - x_ref).max() < 1e-9 and np.abs(R - R_ref).max() < 1e-9
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(R), 1)


def test_one_basis_is_one_rigid_motion():
    f, means = _field(K=1, scale=1.5, dtype=torch.float64)
    for t in (0.2, 0.9):
        R, x = _posed(f, means, t)
        assert np.abs(R - R[:1]).max() < 1e-12  # the same rotation for everyone
        d0 = torch.cdist(means, means).numpy()
        assert np.abs(np.linalg.norm(x[:, None] - x[None], axis=-1) - d0).max() < 1e-9  # distances kept
        # and the posed points are that rotation applied to the canonical ones plus one translation
        tr = x - means.numpy() @ R[0].T
        assert np.abs(tr - tr[:1]).max() < 1e-9


def test_gram_schmidt_and_cosine_series():
    Rs = torch.from_numpy(Rotation.random(8, random_state=3).as_matrix())
    assert torch.allclose(gram_schmidt_rotation(Rs), Rs, atol=1e-12)  # exact on rotations
    M = torch.randn(8, 3, 3, dtype=torch.float64)
    G = gram_schmidt_rotation(M)
    assert torch.allclose(G @ G.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(8, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(G), torch.ones(8, dtype=torch.float64))
    assert torch.allclose(G[:, :, 0], M[:, :, 0] / M[:, :, 0].norm(dim=-1, keepdim=True))
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    expect = np.cos(np.pi * np.outer([0.0, 0.25, 1.0], np.arange(5)))
    assert np.allclose(cosine_series(t, 5).numpy(), expect)


def test_gradients_match_finite_differences():
    f, means = _field(n=6, K=3, J=3, dtype=torch.float64)
    target = torch.randn(6, 3, dtype=torch.float64)

    def loss() -> torch.Tensor:
        m = f(means, 0.43)
        x = (quat_to_matrix(m.rot) @ means[..., None])[..., 0] + m.trans
        return ((x - target) ** 2).sum() + (m.rot[:, 1:] ** 2).sum()

    f.zero_grad()
    loss().backward()
    for p in (f.coef, f.logits):
        g = p.grad.clone()
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 12)):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + 1e-6
                up = float(loss())
                flat[i] = old - 1e-6
                down = float(loss())
                flat[i] = old
            assert (up - down) / 2e-6 == pytest.approx(float(g.view(-1)[i]), rel=1e-5, abs=1e-7)


def test_rows_subset_and_wrong_sizes():
    f, means = _field(n=12)
    rows = torch.tensor([3, 0, 7])
    sub, full = f.motion_of(means, 0.6, rows=rows), f(means, 0.6)
    assert torch.allclose(sub.rot, full.rot[rows]) and torch.allclose(sub.trans, full.trans[rows])
    with pytest.raises(ValueError, match="12 rows but 5 points"):
        f(means[:5], 0.6)
    with pytest.raises(ValueError, match="call remap_gaussians"):
        f.on_gaussians_changed(means[:5])


def test_remap_copies_parent_rows_and_adam_moments():
    f, means = _field(n=6, K=3)
    opt = torch.optim.Adam(f.param_groups(1e-2))
    f(means, 0.5).trans.sum().backward()
    opt.step()
    before, m_before = f.logits.detach().clone(), opt.state[f.logits]["exp_avg"].clone()
    coef_state = opt.state[f.coef]["exp_avg"].clone()
    parents = torch.tensor([0, 2, 3, 5, 2, 2, 5])  # 1 and 4 pruned, 2 cloned twice
    f.remap_gaussians(parents, opt)
    assert f.num_gaussians == 7 and torch.equal(f.logits.detach(), before[parents])
    assert torch.equal(opt.state[f.logits]["exp_avg"], m_before[parents])
    assert torch.equal(opt.state[f.coef]["exp_avg"], coef_state)  # shared coefficients untouched
    assert opt.param_groups[1]["params"][0] is f.logits
    f(means[parents], 0.5).trans.sum().backward()  # the optimizer steps the new rows
    opt.step()
    with pytest.raises(ValueError, match="parents must index"):
        f.remap_gaussians(torch.tensor([0, 9]))


def test_save_load_round_trip_renders_the_same(tmp_path):
    cfg = load_config(None, ["deform.kind=bases", "deform.num_bases=5", "deform.time_freqs=4",
                             "deform.weight_lr=3e-2"])
    g = Gaussians.from_points((torch.rand(30, 3) - 0.5).numpy(), torch.rand(30, 3).numpy(), sh_degree=0)
    f, _ = _field(n=30, scale=0.3)
    m = DynamicGaussians(g, f, train_times=[0.0, 1.0], config=cfg)
    back = DynamicGaussians.load(m.save(tmp_path / "model.pt"))
    assert back.kind == "bases" and back.deform.num_gaussians == 30
    assert torch.equal(back.deform.pivots, f.pivots) and back.deform.weight_lr_mult == pytest.approx(10.0)
    with torch.no_grad():
        for t in (0.0, 0.6):
            a, b = m.render(_camera(), t, backend="torch"), back.render(_camera(), t, backend="torch")
            assert (a.alpha > 0.05).any() and torch.equal(a.rgb, b.rgb)


def test_config_rules_and_ranges():
    assert isinstance(load_config(None, ["deform.kind=bases"]).deform, BasesFieldConfig)
    assert load_config(None, ["deform.kind=bases"]).deform.lr == BasesFieldConfig.lr  # not the mlp's lr
    for bad in (["motion.cycle_weight=1"], ["motion.elastic_weight=1e-3"], ["deform.num_bases=0"],
                ["deform.time_freqs=0"], ["deform.weight_lr=-1"], ["deform.width=8"]):
        with pytest.raises(ConfigError):
            load_config(None, ["deform.kind=bases"] + bad)



def _tiny(tmp: Path, cache: Path, overrides: list[str]):
    return load_config(None, [
        f"out={tmp / 'run'}", f"data.cache_dir={cache}", "data.synthetic_resolution=32",
        "data.synthetic_train_frames=8", "model.num_points=300", "render.backend=torch",
        "train.warmup_iters=2", "train.progress=false", "train.save_every=0", "train.image_log_every=0",
        "deform.kind=bases", "deform.num_bases=6", "deform.time_freqs=4",
    ] + overrides)


def test_tiny_training_lowers_the_loss_and_follows_densification(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = _tiny(tmp_path, cache, ["train.iters=40", "densify.refine_start_iter=10", "densify.refine_every=10",
                                  "densify.grow_grad2d=1e-6", "motion.rigidity_weight=0.1"])
    tr = Trainer(cfg)
    logs = []
    for _ in range(cfg.train.iters):
        logs.append(tr.train_step())
        assert "skipped" not in logs[-1], logs[-1].get("unhealthy")
        assert tr.deform.num_gaussians in (0, len(tr.gaussians))
    losses = [float(lg["loss"]) for lg in logs]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[2:12])
    assert len(tr.gaussians) != 300 and tr.deform.num_gaussians == len(tr.gaussians)  # densified, rows followed
    assert float(tr.deform.coef.detach().abs().max()) > 0  # the trajectories trained
    tr.save()
    back = DynamicGaussians.load(cfg.out)
    assert torch.equal(back.deform.logits, tr.deform.logits) and torch.equal(back.deform.coef, tr.deform.coef)


def test_resume_after_densification_is_exact(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    extra = ["train.iters=20", "densify.refine_start_iter=3", "densify.refine_every=4", "densify.grow_grad2d=1e-6"]
    a = Trainer(_tiny(tmp_path / "a", cache, extra))
    losses_a = [float(a.train_step()["loss"]) for _ in range(7)]
    b = Trainer(_tiny(tmp_path / "b", cache, extra))
    for _ in range(6):
        b.train_step()
    assert b.deform.num_gaussians == len(b.gaussians) != 300
    b.save()
    c = Trainer(_tiny(tmp_path / "b", cache, extra), resume=True)
    assert torch.equal(c.deform.logits, b.deform.logits)
    assert float(c.train_step()["loss"]) == pytest.approx(losses_a[6], rel=1e-6)

"""SC-GS node field: learnable node positions with differentiable bindings and re-binding, node count / radii in
the scene's units, adaptive node control (with the optimizer state following), robust ARAP, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dyngauss.config import ConfigError, load_config
from dyngauss.deform.config import NodeFieldConfig
from dyngauss.deform.nodes import NodeDeformField
from dyngauss.losses.rigidity import arap_node_loss, geman_mcclure
from dyngauss.geometry.quaternion import quat_identity
from dyngauss.geometry.so3 import so3_exp_quat
from dyngauss.train.trainer import Trainer
from test_deform import _one_thread  # noqa: F401 - autouse fixture: one thread for these small problems
from test_deform import _points as deform_points, _randomize as randomize_heads

D64 = torch.float64


def _points(n=600, seed=0, dtype=torch.float32):
    return deform_points(n, seed, dtype)


def _randomize(field: torch.nn.Module, std: float = 0.2, seed: int = 0) -> None:
    randomize_heads(field, std, seed)


def _field(**kw) -> NodeDeformField:
    base = dict(num_nodes=24, width=16, depth=2, pos_freqs=3)
    base.update(kw)
    return NodeFieldConfig(**base).build(num_frames=6)


# ---- learnable positions -------------------------------------------------------------------------------
def test_learnable_positions_get_gradients_and_move():
    means = _points()
    f = _field(node_pos_lr=1e-2)
    f.init_nodes(means)
    _randomize(f)
    groups = {g["name"]: g for g in f.param_groups(1e-3)}
    assert groups["deform.nodes.pos"]["params"] == [f.node_pos]
    assert groups["deform.nodes.pos"]["lr"] == pytest.approx(1e-2)  # node_pos_lr x scene radius (1)
    assert all(p is not f.node_pos for p in groups["deform.nodes"]["params"])
    opt = torch.optim.Adam(list(groups.values()))
    target = means + torch.tensor([0.1, -0.05, 0.02])
    pos0 = f.node_pos.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        m = f(means, 0.4)
        loss = ((torch.einsum("nij,nj->ni", _rotmat(m.rot), means) + m.trans - target) ** 2).sum()
        loss.backward()
        assert f.node_pos.grad is not None and torch.isfinite(f.node_pos.grad).all()
        assert f.node_pos.grad.abs().sum() > 0
        opt.step()
    assert (f.node_pos - pos0).abs().max() > 1e-3

    fixed = _field()
    fixed.init_nodes(means)
    assert not fixed.node_pos.requires_grad
    assert "deform.nodes.pos" not in {g["name"] for g in fixed.param_groups(1e-3)}


def _rotmat(q: torch.Tensor) -> torch.Tensor:
    from dyngauss.geometry.quaternion import quat_to_matrix

    return quat_to_matrix(q / q.norm(dim=-1, keepdim=True))


def test_binding_weights_are_differentiable_in_node_positions():
    """d(weights)/d(node positions) from autograd matches central finite differences."""
    means = _points(80, dtype=D64)
    f = _field(node_pos_lr=1e-3, num_nodes=10).double()
    f.init_nodes(means)
    x = means[:12]
    f.bind(x)
    probe = torch.randn(12, f.k, dtype=D64, generator=torch.Generator().manual_seed(1))
    (probe * f.binding_weights(x)).sum().backward()
    grad = f.node_pos.grad.clone()
    eps = 1e-6
    for j, c in ((int(f.bind_idx[0, 0]), 0), (int(f.bind_idx[3, 1]), 2), (int(f.bind_idx[7, 2]), 1)):
        with torch.no_grad():
            f.node_pos[j, c] += eps
            hi = float((probe * f.binding_weights(x)).sum())
            f.node_pos[j, c] -= 2 * eps
            lo = float((probe * f.binding_weights(x)).sum())
            f.node_pos[j, c] += eps
        assert grad[j, c] == pytest.approx((hi - lo) / (2 * eps), rel=1e-5, abs=1e-9)


def _numpy_binding(means: np.ndarray, nodes: np.ndarray, radii: np.ndarray, k: int):
    """Independent reference: K nearest nodes by a full distance sort, Gaussian RBF weights normalised."""
    d2 = ((means[:, None, :] - nodes[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dk = np.take_along_axis(d2, idx, 1)
    logw = -dk / (2 * radii[idx] ** 2)
    w = np.exp(logw - logw.max(1, keepdims=True))
    return idx, w / w.sum(1, keepdims=True)


def test_binding_weights_match_numpy_and_rebind_after_moves():
    means = _points(400, dtype=D64)
    f = _field(node_pos_lr=1e-3, rebind_move=0.25).double()
    f.init_nodes(means)
    radii = np.exp(f.log_radii.detach().numpy())

    def check():
        idx, w = _numpy_binding(means.numpy(), f.node_pos.detach().numpy(), radii, f.k)
        got_w = f.binding_weights(means).detach().numpy()
        order = np.argsort(f.bind_idx.numpy(), 1)  # compare as (node, weight) sets
        np.testing.assert_array_equal(np.sort(idx, 1), np.take_along_axis(f.bind_idx.numpy(), order, 1))
        np.testing.assert_allclose(np.take_along_axis(w, np.argsort(idx, 1), 1),
                                   np.take_along_axis(got_w, order, 1), rtol=1e-10, atol=1e-12)

    f(means, 0.3)
    check()
    # a small move (under rebind_move x radius) keeps the binding; its weights still follow the nodes
    old_idx = f.bind_idx.clone()
    with torch.no_grad():
        f.node_pos[0] += 0.1 * float(radii[0])
    f.set_step(1)
    f(means, 0.3)
    assert torch.equal(f.bind_idx, old_idx)
    # a large move (more than rebind_move x radius) re-binds at the next step: the binding is exact again
    with torch.no_grad():
        f.node_pos[0] += torch.tensor([0.6, -0.4, 0.2], dtype=D64)
        f.node_pos[5] -= torch.tensor([0.3, 0.3, 0.0], dtype=D64)
    assert float(f.node_moves().max()) > 0.25
    f.set_step(2)
    f(means, 0.3)
    assert not torch.equal(f.bind_idx, old_idx)
    assert float(f.node_moves().max()) == 0.0
    check()


# ---- the scene's units -------------------------------------------------------------------------------------
def test_world_scaled_x20_gives_the_same_layout():
    """Node count (node_spacing), positions, radii, position learning rate, ARAP scale and the adaptive control
    follow the scene's frame: a world scaled x20 (with its centre moved) gives the same nodes x20."""
    means = _points(700, dtype=D64) * torch.tensor([1.0, 0.5, 0.3], dtype=D64)
    centre = torch.tensor([0.3, -0.2, 0.5], dtype=D64)
    kw = dict(num_nodes=64, node_spacing=0.35, node_pos_lr=1e-3, arap_robust_scale=0.2, node_densify_every=1,
              node_densify_start=0)
    layouts = []
    for s in (1.0, 20.0):
        torch.manual_seed(0)  # the same trunk weights
        f = _field(**kw).double()
        f.set_world_frame(centre * s, 1.3 * s)
        x = (means + centre) * s
        f.init_nodes(x)
        _randomize(f)
        g = f.node_graph()
        err = torch.zeros(len(x), dtype=D64)
        err[x[:, 0] > x[:, 0].quantile(0.8)] = 1.0
        far = torch.cat([x, (means[:50] * 0.1 + torch.tensor([2.5, 0.0, 0.0], dtype=D64) + centre) * s])
        err = torch.cat([err, torch.full((50,), 2.0, dtype=D64)])
        m = f(x, 0.35)
        pos_lr = {gr["name"]: gr["lr"] for gr in f.param_groups(1e-3)}["deform.nodes.pos"]
        layouts.append(dict(n=f.num_nodes, pos=f.node_pos.detach().clone() / s, r=f.log_radii.exp().detach() / s,
                            idx=f.bind_idx.clone(), lr=pos_lr / s, arap=f.arap_scale(g.edges) / s,
                            trans=m.trans.detach() / s, rot=m.rot.detach(),
                            info=f.densify_nodes(far, err), after=f.node_pos.detach().clone() / s))
    a, b = layouts
    assert 1 < a["n"] < 64 and a["n"] == b["n"]  # the spacing, not the cap, decides the count
    torch.testing.assert_close(a["pos"], b["pos"])
    torch.testing.assert_close(a["r"], b["r"])
    assert torch.equal(a["idx"], b["idx"])
    assert a["lr"] == pytest.approx(b["lr"])
    torch.testing.assert_close(a["arap"], b["arap"])
    torch.testing.assert_close(a["trans"], b["trans"], atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(a["rot"], b["rot"], atol=1e-9, rtol=1e-7)
    assert a["info"]["added"] == b["info"]["added"] > 0
    torch.testing.assert_close(a["after"], b["after"])


def test_node_spacing_gives_fewer_nodes_for_a_small_object():
    """Same spacing, an object a quarter the size in the same scene: fewer nodes; spacing 0: exactly num_nodes."""
    means = _points(800)
    big, small, exact = _field(num_nodes=200, node_spacing=0.3), _field(num_nodes=200, node_spacing=0.3), \
        _field(num_nodes=200)
    big.init_nodes(means)
    small.init_nodes(means * 0.25)
    exact.init_nodes(means)
    assert small.num_nodes < big.num_nodes < 200 and exact.num_nodes == 200
    # every Gaussian lies within the spacing of a node (the sampling's covering radius)
    d = torch.cdist(means, big.node_pos.detach()).min(1).values
    assert float(d.max()) < 0.3 + 1e-6


# ---- adaptive node control ---------------------------------------------------------------------------------
def test_adaptive_control_adds_where_error_is_high_and_prunes_orphans():
    means = _points(900)
    f = _field(num_nodes=32, node_pos_lr=1e-2, node_table=True, node_densify_every=10, node_densify_start=20,
               node_densify_stop=100, node_densify_quantile=0.8)
    f.init_nodes(means)
    _randomize(f)
    opt = torch.optim.Adam(f.param_groups(1e-2))
    for _ in range(2):
        opt.zero_grad()
        m = f(means, 0.3)
        (m.trans.square().sum() + m.rot[:, 1:].square().sum()).backward()
        opt.step()
    assert not f.node_densify_due(19) and f.node_densify_due(20) and not f.node_densify_due(25)
    assert f.node_densify_due(30) and not f.node_densify_due(100)
    old = {"pos": f.node_pos.detach().clone(), "m_pos": opt.state[f.node_pos]["exp_avg"].clone(),
           "m_r": opt.state[f.log_radii]["exp_avg"].clone(), "step": float(opt.state[f.log_radii]["step"])}
    # half of the Gaussians go (their nodes become orphans); a new high-error blob appears away from all nodes,
    # on the side of the Gaussians that stay (its Gaussians bind to the kept side's nodes)
    kept = means[means[:, 0] < 0]
    blob = _points(200, seed=4) * 0.3 + torch.tensor([-2.5, 0.0, 0.0])
    means2 = torch.cat([kept, blob])
    err = torch.cat([torch.rand(len(kept)) * 0.1, 1.0 + torch.rand(len(blob))])
    info = f.densify_nodes(means2, err)
    f.remap_optimizer_state(opt, info)
    keep = info["keep"]
    assert info["removed"] > 0 and 0 < info["added"] <= 32 // 8
    assert f.num_nodes == 32 - info["removed"] + info["added"]
    # new nodes: in the blob, apart from each other and from the old nodes
    new = f.node_pos.detach()[len(keep):]
    assert (new[:, 0] < -2.5 + 0.31).all()
    r = f.log_radii.detach().exp()
    d = torch.cdist(new, f.node_pos.detach())
    d[torch.arange(len(new)), len(keep) + torch.arange(len(new))] = float("inf")  # not itself
    assert (d.min(1).values > 0.5 * r[len(keep):]).all()
    # pruned: every remaining node is bound by some Gaussian
    assert torch.equal(torch.unique(f.bind_idx), torch.arange(f.num_nodes))
    # the optimizer follows: same objects, state rows of the kept nodes, zeros for the new ones
    names = {g["name"]: g["params"] for g in opt.param_groups}
    assert names["deform.nodes.pos"] == [f.node_pos] and names["deform.nodes.radii"] == [f.log_radii]
    assert names["deform.nodes.table"] == [f.node_table]
    st = opt.state[f.node_pos]
    assert st["exp_avg"].shape == f.node_pos.shape and st["exp_avg_sq"].shape == f.node_pos.shape
    torch.testing.assert_close(st["exp_avg"][: len(keep)], old["m_pos"][keep])
    assert (st["exp_avg"][len(keep):] == 0).all()
    torch.testing.assert_close(opt.state[f.log_radii]["exp_avg"][: len(keep)], old["m_r"][keep])
    assert opt.state[f.node_table]["exp_avg"].shape == f.node_table.shape
    assert float(opt.state[f.log_radii]["step"]) == old["step"]
    torch.testing.assert_close(f.node_pos.detach()[: len(keep)], old["pos"][keep])
    # and Adam continues
    opt.zero_grad()
    m = f(means2, 0.3)
    (m.trans.square().sum() + m.rot[:, 1:].square().sum()).backward()
    opt.step()
    assert torch.isfinite(f.node_pos).all() and f.node_pos.grad.shape == f.node_pos.shape


def test_adaptive_control_respects_max_nodes_and_needs_error():
    means = _points(600)
    f = _field(num_nodes=16, max_nodes=17)
    f.init_nodes(means)
    blob = _points(100, seed=2) * 0.3 + torch.tensor([3.0, 0.0, 0.0])
    x = torch.cat([means, blob])
    info = f.densify_nodes(x, torch.cat([torch.zeros(600), torch.ones(100)]))
    assert info["added"] == 1 and f.num_nodes == 17
    assert f.densify_nodes(x, torch.cat([torch.zeros(600), torch.ones(100)]))["added"] == 0
    # a zero error everywhere adds nothing (no node is placed without evidence)
    g = _field(num_nodes=16)
    g.init_nodes(means)
    assert g.densify_nodes(x, torch.zeros(700))["added"] == 0
    with pytest.raises(ValueError, match="700 Gaussians"):
        g.densify_nodes(x, torch.zeros(5))


def test_config_rejects_an_empty_densify_window():
    with pytest.raises(ConfigError, match="node_densify_start"):
        load_config(None, ["deform.kind=nodes", "deform.node_densify_every=10", "deform.node_densify_start=50",
                           "deform.node_densify_stop=50"])


# ---- robust ARAP ------------------------------------------------------------------------------------------
def test_geman_mcclure_closed_form():
    e = torch.tensor([1e-8, 1e-4, 1.0, 1e4, 1e8], dtype=D64)
    s = 0.5
    rho = geman_mcclure(e, s)
    torch.testing.assert_close(rho, s * s * e / (e + s * s))
    assert rho[0] == pytest.approx(1e-8, rel=1e-7)               # small: plain L2
    assert rho[-1] == pytest.approx(s * s, rel=1e-7)             # large: saturated at s^2
    e.requires_grad_(True)
    (g,) = torch.autograd.grad(geman_mcclure(e, s).sum(), e)
    assert g[0] == pytest.approx(1.0, rel=1e-6) and g[-1] < 1e-15  # slope 1 at 0, no pull far out


def _hinge():
    """Nodes on two bars meeting at the origin; bar 2 rotates by `angle` about z around the hinge."""
    a = torch.stack([torch.linspace(-1, -0.1, 6), torch.zeros(6), torch.zeros(6)], -1).to(D64)
    b = -a.flip(0)
    pos = torch.cat([a, b])
    d2 = torch.cdist(pos, pos)
    nb = d2.masked_fill(torch.eye(12, dtype=torch.bool), float("inf")).topk(2, largest=False).indices
    edges = torch.stack([torch.arange(12).repeat_interleave(2), nb.reshape(-1)], -1)
    return pos, edges


def test_robust_arap_equals_plain_for_small_residuals_and_saturates_for_large():
    pos, edges = _hinge()
    for angle, scale in ((1e-4, 0.5), (1e-3, 2.0)):  # small residuals (<< scale): the plain term
        rot = quat_identity((12,), dtype=D64)
        rot[6:] = so3_exp_quat(torch.tensor([0.0, 0.0, angle], dtype=D64)).expand(6, 4)
        trans = torch.zeros(12, 3, dtype=D64)
        plain = arap_node_loss(pos, rot, trans, edges)
        robust = arap_node_loss(pos, rot, trans, edges, robust_scale=scale)
        assert float(plain) > 0 and float(robust) == pytest.approx(float(plain), rel=1e-6)
    # a true hinge of 90 deg: plain ARAP grows with the joint's residual, the robust one stays bounded by s^2
    s = 0.01
    vals = []
    for angle in (0.5, 1.0, 1.5):
        rot = quat_identity((12,), dtype=D64)
        rot[6:] = so3_exp_quat(torch.tensor([0.0, 0.0, angle], dtype=D64)).expand(6, 4)
        plain = float(arap_node_loss(pos, rot, torch.zeros(12, 3, dtype=D64), edges))
        robust = float(arap_node_loss(pos, rot, torch.zeros(12, 3, dtype=D64), edges, robust_scale=s))
        vals.append((plain, robust))
    assert vals[2][0] > 3 * vals[0][0]
    n_joint = 2 / len(edges)  # the two edges across the hinge (0.1 <-> -0.1): the only non-zero residuals
    for _, robust in vals:
        assert robust <= s * s * n_joint + 1e-12 and robust > 0.9 * s * s * n_joint
    # per-edge scales: entries <= 0 are plain, > 0 robust; the gradient matches finite differences
    rot = quat_identity((12,), dtype=D64)
    rot[6:] = so3_exp_quat(torch.tensor([0.0, 0.0, 0.3], dtype=D64)).expand(6, 4)
    trans = (0.05 * torch.randn(12, 3, dtype=D64, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    scales = torch.where(torch.arange(len(edges)) % 2 == 0, 0.05, 0.0).to(D64)
    assert torch.autograd.gradcheck(lambda t: arap_node_loss(pos, rot, t, edges, robust_scale=scales), (trans,))
    with pytest.raises(ValueError, match="robust_scale"):
        arap_node_loss(pos, rot, trans, edges, robust_scale=torch.ones(3, dtype=D64))


def test_field_arap_scale_and_motion_term():
    means = _points(500)
    f = _field(arap_robust_scale=0.3)
    f.init_nodes(means)
    g = f.node_graph()
    torch.testing.assert_close(f.arap_scale(g.edges), 0.3 * f.log_radii.detach().exp()[g.edges[:, 0]])
    assert _field().arap_scale(g.edges) is None


# ---- training: wiring and checkpoints -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=2, n_video=4, n_tracks=32, supersample=2)
    return generate(tmp_path_factory.mktemp("scgs") / "scene", cfg)


def _cfg(scene, out, *extra):
    return load_config(None, [f"data.path={scene}", f"out={out}", "train.iters=12", "train.warmup_iters=3",
                              "model.num_points=300", "densify.refine_start_iter=1", "densify.refine_every=4",
                              "densify.refine_stop_iter=100", "train.progress=false", "train.save_every=0",
                              "deform.kind=nodes", "deform.num_nodes=16", "deform.width=16", "deform.depth=2",
                              "render.backend=torch", *extra])


SCGS = ("deform.node_pos_lr=1e-3", "deform.node_densify_every=2", "deform.node_densify_start=3",
        "deform.node_densify_stop=50", "deform.node_densify_quantile=0.5", "deform.arap_robust_scale=0.5",
        "motion.arap_weight=1.0", "deform.rebind_move=0.05")


def test_training_moves_adds_nodes_and_checkpoint_roundtrip(tiny_scene, tmp_path):
    from dyngauss.model import DynamicGaussians

    t = Trainer(_cfg(tiny_scene, tmp_path / "run", *SCGS))
    for _ in range(4):  # warm-up, then the step that samples the nodes (and steps them once)
        t.train_step()
    d = t.deform
    pos0 = d.node_pos.detach().clone()
    for _ in range(2):  # deformation steps 1, 2: no adaptive control yet (it starts at 3)
        assert "skipped" not in t.train_step()
    assert d.num_nodes == len(pos0) and (d.node_pos.detach() - pos0).abs().max() > 0  # the nodes moved
    for _ in range(4):  # adaptive control at deformation steps 3 and 5
        logs = t.train_step()
        assert "skipped" not in logs and torch.isfinite(logs["arap"])
        # the deformation optimizer holds exactly the field's current node parameters, state shapes matching
        params = {id(p) for g in t.deform_optimizer.param_groups for p in g["params"]}
        assert {id(d.node_pos), id(d.log_radii)} <= params
        for p in (d.node_pos, d.log_radii):
            assert t.deform_optimizer.state[p]["exp_avg"].shape == p.shape
    # one more densification with a known error (new nodes for sure), then train on: Adam continues
    err = torch.rand(len(t.gaussians), generator=torch.Generator().manual_seed(0))
    n_before = d.num_nodes
    info = d.densify_nodes(t.gaussians.means.detach(), err)
    d.remap_optimizer_state(t.deform_optimizer, info)
    assert info["added"] > 0 and d.num_nodes == n_before - info["removed"] + info["added"]
    assert "skipped" not in t.train_step()
    path = t.save()
    loaded = DynamicGaussians.load(path)
    assert loaded.deform.num_nodes == d.num_nodes
    assert torch.equal(loaded.deform.node_pos.detach(), d.node_pos.detach())
    assert loaded.deform.node_pos.requires_grad
    cam = t.scene.train.cameras[1]
    with torch.no_grad():
        a = t.model.render(cam, float(cam.time), backend="torch").rgb
        b = loaded.render(cam, float(cam.time), backend="torch").rgb
    assert a.abs().sum() > 0
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # resuming the run restores the node optimizer state and continues
    r = Trainer(_cfg(tiny_scene, tmp_path / "run", *SCGS), resume=True)
    assert r.deform.num_nodes == d.num_nodes
    assert r.deform_optimizer.state[r.deform.node_pos]["exp_avg"].shape == r.deform.node_pos.shape
    assert "skipped" not in r.train_step()


@pytest.mark.parametrize("densify", [True, False])
def test_trainer_adapts_nodes_from_the_densification_gradient(tiny_scene, tmp_path, monkeypatch, densify):
    """The trainer calls the adaptive control when due, with gsplat's accumulated 2D gradient per Gaussian (or,
    without densification, the gradient of the canonical means)."""
    t = Trainer(_cfg(tiny_scene, tmp_path / "adapt", *SCGS, f"densify.enabled={str(densify).lower()}"))
    assert (t.strategy is not None) == densify
    seen = []
    orig = NodeDeformField.densify_nodes

    def spy(self, means, err):
        seen.append((t.step, None if err is None else err.clone(), len(means)))
        return orig(self, means, err)

    monkeypatch.setattr(NodeDeformField, "densify_nodes", spy)
    for _ in range(9):
        t.train_step()
    steps = [s for s, _, _ in seen]
    assert steps == [6, 8]  # deformation steps 3, 5 (warm-up 3)
    for _, err, n in seen:
        assert err is not None and err.shape == (n,) and (err >= 0).all() and err.max() > 0



# ---- screw frame -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("blend", ["dqb", "lbs"])
def test_center_pivot_makes_one_screw_one_rigid_motion(blend):
    """The same screw at every node (a constant head output) is one rigid motion of the whole scene about its
    centre with node_pivot="center" (checked against scipy's rotation), and a different motion per node with
    "node" (each node turns about itself)."""
    from scipy.spatial.transform import Rotation

    from dyngauss.geometry.se3 import se3_exp

    means = _points(dtype=D64)
    screw = torch.tensor([0.3, -1.1, 0.6, 0.2, 0.1, -0.3], dtype=D64)  # |w| ~ 1.3 rad: a large turn
    center = torch.tensor([0.4, -0.2, 0.1], dtype=D64)
    posed = {}
    for frame in ("center", "node"):
        f = _field(node_pivot=frame, blend=blend).double()
        f.set_world_frame(center, 2.0)
        f.init_nodes(means)
        with torch.no_grad():
            f.screw_head.weight.zero_()
            f.screw_head.bias.copy_(screw)
        m = f(means, 0.7)
        posed[frame] = torch.einsum("nij,nj->ni", _rotmat(m.rot), means) + m.trans
    q, p = se3_exp(screw[None])
    R = Rotation.from_quat(q[0, [1, 2, 3, 0]].numpy()).as_matrix()
    want = (means - center).numpy() @ R.T + center.numpy() + 2.0 * p[0].numpy()  # u' = R u + p, x = c + r u
    assert np.abs(posed["center"].detach().numpy() - want).max() < 1e-9
    assert (posed["node"] - posed["center"]).abs().max() > 0.1

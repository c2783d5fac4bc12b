"""Deformation fields: identity at init, skinning (DQB vs LBS, candy wrapper), node bindings, state round trips,
gradients, and that the fields (forward and backward) can be fit to known analytic motions."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial import cKDTree

from dyngauss.deform.backward import BackwardField
from dyngauss.deform.base import IdentityField, apply_motion
from dyngauss.deform.config import MLPFieldConfig, NodeFieldConfig, StaticFieldConfig, field_config
from dyngauss.deform.encoding import PositionalEncoding, pe_window
from dyngauss.deform.mlp import MLPDeformField
from dyngauss.deform.nodes import NodeDeformField, lbs_blend_matrices, skin
from dyngauss.deform.shared import NetworkField
from dyngauss.geometry.quaternion import quat_normalize, quat_rotate, quat_to_matrix
from dyngauss.geometry.so3 import so3_exp_quat

D64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are small: one thread is faster than two, and much faster on a shared, loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _points(n=500, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1).to(dtype)


def _randomize(field: torch.nn.Module, std: float = 0.1, seed: int = 0) -> None:
    """Give the zero-initialised heads random weights so the field is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in field.named_parameters():
            if "head" in name or "node_table" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


FIELD_CASES = {
    "mlp-pe": dict(kind="mlp"),
    "mlp-latent": dict(kind="mlp", time_mode="latent"),
    "mlp-ambient": dict(kind="mlp", ambient_dims=2, dscale=True, anneal_steps=100),
    "mlp-local": dict(kind="mlp", screw_frame="local"),
    "nodes-dqb": dict(kind="nodes", num_nodes=32, blend="dqb"),
    "nodes-lbs": dict(kind="nodes", num_nodes=32, blend="lbs", dscale=True),
    "nodes-latent-table": dict(kind="nodes", num_nodes=32, time_mode="latent", node_table=True),
}


def _make(name, means=None, num_frames=10):
    f = field_config(**FIELD_CASES[name]).build(num_frames=num_frames)
    if isinstance(f, NodeDeformField) and means is not None:
        f.init_nodes(means)
    return f


# ---- identity at init ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FIELD_CASES))
def test_fields_are_identity_at_init(name):
    means = _points()
    quats = quat_normalize(torch.randn(len(means), 4))
    scales = torch.randn(len(means), 3)
    f = _make(name, means)
    for t, frame in ((0.0, None), (0.37, None), (1.0, None), (0.5, 3)):
        m = f(means, t, frame)
        pm, pq, ps = apply_motion(means, quats, scales, m)
        assert torch.allclose(pm, means, atol=1e-6)
        assert torch.allclose(pq, quats, atol=1e-6)
        assert torch.allclose(ps, scales)


def test_field_configs_build_their_fields():
    assert isinstance(StaticFieldConfig().build(), IdentityField)
    assert StaticFieldConfig().build_backward(required=True) is None  # a static scene has no inverse
    with pytest.raises(ValueError, match="bogus"):
        field_config("bogus")
    with pytest.raises(TypeError):
        field_config("mlp", num_nodes=8)  # a key of another kind
    with pytest.raises(ValueError, match="kind"):
        MLPFieldConfig(kind="nodes")
    with pytest.raises(ValueError, match="num_frames"):
        MLPFieldConfig(time_mode="latent").build()  # no frame count
    with pytest.raises(ValueError, match="node_table"):
        NodeFieldConfig(node_table=True).build()
    with pytest.raises(ValueError, match="screw_frame"):
        MLPFieldConfig(screw_frame="nowhere").build()
    f = MLPFieldConfig(time_mode="latent", num_frames=5).build(num_frames=99)  # the config's count wins
    assert f.time.num_frames == 5
    assert isinstance(field_config("mlp").build(), MLPDeformField)
    assert isinstance(field_config("nodes").build(), NodeDeformField)
    # the backward field: only when asked for (or required), from the shared keys, never a dscale head
    assert MLPFieldConfig().build_backward() is None
    b = MLPFieldConfig(backward=True, backward_width=32, width=48, depth=3, dscale=True).build_backward()
    assert isinstance(b, BackwardField) and b.net.width == 32 and len(b.net.layers) == 3 and b.dscale_head is None
    b = NodeFieldConfig(width=24).build_backward(required=True)
    assert isinstance(b, BackwardField) and b.net.width == 24


def test_fields_share_the_trunk_and_keep_their_state_keys():
    """mlp, nodes and backward are one NetworkField trunk; their state-dict keys are the checkpoint format."""
    mlp = MLPFieldConfig(time_mode="latent", num_frames=3, ambient_dims=2, dscale=True, depth=2).build()
    nodes = NodeFieldConfig(node_table=True, depth=2).build(num_frames=3)
    for f in (mlp, nodes, MLPFieldConfig(backward=True).build_backward()):
        assert isinstance(f, NetworkField)
    trunk = ["step", "world_center", "world_radius", "world_rotation", "time.codes.weight", "time.frame_times", "net.layers.0.weight", "net.layers.0.bias",
             "net.layers.1.weight", "net.layers.1.bias", "net.cond.0.weight", "net.cond.1.weight",
             "screw_head.weight", "screw_head.bias"]
    assert set(mlp.state_dict()) == set(trunk) | {"dscale_head.weight", "dscale_head.bias"} | {
        f"ambient_{k}" for k in ("net.layers.0.weight", "net.layers.0.bias", "net.layers.1.weight",
                                 "net.layers.1.bias", "net.layers.2.weight", "net.layers.2.bias",
                                 "net.cond.0.weight", "head.weight", "head.bias")}
    pe_trunk = [k for k in trunk if not k.startswith("time.")]
    assert set(nodes.state_dict()) == set(pe_trunk) | {"node_pos", "bind_idx", "log_radii", "node_table",
                                                       "table_times"}


def test_nodes_identity_before_init():
    f = NodeFieldConfig().build()
    means = _points(100)
    m = f(means, 0.5)
    assert not f.initialized and torch.equal(m.trans, torch.zeros_like(means))


@pytest.mark.parametrize("name", list(FIELD_CASES))
def test_param_groups_cover_all_parameters_once(name):
    f = _make(name, _points(200))
    groups = f.param_groups(1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in f.parameters() if p.requires_grad}
    assert all(g["name"].startswith("deform.") and g["lr"] > 0 for g in groups)
    # torch.optim accepts them as they are
    torch.optim.Adam(groups)


# ---- encodings ---------------------------------------------------------------------------------
def test_coarse_to_fine_window():
    pe = PositionalEncoding(3, 4)
    x = torch.randn(10, 3)
    assert pe(x).shape == (10, pe.out_dim) == (10, 27)
    assert torch.allclose(pe(x, alpha=0.0)[:, 3:], torch.zeros(10, 24))
    assert torch.allclose(pe(x, alpha=4.0), pe(x))
    w = pe_window(1.5, 4)
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.0, 0.0]), atol=1e-6)
    f = MLPDeformField(MLPFieldConfig(pos_freqs=8, anneal_steps=100))
    assert f.alpha == 0.0
    f.set_step(50)
    assert f.alpha == pytest.approx(4.0)
    f.set_step(1000)
    assert f.alpha == pytest.approx(8.0)
    # the step is state: a reloaded field keeps its alpha
    g = MLPDeformField(MLPFieldConfig(pos_freqs=8, anneal_steps=100))
    g.load_state_dict(f.state_dict())
    assert g.alpha == pytest.approx(8.0)


def test_latent_codes_interpolate_between_frames():
    times = torch.tensor([0.0, 0.2, 0.5, 1.0])
    f = MLPDeformField(MLPFieldConfig(time_mode="latent", width=16, depth=2), num_frames=4, frame_times=times)
    codes = f.time.codes.weight
    t = torch.tensor([[0.2]])
    assert torch.allclose(f.time(t, None), codes[1:2])
    assert torch.allclose(f.time(t, 1), codes[1:2])
    # a = (0.35 - 0.2) / 0.3 is 0.5 only up to float32 rounding: absolute tolerance for components that cancel
    assert torch.allclose(f.time(torch.tensor([[0.35]]), None), 0.5 * (codes[1:2] + codes[2:3]), atol=1e-6)
    assert torch.allclose(f.time(torch.tensor([[1.5]]), None), codes[3:4])  # clamped
    # unsorted frame times work too
    f.set_frame_times(torch.tensor([0.5, 0.0, 1.0, 0.2]))
    assert torch.allclose(f.time(torch.tensor([[0.1]]), None), 0.5 * (codes[1:2] + codes[3:4]))
    # field output: frame index == interpolation at the frame's time
    _randomize(f)
    x = _points(50)
    a, b = f(x, 0.2, None), f(x, 0.2, 3)
    assert torch.allclose(a.trans, b.trans) and torch.allclose(a.rot, b.rot)


def test_per_point_times_match_shared_time():
    f = MLPDeformField(MLPFieldConfig(width=32, depth=3))
    _randomize(f)
    x = _points(40)
    shared = f(x, 0.3)
    per = f(x, torch.full((40,), 0.3))
    assert torch.allclose(shared.trans, per.trans, atol=1e-6)


# ---- skinning --------------------------------------------------------------------------------------
def test_dqb_lbs_exact_for_shared_rigid_motion():
    g = torch.Generator().manual_seed(0)
    n, m, k = 300, 20, 4
    means = torch.randn(n, 3, generator=g, dtype=D64)
    q = so3_exp_quat(torch.randn(1, 3, generator=g, dtype=D64))
    t = torch.randn(1, 3, generator=g, dtype=D64)
    node_q = q.expand(m, 4) * torch.where(torch.rand(m, 1, generator=g) < 0.5, -1.0, 1.0).to(D64)  # random signs
    node_t = t.expand(m, 3)
    idx = torch.randint(0, m, (n, k), generator=g)
    w = torch.softmax(torch.randn(n, k, generator=g, dtype=D64), -1)
    exact = quat_rotate(q, means) + t
    for blend in ("dqb", "lbs"):
        rot, trans = skin(means, idx, w, node_q, node_t, blend)
        assert torch.allclose(quat_rotate(rot, means) + trans, exact, atol=1e-10)
        assert torch.allclose(quat_to_matrix(rot), quat_to_matrix(q).expand(n, 3, 3), atol=1e-10)


@pytest.mark.parametrize("blend", ["dqb", "lbs"])
def test_node_field_translation_only_is_exact(blend):
    """A node MLP that outputs the same pure translation for every node moves everything rigidly."""
    means = _points(400)
    f = _make("nodes-dqb", means)
    f.blend = blend
    with torch.no_grad():
        f.screw_head.bias.copy_(torch.tensor([0, 0, 0, 0.3, -0.2, 0.5]))
    m = f(means, 0.4)
    assert torch.allclose(quat_rotate(m.rot, means) + m.trans, means + torch.tensor([0.3, -0.2, 0.5]), atol=1e-5)


def test_candy_wrapper_dqb_preserves_volume_lbs_collapses():
    """Two node groups on the x axis twisted by ±90° about it: DQB keeps points at their distance from the axis
    (and a rigid blended rotation), LBS pulls them towards the axis (blended matrix shrinks)."""
    node_x = torch.tensor([-1.0, -0.1, 0.1, 1.0], dtype=D64)
    nodes = torch.stack([node_x, torch.zeros(4, dtype=D64), torch.zeros(4, dtype=D64)], -1)
    ang = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=D64) * math.pi / 2
    node_q = so3_exp_quat(torch.stack([ang, torch.zeros(4, dtype=D64), torch.zeros(4, dtype=D64)], -1))
    node_t = torch.zeros(4, 3, dtype=D64)  # rotations about the x axis itself
    # points on a circle of radius 0.5 around the axis at several x; weights from an RBF on x
    phi = torch.linspace(0, 2 * math.pi, 9, dtype=D64)[:-1]
    xs = torch.linspace(-0.1, 0.1, 5, dtype=D64)
    X, P = torch.meshgrid(xs, phi, indexing="ij")
    pts = torch.stack([X.reshape(-1), 0.5 * torch.cos(P).reshape(-1), 0.5 * torch.sin(P).reshape(-1)], -1)
    idx = torch.tensor([1, 2]).expand(len(pts), 2)
    d2 = (pts[:, None, :1] - nodes[idx][..., :1]).pow(2).sum(-1)
    w = torch.softmax(-d2 / (2 * 0.1 ** 2), -1)
    radius = lambda p: p[:, 1:].norm(dim=-1)  # noqa: E731
    rot, trans = skin(pts, idx, w, node_q, node_t, "dqb")
    posed = quat_rotate(rot, pts) + trans
    assert torch.allclose(radius(posed), torch.full((len(pts),), 0.5, dtype=D64), atol=1e-10)
    R = quat_to_matrix(rot)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(pts), dtype=D64))
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=D64).expand_as(R), atol=1e-10)
    rot_l, trans_l = skin(pts, idx, w, node_q, node_t, "lbs")
    posed_l = quat_rotate(rot_l, pts) + trans_l
    mid = X.reshape(-1).abs() < 1e-12  # equal weights: LBS collapses onto the axis
    assert radius(posed_l)[mid].max() < 1e-10
    assert (radius(posed_l) < 0.5 - 1e-3).all()
    det = torch.linalg.det(lbs_blend_matrices(node_q[idx], w))
    assert det[mid].abs().max() < 1e-10 and (det < 0.999).all()


# ---- nodes: bindings, graph, resampling, state ----------------------------------------------------------
def test_node_bindings_knn_and_weights():
    means = _points(1000)
    f = _make("nodes-dqb", means)
    assert f.num_nodes == 32 and f.bind_idx.shape == (1000, 4)
    _, ii = cKDTree(f.node_pos.numpy()).query(means.numpy(), k=4)
    assert (torch.sort(f.bind_idx, 1).values == torch.sort(torch.as_tensor(ii), 1).values).float().mean() > 0.999
    w = f.binding_weights(means)
    assert torch.allclose(w.sum(-1), torch.ones(1000), atol=1e-6) and (w >= 0).all()
    # far-away points still get finite normalised weights
    far = torch.full((3, 3), 100.0)
    f.bind(far)
    assert torch.allclose(f.binding_weights(far).sum(-1), torch.ones(3))
    # node radii: positive, from node spacing
    assert torch.isfinite(f.log_radii).all()


def test_rebinding_after_adding_gaussians():
    means = _points(500)
    f = _make("nodes-dqb", means)
    _randomize(f)
    more = torch.cat([means, _points(200, seed=5) * 0.9])
    f.on_gaussians_changed(more)
    assert f.bind_idx.shape == (700, 4)
    out = f(more, 0.3)
    assert out.trans.shape == (700, 3) and torch.isfinite(out.trans).all()
    # the original Gaussians move exactly as before (same nodes, same weights)
    f.on_gaussians_changed(means)
    ref = f(means, 0.3)
    assert torch.allclose(out.trans[:500], ref.trans, atol=1e-6)
    # forgetting to re-bind is caught: a different count re-binds automatically
    assert f(more[:600], 0.3).trans.shape == (600, 3) and f.bind_idx.shape == (600, 4)


def test_node_field_binds_each_point_set():
    """Query points of the same size as the bound set but elsewhere (cycle losses) get their own nodes."""
    means = _points(400)
    f = _make("nodes-dqb", means)
    _randomize(f, std=0.3)
    a = _points(100, seed=7)
    b = _points(100, seed=8)
    fresh = _make("nodes-dqb", means)
    fresh.load_state_dict(f.state_dict())
    f(means, 0.4)
    f(a, 0.4)
    got_b = f(b, 0.4)
    fresh.bind(b)
    ref_b = fresh(b, 0.4)
    assert torch.allclose(got_b.trans, ref_b.trans, atol=1e-6) and torch.allclose(got_b.rot, ref_b.rot, atol=1e-6)
    # and the Gaussians afterwards move as when bound to them
    assert torch.allclose(f(means, 0.4).trans, fresh(means, 0.4).trans, atol=1e-6)


def test_node_motion_matches_field_at_nodes():
    means = _points(800)
    f = _make("nodes-dqb", means)
    _randomize(f, std=0.3)
    rot, trans = f.node_motion(0.6)
    assert rot.shape == (32, 4) and trans.shape == (32, 3)
    posed_nodes = quat_rotate(rot, f.node_pos) + trans
    with torch.no_grad():
        f.log_radii.fill_(math.log(1e-3))  # one-hot weights: a Gaussian at a node moves with that node
    m = f(f.node_pos.clone(), 0.6)
    assert torch.allclose(quat_rotate(m.rot, f.node_pos) + m.trans, posed_nodes, atol=1e-5)
    assert torch.allclose(quat_to_matrix(m.rot), quat_to_matrix(rot), atol=1e-5)


def test_node_graph():
    f = _make("nodes-dqb", _points(800))
    edges, weights = f.node_graph()
    assert edges.shape == (32 * 8, 2) and weights.shape == (32 * 8,)
    assert (edges[:, 0] != edges[:, 1]).all()
    assert torch.allclose(torch.zeros(32).index_add_(0, edges[:, 0], weights), torch.ones(32), atol=1e-6)


def test_resample_nodes_adds_and_removes_and_remaps_optimizer():
    means = _points(1000)
    f = _make("nodes-latent-table", means)
    opt = torch.optim.Adam(f.param_groups(1e-2))
    _randomize(f)
    out = f(means, 0.3)
    (out.trans.square().sum() + out.rot.sum()).backward()
    opt.step()
    # a new region with high error, and the Gaussians of the old region partly removed
    new_region = _points(300, seed=3) * 0.2 + torch.tensor([3.0, 0.0, 0.0])
    kept = means[means[:, 0] < 0.0]
    means2 = torch.cat([kept, new_region])
    err = torch.cat([torch.zeros(len(kept)), torch.ones(len(new_region))])
    info = f.resample_nodes(means2, err, max_new=6)
    assert info["added"] == 6 and info["removed"] > 0
    assert f.num_nodes == 32 - info["removed"] + 6
    assert f.log_radii.shape == (f.num_nodes,) and f.node_table.shape[1] == f.num_nodes
    assert (f.node_pos[-6:, 0] > 2.0).all()
    assert f.bind_idx.shape == (len(means2), 4)
    f.remap_optimizer_state(opt, info)
    opt.zero_grad()
    out = f(means2, 0.3)
    (out.trans.square().sum() + out.rot.sum()).backward()
    opt.step()  # would raise on a shape mismatch
    assert torch.isfinite(f.log_radii).all()


@pytest.mark.parametrize("name", ["nodes-latent-table", "nodes-lbs", "mlp-latent", "mlp-ambient"])
def test_state_dict_roundtrip_into_fresh_field(name, tmp_path):
    means = _points(600)
    f = _make(name, means)
    _randomize(f, std=0.2)
    f.set_step(40)
    if isinstance(f, NodeDeformField):
        f.resample_nodes(means, torch.rand(600), max_new=3)
        with torch.no_grad():
            f.log_radii.add_(0.1)
    path = tmp_path / "f.pt"
    torch.save(f.state_dict(), path)
    g = _make(name, None)  # fresh: no nodes, other sizes
    g.load_state_dict(torch.load(path))
    for t, frame in ((0.25, None), (0.5, 2)):
        a, b = f(means, t, frame), g(means, t, frame)
        assert torch.equal(a.rot, b.rot) and torch.equal(a.trans, b.trans)
        assert (a.dscale is None) == (b.dscale is None)
    if isinstance(f, NodeDeformField):
        assert torch.equal(f.bind_idx, g.bind_idx) and torch.equal(f.node_pos, g.node_pos)
        assert torch.equal(f.node_graph()[0], g.node_graph()[0])


# ---- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    dict(kind="mlp", width=16, depth=3, pos_freqs=3, time_freqs=2),
    dict(kind="mlp", width=16, depth=3, pos_freqs=3, time_mode="latent", ambient_dims=2, ambient_width=8,
         ambient_depth=2, dscale=True),
    dict(kind="nodes", width=16, depth=3, pos_freqs=3, num_nodes=8, blend="dqb", dscale=True),
    dict(kind="nodes", width=16, depth=3, pos_freqs=3, num_nodes=8, blend="lbs"),
])
def test_field_gradients_match_finite_differences(case):
    means = _points(60, dtype=D64)
    f = field_config(**case).build(num_frames=4).double()
    if isinstance(f, NodeDeformField):
        f.init_nodes(means)
    _randomize(f, std=0.3)
    x = means[:6].clone().requires_grad_(True)
    if isinstance(f, NodeDeformField):
        f.bind(x)

    def fn(x):
        m = f(x, 0.3)
        out = [m.rot, m.trans] + ([m.dscale] if m.dscale is not None else [])
        return tuple(out)

    assert torch.autograd.gradcheck(fn, (x,), atol=1e-6)
    # and w.r.t. the parameters (a scalar of the output)
    params = [p for p in f.parameters() if p.requires_grad]
    m = f(x, 0.3)
    loss = (m.trans ** 2).sum() + (m.rot[:, 1:] ** 2).sum()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    if isinstance(f, NodeDeformField):  # the radii receive gradient
        assert grads[[i for i, p in enumerate(params) if p is f.log_radii][0]].abs().sum() > 0


def test_identity_init_fields_get_gradients():
    """The zero-initialised heads still receive gradient at the identity (training can start)."""
    means = _points(200)
    for name in ("mlp-pe", "nodes-dqb"):
        f = _make(name, means)
        m = f(means, 0.5)
        loss = ((quat_rotate(m.rot, means) + m.trans - means - 0.1) ** 2).sum()
        loss.backward()
        assert f.screw_head.weight.grad.abs().sum() > 0 and torch.isfinite(f.screw_head.weight.grad).all()


# ---- trainability -------------------------------------------------------------------------------
def _twist(x: torch.Tensor, t: torch.Tensor, k: float = 1.2) -> torch.Tensor:
    """Analytic twist about z: angle k * t * z (rad), plus a drift along x."""
    ang = k * t * x[:, 2]
    c, s = torch.cos(ang), torch.sin(ang)
    return torch.stack([c * x[:, 0] - s * x[:, 1] + 0.2 * t, s * x[:, 0] + c * x[:, 1], x[:, 2]], -1)


def _untwist(y: torch.Tensor, t: torch.Tensor, k: float = 1.2) -> torch.Tensor:
    y = y - torch.stack([0.2 * t, torch.zeros_like(t), torch.zeros_like(t)], -1)
    ang = -k * t * y[:, 2]
    c, s = torch.cos(ang), torch.sin(ang)
    return torch.stack([c * y[:, 0] - s * y[:, 1], s * y[:, 0] + c * y[:, 1], y[:, 2]], -1)


def test_mlp_field_can_be_fit_to_analytic_motion():
    torch.manual_seed(0)
    means = _points(1500)
    means[:, :2] *= 0.5
    f = MLPDeformField(MLPFieldConfig(pos_freqs=4, time_freqs=4, width=64, depth=4))
    opt = torch.optim.Adam(f.param_groups(3e-3))
    times = torch.linspace(0, 1, 6)
    base = torch.stack([(_twist(means, torch.full((1500,), float(t))) - means).square().sum(-1).mean()
                        for t in times]).mean()
    for it in range(300):
        t = float(times[it % len(times)])
        m = f(means, t)
        posed = quat_rotate(m.rot, means) + m.trans
        loss = (posed - _twist(means, torch.full((1500,), t))).square().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        errs = []
        for t in (0.1, 0.5, 0.9):  # includes times between the training times
            m = f(means, t)
            target = _twist(means, torch.full((1500,), t))
            errs.append((quat_rotate(m.rot, means) + m.trans - target).norm(dim=-1).mean())
    err = float(torch.stack(errs).mean())
    assert err < 0.1 * float(base.sqrt()), (err, float(base.sqrt()))


def test_backward_field_learns_inverse_of_known_motion():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    f = BackwardField(MLPFieldConfig(pos_freqs=4, time_freqs=4, width=64, depth=4))
    opt = torch.optim.Adam(f.param_groups(3e-3))
    for it in range(400):
        x = (torch.rand(1024, 3, generator=g) * 2 - 1) * torch.tensor([0.5, 0.5, 1.0])
        t = torch.rand(1024, generator=g)  # one time per point
        y = _twist(x, t)
        loss = (f.to_canonical(y, t) - x).square().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = (torch.rand(2000, 3, generator=g) * 2 - 1) * torch.tensor([0.5, 0.5, 1.0])
        t = torch.rand(2000, generator=g)
        y = _twist(x, t)
        err = (f.to_canonical(y, t) - x).norm(dim=-1).mean()
        disp = (y - x).norm(dim=-1).mean()
        assert torch.allclose(_untwist(y, t), x, atol=1e-5)  # the analytic inverse is right
    assert err < 0.1 * disp, (float(err), float(disp))

"""Motion losses: zero for identity / rigid motion, positive and decreasing under a gradient step otherwise."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dyngauss.deform.base import DeformField, Motion
from dyngauss.geometry.quaternion import quat_conjugate, quat_multiply, quat_rotate
from dyngauss.geometry.so3 import so3_exp_quat
from dyngauss.losses.background import background_loss
from dyngauss.losses.cycle import (canonical_cycle_loss, scene_flow_cycle, scene_flow_cycle_loss,
                                   transform_points)
from dyngauss.losses.elastic import deformation_jacobian, elastic_loss, elastic_loss_from_jacobian, field_warp_fn
from dyngauss.losses.flow import flow_loss
from dyngauss.losses.motion_config import MotionLossConfig, ramp_at, weight_at
from dyngauss.losses.rigidity import (arap_node_loss, isometry_loss, knn_neighbors, local_rigidity_loss,
                                      rotation_similarity_loss)
from dyngauss.losses.smoothness import acceleration_loss, field_trajectory_points

torch.manual_seed(0)
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def _gd_reduces(loss_fn, param: torch.Tensor, lr: float = 1e-2) -> tuple[float, float]:
    """Loss before and after one small gradient step on `param` (a leaf requiring grad)."""
    l0 = loss_fn()
    (g,) = torch.autograd.grad(l0, param)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with torch.no_grad():
        param -= lr * g / g.norm().clamp_min(1e-12)
    return float(l0.detach()), float(loss_fn().detach())


def _rand_quat(n: int, max_angle: float = 1.0) -> torch.Tensor:
    w = torch.randn(n, 3)
    w = w / w.norm(dim=-1, keepdim=True) * torch.rand(n, 1) * max_angle
    return so3_exp_quat(w)


# --------------------------------------------------------------------------------------------- toy fields

class RigidTimeField(DeformField):
    """Same rigid motion for every point: rotation about axis by omega*t, translation v*t."""

    def __init__(self, axis=(0.3, 0.5, 0.8), omega=1.2, v=(0.2, -0.1, 0.3)):
        super().__init__()
        a = torch.tensor(axis)
        self.axis = a / a.norm()
        self.omega = omega
        self.v = torch.tensor(v)

    def pose(self, t):
        q = so3_exp_quat(self.axis * self.omega * float(t))
        return q, self.v * float(t)

    def forward(self, means, t, frame=None):
        q, v = self.pose(t)
        n = means.shape[0]
        return Motion(q.expand(n, 4).clone(), v.expand(n, 3).clone())


class InverseRigidField(DeformField):
    """Posed -> canonical for RigidTimeField, optionally with a learnable translation error."""

    def __init__(self, fwd: RigidTimeField):
        super().__init__()
        self.fwd = fwd
        self.err = nn.Parameter(torch.zeros(3))

    def forward(self, points, t, frame=None):
        q, v = self.fwd.pose(t)
        qi = quat_conjugate(q)
        ti = -quat_rotate(qi, v) + self.err
        n = points.shape[0]
        return Motion(qi.expand(n, 4).clone(), ti.expand(n, 3).clone())


class StretchField(DeformField):
    """x -> R (diag(s) x) + t, i.e. rot = R, trans = R (diag(s) - I) x + t (a point-dependent translation)."""

    def __init__(self, s=(1.0, 1.0, 1.0), q=None):
        super().__init__()
        self.log_s = nn.Parameter(torch.log(torch.tensor(s)))
        self.q = torch.tensor([1.0, 0, 0, 0]) if q is None else q

    def forward(self, means, t, frame=None):
        n = means.shape[0]
        q = self.q.expand(n, 4)
        trans = quat_rotate(q, means * (torch.exp(self.log_s) - 1.0)) + 0.1
        return Motion(q.clone(), trans)


class TwistField(DeformField):
    """Rotation about z by k * z (point-dependent rotation)."""

    def __init__(self, k=0.7):
        super().__init__()
        self.k = k

    def forward(self, means, t, frame=None):
        ang = self.k * means[:, 2] * float(t)
        w = torch.stack([torch.zeros_like(ang), torch.zeros_like(ang), ang], -1)
        return Motion(so3_exp_quat(w), torch.zeros_like(means))


# --------------------------------------------------------------------------------------------- flow

def test_flow_loss_zero_positive_and_masked():
    H, W = 12, 16
    target = torch.randn(H, W, 2) * 3
    valid = torch.ones(H, W, dtype=torch.bool)
    valid[:, :4] = False
    alpha = torch.ones(H, W, 1)
    alpha[:3] = 0.1
    for kind in ("charbonnier", "l1"):
        assert float(flow_loss(target.clone(), target, valid, alpha, kind=kind)) < 1e-7
    # errors outside the valid mask or below the alpha threshold are ignored
    pred = target.clone()
    pred[:, :4] += 50.0
    pred[:3] += 50.0
    assert float(flow_loss(pred, target, valid, alpha)) < 1e-7
    # a real error inside counts, and a gradient step reduces it
    pred = (target + torch.randn(H, W, 2)).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: flow_loss(pred, target, valid, alpha), pred, lr=1.0)
    assert l0 > 0 and l1 < l0
    # pixel units vs normalised
    d = torch.zeros(H, W, 2)
    d[..., 0] = 2.0
    lp = flow_loss(target + d, target, kind="l1", normalize=False)
    assert abs(float(lp) - 2.0) < 1e-5
    assert abs(float(flow_loss(target + d, target, kind="l1")) - 2.0 / W) < 1e-6
    # nothing selected: zero but still differentiable
    z = flow_loss(pred, target, torch.zeros(H, W, dtype=torch.bool))
    assert float(z.detach()) == 0.0 and z.requires_grad


def test_weight_schedule():
    assert weight_at(0.5, 10_000, 0) == 0.5
    assert weight_at(0.0, 0, 100) == 0.0
    assert math.isclose(weight_at(1.0, 0, 100), 1.0)
    assert math.isclose(weight_at(1.0, 100, 100), 0.1, rel_tol=1e-9)
    assert math.isclose(weight_at(1.0, 200, 100), 0.01, rel_tol=1e-9)
    assert math.isclose(weight_at(1.0, 10_000, 100, final_fraction=0.05), 0.05)
    assert weight_at(1.0, -5, 100) == 1.0
    cfg = MotionLossConfig(flow_weight=2.0, flow_decay_steps=10)
    assert math.isclose(cfg.flow_weight_at(10), 0.2, rel_tol=1e-9)
    # the default depth weight acts only where the data has depth maps (motion.depth_missing=skip)
    assert not MotionLossConfig().any_enabled(depth_available=False) and cfg.any_enabled()
    assert MotionLossConfig().any_enabled(depth_available=True)
    assert MotionLossConfig(depth_missing="error").any_enabled(depth_available=False)  # to raise the error
    assert not MotionLossConfig(depth_weight=0.0).any_enabled()


def test_ramp_schedule():
    assert ramp_at(2.0, 99, 100, 50) == 0.0 and ramp_at(0.0, 500, 100, 50) == 0.0
    assert math.isclose(ramp_at(2.0, 100, 100, 50), 2.0 / 50)
    assert math.isclose(ramp_at(2.0, 124, 100, 50), 1.0)
    assert ramp_at(2.0, 149, 100, 50) == 2.0 and ramp_at(2.0, 10_000, 100, 50) == 2.0
    assert ramp_at(2.0, 100, 100, 0) == 2.0
    c = MotionLossConfig(rigidity_start=10, rigidity_ramp=10)
    assert [c.rigidity_scale_at(s) for s in (0, 9, 10, 14, 19, 30)] == [0.0, 0.0, 0.1, 0.5, 1.0, 1.0]


# --------------------------------------------------------------------------------------------- cycle

def test_canonical_cycle_zero_for_exact_inverse_and_decreases():
    fwd = RigidTimeField()
    bwd = InverseRigidField(fwd)
    mu = torch.randn(200, 3)
    t = 0.7
    posed = transform_points(fwd(mu, t), mu)
    for kind in ("l1", "l2", "l2sq"):
        assert float(canonical_cycle_loss(bwd, mu, posed, t, kind=kind).detach()) < 1e-5
    with torch.no_grad():
        bwd.err.copy_(torch.tensor([0.1, -0.2, 0.05]))
    l0, l1 = _gd_reduces(lambda: canonical_cycle_loss(bwd, mu, posed, t, kind="l2"), bwd.err, lr=0.05)
    assert l0 > 0.1 and l1 < l0


def test_scene_flow_cycle():
    fwd = RigidTimeField()
    bwd = InverseRigidField(fwd)
    x_t = torch.randn(100, 3)
    x2, back = scene_flow_cycle(fwd, bwd, x_t, 0.3, 0.6)
    assert float(scene_flow_cycle_loss(x_t, back).detach()) < 1e-5
    # x2 really is the point at t' (canonical via the exact inverse, then forward)
    q3, v3 = fwd.pose(0.3)
    c = quat_rotate(quat_conjugate(q3).expand(100, 4), x_t - v3)
    q6, v6 = fwd.pose(0.6)
    assert torch.allclose(x2, quat_rotate(q6.expand(100, 4), c) + v6, atol=1e-5)
    with torch.no_grad():
        bwd.err.copy_(torch.tensor([0.05, 0.0, -0.1]))

    def loss():
        _, b = scene_flow_cycle(fwd, bwd, x_t, 0.3, 0.6)
        return scene_flow_cycle_loss(x_t, b, kind="l2")
    l0, l1 = _gd_reduces(loss, bwd.err, lr=0.02)
    assert l0 > 0.05 and l1 < l0


# --------------------------------------------------------------------------------------------- rigidity

def test_arap_node_loss_rigid_zero_and_nonrigid_decreases():
    M = 30
    g = torch.randn(M, 3)
    _, idx = knn_neighbors(g, 4)
    edges = torch.stack([torch.arange(M)[:, None].expand_as(idx).reshape(-1), idx.reshape(-1)], -1)
    q = _rand_quat(1)[0]
    T = torch.tensor([0.3, -0.2, 0.5])
    rot = q.expand(M, 4).clone()
    world_t = T.expand(M, 3).clone()
    assert float(arap_node_loss(g, rot, world_t, edges)) < 1e-10
    # the same rigid motion in DynamicFusion's node convention: t_j = R g_j + T - g_j
    node_t = quat_rotate(rot, g) + T - g
    assert float(arap_node_loss(g, rot, node_t, edges, convention="node")) < 1e-10
    w = torch.rand(edges.shape[0])
    trans = (world_t + 0.1 * torch.randn(M, 3)).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: arap_node_loss(g, rot, trans, edges, w), trans, lr=0.05)
    assert l0 > 1e-3 and l1 < l0
    rot2 = _rand_quat(M).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: arap_node_loss(g, rot2, world_t, edges), rot2, lr=0.05)
    assert l0 > 1e-3 and l1 < l0


def test_gaussian_rigidity_losses():
    N = 300
    mu = torch.randn(N, 3)
    idx, w = knn_neighbors(mu, 6)
    assert idx.shape == (N, 6) and w.shape == (N, 6) and (w > 0).all() and (w <= 1).all()
    assert not (idx == torch.arange(N)[:, None]).any()
    ident = torch.tensor([1.0, 0, 0, 0]).expand(N, 4)
    # global rigid motion: all three are zero
    q = _rand_quat(1)[0].expand(N, 4)
    posed = quat_rotate(q, mu) + torch.tensor([0.5, 0.1, -0.3])
    assert float(local_rigidity_loss(mu, ident, posed, q, idx, w)) < 1e-5
    assert float(rotation_similarity_loss(ident, q, idx, w)) < 1e-5
    assert float(isometry_loss(mu, posed, idx, w)) < 1e-5
    # sign of the quaternion does not matter
    qs = q.clone()
    qs[::2] = -qs[::2]
    assert float(rotation_similarity_loss(ident, qs, idx, w)) < 1e-5
    # between two posed states (a = time t, b = time t'), also zero for a rigid motion between them
    q2 = _rand_quat(1)[0].expand(N, 4)
    posed2 = quat_rotate(q2, posed) - 0.2
    assert float(local_rigidity_loss(posed, q, posed2, quat_multiply(q2, q), idx, w)) < 1e-5
    # subsampled anchors
    anchors = torch.randperm(N)[:50]
    assert float(local_rigidity_loss(mu, ident, posed, q, idx, w, anchors=anchors)) < 1e-5
    # non-rigid: stretch -> positive, decreasing under a gradient step on the posed positions
    stretched = (mu * torch.tensor([1.5, 1.0, 1.0])).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: local_rigidity_loss(mu, ident, stretched, ident, idx, w), stretched, lr=0.5)
    assert l0 > 1e-2 and l1 < l0
    stretched = (mu * torch.tensor([1.5, 1.0, 1.0])).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: isometry_loss(mu, stretched, idx, w, anchors=anchors), stretched, lr=0.5)
    assert l0 > 1e-2 and l1 < l0
    rots = _rand_quat(N, 0.5).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: rotation_similarity_loss(ident, rots, idx, w), rots, lr=0.5)
    assert l0 > 1e-2 and l1 < l0
    # local rigidity: positions rigidly rotated but the Gaussians' rotations disagree -> positive
    assert float(local_rigidity_loss(mu, ident, posed, ident, idx, w)) > 1e-2


# --------------------------------------------------------------------------------------------- elastic

def test_deformation_jacobian_matches_analytic():
    x = torch.randn(20, 3)
    f = StretchField((1.5, 0.8, 1.0), q=_rand_quat(1)[0])
    J = deformation_jacobian(field_warp_fn(f, 0.5), x)
    from dyngauss.geometry.quaternion import quat_to_matrix
    R = quat_to_matrix(f.q)
    expect = R @ torch.diag(torch.tensor([1.5, 0.8, 1.0]))
    assert torch.allclose(J, expect.expand(20, 3, 3), atol=1e-5)
    # point-dependent rotation: compare with central finite differences (float64)
    tw = TwistField(0.9)
    xd = x.double()
    warp = field_warp_fn(tw, 1.0)
    J = deformation_jacobian(warp, xd)
    h = 1e-6
    fd = torch.stack([(warp(xd + h * e) - warp(xd - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)], -1)
    assert torch.allclose(J, fd, atol=1e-6)
    Jr = deformation_jacobian(warp, xd, method="jacrev")
    assert torch.allclose(J, Jr, atol=1e-9)


def test_elastic_loss_rigid_zero_stretch_positive_and_decreasing():
    x = torch.randn(64, 3)
    rigid = StretchField((1.0, 1.0, 1.0), q=_rand_quat(1)[0])
    assert float(elastic_loss(rigid, x, 0.5)) < 1e-8
    assert float(elastic_loss(rigid, x, 0.5, robust=False)) < 1e-8
    # the identity field, and a J with repeated singular values, give finite gradients
    J = torch.eye(3).expand(5, 3, 3).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(elastic_loss_from_jacobian(J), J)
    assert torch.isfinite(g).all()
    stretch = StretchField((1.3, 1.0, 0.9))
    for robust in (True, False):
        l0, l1 = _gd_reduces(lambda: elastic_loss(stretch, x, 0.5, robust=robust), stretch.log_s, lr=0.02)
        assert l0 > 1e-3 and l1 < l0
    # robust form saturates (bounded by 2) while the plain one grows
    big = StretchField((5.0, 1.0, 1.0))
    assert float(elastic_loss(big, x, 0.5)) <= 2.0
    assert float(elastic_loss(big, x, 0.5, robust=False)) > 2.0
    # the twist is locally non-rigid (shear) -> positive
    assert float(elastic_loss(TwistField(2.0), x, 1.0)) > 1e-3


# --------------------------------------------------------------------------------------------- background

def test_background_loss():
    mu = torch.randn(50, 3)
    static = torch.zeros(50, dtype=torch.bool)
    static[:20] = True
    posed = mu.clone()
    posed[20:] += 1.0  # dynamic points may move freely
    assert float(background_loss(mu, posed, static)) == 0.0
    moved = (posed + 0.1 * torch.randn(50, 3)).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: background_loss(mu, moved, static), moved, lr=0.05)
    assert l0 > 1e-3 and l1 < l0
    assert float(background_loss(mu, moved, torch.zeros(50, dtype=torch.bool))) == 0.0
    assert float(background_loss(mu, moved, static.float() * 0.5)) > 0  # soft weights
    # no flags: every point is static; l2 (Nerfies) is the norm, l2sq its square
    d = torch.zeros(50, 3)
    d[:, 0] = 0.3
    assert math.isclose(float(background_loss(mu, mu + d)), 0.3, rel_tol=1e-5)
    assert math.isclose(float(background_loss(mu, mu + d, kind="l2sq")), 0.09, rel_tol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        background_loss(mu, mu, kind="huber")


# --------------------------------------------------------------------------------------------- smoothness

def test_acceleration_loss():
    x = torch.randn(40, 3)
    v = torch.randn(40, 3)
    assert float(acceleration_loss(x - v, x, x + v)) < 1e-10
    assert float(acceleration_loss(x, x, x)) == 0.0
    xt = (x + 0.3 * torch.randn(40, 3)).requires_grad_(True)
    l0, l1 = _gd_reduces(lambda: acceleration_loss(x - v, xt, x + v), xt, lr=0.1)
    assert l0 > 1e-2 and l1 < l0
    assert math.isclose(float(acceleration_loss(x, x + 0.01, x, dt=0.1)), 3 * (0.02 / 0.01) ** 2, rel_tol=1e-4)
    # a constant-velocity field has no acceleration; the triple stays inside [0, 1]
    f = RigidTimeField(omega=0.0)
    a, b, c = field_trajectory_points(f, x, 0.999, 0.02)
    assert float(acceleration_loss(a, b, c)) < 1e-10
    f = RigidTimeField(omega=2.0)
    a, b, c = field_trajectory_points(f, x, 0.5, 0.05)
    assert float(acceleration_loss(a, b, c)) > 1e-6


# --------------------------------------------------------------------------------------------- real fields

def test_losses_run_on_the_project_fields():
    """Smoke test against the project's deformation fields (interfaces: Motion, node_motion, node_graph,
    backward field): finite values and gradients into the fields' parameters."""
    from dyngauss.deform.config import MLPFieldConfig, NodeFieldConfig

    mu = torch.randn(300, 3) * 0.5
    for kind in ("mlp", "nodes"):
        cfg = MLPFieldConfig(width=32, depth=2, backward=True) if kind == "mlp" else \
            NodeFieldConfig(width=32, depth=2, num_nodes=24, backward=True)
        f = cfg.build(5)
        if kind == "nodes":
            f.init_nodes(mu)
        with torch.no_grad():
            for p in f.screw_head.parameters():
                p.normal_(0, 0.02)
        bwd = cfg.build_backward(5)
        m = f(mu, 0.4)
        posed = transform_points(m, mu)
        ident = torch.tensor([1.0, 0, 0, 0]).expand(300, 4)
        idx, w = knn_neighbors(mu, 6)
        terms = [elastic_loss(f, mu[:64], 0.4), canonical_cycle_loss(bwd, mu, posed, 0.4),
                 local_rigidity_loss(mu, ident, posed, m.rot, idx, w),
                 rotation_similarity_loss(ident, m.rot, idx, w), isometry_loss(mu, posed, idx, w),
                 acceleration_loss(*field_trajectory_points(f, mu, 0.4, 0.05))]
        if kind == "nodes":
            q, tr = f.node_motion(0.4)
            edges, ew = f.node_graph()
            terms.append(arap_node_loss(f.node_pos, q, tr, edges, ew))
        total = sum(terms)
        assert all(torch.isfinite(x) for x in terms)
        total.backward()
        grads = [p.grad for p in f.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0

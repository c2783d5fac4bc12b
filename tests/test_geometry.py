"""Geometry: quaternions, SO(3)/SE(3) exp/log (incl. angles near 0 and pi), dual quaternions, KNN."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from dyngauss.geometry.dualquat import (dq_apply, dq_blend, dq_from_quat_trans, dq_multiply, dq_normalize,
                                        dq_to_quat_trans)
from dyngauss.geometry.knn import farthest_point_sample, knn, knn_self
from dyngauss.geometry.quaternion import (matrix_to_quat, quat_angle_between, quat_conjugate, quat_inverse,
                                          quat_multiply, quat_rotate, quat_slerp,
                                          quat_standardize, quat_to_matrix)
from dyngauss.geometry.se3 import (rigid_apply, rigid_compose, rigid_inverse, se3_exp, se3_exp_matrix, se3_log,
                                   se3_log_matrix)
from dyngauss.geometry.so3 import hat, so3_exp_matrix, so3_exp_quat, so3_left_jacobian, so3_log_matrix, \
    so3_log_quat, vee

D64 = torch.float64


def _rotvecs(n=400, seed=0, dtype=D64):
    """Random axis-angle vectors covering the whole range, plus angles near 0 and near pi."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=D64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    ang = torch.rand(n, generator=g, dtype=D64) * np.pi
    if n < 60:
        return (axis * ang[:, None]).to(dtype)
    ang[:40] = torch.tensor([0.0, 1e-12, 1e-9, 1e-7, 1e-5, 1e-3, 0.05, 0.2, 0.2236, 0.3] * 4, dtype=D64)
    ang[40:60] = np.pi - torch.logspace(-7, -1, 20, dtype=D64)
    return (axis * ang[:, None]).to(dtype)


def _to_wxyz(q_xyzw):
    return torch.as_tensor(q_xyzw)[..., [3, 0, 1, 2]]


# ---- quaternions ---------------------------------------------------------------------------------
def test_quaternion_ops_match_scipy():
    rng = np.random.default_rng(0)
    ra, rb = Rotation.random(200, random_state=1), Rotation.random(200, random_state=2)
    a, b = _to_wxyz(ra.as_quat()), _to_wxyz(rb.as_quat())
    v = torch.as_tensor(rng.normal(size=(200, 3)))
    # product: a ⊗ b applies b first
    assert torch.allclose(quat_standardize(quat_multiply(a, b)), quat_standardize(_to_wxyz((ra * rb).as_quat())),
                          atol=1e-12)
    assert torch.allclose(quat_to_matrix(a), torch.as_tensor(ra.as_matrix()), atol=1e-12)
    assert torch.allclose(quat_rotate(a, v), torch.as_tensor(ra.apply(v.numpy())), atol=1e-12)
    assert torch.allclose(quat_standardize(quat_conjugate(a)), quat_standardize(_to_wxyz(ra.inv().as_quat())),
                          atol=1e-12)
    assert torch.allclose(quat_inverse(3 * a), quat_conjugate(a) / 3, atol=1e-12)
    # matrix -> quat, including 180° rotations (all four branches)
    rots = list(ra.as_matrix()) + [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    R = torch.as_tensor(np.stack(rots))
    assert torch.allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)
    ang = quat_angle_between(a, b)
    assert torch.allclose(ang, torch.as_tensor((ra.inv() * rb).magnitude()), atol=1e-6)


def test_slerp_matches_scipy():
    from scipy.spatial.transform import Slerp

    r = Rotation.random(2, random_state=3)
    w = np.linspace(0, 1, 7)
    ref = _to_wxyz(Slerp([0, 1], r)(w).as_quat())
    q = _to_wxyz(r.as_quat())
    out = quat_slerp(q[:1].expand(7, 4), q[1:].expand(7, 4), torch.as_tensor(w))
    assert torch.allclose(quat_standardize(out), quat_standardize(ref), atol=1e-10)
    # identical endpoints
    assert torch.allclose(quat_slerp(q[:1], q[:1], 0.3), q[:1], atol=1e-12)


# ---- SO(3) -------------------------------------------------------------------------------------
def test_so3_exp_matches_scipy():
    w = _rotvecs()
    r = Rotation.from_rotvec(w.numpy())
    assert torch.allclose(quat_standardize(so3_exp_quat(w)), quat_standardize(_to_wxyz(r.as_quat())), atol=1e-12)
    assert torch.allclose(so3_exp_matrix(w), torch.as_tensor(r.as_matrix()), atol=1e-12)
    assert torch.allclose(so3_exp_quat(w).norm(dim=-1), torch.ones(len(w), dtype=D64), atol=1e-14)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-6)])
def test_so3_log_exp_roundtrip(dtype, tol):
    w = _rotvecs(dtype=dtype)
    ang = w.norm(dim=-1)
    ok = ang < np.pi - (1e-6 if dtype == torch.float64 else 1e-3)  # exactly at pi the axis sign is ambiguous
    for back in (so3_log_quat(so3_exp_quat(w)), so3_log_matrix(so3_exp_matrix(w))):
        assert (back[ok] - w[ok]).abs().max() < tol
        # near/at pi: same rotation, angle preserved (log(R) = ±w)
        assert torch.allclose(back.norm(dim=-1), ang, atol=tol * 10)
        assert torch.allclose(so3_exp_matrix(back.double()), so3_exp_matrix(w.double()), atol=tol * 10)
    # against scipy's log
    ref = torch.as_tensor(Rotation.from_rotvec(w.double().numpy()).as_rotvec())
    assert (so3_log_quat(so3_exp_quat(w)).double()[ok] - ref[ok]).abs().max() < tol


def test_so3_exp_log_roundtrip_from_rotations():
    r = Rotation.random(300, random_state=4)
    R = torch.as_tensor(r.as_matrix())
    assert torch.allclose(so3_exp_matrix(so3_log_matrix(R)), R, atol=1e-12)
    q = _to_wxyz(r.as_quat())
    assert torch.allclose(quat_standardize(so3_exp_quat(so3_log_quat(q))), quat_standardize(q), atol=1e-12)
    assert torch.allclose(so3_log_quat(-q), so3_log_quat(q), atol=1e-12)  # sign invariance


def test_hat_vee_left_jacobian():
    w = _rotvecs(50)
    v = torch.randn(50, 3, dtype=D64)
    assert torch.allclose(hat(w) @ v.unsqueeze(-1), torch.cross(w, v, dim=-1).unsqueeze(-1))
    assert torch.allclose(vee(hat(w)), w)
    # V(w) = integral_0^1 exp(s hat(w)) ds (numerically)
    s = torch.linspace(0, 1, 2001, dtype=D64)
    Rs = so3_exp_matrix(w[:5, None] * s[:, None])  # [5,S,3,3]
    V = torch.trapezoid(Rs, s, dim=1)
    assert torch.allclose(so3_left_jacobian(w[:5]), V, atol=1e-6)


def test_so3_gradients_finite_and_correct():
    g = torch.Generator().manual_seed(0)
    for w in (torch.zeros(3, 3, dtype=D64), 1e-6 * torch.randn(3, 3, generator=g, dtype=D64),
              torch.randn(4, 3, generator=g, dtype=D64), _rotvecs(80)[40:48]):
        w = w.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(so3_exp_quat, (w,))
        assert torch.autograd.gradcheck(so3_exp_matrix, (w,))
    for w in (1e-5 * torch.randn(3, 3, generator=g, dtype=D64), torch.randn(4, 3, generator=g, dtype=D64)):
        q = so3_exp_quat(w).requires_grad_(True)
        assert torch.autograd.gradcheck(so3_log_quat, (q,))
    q = torch.tensor([[1.0, 0, 0, 0]], dtype=D64, requires_grad=True)
    so3_log_quat(q).sum().backward()
    assert torch.isfinite(q.grad).all()


# ---- SE(3) -------------------------------------------------------------------------------------
def _screws(n=300, seed=0, dtype=D64):
    w = _rotvecs(n, seed, D64)
    v = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed + 1), dtype=D64)
    ok = w.norm(dim=-1) < np.pi - 1e-5
    return torch.cat([w, v], -1)[ok].to(dtype)


def test_se3_exp_matches_matrix_exponential():
    s = _screws(120)
    T = se3_exp_matrix(s)
    for i in range(len(s)):
        A = np.zeros((4, 4))
        A[:3, :3] = hat(s[i, :3]).numpy()
        A[:3, 3] = s[i, 3:].numpy()
        assert np.allclose(T[i].numpy(), scipy.linalg.expm(A), atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-8), (torch.float32, 5e-5)])
def test_se3_log_exp_roundtrip(dtype, tol):
    s = _screws(dtype=dtype)
    q, t = se3_exp(s)
    assert (se3_log(q, t) - s).abs().max() < tol
    assert (se3_log_matrix(se3_exp_matrix(s)) - s).abs().max() < tol
    # exp(log(T)) == T for random rigid transforms
    R = torch.as_tensor(Rotation.random(100, random_state=5).as_matrix()).to(dtype)
    tr = torch.randn(100, 3, dtype=dtype)
    q = matrix_to_quat(R)
    q2, t2 = se3_exp(se3_log(q, tr))
    assert torch.allclose(quat_to_matrix(q2), R, atol=tol) and torch.allclose(t2, tr, atol=tol * 10)


def test_se3_pure_translation_and_small_angles():
    s = torch.zeros(4, 6, dtype=D64)
    s[:, 3:] = torch.randn(4, 3, dtype=D64)
    s[1, :3] = 1e-9
    q, t = se3_exp(s)
    assert torch.allclose(t, s[:, 3:], atol=1e-8)
    assert torch.allclose(q[:, 0], torch.ones(4, dtype=D64))


def test_se3_gradcheck():
    g = torch.Generator().manual_seed(1)
    for s in (torch.zeros(3, 6, dtype=D64), 1e-6 * torch.randn(3, 6, generator=g, dtype=D64),
              torch.randn(4, 6, generator=g, dtype=D64), _screws(80)[:6]):
        s = s.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(se3_exp, (s,))
    q = so3_exp_quat(torch.randn(4, 3, generator=g, dtype=D64)).requires_grad_(True)
    t = torch.randn(4, 3, generator=g, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(se3_log, (q, t))


def test_rigid_helpers():
    q1, q2 = so3_exp_quat(torch.randn(2, 5, 3, dtype=D64))
    t1, t2 = torch.randn(2, 5, 3, dtype=D64)
    x = torch.randn(5, 3, dtype=D64)
    qc, tc = rigid_compose(q1, t1, q2, t2)
    assert torch.allclose(rigid_apply(qc, tc, x), rigid_apply(q1, t1, rigid_apply(q2, t2, x)))
    qi, ti = rigid_inverse(q1, t1)
    assert torch.allclose(rigid_apply(qi, ti, rigid_apply(q1, t1, x)), x)


# ---- dual quaternions -----------------------------------------------------------------------------
def test_dual_quaternion_roundtrip_and_ops():
    q = _to_wxyz(Rotation.random(50, random_state=6).as_quat())
    t = torch.randn(50, 3, dtype=D64)
    x = torch.randn(50, 3, dtype=D64)
    dq = dq_from_quat_trans(q, t)
    q2, t2 = dq_to_quat_trans(dq)
    assert torch.allclose(q2, q) and torch.allclose(t2, t)
    assert torch.allclose(dq_apply(dq, x), quat_rotate(q, x) + t)
    assert torch.allclose(dq_apply(-dq, x), quat_rotate(q, x) + t)  # antipodal = same transform
    # product = composition
    qb, tb = q.roll(1, 0), t.roll(1, 0)
    prod = dq_multiply(dq, dq_from_quat_trans(qb, tb))
    assert torch.allclose(dq_apply(prod, x), quat_rotate(q, quat_rotate(qb, x) + tb) + t)
    # normalisation of a scaled / perturbed dq
    n = dq_normalize(2.5 * dq + 1e-3 * torch.randn_like(dq))
    assert torch.allclose(n[:, :4].norm(dim=-1), torch.ones(50, dtype=D64))
    assert torch.allclose((n[:, :4] * n[:, 4:]).sum(-1), torch.zeros(50, dtype=D64), atol=1e-12)


def test_dual_quaternion_blend_sign_alignment():
    q = _to_wxyz(Rotation.random(1, random_state=7).as_quat()).expand(3, 4)
    t = torch.randn(1, 3, dtype=D64).expand(3, 3)
    dq = dq_from_quat_trans(q, t) * torch.tensor([1.0, -1.0, 1.0], dtype=D64)[:, None]  # one flipped
    out = dq_blend(dq, torch.tensor([0.2, 0.5, 0.3], dtype=D64))
    q2, t2 = dq_to_quat_trans(out)
    assert torch.allclose(quat_standardize(q2), quat_standardize(q[0])) and torch.allclose(t2, t[0])
    # without alignment the flipped one would cancel most of the sum: check alignment used the max weight
    ref = dq[1]
    out2 = dq_blend(dq, torch.tensor([0.2, 0.5, 0.3], dtype=D64), ref=ref)
    assert torch.allclose(dq_apply(out2, t), dq_apply(out, t))


# ---- KNN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["brute", "kdtree", "auto"])
def test_knn_matches_scipy(method):
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(3000, 3, generator=g)
    query = torch.rand(700, 3, generator=g)
    d2, idx = knn(query, ref, 8, method=method, chunk=128)
    dd, ii = cKDTree(ref.double().numpy()).query(query.double().numpy(), k=8)
    assert idx.dtype == torch.long and idx.shape == (700, 8) and d2.shape == (700, 8)
    assert (idx.numpy() == ii).mean() > 0.999  # ties in float32 aside
    assert np.allclose(d2.numpy(), dd ** 2, atol=1e-6)
    assert (d2[:, 1:] >= d2[:, :-1]).all()


def test_knn_differentiable_and_self():
    pts = torch.randn(200, 3, dtype=D64, requires_grad=True)
    d2, idx = knn(pts, pts, 4)
    assert (idx[:, 0] == torch.arange(200)).all() and (d2[:, 0] == 0).all()
    d2.sum().backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0
    d2s, idxs = knn_self(pts.detach(), 3)
    assert (idxs != torch.arange(200)[:, None]).all()
    assert torch.allclose(d2s, d2[:, 1:].detach())
    with pytest.raises(ValueError):
        knn(pts, pts, 0)


def test_knn_auto_uses_kdtree_for_large_problems(monkeypatch):
    import dyngauss.geometry.knn as K

    monkeypatch.setattr(K, "KDTREE_MIN_PAIRS", 1000)
    called = {}
    orig = K.knn_kdtree

    def spy(*a, **kw):
        called["yes"] = True
        return orig(*a, **kw)

    monkeypatch.setattr(K, "knn_kdtree", spy)
    ref = torch.rand(500, 3)
    d2, idx = K.knn(ref[:100], ref, 2)
    assert called and (idx[:, 0] == torch.arange(100)).all()


def test_farthest_point_sample_spreads():
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(2000, 3, generator=g) * 0.1, torch.rand(10, 3, generator=g) * 0.1 + 5.0])
    idx = farthest_point_sample(pts, 4)
    assert len(set(idx.tolist())) == 4
    assert (idx >= 2000).any()  # the far cluster is sampled early
    assert len(farthest_point_sample(pts[:3], 10)) == 3

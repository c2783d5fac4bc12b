"""Gaussian flow rendering and the motion metrics (flow EPE, track EPE) on toy models with known motion."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dyngauss.data.camera import Camera, viewmat_to_opengl_c2w
from dyngauss.deform.base import DeformField, Motion
from dyngauss.eval.motion import evaluate_motion, flow_epe, track_epe, track_epe_strided
from dyngauss.eval.plots import flow_to_color, save_flow_comparison, save_track_plot
from dyngauss.model.gaussians import Gaussians
from dyngauss.geometry.quaternion import quat_rotate
from dyngauss.geometry.so3 import so3_exp_quat
from dyngauss.render.flow import gaussian_flow_2d, render_flow
from dyngauss.model import DynamicGaussians

S = 32        # image size
F_PX = 30.0   # focal length (pixels)
Z = 4.0       # depth of the plane


# --------------------------------------------------------------------------------------------- toy models

class TranslateField(DeformField):
    """Every Gaussian translates by v * t."""

    def __init__(self, v):
        super().__init__()
        self.v = torch.as_tensor(v, dtype=torch.float32)

    def forward(self, means, t, frame=None):
        n = means.shape[0]
        return Motion(torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone(), (self.v * float(t)).expand(n, 3).clone())


class RigidSpinField(DeformField):
    """Rotation about z by omega * t about `center`, plus translation v * t (one SE(3) for all)."""

    def __init__(self, omega=1.5, v=(0.1, 0.2, -0.1), center=(0.0, 0.0, 0.0)):
        super().__init__()
        self.omega, self.v, self.c = omega, torch.tensor(v), torch.tensor(center)

    def forward(self, means, t, frame=None):
        n = means.shape[0]
        q = so3_exp_quat(torch.tensor([0.0, 0.0, self.omega * float(t)]))
        trans = self.c + self.v * float(t) - quat_rotate(q, self.c)
        return Motion(q.expand(n, 4).clone(), trans.expand(n, 3).clone())


class TrajectoryField(DeformField):
    """Reproduces given trajectories xyz [P,T,3] at times [T] exactly (linear interpolation in between);
    the canonical means must be the trajectories' first positions (row i = point i)."""

    def __init__(self, xyz, times):
        super().__init__()
        self.xyz = torch.as_tensor(xyz, dtype=torch.float32)
        self.times = torch.as_tensor(times, dtype=torch.float32)

    def forward(self, means, t, frame=None):
        assert means.shape[0] == self.xyz.shape[0]
        ts = self.times
        j = int(torch.searchsorted(ts, torch.tensor(float(t))).clamp(1, len(ts) - 1))
        a = float((float(t) - ts[j - 1]) / (ts[j] - ts[j - 1]))
        a = min(max(a, 0.0), 1.0)
        pos = (1 - a) * self.xyz[:, j - 1] + a * self.xyz[:, j]
        n = means.shape[0]
        return Motion(torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone(), pos - means)


def _model(points, field, opacity=0.99, scale=None):
    g = Gaussians.from_points(np.asarray(points, np.float32), None, init_opacity=opacity, sh_degree=0)
    if scale is not None:
        with torch.no_grad():
            g.params["scales"].fill_(math.log(scale))
    return DynamicGaussians(g, field)


def _front_cam(time=0.0) -> Camera:
    K = torch.tensor([[F_PX, 0, S / 2], [0, F_PX, S / 2], [0, 0, 1.0]])
    return Camera(K, torch.eye(4), S, S, time=time)  # at the origin looking along +z (OpenCV)


def _plane(n=40, half=3.0):
    """A dense grid of Gaussians on the plane z = Z covering more than the view."""
    u = np.linspace(-half, half, n)
    xx, yy = np.meshgrid(u, u)
    return np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, Z)], -1)


def _twist_tracks(P=300, T=9, seed=0):
    rng = np.random.default_rng(seed)
    rest = rng.uniform(-1, 1, (P, 3)) * np.array([0.3, 0.2, 1.0])
    times = np.linspace(0, 1, T)
    xyz = np.empty((P, T, 3))
    for j, t in enumerate(times):
        ang = 1.2 * t * rest[:, 2]
        c, s = np.cos(ang), np.sin(ang)
        xyz[:, j, 0] = c * rest[:, 0] - s * rest[:, 1] + 0.2 * t
        xyz[:, j, 1] = s * rest[:, 0] + c * rest[:, 1]
        xyz[:, j, 2] = rest[:, 2] + 0.1 * t * t
    return xyz.astype(np.float32), times.astype(np.float32)


# --------------------------------------------------------------------------------------------- flow rendering

def test_gaussian_flow_2d_matches_hand_computation():
    K = torch.tensor([[100.0, 0, 50], [0, 120.0, 40], [0, 0, 1]])
    V1 = torch.eye(4)
    V2 = torch.eye(4)
    V2[:3, 3] = torch.tensor([0.5, 0.0, 1.0])  # second camera: shifted
    c1, c2 = Camera(K, V1, 100, 80), Camera(K, V2, 100, 80)
    m1 = torch.tensor([[0.2, -0.1, 2.0], [0.0, 0.0, 5.0]])
    m2 = torch.tensor([[0.3, -0.1, 2.5], [0.0, 0.5, 5.0]])
    f = gaussian_flow_2d(m1, c1, m2, c2)
    # point 0: t: (100*0.2/2+50, 120*-0.1/2+40) = (60, 34); t': cam coords (0.8, -0.1, 3.5)
    exp0 = torch.tensor([100 * 0.8 / 3.5 + 50 - 60, 120 * -0.1 / 3.5 + 40 - 34])
    # point 1: t: (50, 40); t': cam coords (0.5, 0.5, 6)
    exp1 = torch.tensor([100 * 0.5 / 6, 120 * 0.5 / 6])
    assert torch.allclose(f, torch.stack([exp0, exp1]), atol=1e-4)
    # behind the camera -> 0, and no NaN
    f = gaussian_flow_2d(torch.tensor([[0.0, 0, -1.0]]), c1, torch.tensor([[0.0, 0, 2.0]]), c1)
    assert torch.equal(f, torch.zeros(1, 2))
    # gradients reach both poses
    a, b = m1.clone().requires_grad_(True), m2.clone().requires_grad_(True)
    gaussian_flow_2d(a, c1, b, c2).sum().backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_render_flow_constant_shift():
    v = torch.tensor([0.2, -0.1, 0.0])
    model = _model(_plane(), TranslateField(v), scale=0.06)
    cam = _front_cam()
    p0, p1 = model.pose(0.0), model.pose(1.0)
    m0, q0, s0, m1 = p0.means, p0.quats, p0.log_scales, p1.means
    f2d = gaussian_flow_2d(m0, cam, m1, cam)
    shift = torch.tensor([F_PX * 0.2 / Z, F_PX * -0.1 / Z])
    assert torch.allclose(f2d, shift.expand_as(f2d), atol=1e-5)
    flow, alpha = render_flow(model.gaussians, m0, q0, s0, cam, f2d, backend="torch")
    assert flow.shape == (S, S, 2) and alpha.shape == (S, S, 1)
    inside = alpha[..., 0] > 0.5
    assert inside.float().mean() > 0.95
    assert torch.allclose(flow[inside], shift.expand(int(inside.sum()), 2), atol=1e-4)
    # differentiable w.r.t. the posed means at t'
    m1g = m1.detach().clone().requires_grad_(True)
    fl, _ = render_flow(model.gaussians, m0, q0, s0, cam, gaussian_flow_2d(m0, cam, m1g, cam), backend="torch")
    fl[..., 0].sum().backward()
    assert m1g.grad[:, 0].abs().sum() > 0
    # one pass: flow as extra channels of the RGB render, normalised afterwards, is the same image
    from dyngauss.render.flow import normalize_flow

    out = model.render(cam, 0.0, features=f2d, backend="torch")
    assert torch.allclose(normalize_flow(out.features[0], out.alpha[0]), flow, atol=1e-6)


# --------------------------------------------------------------------------------------------- flow EPE

def _video(n=3):
    return [_front_cam(time=i / (n - 1)) for i in range(n)]


def _gt_plane_flow(v, cams):
    n = len(cams)
    dt = cams[1].time - cams[0].time
    flow = torch.zeros(n - 1, S, S, 2)
    flow[..., 0] = F_PX * v[0] * dt / Z
    flow[..., 1] = F_PX * v[1] * dt / Z
    valid = torch.zeros(n - 1, S, S, dtype=torch.bool)
    valid[:, 4:-4, 4:-4] = True
    return flow, valid


def test_flow_epe_exact_and_wrong():
    v = (0.4, 0.2, 0.0)
    cams = _video(3)
    gt, valid = _gt_plane_flow(v, cams)
    good = flow_epe(_model(_plane(), TranslateField(v), scale=0.06), cams, gt, valid, backend="torch")
    assert good["flow_epe_px"] < 1e-3 and len(good["flow_epe_per_frame"]) == 2
    assert good["flow_coverage"] > 0.99 and good["flow_num_valid"] == int(valid.sum())
    bad = flow_epe(_model(_plane(), TranslateField((0.0, 0.0, 0.0)), scale=0.06), cams, gt, valid, backend="torch")
    expect = math.hypot(F_PX * 0.4 * 0.5 / Z, F_PX * 0.2 * 0.5 / Z)
    assert abs(bad["flow_epe_px"] - expect) < 1e-3
    # subset of pairs and returned maps; cameras at another resolution are rescaled to the flow's size
    half = [c.scaled(0.5) for c in cams]
    sub = flow_epe(_model(_plane(), TranslateField(v), scale=0.06), half, gt, valid, backend="torch", frames=[1],
                   return_maps=True)
    assert sub["flow_pairs"] == [1] and sub["pred_flows"][0].shape == (S, S, 2) and sub["flow_epe_px"] < 1e-3
    with pytest.raises(ValueError):
        flow_epe(_model(_plane(), TranslateField(v)), cams[:2], gt, valid)


# --------------------------------------------------------------------------------------------- track EPE

def test_track_epe_exact_rigid_with_offsets():
    """Gaussians and track points are different points; the rigid motion must carry the offsets (rotations)."""
    rng = np.random.default_rng(0)
    gpts = rng.normal(size=(400, 3)) * 0.5
    field = RigidSpinField()
    P, T = 120, 7
    p0 = rng.normal(size=(P, 3)).astype(np.float32) * 0.5
    times = np.linspace(0, 1, T).astype(np.float32)
    xyz = np.stack([(quat_rotate(field(torch.zeros(P, 3), t).rot, torch.from_numpy(p0))
                     + field(torch.zeros(P, 3), t).trans).numpy() for t in times], 1)
    tracks = {"xyz_test": xyz, "times_test": times}
    for ref in (0, 3):
        res = track_epe(_model(gpts, field), tracks, split="test", ref_index=ref, k=4)
        assert res["track_epe"] < 1e-5 and res["track_within_1pct"] == 1.0
        assert res["track_epe_per_time"][ref] == 0.0
    # a static model of the same scene is wrong
    wrong = track_epe(_model(gpts, TranslateField((0, 0, 0))), tracks, split="test", k=4)
    assert wrong["track_epe"] > 0.1 and wrong["track_within_1pct"] < 0.2
    ext = float(np.linalg.norm(xyz.reshape(-1, 3).max(0) - xyz.reshape(-1, 3).min(0)))
    assert math.isclose(wrong["track_extent"], ext, rel_tol=1e-5)
    assert math.isclose(wrong["track_epe_rel"], wrong["track_epe"] / wrong["track_extent"], rel_tol=1e-9)
    with pytest.raises(KeyError):
        track_epe(_model(gpts, field), tracks, split="video")


def test_track_epe_trajectory_model():
    """Gaussians at the ground-truth points with a field that interpolates the ground-truth trajectories."""
    xyz, times = _twist_tracks()
    tracks = {"xyz_video": xyz, "times_video": times}
    good = track_epe(_model(xyz[:, 0], TrajectoryField(xyz, times)), tracks, split="video", k=4, return_pred=True)
    assert good["track_epe_rel"] < 1e-5 and good["track_within_1pct"] == 1.0
    assert good["pred"].shape == xyz.shape
    # a wrong field (shifted in time) gives a positive error
    shifted = np.concatenate([xyz[:, :1], xyz[:, :-1]], 1)
    bad = track_epe(_model(xyz[:, 0], TrajectoryField(shifted, times)), tracks, split="video", k=4)
    assert bad["track_epe_rel"] > 1e-3 and bad["track_within_1pct"] < 1.0


def test_track_epe_strided_averages_reference_times():
    """Strided queries: exact for the true motion; for a wrong one, the mean of track_epe over the reference
    times 0, stride, 2 stride, ... (computed here one reference at a time)."""
    xyz, times = _twist_tracks()
    tracks = {"xyz_video": xyz, "times_video": times}
    good = track_epe_strided(_model(xyz[:, 0], TrajectoryField(xyz, times)), tracks, stride=2)
    assert good["track_epe_strided_rel"] < 1e-5
    shifted = np.concatenate([xyz[:, :1], xyz[:, :-1]], 1)
    bad_model = _model(xyz[:, 0], TrajectoryField(shifted, times))
    bad = track_epe_strided(bad_model, tracks, stride=2)
    refs = list(range(0, len(times), 2))
    per = [track_epe(bad_model, tracks, ref_index=r)["track_epe"] for r in refs]
    assert bad["track_strided_ref_times"] == pytest.approx([float(times[r]) for r in refs])
    assert bad["track_epe_strided"] == pytest.approx(float(np.mean(per)), rel=1e-12)
    assert len(set(round(v, 9) for v in per)) > 1  # the reference time matters for a wrong motion
    with pytest.raises(ValueError, match="stride"):
        track_epe_strided(bad_model, tracks, stride=0)
    with pytest.raises(KeyError, match="no times"):
        track_epe_strided(bad_model, {"xyz_video": xyz}, stride=2)
    with pytest.raises(ValueError, match="poses for"):
        track_epe(bad_model, tracks, poses=[])


def test_track_epe_on_shared_twist(twist_path):
    from dyngauss.data.dnerf import load_tracks

    tr = load_tracks(twist_path)
    xyz, times = tr["xyz_video"].numpy(), tr["times_video"].numpy()
    res = track_epe(_model(xyz[:, 0], TrajectoryField(xyz, times)), tr, split="video", k=4)
    assert res["track_epe_rel"] < 1e-4 and res["track_within_1pct"] == 1.0
    static = track_epe(_model(xyz[:, 0], TranslateField((0, 0, 0))), tr, split="video", k=4)
    assert static["track_epe_rel"] > 0.01


def test_flow_epe_on_shared_twist(twist_path):
    """Gaussians riding the ground-truth tracks reproduce the ground-truth flow (conventions agree:
    pixel centres, direction, sign); a static model does not."""
    from dyngauss.data.dnerf import load_dnerf, load_tracks, load_video_gt

    tr, gt = load_tracks(twist_path), load_video_gt(twist_path)
    cams = load_dnerf(twist_path, "video", frames=[5, 6]).cameras
    xyz, times = tr["xyz_video"].numpy(), tr["times_video"].numpy()
    flow, valid = gt["flow"][5:6], gt["flow_valid"][5:6]
    good = flow_epe(_model(xyz[:, 0], TrajectoryField(xyz, times), scale=0.03), cams, flow, valid, backend="torch")
    bad = flow_epe(_model(xyz[:, 0], TranslateField((0, 0, 0)), scale=0.03), cams, flow, valid, backend="torch")
    assert good["flow_epe_px"] < 0.8 and bad["flow_epe_px"] > 2.0, (good["flow_epe_px"], bad["flow_epe_px"])


# --------------------------------------------------------------------------------------------- driver, plots

def _write_dataset(root, v, n=3):
    import cv2

    cams = _video(n)
    (root / "video").mkdir(parents=True)
    frames = []
    for i, c in enumerate(cams):
        cv2.imwrite(str(root / "video" / f"r_{i:03d}.png"), np.full((S, S, 3), 128, np.uint8))
        np.savez_compressed(root / "video" / f"depth_{i:03d}.npz", depth=np.full((S, S), Z, np.float32))
        frames.append({"file_path": f"video/r_{i:03d}", "time": c.time,
                       "transform_matrix": viewmat_to_opengl_c2w(c.viewmat.numpy()).tolist()})
    fov = 2 * math.atan(S / 2 / F_PX)
    (root / "transforms_video.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
    flow, valid = _gt_plane_flow(v, cams)
    for i in range(n - 1):
        np.savez_compressed(root / "video" / f"flow_{i:03d}.npz", flow=flow[i].numpy())
    np.savez_compressed(root / "video" / "flow_valid.npz", valid=valid.numpy())
    xyz, times = _twist_tracks(P=50, T=n)
    np.savez_compressed(root / "gt_tracks.npz", xyz_video=xyz, times_video=times)
    return xyz, times


def test_evaluate_motion_end_to_end(tmp_path):
    v = (0.4, -0.2, 0.0)
    data = tmp_path / "scene"
    _write_dataset(data, v)
    model = _model(_plane(), TranslateField(v), scale=0.06)
    plots = tmp_path / "plots"
    res = evaluate_motion(model, data, backend="torch", plots_dir=plots)
    for k in ("flow_epe_px", "track_epe", "track_epe_rel", "track_within_1pct", "track_within_5pct",
              "track_epe_strided", "track_epe_strided_rel"):
        assert k in res and res[k] is not None
    assert res["flow_epe_px"] < 1e-3 and res["track_split"] == "video"
    assert (plots / "tracks.png").is_file() and list(plots.glob("flow_*.png"))
    json.dumps(res)  # flat and serialisable
    # no ground truth at all -> keys present, values None
    empty = tmp_path / "empty"
    empty.mkdir()
    res = evaluate_motion(model, empty, backend="torch")
    assert all(res[k] is None for k in ("flow_epe_px", "track_epe", "track_epe_rel"))


def test_flow_to_color_and_plots(tmp_path):
    f = np.zeros((4, 4, 2), np.float32)
    assert np.allclose(flow_to_color(f, 1.0), 1.0)  # no motion = white
    f[..., 0] = 1.0
    assert np.allclose(flow_to_color(f, 1.0), [1.0, 0.0, 0.0], atol=1e-6)  # rightwards = red
    f[..., 0], f[..., 1] = -1.0, 0.0
    c = flow_to_color(f, 1.0)[0, 0]
    assert c[2] > 0.5 and c[0] < 0.5  # leftwards = cyan-ish
    assert flow_to_color(torch.zeros(3, 5, 2)).shape == (3, 5, 3)
    p = save_flow_comparison(tmp_path / "cmp.png", np.random.randn(8, 8, 2), np.random.randn(8, 8, 2),
                             np.ones((8, 8), bool))
    assert p.is_file() and p.stat().st_size > 1000
    xyz, _ = _twist_tracks(P=20, T=5)
    p = save_track_plot(tmp_path / "t.png", xyz, xyz + 0.01)
    assert p.is_file() and p.stat().st_size > 1000


def test_track_epe_of_a_static_model():
    """A static model (identity field: its pose is its own trainable parameters) scores the points' mean
    displacement from their first position, with the predictions returned as plain arrays."""
    from dyngauss.deform.base import IdentityField

    xyz, times = _twist_tracks()
    tracks = {"xyz_video": xyz, "times_video": times}
    out = track_epe(_model(xyz[:, 0], IdentityField()), tracks, split="video", k=1, return_pred=True)
    want = np.linalg.norm(xyz[:, 1:] - xyz[:, :1], axis=-1).mean()
    assert out["track_epe"] == pytest.approx(want, rel=1e-4)
    assert np.allclose(out["pred"], np.repeat(xyz[:, :1], xyz.shape[1], 1), atol=1e-5)

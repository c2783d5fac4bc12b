"""Axial twist error (dyngauss/eval/twist.py) against twists whose angles are known in closed form."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dyngauss.eval.twist import axial_twist_error


def _bar_surface(n: int = 3000, size=(0.5, 0.4, 1.6), seed: int = 0) -> np.ndarray:
    """Points on the four long sides of a box centred at the origin, long axis z."""
    rng = np.random.default_rng(seed)
    hx, hy, hz = (s / 2 for s in size)
    u = rng.uniform(-1, 1, (n, 2))
    side = rng.integers(0, 4, n)
    x = np.where(side < 2, np.where(side == 0, -hx, hx), u[:, 0] * hx)
    y = np.where(side < 2, u[:, 0] * hy, np.where(side == 2, -hy, hy))
    return np.stack([x, y, u[:, 1] * hz], 1)


def _twisted(rest: np.ndarray, rate: float, times: np.ndarray, rigid: Rotation, shift: np.ndarray) -> np.ndarray:
    """rest [P,3] twisted about z by rate * z * t (radians), then a rigid motion: [P,T,3]."""
    out = []
    for t in times:
        ang = rate * rest[:, 2] * t
        c, s = np.cos(ang), np.sin(ang)
        p = np.stack([c * rest[:, 0] - s * rest[:, 1], s * rest[:, 0] + c * rest[:, 1], rest[:, 2]], 1)
        out.append(rigid.apply(p) + shift)
    return np.stack(out, 1)


def test_recovers_known_twist_difference_under_a_rigid_motion():
    rest = _bar_surface()
    times = np.array([0.0, 0.5, 1.0])
    rigid, shift = Rotation.from_rotvec([0.4, -0.7, 0.2]), np.array([0.3, -0.1, 2.0])
    gt = _twisted(rest, 1.2, times, rigid, shift)
    pred = _twisted(rest, 0.5, times, rigid, shift)          # under-twists by 0.7 rad per unit length
    slices = 8
    err = axial_twist_error(pred, gt, rest[:, 2], slices)
    assert err.shape == (slices, 3)
    edges = np.linspace(rest[:, 2].min(), rest[:, 2].max(), slices + 1)     # independent of slice_edges
    for s in range(slices):
        zs = rest[(rest[:, 2] >= edges[s]) & (rest[:, 2] <= edges[s + 1]), 2]
        for j, t in enumerate(times):
            want = np.degrees(np.median((0.5 - 1.2) * zs * t))
            assert err[s, j] == pytest.approx(want, abs=0.6), (s, j)
    # sign: the top (z > 0) is turned less counter-clockwise than the truth, the bottom more
    assert err[-1, -1] < -20 and err[0, -1] > 20
    # the exact prediction has no twist error; swapping the roles flips the sign (the slice frames then come
    # from the other twist, hence the tolerance)
    assert np.abs(axial_twist_error(gt, gt, rest[:, 2], slices)).max() < 1e-9
    np.testing.assert_allclose(axial_twist_error(gt, pred, rest[:, 2], slices), -err, atol=0.6)


def test_ignores_errors_along_the_axis_and_rejects_bad_input():
    rest = _bar_surface(seed=1)
    gt = _twisted(rest, 1.0, np.array([1.0]), Rotation.identity(), np.zeros(3))
    pred = gt.copy()
    pred[..., 2] += 0.05                                     # slid along the axis, not turned
    # ~0 (a twisted slice's least-variance direction is only nearly the axis)
    assert np.abs(axial_twist_error(pred, gt, rest[:, 2], 4)).max() < 0.1
    pred[..., 0] += 0.05                                     # a sideways shift is not a twist either (median)
    assert np.abs(axial_twist_error(pred, gt, rest[:, 2], 4)).max() < 3.0
    with pytest.raises(ValueError, match="P,T,3"):
        axial_twist_error(pred[:, :, :2], gt[:, :, :2], rest[:, 2])
    with pytest.raises(ValueError, match="rest_coord"):
        axial_twist_error(pred, gt, rest[:10, 2])
    with pytest.raises(ValueError, match=">= 3 points"):
        axial_twist_error(pred[:5], gt[:5], rest[:5, 2], 4)


def test_eval_tool_twist_report(tmp_path, monkeypatch):
    """dyngauss eval --twist-slices: the table and RUN/twist_error.json from the track split's predictions."""
    import json

    import dyngauss.cli.eval as tool
    import dyngauss.data.dnerf as dnerf
    import dyngauss.eval.motion as motion

    rest = _bar_surface(600, seed=2)
    times = np.linspace(0.0, 1.0, 5)
    gt = _twisted(rest, 1.2, times, Rotation.identity(), np.zeros(3))
    pred = _twisted(rest, 0.6, times, Rotation.identity(), np.zeros(3))
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir(), run.mkdir()
    with pytest.raises(dnerf.DatasetError, match="gt_tracks"):
        tool._twist_report(None, data, run, 4, 2, {})
    (data / "gt_tracks.npz").write_bytes(b"")                 # present; its reading is replaced below
    monkeypatch.setattr(dnerf, "load_tracks", lambda path: {"rest_xyz": rest, "times_video": times})
    monkeypatch.setattr(motion, "track_epe", lambda model, tracks, split, return_pred: {"pred": pred, "gt": gt})
    text = tool._twist_report(None, data, run, 4, 2, {"track_split": "video"})
    saved = json.loads((run / "twist_error.json").read_text())
    np.testing.assert_allclose(saved["twist_error_deg"], axial_twist_error(pred, gt, rest[:, 2], 4))
    assert saved["split"] == "video" and len(saved["slice_edges"]) == 5
    top = saved["twist_error_deg"][-1][-1]
    assert top < -15 and f"{top:+7.1f}" in text.splitlines()[-1]

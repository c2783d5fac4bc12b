"""Nerfies' static-background loss: where the static points come from (points3d.ply, Nerfies points, masks),
and that the term, wired as the trainer uses it, keeps static points still."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dyngauss.data.camera import Camera, look_at_viewmat
from dyngauss.data.points import StaticPointsError, static_flags_from_masks, static_points
from dyngauss.io.ply import write_points_ply


def _cameras(names=("a", "b", "c"), size=32):
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]) * torch.tensor([[size / 32], [size / 32], [1]])
    return [Camera(K, look_at_viewmat((4 * math.cos(a), 4 * math.sin(a), 1.0)), size, size, name=n)
            for a, n in zip((0.0, 0.5, 1.0), names)]


# points at the origin are on the object (inside the masks), the others in the background
POINTS = np.array([[0.0, 0, 0], [0.0, 0, 0.05], [1.2, 0.0, 1.2], [-1.0, 1.2, -1.0]], np.float32)


def _object_mask(size: int) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    lo, hi = round(12 * size / 32), round(20 * size / 32)
    m[lo:hi, lo:hi] = 1.0
    return m


@pytest.mark.parametrize("mask_size", [32, 64])  # masks at the camera's size, or larger (scaled)
def test_static_flags_from_masks(mask_size):
    st = static_flags_from_masks(torch.from_numpy(POINTS), _cameras(), [_object_mask(mask_size)] * 3)
    assert st.tolist() == [False, False, True, True]


def test_static_points_sources(tmp_path):
    cams = _cameras()
    with pytest.raises(StaticPointsError, match="points3d.ply"):
        static_points(tmp_path, cams)
    # the loader's sparse points (Nerfies points.npy)
    pts, what = static_points(tmp_path, cams, points=POINTS)
    assert np.array_equal(pts, POINTS) and "4 static points" in what
    # points3d.ply wins over them
    write_points_ply(tmp_path / "points3d.ply", POINTS[2:], np.full((2, 3), 200, np.uint8))
    pts, _ = static_points(tmp_path, cams, points=POINTS[:1])
    assert np.allclose(pts, POINTS[2:])
    # with a masks/ folder, only points outside the moving objects stay; every frame needs its mask
    write_points_ply(tmp_path / "points3d.ply", POINTS, np.full((4, 3), 200, np.uint8))
    (tmp_path / "masks").mkdir()
    for c in cams[:2]:
        Image.fromarray((_object_mask(32) * 255).astype(np.uint8)).save(tmp_path / "masks" / f"{c.name}.png")
    with pytest.raises(StaticPointsError, match="'c'"):
        static_points(tmp_path, cams)
    Image.fromarray((_object_mask(32) * 255).astype(np.uint8)).save(tmp_path / "masks" / "c.png")
    pts, what = static_points(tmp_path, cams)
    assert np.allclose(pts, POINTS[2:]) and "masks" in what
    # every point on the object: nothing static is left
    write_points_ply(tmp_path / "points3d.ply", POINTS[:2], np.full((2, 3), 200, np.uint8))
    with pytest.raises(StaticPointsError, match="no static points"):
        static_points(tmp_path, cams)


def test_background_term_keeps_static_points_still(tmp_path):
    """MotionTerms' background term on a field that moves everything: optimising it brings the static points
    back to rest (gradients reach the field), and it is the only term when the other weights are 0."""
    from dyngauss.deform.config import MLPFieldConfig
    from dyngauss.losses.motion_config import MotionLossConfig
    from dyngauss.train.motion_terms import MotionTerms

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    static = (torch.rand(300, 3, generator=g) * 2 - 1).numpy()
    scene = SimpleNamespace(path=tmp_path, train=SimpleNamespace(cameras=[], meta={"points": static}),
                            frame_index=lambda t: None)
    terms = MotionTerms(MotionLossConfig(background_weight=1.0, background_samples=128), scene, tmp_path,
                        log=lambda *a: None)
    field = MLPFieldConfig(width=32, depth=3, time_freqs=2).build()
    with torch.no_grad():  # a field that moves: random output heads
        for p in field.screw_head.parameters():
            p.normal_(0, 0.3, generator=g)
    x = torch.from_numpy(static)

    def displacement() -> float:
        with torch.no_grad():
            return float(np.mean([float((_moved(field, x, t) - x).norm(dim=-1).mean()) for t in (0.1, 0.5, 0.9)]))

    before = displacement()
    opt = torch.optim.Adam(field.param_groups(3e-3))
    gaussians = SimpleNamespace(means=torch.zeros(10, 3))
    for it in range(150):
        t = float(torch.rand(1, generator=g))
        out = terms.losses(it, gaussians, field, None, t, None, None, None, None, None)
        assert set(out) == {"background"}
        opt.zero_grad()
        out["background"].backward()
        assert it > 0 or field.screw_head.weight.grad.abs().sum() > 0
        opt.step()
    after = displacement()
    assert before > 0.05 and after < 0.1 * before, (before, after)


def _moved(field, x: torch.Tensor, t: float) -> torch.Tensor:
    from dyngauss.geometry.quaternion import quat_normalize, quat_rotate

    m = field(x, t)
    return quat_rotate(quat_normalize(m.rot), x) + m.trans

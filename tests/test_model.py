"""DynamicGaussians: posing (against apply_motion written out), the one time -> frame rule, rendering, save/load,
and checkpoints written by dyngauss 0.1 (format version 1, fixtures in tests/data made by that release)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dyngauss.data.camera import Camera
from dyngauss.deform.base import DeformField, IdentityField, Motion
from dyngauss.geometry.quaternion import quat_multiply, quat_normalize, quat_rotate
from dyngauss.model import CheckpointError, DynamicGaussians, Gaussians
from dyngauss.model.checkpoint import CKPT_VERSION, read_checkpoint
from dyngauss.render.api import rasterize

DATA = Path(__file__).parent / "data"


class TwistField(DeformField):
    """x' = R_z(t * angle(x)) x + (0, 0, t): a rotation about z whose angle depends on the point, plus a lift;
    records the frame indices it was called with."""

    kind = "twist"

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.5))
        self.frames: list[int | None] = []

    def forward(self, means, t, frame=None):
        self.frames.append(frame)
        ang = float(t) * self.k * means[:, 2]
        rot = torch.stack([torch.cos(ang / 2), torch.zeros_like(ang), torch.zeros_like(ang), torch.sin(ang / 2)], -1)
        trans = torch.zeros_like(means)
        trans[:, 2] = float(t)
        return Motion(rot, trans, torch.full_like(means, 0.1 * float(t)))


def _gaussians(n=64, seed=0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g) - 0.5
    return Gaussians.from_points(pts.numpy(), torch.rand(n, 3, generator=g).numpy(), sh_degree=1)


def _camera(t=0.0, size=32) -> Camera:
    K = torch.tensor([[40.0, 0, size / 2], [0, 40.0, size / 2], [0, 0, 1]])
    V = torch.eye(4)
    V[2, 3] = 3.0
    return Camera(K, V, size, size, time=t)


def test_pose_is_the_field_motion_applied():
    g = _gaussians()
    m = DynamicGaussians(g, TwistField(), train_times=[0.0, 0.5, 1.0])
    p = m.pose(0.7)
    ang = 0.7 * 1.5 * g.means[:, 2]
    c, s = torch.cos(ang), torch.sin(ang)
    x, y, z = g.means.unbind(-1)
    want = torch.stack([c * x - s * y, s * x + c * y, z + 0.7], -1)
    assert torch.allclose(p.means, want, atol=1e-6)
    rot = torch.stack([torch.cos(ang / 2), 0 * ang, 0 * ang, torch.sin(ang / 2)], -1)
    assert torch.allclose(p.quats, quat_normalize(quat_multiply(rot, quat_normalize(g.quats))), atol=1e-6)
    assert torch.allclose(quat_rotate(p.rotations, g.means) + p.motion.trans, p.means, atol=1e-6)
    assert torch.allclose(p.log_scales, g.log_scales + 0.07, atol=1e-6)
    assert torch.equal(p.opacities, g.opacities) and torch.equal(p.sh, g.sh) and p.t == 0.7
    # gradients reach the field through the pose
    p.means.sum().backward()
    assert m.deform.k.grad is not None and float(m.deform.k.grad.abs()) > 0
    # undeformed: the canonical tensors themselves
    c0 = m.pose(0.7, deformed=False)
    assert c0.means is g.means and c0.motion is None
    assert torch.allclose(c0.rotations, torch.tensor([1.0, 0, 0, 0]).expand(len(g), 4))
    # a static model never calls a field
    st = DynamicGaussians(g, IdentityField()).pose(0.3)
    assert st.means is g.means and st.motion is None


def test_frame_index_one_rule():
    m = DynamicGaussians(_gaussians(4), TwistField(), train_times=[0.0, 0.25, 0.5, 1.0])
    assert [m.frame_index(t) for t in (0.0, 0.25, 0.5, 1.0)] == [0, 1, 2, 3]
    assert m.frame_index(0.25 + 5e-7) == 1 and m.frame_index(0.25 - 5e-7) == 1
    assert m.frame_index(0.25 + 5e-6) is None and m.frame_index(0.3) is None
    assert DynamicGaussians(_gaussians(4), TwistField()).frame_index(0.0) is None
    close = DynamicGaussians(_gaussians(4), TwistField(), train_times=[0.5, 0.5 + 1e-6])
    assert close.frame_index(0.5 + 0.9e-6) == 1  # the nearest of two within the tolerance
    # pose() looks the frame up itself; an explicit frame wins
    m.pose(0.25)
    m.pose(0.3)
    m.pose(0.3, frame=2)
    assert m.deform.frames == [1, None, 2]


def test_render_is_rasterize_of_the_pose():
    g = _gaussians()
    m = DynamicGaussians(g, TwistField())
    cam = _camera(0.4)
    with torch.no_grad():
        got = m.render(cam, 0.4, backend="torch", background=torch.ones(3))
        p = m.pose(0.4)
        want = rasterize(p.means, p.quats, torch.exp(p.log_scales), p.opacities, p.sh, cam, sh_degree=1,
                         background=torch.ones(3), backend="torch")
        other = m.render(cam, 0.9, backend="torch", background=torch.ones(3))
    assert torch.equal(got.rgb, want.rgb) and torch.equal(got.alpha, want.alpha)
    assert (got.alpha > 0.1).float().mean() > 0.05           # the object is in view
    assert (got.rgb - other.rgb).abs().max() > 0.05           # and moves with t


def test_save_load_roundtrip(tmp_path):
    from dyngauss.config import load_config

    cfg = load_config(None, ["deform.kind=mlp", "deform.width=16", "deform.depth=2", "model.sh_degree=1"])
    g = _gaussians()
    field = cfg.deform.build(num_frames=3, frame_times=[0.0, 0.5, 1.0])
    torch.manual_seed(3)
    with torch.no_grad():
        for prm in field.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
    m = DynamicGaussians(g, field, train_times=[0.0, 0.5, 1.0], config=cfg)
    path = m.save(tmp_path / "model.pt")
    back = DynamicGaussians.load(path)
    assert back.info.path == path and back.info.version == CKPT_VERSION and back.kind == "mlp"
    assert back.train_times == (0.0, 0.5, 1.0) and not back.training
    cam = _camera()
    with torch.no_grad():
        a = m.render(cam, 0.3, backend="torch")
        b = back.render(cam, 0.3, backend="torch")
    assert torch.equal(a.rgb, b.rgb)
    # a run folder: the newest checkpoint
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    m.save(tmp_path / "run" / "checkpoints" / "ckpt_000010.pt")
    m.info.step = 20
    m.save(tmp_path / "run" / "checkpoints" / "ckpt_000020.pt")
    assert DynamicGaussians.load(tmp_path / "run").info.step == 20


def test_unknown_checkpoint_version_is_named(tmp_path):
    payload = DynamicGaussians(_gaussians(8), IdentityField()).state_payload()
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"version 99 .*reads versions 1, 2"):
        DynamicGaussians.load(tmp_path / "future.pt")


@pytest.mark.parametrize("kind", ["mlp", "nodes"])
def test_version_1_checkpoint_loads_and_renders_as_before(kind):
    """A checkpoint written by dyngauss 0.1 (before the typed field configs) loads, upgraded, and renders the
    image that release rendered (reference saved beside it by the same release)."""
    path = DATA / f"ckpt_v1_{kind}.pt"
    raw = torch.load(path, weights_only=False)
    assert raw["version"] == 1
    m = DynamicGaussians.load(path)
    assert m.info.version == CKPT_VERSION and m.kind == kind and m.backward is not None
    assert read_checkpoint(path)["version"] == CKPT_VERSION
    ref = torch.load(DATA / f"ckpt_v1_{kind}_ref.pt", weights_only=False)
    cam = Camera(ref["K"], ref["viewmat"], ref["width"], ref["height"], time=ref["t"])
    with torch.no_grad():
        out = m.render(cam, ref["t"], frame=None, backend="torch")
    assert torch.allclose(out.rgb, ref["rgb"], atol=1e-5)

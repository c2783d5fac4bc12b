"""The torch reference rasterizer against hand computation and finite differences."""
from __future__ import annotations

import math

import pytest
import torch

from dyngauss.data.camera import Camera
from dyngauss.render import rasterize
from dyngauss.render.torch_reference import project_gaussians


def _cam(w=12, h=10, f=20.0, dtype=torch.float64):
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=dtype)
    return Camera(K, torch.eye(4), w, h)


def test_single_gaussian_hand_computed():
    """An isotropic Gaussian straight ahead: pixel values follow o*exp(-d^2/(2 s2)) with s2 = (f s/z)^2 + 0.3."""
    f, z, s, o = 20.0, 2.0, 0.05, 0.7
    cam = _cam(f=f)
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    scales = torch.full((1, 3), s, dtype=torch.float64)
    col = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)
    out = rasterize(means, quats, scales, torch.tensor([o], dtype=torch.float64), col, cam, backend="torch",
                    render_mode="RGB+D")
    var = (f * s / z) ** 2 + 0.3
    ext = 3 * math.sqrt(var)
    for row in range(10):
        for c in range(12):
            dx, dy = c + 0.5 - 6.0, row + 0.5 - 5.0
            a = min(0.99, o * math.exp(-0.5 * (dx * dx + dy * dy) / var))
            if abs(dx) > ext or abs(dy) > ext or a < 1 / 255:
                a = 0.0
            assert out.alpha[0, row, c, 0].item() == pytest.approx(a, abs=1e-12)
            assert out.rgb[0, row, c].tolist() == pytest.approx([a * 0.2, a * 0.5, a * 0.9], abs=1e-12)
            assert out.depth[0, row, c, 0].item() == pytest.approx(a * z, abs=1e-12)


def test_two_gaussians_front_to_back_order():
    """Nearer Gaussian occludes: w1 = a1, w2 = a2 (1 - a1), regardless of the input order."""
    cam = _cam()
    means = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    q = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    s = torch.full((2, 3), 0.2, dtype=torch.float64)
    o = torch.tensor([0.9, 0.6], dtype=torch.float64)
    col = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    out = rasterize(means, q, s, o, col, cam, backend="torch")
    # centre pixel (5,6) is 0.5 px off the mean in x and y: compute both alphas exactly
    m2, conics, _, _, _ = project_gaussians(means, q, s, cam.viewmat[None].double(), cam.K[None].double(), 12, 10)
    alphas = []
    for i in range(2):
        dx, dy = 6.5 - m2[0, i, 0].item(), 5.5 - m2[0, i, 1].item()
        a, b, c = conics[0, i].tolist()
        alphas.append(min(0.99, o[i].item() * math.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))))
    far, near = alphas
    expect_r = far * (1 - near)
    expect_g = near
    assert out.rgb[0, 5, 6, 0].item() == pytest.approx(expect_r, rel=1e-10)
    assert out.rgb[0, 5, 6, 1].item() == pytest.approx(expect_g, rel=1e-10)


def test_behind_camera_and_offscreen_are_culled():
    cam = _cam()
    means = torch.tensor([[0.0, 0.0, -2.0], [50.0, 0.0, 2.0], [0.0, 0.0, 0.005]], dtype=torch.float64)
    q = torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=torch.float64)
    s = torch.full((3, 3), 0.1, dtype=torch.float64)
    out = rasterize(means, q, s, torch.ones(3, dtype=torch.float64) * 0.9, torch.ones(3, 3, dtype=torch.float64),
                    cam, backend="torch")
    assert out.alpha.abs().max().item() == 0.0
    assert (out.info["radii"] == 0).all()


def test_early_termination():
    """Opaque layers at a pixel centre on their means: compositing stops before transmittance reaches 1e-4."""
    cam = _cam(w=11, h=9)  # principal point (5.5, 4.5) is the centre of pixel (row 4, col 5)
    n = 8
    means = torch.stack([torch.zeros(n), torch.zeros(n), torch.linspace(2, 3, n)], -1).double()
    q = torch.tensor([[1.0, 0, 0, 0]] * n, dtype=torch.float64)
    s = torch.full((n, 3), 0.5, dtype=torch.float64)
    out = rasterize(means, q, s, torch.full((n,), 0.95, dtype=torch.float64), torch.ones(n, 3, dtype=torch.float64),
                    cam, backend="torch")
    # T after k layers = 0.05^k: 5e-2, 2.5e-3, 1.25e-4, then 6.25e-6 <= 1e-4 -> layers 4..8 are dropped
    assert out.alpha[0, 4, 5, 0].item() == pytest.approx(1 - 0.05 ** 3, abs=1e-12)


def _random_scene(n=12, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.3 + torch.tensor([0, 0, 2.5], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.05
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.6 + 0.2
    cols = torch.rand(n, 3, generator=g, dtype=dtype)
    feats = torch.randn(n, 2, generator=g, dtype=dtype)
    return means, quats, scales, opac, cols, feats


def test_gradients_match_finite_differences():
    """Autograd of the dense reference equals central differences (float64) for every input."""
    cam = _cam(w=10, h=8, f=12.0)
    means, quats, scales, opac, cols, feats = _random_scene()
    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, cols, feats)]

    def f(m, q, s, o, c, ft):
        out = rasterize(m, q, s, o, c, cam, features=ft, render_mode="RGB+D", backend="torch",
                        background=torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64))
        w = torch.linspace(0.5, 1.5, out.rgb.numel(), dtype=torch.float64).reshape(out.rgb.shape)
        return (out.rgb * w).sum() + out.alpha.sum() + 0.1 * out.depth.sum() + (out.features * 0.7).sum()

    # the hard masks (extent box, alpha >= 1/255) are piecewise constant: eps small enough not to cross them
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-5, rtol=1e-4)


def test_tile_size_does_not_change_result():
    cam = _cam(w=37, h=29, f=30.0)
    means, quats, scales, opac, cols, _ = _random_scene(n=40, seed=3)
    a = rasterize(means, quats, scales, opac, cols, cam, backend="torch", tile_size=4)
    b = rasterize(means, quats, scales, opac, cols, cam, backend="torch", tile_size=64)
    assert torch.allclose(a.rgb, b.rgb, atol=1e-12) and torch.allclose(a.alpha, b.alpha, atol=1e-12)
    assert a.alpha.max() > 0.5  # the scene is actually visible


def test_sh_degree0_equals_rgb():
    from dyngauss.geometry.sh import rgb_to_sh0

    cam = _cam()
    means, quats, scales, opac, cols, _ = _random_scene(n=6)
    sh = torch.zeros(6, 16, 3, dtype=torch.float64)
    sh[:, 0] = rgb_to_sh0(cols)
    a = rasterize(means, quats, scales, opac, sh, cam, sh_degree=3, backend="torch")
    b = rasterize(means, quats, scales, opac, cols, cam, backend="torch")
    assert torch.allclose(a.rgb, b.rgb, atol=1e-12)


def test_sh_basis_against_scipy():
    """Our real SH basis equals scipy's complex SH combined into the real (3DGS sign) convention, degree <= 3."""
    import numpy as np
    from scipy.special import sph_harm_y

    from dyngauss.geometry.sh import sh_basis

    g = torch.Generator().manual_seed(0)
    d = torch.randn(20, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    ours = sh_basis(d, 3).numpy()
    x, y, z = d.numpy().T
    theta, phi = np.arccos(z), np.arctan2(y, x)
    col = 0
    for l in range(4):
        for m in range(-l, l + 1):
            Y = sph_harm_y(l, abs(m), theta, phi)
            if m < 0:
                real = np.sqrt(2) * (-1) ** m * Y.imag
            elif m == 0:
                real = Y.real
            else:
                real = np.sqrt(2) * (-1) ** m * Y.real
            # 3DGS uses the Condon-Shortley-free sign for odd m: compare up to a global sign per basis
            s = np.sign(np.dot(real, ours[:, col])) or 1.0
            np.testing.assert_allclose(ours[:, col], s * real, atol=1e-10)
            col += 1


def test_bad_shapes_raise():
    cam = _cam()
    m = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="quats"):
        rasterize(m, torch.zeros(3, 3), torch.ones(3, 3), torch.ones(3), torch.ones(3, 3), cam, backend="torch")
    with pytest.raises(ValueError, match="colors"):
        rasterize(m, torch.ones(3, 4), torch.ones(3, 3), torch.ones(3), torch.ones(2, 3), cam, backend="torch")
    with pytest.raises(ValueError, match="render_mode"):
        rasterize(m, torch.ones(3, 4), torch.ones(3, 3), torch.ones(3), torch.ones(3, 3), cam, render_mode="X")

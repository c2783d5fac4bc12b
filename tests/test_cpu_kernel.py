"""The C++ CPU rasterizer (kernels/cpu via dyngauss.render.cpu_backend) against the torch reference.

Bound used throughout (float64): for every compared tensor x (outputs and gradients),
    max|x_cpu - x_ref| / max(max|x_ref|, 1e-8) <= 1e-4,
i.e. the error relative to the largest reference magnitude of that tensor. (In practice the two agree to
~2e-15.) Gradients come from the same random linear loss on image and alpha in both backends.
"""
from __future__ import annotations

import math

import pytest
import torch

from dyngauss.data.camera import Camera, look_at_viewmat
from dyngauss.render import cpu_backend, rasterize
from dyngauss.render import torch_reference as ref

REL_TOL = 1e-4
F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def kernel():
    """Build (or load the cached) extension once; skip only when there is no compiler at all."""
    try:
        return cpu_backend.build_extension()
    except RuntimeError as e:
        if "no C++ compiler" in str(e):
            pytest.skip(str(e))
        raise


def rel_err(x: torch.Tensor, r: torch.Tensor) -> float:
    """max |x - r| / max(max |r|, 1e-8)."""
    assert x.shape == r.shape, (x.shape, r.shape)
    if r.numel() == 0:
        return 0.0
    x, r = x.double(), r.double()
    return ((x - r).abs().max() / r.abs().max().clamp_min(1e-8)).item()


def assert_close(x: torch.Tensor, r: torch.Tensor, name: str, tol: float = REL_TOL) -> None:
    err = rel_err(x, r)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.0e}"


# ---------------------------------------------------------------------------------------------- scenes

def pinhole(W: int, H: int, fov_deg: float = 60.0, dtype=F64) -> torch.Tensor:
    f = 0.5 * W / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def make_scene(N: int = 150, W: int = 40, H: int = 32, C: int = 1, D: int = 3, seed: int = 0, kind: str = "basic",
               dtype=F64) -> dict:
    """Random Gaussians in front of C cameras; `kind` adds the edge case under test."""
    g = torch.Generator().manual_seed(seed)

    def rand(*s):
        return torch.rand(*s, generator=g, dtype=dtype)

    z = 2.0 + 3.0 * rand(N)
    xy = (rand(N, 2) * 2 - 1) * 0.6 * z[:, None]
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = 0.02 + 0.25 * rand(N, 3)
    opac = 0.05 + 0.9 * rand(N)
    if kind == "behind":  # mix of behind the camera, between camera and near plane, and in front
        means[:, 2] = torch.linspace(-2.0, 4.0, N, dtype=dtype)
        means[: N // 4, 2] = 0.005  # 0 < z < near
    elif kind == "border":  # around the borders and outside the FOV (1.3x clamp active), some large
        means[:, :2] = (rand(N, 2) * 2 - 1) * 1.6 * z[:, None]
        scales[::3] *= 6.0
    elif kind == "scales":  # huge (cover the image) and tiny (eps2d dominates) Gaussians
        scales[::4] = 3.0 + rand((N + 3) // 4, 3)
        scales[1::4] = 1e-4 * (1 + rand(len(range(1, N, 4)), 3))
    elif kind == "opacity":  # exactly zero and saturating (min(0.99, .) clamp) opacities
        opac[::3] = 0.0
        opac[1::3] = 1.0
    elif kind == "dense":  # many opaque layers: early termination (T <= 1e-4) everywhere
        means[:, :2] *= 0.3
        scales = 0.3 + 0.3 * rand(N, 3)
        opac = 0.9 + 0.1 * rand(N)
    elif kind == "culled":  # everything behind the camera
        means[:, 2] = -z
    viewmats = torch.eye(4, dtype=dtype).repeat(C, 1, 1)
    for c in range(1, C):  # further cameras: small rotation about y and a shift
        a = 0.15 * c
        viewmats[c, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0],
                                            [-math.sin(a), 0, math.cos(a)]], dtype=dtype)
        viewmats[c, :3, 3] = torch.tensor([0.3 * c, -0.1 * c, 0.2], dtype=dtype)
    Ks = pinhole(W, H, dtype=dtype)[None].repeat(C, 1, 1)
    return {"means": means, "quats": quats, "scales": scales, "opacities": opac, "colors": rand(C, N, D),
            "viewmats": viewmats, "Ks": Ks, "W": W, "H": H}


def render_with(backend: str, s: dict, opac_per_camera: bool = False, tile_size: int = 16, seed: int = 1) -> dict:
    """Forward + backward of one backend; returns outputs and gradients of every input."""
    proj, rast = ((cpu_backend.project, cpu_backend.rasterize_pixels) if backend == "cpu"
                  else (ref.project_gaussians, ref.rasterize_pixels))
    names = ("means", "quats", "scales", "opacities", "colors")
    p = {k: s[k].clone().requires_grad_() for k in names}
    C = s["viewmats"].shape[0]
    opac = p["opacities"][None].expand(C, -1) * 1.0 if opac_per_camera else p["opacities"]
    m2, con, dep, ext, radii = proj(p["means"], p["quats"], p["scales"], s["viewmats"], s["Ks"], s["W"], s["H"],
                                    eps2d=0.3, near=0.01, far=1e10)
    m2.retain_grad()
    img, alpha = rast(m2, con, p["colors"], opac, dep, ext, s["W"], s["H"], tile_size)
    g = torch.Generator().manual_seed(seed)
    w_img = torch.rand(img.shape, generator=g, dtype=img.dtype) - 0.3
    w_alpha = torch.rand(alpha.shape, generator=g, dtype=img.dtype) - 0.3
    if img.requires_grad:
        ((img * w_img).sum() + (alpha * w_alpha).sum()).backward()
    out = {"img": img.detach(), "alpha": alpha.detach(), "means2d": m2.detach(), "conics": con.detach(),
           "depths": dep.detach(), "extents": ext, "radii": radii}
    zeros = {k: torch.zeros_like(v) for k, v in p.items()}
    out.update({f"d_{k}": (v.grad if v.grad is not None else zeros[k]) for k, v in p.items()})
    out["d_means2d"] = m2.grad if m2.grad is not None else torch.zeros_like(m2)
    return out


def compare(s: dict, **kw) -> dict:
    """Assert the CPU kernel matches the reference on every output and gradient; return the CPU result."""
    r, c = render_with("torch", s, **kw), render_with("cpu", s, **kw)
    assert torch.equal(c["radii"], r["radii"])
    for k in r:
        if k != "radii":
            assert_close(c[k], r[k], k)
    return c


# ------------------------------------------------------------------------------- kernel vs reference

@pytest.mark.parametrize("kind", ["basic", "behind", "border", "scales", "opacity", "dense", "culled"])
def test_matches_reference(kind):
    c = compare(make_scene(kind=kind, seed=sum(map(ord, kind))))
    if kind == "culled":
        assert c["img"].abs().max() == 0 and (c["radii"] == 0).all()
    elif kind != "dense":
        assert c["alpha"].max() > 0.1  # the scene really renders something


def test_early_termination_is_exercised():
    s = make_scene(kind="dense", N=120)
    c = compare(s)
    assert c["alpha"].max() > 1 - 2e-4  # transmittance reached the 1e-4 cut-off


@pytest.mark.parametrize("W,H", [(1, 1), (24, 20), (17, 33)])
def test_image_sizes(W, H):
    s = make_scene(N=60, W=W, H=H, seed=W * H)
    if W == 1:  # make sure something covers the single pixel
        s["means"][:10, :2] = 0.0
    compare(s)


def test_empty_scene():
    s = make_scene(N=0)
    c = compare(s)
    assert c["img"].shape == (1, 32, 40, 3) and c["img"].abs().max() == 0
    assert c["d_means"].shape == (0, 3)


@pytest.mark.parametrize("D", [1, 4, 7])  # 3 (RGB) is everywhere else
def test_channel_counts(D):
    compare(make_scene(D=D, seed=D))


def test_two_cameras_and_per_camera_opacities():
    s = make_scene(C=2, N=120, seed=5)
    compare(s)
    compare(s, opac_per_camera=True)


@pytest.mark.parametrize("tile_size", [5, 8, 64])
def test_tile_size_does_not_change_result(tile_size):
    s = make_scene(N=100, W=37, H=29, seed=3)
    a, b = render_with("cpu", s), render_with("cpu", s, tile_size=tile_size)
    assert torch.equal(a["img"], b["img"]) and torch.equal(a["alpha"], b["alpha"])
    for k in a:
        if k.startswith("d_"):
            assert_close(b[k], a[k], k, tol=1e-12)


def test_projection_gradients_of_all_outputs():
    """Upstream gradients on means2d, conics and depths of every entry (culled ones included), down to means,
    quats, scales and viewmats."""
    for kind in ("basic", "behind", "border", "scales"):
        s = make_scene(kind=kind, C=2, N=120, seed=11)
        grads = {}
        for name, proj in (("ref", ref.project_gaussians), ("cpu", cpu_backend.project)):
            p = [s[k].clone().requires_grad_() for k in ("means", "quats", "scales", "viewmats")]
            m2, con, dep, ext, radii = proj(*p, s["Ks"], s["W"], s["H"], eps2d=0.3, near=0.01, far=1e10)
            g = torch.Generator().manual_seed(2)
            loss = sum((t * (torch.rand(t.shape, generator=g, dtype=F64) - 0.5)).sum() for t in (m2, con, dep))
            loss.backward()
            grads[name] = [m2, con, dep, ext, radii] + [t.grad for t in p]
        names = ["means2d", "conics", "depths", "extents", "radii", "d_means", "d_quats", "d_scales", "d_viewmats"]
        for n, c, r in zip(names, grads["cpu"], grads["ref"]):
            assert_close(c.detach(), r.detach(), f"{kind}/{n}")


def test_unnormalised_and_tiny_quaternions():
    s = make_scene(N=80, seed=4)
    s["quats"] = s["quats"] * torch.linspace(1e-3, 50.0, 80, dtype=F64)[:, None]
    compare(s)


def test_float32_close_to_reference():
    s = make_scene(N=150, seed=9, dtype=torch.float32)
    r, c = render_with("torch", s), render_with("cpu", s)
    for k in ("img", "alpha", "d_means", "d_colors", "d_opacities"):
        assert c[k].dtype == torch.float32
        assert_close(c[k], r[k], k)  # agree to ~1e-6 in practice


def test_deterministic_across_thread_counts():
    s = make_scene(N=200, W=64, H=48, seed=6)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = render_with("cpu", s)
        torch.set_num_threads(max(2, n))
        b = render_with("cpu", s)
    finally:
        torch.set_num_threads(n)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_inference_forward_matches_training_forward():
    """Without autograd the forward pass skips its contribution log; the images must not change."""
    s = make_scene(N=120, seed=12)
    with torch.no_grad():
        m2, con, dep, ext, _ = cpu_backend.project(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"],
                                                   s["W"], s["H"])
        img, alpha = cpu_backend.rasterize_pixels(m2, con, s["colors"], s["opacities"], dep, ext, s["W"], s["H"])
    c = render_with("cpu", s)
    assert torch.equal(img, c["img"]) and torch.equal(alpha, c["alpha"])


def test_render_entry_point_and_info():
    s = make_scene(C=2, N=50, seed=8)
    means = s["means"].clone().requires_grad_()
    img, alpha, info = cpu_backend.render(means, s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"],
                                          s["Ks"], s["W"], s["H"], near=0.01, far=1e10, eps2d=0.3)
    assert img.shape == (2, 32, 40, 3) and alpha.shape == (2, 32, 40, 1)
    assert info["radii"].dtype == torch.int32 and info["radii"].shape == (2, 50, 2)
    assert info["depths"].shape == (2, 50) and info["conics"].shape == (2, 50, 3)
    img.sum().backward()
    assert info["means2d"].grad is not None and info["means2d"].grad.shape == (2, 50, 2)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNGAUSS_CACHE", str(tmp_path))
    assert cpu_backend.cache_dir() == tmp_path / "kernels"
    assert cpu_backend.is_available()


def test_missing_compiler_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler found.*install g\\+\\+"):
        cpu_backend._check_toolchain()


# ----------------------------------------------------------------------------- through the public API

def api_cameras(n: int, W: int = 36, H: int = 28) -> list[Camera]:
    cams = []
    for i in range(n):
        eye = (3.0 * math.cos(0.4 * i), 3.0 * math.sin(0.4 * i), 1.0)
        cams.append(Camera(pinhole(W, H, 55.0, torch.float32), torch.as_tensor(look_at_viewmat(eye)), W, H))
    return cams


def api_render(backend: str, params: dict, cams: list[Camera], **kw):
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    out = rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["sh"], cams, backend=backend,
                    features=p["features"], **kw)
    g = torch.Generator().manual_seed(3)
    loss = 0.0
    for t in (out.rgb, out.alpha, out.depth, out.features):
        if t is not None:
            loss = loss + (t * torch.rand(t.shape, generator=g, dtype=t.dtype)).sum()
    loss.backward()
    return out, {k: v.grad for k, v in p.items()}


def test_api_empty_scene_shows_background():
    z = torch.zeros(0, 3, dtype=F64)
    out = rasterize(z, torch.zeros(0, 4, dtype=F64), z, torch.zeros(0, dtype=F64), z, api_cameras(1),
                    backend="cpu", background=torch.tensor([0.2, 0.4, 0.6], dtype=F64), render_mode="RGB+ED")
    assert out.alpha.abs().max() == 0 and out.info["radii"].shape == (1, 0, 2)
    assert torch.allclose(out.rgb, torch.tensor([0.2, 0.4, 0.6], dtype=F64).expand_as(out.rgb))


@pytest.mark.parametrize("mode,n_cams", [("RGB+ED", 1), ("RGB+D", 2)])
def test_api_cpu_matches_torch(mode, n_cams):
    g = torch.Generator().manual_seed(7)
    N = 120
    params = {
        "means": (torch.rand(N, 3, generator=g, dtype=F64) * 2 - 1) * 0.8,
        "quats": torch.randn(N, 4, generator=g, dtype=F64),
        "scales": 0.03 + 0.12 * torch.rand(N, 3, generator=g, dtype=F64),
        "opacities": 0.1 + 0.85 * torch.rand(N, generator=g, dtype=F64),
        "sh": 0.3 * torch.randn(N, 16, 3, generator=g, dtype=F64),
        "features": torch.randn(N, 2, generator=g, dtype=F64),
    }
    cams = api_cameras(n_cams)
    kw = {"sh_degree": 3, "render_mode": mode, "background": torch.tensor([1.0, 1.0, 1.0], dtype=F64)}
    r, rg = api_render("torch", params, cams, **kw)
    c, cg = api_render("cpu", params, cams, **kw)
    assert c.info["backend"] == "cpu" and r.info["backend"] == "torch"
    for k in ("rgb", "alpha", "depth", "features"):
        assert_close(getattr(c, k).detach(), getattr(r, k).detach(), k)
    assert torch.equal(c.info["radii"], r.info["radii"])
    assert_close(c.info["means2d"].grad, r.info["means2d"].grad, "info.means2d.grad")
    for k in params:
        assert cg[k] is not None and cg[k].abs().max() > 0, k
        assert_close(cg[k], rg[k], f"d_{k}")

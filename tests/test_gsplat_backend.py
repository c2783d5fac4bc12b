"""gsplat (CUDA) backend parity with the C++ CPU kernel and the torch reference; the CUDA tests skip without CUDA.

Stated tolerances (the reference bins a Gaussian to its 3-sigma box, gsplat to whole 16-pixel tiles with an
opacity-aware extent, and the CUDA kernels sum gradients in another order, in float32):
images (colour, alpha, features, depth) within 2e-2 of max(1, the channel's largest magnitude), expected
depth where both alphas exceed 0.5; every parameter gradient within 5% of that
gradient's largest magnitude (+1e-4); screen-space mean gradients (what densification reads) likewise.
The comparison helpers also run on the CPU (C++ kernel vs torch reference), so the test code itself is
exercised by CI.
"""
from __future__ import annotations

import pytest
import torch

from dyngauss.data.camera import Camera, intrinsics_from_fov, look_at_viewmat
from dyngauss.render import rasterize

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (gsplat)")
IMG_RTOL = 2e-2
GRAD_RTOL = 5e-2


def _scene(n: int = 300, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"means": torch.randn(n, 3, generator=g) * 0.4, "quats": torch.randn(n, 4, generator=g),
            "scales": torch.rand(n, 3, generator=g) * 0.05 + 0.01, "opac": torch.rand(n, generator=g) * 0.8 + 0.1,
            "sh": torch.randn(n, 16, 3, generator=g) * 0.3, "feats": torch.randn(n, 2, generator=g)}


def _cameras(w: int = 64, h: int = 48) -> list[Camera]:
    return [Camera(intrinsics_from_fov(0.8, w, h), look_at_viewmat(e), w, h)
            for e in ([0, -3, 1], [2, -2, 0.5], [-1.5, 2.5, -0.5])]


def _render(scene: dict, backend: str, device: str, mode: str) -> tuple:
    """Render the scene into three cameras; return (output, {name: grad}, means2d grad) after one backward."""
    args = {k: v.detach().clone().to(device).requires_grad_(True) for k, v in scene.items()}
    out = rasterize(args["means"], args["quats"], args["scales"], args["opac"], args["sh"],
                    [c.to(device) for c in _cameras()], sh_degree=3, features=args["feats"], render_mode=mode,
                    background=torch.ones(3, device=device), backend=backend)
    w = torch.linspace(0.5, 1.5, out.rgb.numel(), device=device).view_as(out.rgb)  # a non-uniform loss
    loss = (out.rgb * w).sum() + out.features.square().sum() + out.alpha.sum()
    if out.depth is not None:
        loss = loss + 0.1 * out.depth.sum()
    loss.backward()
    m2d = out.info["means2d"]
    return out, {k: a.grad.cpu() for k, a in args.items()}, (m2d.grad.cpu() if m2d.grad is not None else None)


def _assert_same(a: tuple, b: tuple) -> None:
    (oa, ga, ma), (ob, gb, mb) = a, b
    for name in ("rgb", "alpha", "features", "depth"):
        x, y = getattr(oa, name), getattr(ob, name)
        assert (x is None) == (y is None), name
        if x is not None:
            x, y = x.detach().cpu(), y.detach().cpu()
            if name == "depth":  # expected depth is ill-defined where little was drawn
                keep = (oa.alpha.detach().cpu() > 0.5) & (ob.alpha.detach().cpu() > 0.5)
                x, y = x[keep], y[keep]
            err, tol = (x - y).abs().max().item(), IMG_RTOL * max(1.0, x.abs().max().item())
            assert err < tol, f"{name}: max abs difference {err:.3g} > {tol:.3g}"
    for k in ga:
        tol = GRAD_RTOL * ga[k].abs().max().item() + 1e-4
        err = (ga[k] - gb[k]).abs().max().item()
        assert err < tol, f"grad {k}: max abs difference {err:.3g} > {tol:.3g}"
    assert ma is not None and mb is not None and ma.shape == mb.shape
    tol = GRAD_RTOL * ma.abs().max().item() + 1e-6
    assert (ma - mb).abs().max().item() < tol, "means2d grad"


@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_parity_helpers_on_cpu(mode):
    """The same comparison as the CUDA tests, C++ kernel vs torch reference (both on the CPU)."""
    from dyngauss.render.api import cpu_kernel_available

    if not cpu_kernel_available():
        pytest.skip("C++ CPU kernel not built")
    s = _scene()
    _assert_same(_render(s, "torch", "cpu", mode), _render(s, "cpu", "cpu", mode))
    # and the helper notices a real difference: a shifted scene is not 'the same'
    moved = dict(s, means=s["means"] + torch.tensor([0.05, 0.0, 0.0]))
    with pytest.raises(AssertionError):
        _assert_same(_render(s, "torch", "cpu", mode), _render(moved, "cpu", "cpu", mode))


def test_gsplat_refuses_cpu_tensors():
    from dyngauss.render import gsplat_backend

    with pytest.raises(RuntimeError, match="CUDA"):
        gsplat_backend.render(torch.zeros(1, 3), torch.ones(1, 4), torch.ones(1, 3), torch.ones(1),
                              torch.ones(1, 1, 3), torch.eye(4)[None], torch.eye(3)[None], 4, 4)


@needs_cuda
@pytest.mark.parametrize("ref", ["torch", "cpu"])
@pytest.mark.parametrize("mode", ["RGB", "RGB+D", "RGB+ED"])
def test_gsplat_matches_cpu_paths(mode, ref):
    """Images, depth, feature channels and all gradients (SH degree 3, three cameras in one batch)."""
    from dyngauss.render.api import cpu_kernel_available

    if ref == "cpu" and not cpu_kernel_available():
        pytest.skip("C++ CPU kernel not built")
    s = _scene()
    a, b = _render(s, ref, "cpu", mode), _render(s, "gsplat", "cuda", mode)
    _assert_same(a, b)
    assert b[0].info["backend"] == "gsplat"
    # radii (densification reads them): gsplat's rule from the reference's 2D covariance, i.e.
    # ceil(min(3.33, sqrt(2 ln(255 opacity))) * sigma) per axis (the reference itself uses 3 sigma)
    ra, rb = a[0].info["radii"].cpu(), b[0].info["radii"].cpu()
    assert ra.shape == rb.shape
    con = a[0].info["conics"].detach().cpu()
    det = con[..., 0] * con[..., 2] - con[..., 1] ** 2
    sigma = torch.stack([con[..., 2] / det, con[..., 0] / det], -1).sqrt()
    extend = torch.sqrt(2 * torch.log(255 * s["opac"])).clamp(max=3.33)[None, :, None]
    expect = torch.ceil(extend * sigma)
    both = (ra > 0).all(-1) & (rb > 0).all(-1)
    assert both.float().mean() > 0.5
    assert ((ra > 0).all(-1) != (rb > 0).all(-1)).float().mean() < 0.05  # off-screen culling at the borders
    assert (rb[both] - expect[both]).abs().max() <= 1


@needs_cuda
def test_gsplat_packed_matches_dense():
    """Packed mode (large scenes): same images and gradients; gaussian_ids tells the strategies it is packed."""
    from dyngauss.render import gsplat_backend

    s = _scene(n=500, seed=1)
    cams = _cameras()
    from dyngauss.data.camera import stack_cameras

    viewmats, Ks, W, H = stack_cameras(cams)
    res = {}
    for packed in (False, True):
        p = {k: v.cuda().requires_grad_(True) for k, v in s.items()}
        vals = torch.cat([p["sh"][:, 0], p["feats"]], -1)[None].expand(len(cams), -1, -1).contiguous()
        img, alpha, info = gsplat_backend.render(p["means"], p["quats"], p["scales"], p["opac"], vals,
                                                 viewmats.cuda(), Ks.cuda(), W, H, packed=packed)
        (img.square().sum() + alpha.sum()).backward()
        res[packed] = (img.detach().cpu(), alpha.detach().cpu(), {k: p[k].grad.cpu() for k in p if k != "sh"},
                       info)
    (i0, a0, g0, info0), (i1, a1, g1, info1) = res[False], res[True]
    assert info0["gaussian_ids"] is None and info1["gaussian_ids"] is not None
    assert info1["means2d"].shape[0] == info1["gaussian_ids"].shape[0]  # [nnz, 2]
    assert torch.allclose(i0, i1, atol=1e-4) and torch.allclose(a0, a1, atol=1e-4)
    for k in g0:
        assert torch.allclose(g0[k], g1[k], atol=1e-4 * g0[k].abs().max().item() + 1e-6), k


@needs_cuda
@pytest.mark.parametrize("packed", [False, True])
def test_default_strategy_reads_gsplat_info(packed, monkeypatch):
    """gsplat's DefaultStrategy accumulates the same screen-space gradient statistics from the gsplat backend
    as from the C++ CPU kernel, dense and packed."""
    from gsplat.strategy import DefaultStrategy

    from dyngauss.render import gsplat_backend
    from dyngauss.render.api import cpu_kernel_available

    if not cpu_kernel_available():
        pytest.skip("C++ CPU kernel not built")
    if packed:
        monkeypatch.setattr(gsplat_backend, "PACKED_ABOVE", 0)
    s = _scene(n=400, seed=2)
    states = {}
    for backend, dev in (("cpu", "cpu"), ("gsplat", "cuda")):
        params = torch.nn.ParameterDict({"means": s["means"], "quats": s["quats"],
                                         "scales": s["scales"].log(), "opacities": torch.logit(s["opac"]),
                                         "sh0": s["sh"][:, :1], "shN": s["sh"][:, 1:]}).to(dev)
        opts = {k: torch.optim.Adam([v], lr=1e-3) for k, v in params.items()}
        strat = DefaultStrategy(refine_start_iter=100, verbose=False)
        state = strat.initialize_state(scene_scale=1.0)
        for step in range(3):
            cams = [_cameras()[step]]
            out = rasterize(params["means"], params["quats"], params["scales"].exp(),
                            torch.sigmoid(params["opacities"]), torch.cat([params["sh0"], params["shN"]], 1),
                            [c.to(dev) for c in cams], sh_degree=3, backend=backend)
            strat.step_pre_backward(params, opts, state, step, out.info)
            out.rgb.square().sum().backward()
            strat.step_post_backward(params, opts, state, step, out.info,
                                     packed=out.info["gaussian_ids"] is not None)
            for o in opts.values():
                o.zero_grad()
        assert (out.info["gaussian_ids"] is not None) == (packed and backend == "gsplat")
        states[backend] = {k: v.cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    a, b = states["cpu"], states["gsplat"]
    assert torch.equal(a["count"] > 0, b["count"] > 0) or (a["count"] != b["count"]).float().mean() < 0.02
    assert torch.allclose(a["grad2d"], b["grad2d"], atol=GRAD_RTOL * a["grad2d"].abs().max().item() + 1e-8)


@needs_cuda
@pytest.mark.parametrize("kind", ["mlp", "nodes"])
def test_training_and_evaluation_on_cuda(kind, tmp_path_factory, tmp_path):
    """The whole job on the GPU (gsplat backend, densification, evaluation, export) fits the scene about as
    well as the same job on the CPU kernel."""
    from dyngauss.config import load_config
    from dyngauss.data.synthetic import SyntheticConfig, generate
    from dyngauss.train.run import run_job

    scene = generate(tmp_path_factory.mktemp("cuda_scene") / "scene",
                     SyntheticConfig(resolution=48, n_train=12, n_val=2, n_test=3, n_video=4, n_tracks=64,
                                     supersample=2))
    metrics = {}
    for dev in ("cpu", "cuda"):
        cfg = load_config(None, [f"data.path={scene}", f"out={tmp_path / dev}", "train.iters=300",
                                 "train.warmup_iters=100", "model.num_points=2000", "densify.refine_start_iter=50",
                                 "densify.refine_every=50", "densify.refine_stop_iter=250", "train.progress=false",
                                 f"deform.kind={kind}", "deform.width=32", "deform.depth=2", "model.sh_degree=1",
                                 f"train.device={dev}", "export.frames=4", "eval.lpips=false"])
        metrics[dev] = run_job(cfg, log=lambda *a: None)
    a, b = metrics["cpu"], metrics["cuda"]
    assert b["psnr"] > a["psnr"] - 1.0, (a["psnr"], b["psnr"])
    assert b["track_epe_rel"] < a["track_epe_rel"] * 1.3, (a["track_epe_rel"], b["track_epe_rel"])
    assert len(list((tmp_path / "cuda" / "ply").glob("frame_*.ply"))) == 4

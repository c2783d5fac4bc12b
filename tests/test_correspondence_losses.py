"""Supervision that carries correspondence: depth maps (data/depth.py, losses/depth.py), the photometric warp
through the rendered motion (losses/photo_warp.py) and 2D tracks chained from optical flow (data/tracks2d.py,
losses/tracks.py), wired by train/correspondence.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dyngauss.data.camera import Camera
from dyngauss.losses.depth import depth_loss
from dyngauss.losses.photo_warp import depth_visible, photo_warp_loss, warp_image
from dyngauss.render.api import rasterize


# ------------------------------------------------------------------------------------------ helpers

def _blob_scene(scale: float = 1.0, n: int = 60, seed: int = 0, dtype=torch.float32):
    """A few dozen Gaussians in front of a 32x24 camera; every length (and the camera's position) x `scale`."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([1.2, 0.9, 0.6], dtype=dtype)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=dtype), dim=-1)
    scales = torch.full((n, 3), 0.12, dtype=dtype)
    opac = torch.full((n,), 0.9, dtype=dtype)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    view = torch.eye(4, dtype=torch.float64)
    view[2, 3] = 3.0 * scale
    K = torch.tensor([[30.0, 0, 16.0], [0, 30.0, 12.0], [0, 0, 1]], dtype=torch.float64)
    cam = Camera(K, view, 32, 24)
    return means * scale, quats, scales * scale, opac, colors, cam


def _render_depth(scale: float = 1.0):
    m, q, s, o, c, cam = _blob_scene(scale)
    out = rasterize(m, q, s, o, c, cam, render_mode="RGB+ED", backend="torch", near=0.01 * scale)
    return out.depth[0], out.alpha[0]


def _smooth_image(H: int, W: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture [H,W,3] in [0,1] (a few low-frequency sinusoids per channel)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.zeros((H, W, 3))
    for c in range(3):
        for _ in range(4):
            kx, ky, ph = rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), rng.uniform(0, 2 * math.pi)
            out[..., c] += np.sin(kx * xs + ky * ys + ph)
    return 0.5 + 0.12 * out


# ------------------------------------------------------------------------------------------ depth

def test_depth_loss_is_zero_for_the_matching_depth_and_grows_with_an_offset():
    depth, alpha = _render_depth()
    target = torch.where(alpha > 0.5, depth, torch.full_like(depth, math.inf)).detach()
    assert int((alpha > 0.5).sum()) > 50  # the scene covers part of the image
    assert float(depth_loss(depth, target, alpha, unit=1.0)) < 1e-6
    losses = [float(depth_loss(depth, target + off, alpha, unit=1.0)) for off in (0.05, 0.1, 0.2)]
    assert losses == sorted(losses) and losses[0] > 0.04
    assert losses[2] == pytest.approx(0.2, rel=1e-4)  # L1 of a constant offset, in units of the radius
    rob = [float(depth_loss(depth, target + off, alpha, unit=1.0, kind="charbonnier")) for off in (0.0, 0.1, 0.2)]
    assert rob[0] < 1e-6 and rob[0] < rob[1] < rob[2]
    # background / unknown target pixels never count: an offset there changes nothing
    far = torch.where(alpha > 0.5, target, target + 5.0)
    assert float(depth_loss(depth, far, alpha)) < 1e-6


def test_depth_loss_gradient_pulls_the_depth_towards_the_target():
    depth, alpha = _render_depth()
    target = torch.where(alpha > 0.5, depth + 0.3, torch.full_like(depth, math.inf)).detach()
    d = depth.detach().clone().requires_grad_(True)
    depth_loss(d, target, alpha).backward()
    g = d.grad[(alpha > 0.5)]
    assert torch.isfinite(d.grad).all() and bool((g < 0).all())  # increasing the depth lowers the loss


def test_depth_loss_is_scale_invariant():
    """The same scene with the world x20 (depths x20, radius x20): the same loss."""
    d1, a1 = _render_depth(1.0)
    d20, a20 = _render_depth(20.0)
    assert torch.allclose(a1, a20, atol=1e-4)
    assert torch.allclose(d20, 20.0 * d1, rtol=1e-4, atol=1e-3)
    t1 = torch.where(a1 > 0.5, d1 + 0.07, torch.full_like(d1, math.inf)).detach()
    t20 = torch.where(a20 > 0.5, d20 + 20 * 0.07, torch.full_like(d20, math.inf)).detach()
    for kind in ("l1", "charbonnier"):
        l1 = float(depth_loss(d1, t1, a1, unit=0.9, kind=kind))
        l20 = float(depth_loss(d20, t20, a20, unit=0.9 * 20, kind=kind))
        assert l1 > 0.01 and l20 == pytest.approx(l1, rel=1e-3)


def test_depth_loss_rejects_bad_arguments():
    d = torch.ones(4, 5)
    with pytest.raises(ValueError, match="kind"):
        depth_loss(d, d, kind="l2")
    with pytest.raises(ValueError, match="unit"):
        depth_loss(d, d, unit=0.0)
    with pytest.raises(ValueError, match="shape"):
        depth_loss(d, torch.ones(5, 4))
    none = depth_loss(d.requires_grad_(True), torch.full((4, 5), math.inf))
    assert float(none.detach()) == 0.0 and none.requires_grad


# ------------------------------------------------------------------------------------------ depth files

@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=0, n_tracks=16, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg), cfg


def _write_train_depth(folder, cfg) -> list[np.ndarray]:
    """Exact z-depth of each training frame by the generator's own ray caster, as train/depth_<n>.npz."""
    from dyngauss.data.dnerf import load_cameras
    from dyngauss.data.synthetic import raycast, scene_mesh

    out = []
    for cam in load_cameras(folder, "train"):
        verts, faces = scene_mesh(cam.time, cfg)
        W, H = cam.width, cam.height
        r, c = np.mgrid[0:H, 0:W]
        q = np.stack([c + 0.5, r + 0.5], -1).reshape(-1, 2)
        depth = raycast(verts, faces, cam.viewmat.double().numpy(), cam.K.double().numpy(), W, H, q)[2]
        depth = depth.reshape(H, W).astype(np.float32)
        np.savez(folder / "train" / f"depth_{cam.name.split('_')[-1]}.npz", depth=depth)
        out.append(depth)
    return out


@pytest.fixture(scope="module")
def depth_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=0, n_tracks=16, supersample=2,
                          seed=3)
    folder = generate(tmp_path_factory.mktemp("depth") / "scene", cfg)
    return folder, _write_train_depth(folder, cfg)


def test_depth_maps_are_found_read_and_downscaled(depth_scene, tmp_path):
    from dyngauss.data.depth import load_split_depths, resize_depth
    from dyngauss.data.dnerf import DatasetError, load_dnerf

    folder, truth = depth_scene
    full = load_split_depths(load_dnerf(folder, "train"))
    assert full.count == len(truth) and bool(full.has.all())
    assert torch.equal(full.depth, torch.from_numpy(np.stack(truth)))
    half = load_split_depths(load_dnerf(folder, "train", downscale=2))
    assert tuple(half.depth.shape) == (len(truth), 16, 16)
    d0 = truth[0]
    blocks = d0.reshape(16, 2, 16, 2).transpose(0, 2, 1, 3).reshape(16, 16, 4)
    all_known = np.isfinite(blocks).all(-1)
    assert all_known.any() and (~all_known).any()
    expect = np.where(all_known, blocks.mean(-1), np.inf)
    assert np.allclose(half.depth[0].numpy()[all_known], expect[all_known], rtol=1e-6)
    assert np.isinf(half.depth[0].numpy()[~all_known]).all()  # edges never blend with the background
    assert np.allclose(resize_depth(d0, 32, 32), d0, equal_nan=True)
    # the casual-video layout: depth/<frame>.npz, and bad files are named
    alt = tmp_path / "alt"
    alt.mkdir()
    for p in folder.iterdir():
        if p.name != "train":
            (alt / p.name).symlink_to(p)
    (alt / "train").mkdir()
    (alt / "depth").mkdir()
    for p in (folder / "train").glob("r_*.png"):
        (alt / "train" / p.name).symlink_to(p)
    np.savez(alt / "depth" / "r_001.npz", depth=truth[1])
    some = load_split_depths(load_dnerf(alt, "train"))
    assert some.count == 1 and bool(some.has[1]) and torch.equal(some.depth[1], torch.from_numpy(truth[1]))
    np.savez(alt / "depth" / "r_002.npz", z=truth[2])
    with pytest.raises(DatasetError, match=r"r_002\.npz.*'depth'"):
        load_split_depths(load_dnerf(alt, "train"))
    np.savez(alt / "depth" / "r_002.npz", depth=np.ones((10, 20), np.float32))
    with pytest.raises(DatasetError, match="aspect ratio"):
        load_split_depths(load_dnerf(alt, "train"))


def _cfg(scene, out, *extra):
    from dyngauss.config import load_config

    return load_config(None, [f"data.path={scene}", f"out={out}", "train.iters=8", "train.warmup_iters=2",
                              "model.num_points=300", "densify.refine_start_iter=2", "densify.refine_every=3",
                              "densify.refine_stop_iter=100", "train.progress=false", "train.save_every=0",
                              "deform.kind=mlp", "deform.width=32", "deform.depth=2", "model.sh_degree=1",
                              "motion.flow_max_angle_deg=180", "motion.flow_max_dt=1.0",
                              "train.time_window=1", *extra])  # every frame from the first step


def test_depth_weight_without_depth_is_a_config_error(tiny_scene, tmp_path):
    from dyngauss.config import ConfigError
    from dyngauss.train.trainer import Trainer

    folder, _ = tiny_scene
    with pytest.raises(ConfigError, match=r"motion\.depth_weight=0\.1 needs depth maps.*has none"):
        Trainer(_cfg(folder, tmp_path / "d", "motion.depth_weight=0.1", "motion.depth_missing=error"))


def test_depth_missing_skip_trains_without_the_term(tiny_scene, tmp_path):
    """motion.depth_missing=skip: no depth maps -> no depth term (and no motion terms at all when it was the
    only one), the same steps as a run without a depth weight."""
    from dyngauss.train.trainer import Trainer

    folder, _ = tiny_scene
    base = ["motion.depth_missing=skip"]
    a = Trainer(_cfg(folder, tmp_path / "a", "motion.depth_weight=0.5", *base))
    b = Trainer(_cfg(folder, tmp_path / "b", "motion.depth_weight=0", *base))
    assert a.terms is None and b.terms is None
    for _ in range(4):
        la, lb = a.train_step(), b.train_step()
        assert "depth" not in la and float(la["loss"]) == float(lb["loss"])
    c = Trainer(_cfg(folder, tmp_path / "c", "motion.depth_weight=0.5", "motion.rigidity_weight=0.1", *base))
    assert c.terms is not None and c.terms.correspondence is None
    assert "depth" not in c.train_step()


# ------------------------------------------------------------------------------------------ warp

def test_warp_matches_scipy_map_coordinates():
    from scipy.ndimage import map_coordinates

    H, W = 20, 26
    rng = np.random.default_rng(1)
    img = rng.random((H, W, 3))
    flow = rng.normal(0, 3, (H, W, 2))
    out, inside = warp_image(torch.tensor(img), torch.tensor(flow))
    ys, xs = np.mgrid[0:H, 0:W]
    ref = np.stack([map_coordinates(img[..., c], [ys + flow[..., 1], xs + flow[..., 0]], order=1, mode="nearest")
                    for c in range(3)], -1)
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    ins = (tx >= 0) & (tx <= W - 1) & (ty >= 0) & (ty <= H - 1)
    assert np.array_equal(inside.numpy(), ins) and ins.mean() > 0.5
    assert np.abs(out.numpy() - ref)[ins].max() < 1e-10


def test_photo_warp_loss_is_low_for_the_true_flow_only():
    """Image i is image j seen through a known smooth flow (scipy, cubic): warping j by that flow gives ~0,
    a flow off by 1.5 px, or none, a clearly larger loss."""
    from scipy.ndimage import map_coordinates

    H, W = 40, 48
    img_j = _smooth_image(H, W)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    flow = np.stack([2.5 + 1.5 * np.sin(ys / 9.0), -1.0 + 1.2 * np.cos(xs / 11.0)], -1)
    img_i = np.stack([map_coordinates(img_j[..., c], [ys + flow[..., 1], xs + flow[..., 0]], order=3,
                                      mode="nearest") for c in range(3)], -1)
    ti, tj = torch.tensor(img_i), torch.tensor(img_j)
    true = float(photo_warp_loss(ti, tj, torch.tensor(flow)))
    off = float(photo_warp_loss(ti, tj, torch.tensor(flow + np.array([1.5, 0.0]))))
    zero = float(photo_warp_loss(ti, tj, torch.zeros(H, W, 2, dtype=torch.float64)))
    assert true < 2e-3 and off > 10 * true and zero > 10 * true
    # masked-out pixels do not count; no pixel selected -> 0
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[:10] = True
    assert float(photo_warp_loss(ti, tj, torch.tensor(flow + 9.0), mask)) != float(
        photo_warp_loss(ti, tj, torch.tensor(flow + 9.0)))
    assert float(photo_warp_loss(ti, tj, torch.tensor(flow), torch.zeros(H, W, dtype=torch.bool))) == 0.0
    # the gradient w.r.t. the flow points back to the true flow
    f = torch.tensor(flow + np.array([0.8, 0.0]), requires_grad=True)
    photo_warp_loss(ti, tj, f).backward()
    assert float(f.grad[..., 0].sum()) > 0


def test_depth_visibility_drops_occluded_pixels():
    H, W = 6, 8
    alpha_j = torch.ones(H, W)
    alpha_j[:, 6:] = 0.0                    # nothing rendered at the right of frame j
    depth_j = 2.0 * alpha_j                 # accumulated depth: surface at z=2 where rendered
    z_in_j = torch.full((H, W), 2.0)
    z_in_j[0, 0] = 3.0                      # this surface lies behind j's surface: hidden in j
    flow = torch.zeros(H, W, 2)
    vis = depth_visible(z_in_j, depth_j, alpha_j, flow, tol=0.1)
    assert not bool(vis[0, 0]) and bool(vis[1:, :].all()) and bool(vis[0, 1:].all())
    z_in_j[:, 6:] = 5.0                     # far, but nothing in j covers it
    assert bool(depth_visible(z_in_j, depth_j, alpha_j, flow, tol=0.1)[:, 6:].all())
    assert bool(depth_visible(z_in_j, depth_j, alpha_j, flow, tol=1.5)[0, 0])  # within the tolerance


def _warp_objective(shift: torch.Tensor, means, quats, scales, opac, colors, cam_i, cam_j, img_i, img_j):
    """Photometric warp loss of a tiny "field": every Gaussian translated by `shift` [3] at time j."""
    from dyngauss.render.flow import gaussian_flow_2d, normalize_flow

    means_j = means + shift
    f2d = gaussian_flow_2d(means, cam_i, means_j, cam_j)
    out = rasterize(means, quats, scales, opac, colors, cam_i, features=f2d, backend="torch")
    flow = normalize_flow(out.features[0], out.alpha[0])
    return photo_warp_loss(img_i, img_j, flow, out.alpha[0].detach()[..., 0] > 0.5)


def test_warp_gradient_matches_finite_differences():
    """Through the rasterized flow and the bilinear warp into the motion: autograd = central differences."""
    m, q, s, o, c, cam = _blob_scene(dtype=torch.float64)
    img_j = torch.tensor(_smooth_image(24, 32, seed=4))
    img_i = torch.tensor(_smooth_image(24, 32, seed=5))
    shift = torch.tensor([0.031, -0.017, 0.012], dtype=torch.float64, requires_grad=True)
    args = (m, q, s, o, c, cam, cam, img_i, img_j)
    _warp_objective(shift, *args).backward()
    h = 1e-5
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = h
        with torch.no_grad():
            fd = (_warp_objective(shift + e, *args) - _warp_objective(shift - e, *args)) / (2 * h)
        assert float(shift.grad[k]) == pytest.approx(float(fd), rel=2e-3, abs=1e-7)
    assert float(shift.grad.abs().sum()) > 1e-4


# ------------------------------------------------------------------------------------------ 2D tracks

def test_link_chains_follow_time_order():
    from dyngauss.data.tracks2d import link_chains

    times = [0.0, 0.3, 0.1, 0.2, 0.9, 0.8]
    pairs = [(0, 2), (0, 3), (2, 3), (1, 3), (4, 5)]  # frame 1 (t=0.3) follows 3 (t=0.2); 5 (0.8) before 4 (0.9)
    assert link_chains(pairs, times) == [[0, 2, 3, 1], [5, 4]]
    assert link_chains([], times) == []


def test_chained_tracks_follow_the_flow_and_stop_where_it_fails():
    """Tracks against an independent reference: positions advanced by scipy's bilinear sampling of each flow."""
    from scipy.ndimage import map_coordinates

    from dyngauss.data.tracks2d import chain_tracks

    H, W, L = 30, 40, 5
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    flows = [np.stack([1.3 + 0.4 * np.sin(ys / 5.0 + k), -0.6 + 0.3 * np.cos(xs / 7.0)], -1) for k in range(L - 1)]
    valid = [np.ones((H, W), bool) for _ in range(L - 1)]
    valid[2][:, 30:] = False                          # the check fails there: tracks reaching it stop
    xy = chain_tracks(flows, valid, stride=4, seed_every=100, min_length=1)
    assert xy.shape == (len(np.arange(2, H, 4)) * len(np.arange(2, W, 4)), L, 2)
    ref = xy[:, 0].astype(np.float64)
    alive = np.ones(len(ref), bool)
    stopped = 0
    for k in range(L - 1):
        r, c = np.rint(ref[:, 1]).astype(int).clip(0, H - 1), np.rint(ref[:, 0]).astype(int).clip(0, W - 1)
        step = np.stack([map_coordinates(flows[k][..., i], [ref[:, 1], ref[:, 0]], order=1, mode="nearest")
                         for i in range(2)], -1)
        new = ref + step
        ok = alive & valid[k][r, c] & (new[:, 0] >= 0) & (new[:, 0] <= W - 1) & (new[:, 1] >= 0) & \
            (new[:, 1] <= H - 1)
        stopped += int((alive & ~ok).sum())
        alive &= ok
        assert np.array_equal(np.isfinite(xy[:, k + 1, 0]), alive)
        assert np.abs(xy[alive, k + 1] - new[alive]).max() < 1e-4
        ref = np.where(alive[:, None], new, ref)
    assert stopped > 0 and alive.any()
    # min_length drops short tracks; new seeds start later where the flow out of that frame is valid
    assert (np.isfinite(chain_tracks(flows, valid, 4, 100, min_length=5)[..., 0]).sum(1) >= 5).all()
    later = chain_tracks(flows, valid, stride=4, seed_every=2, min_length=1)
    assert len(later) > len(xy) and np.isnan(later[len(xy):, 0]).all()


def test_chained_dis_tracks_recover_a_known_motion():
    """Real DIS flow on a texture moving by (1.5, -1) px per frame: tracks move with it."""
    from scipy.ndimage import shift as nd_shift

    from dyngauss.data.flow import FlowParams, compute_flow_pair
    from dyngauss.data.tracks2d import chain_tracks

    rng = np.random.default_rng(0)
    base = np.clip(_smooth_image(64, 64, 2) + 0.15 * rng.standard_normal((64, 64, 3)), 0, 1)
    frames = [np.stack([nd_shift(base[..., c], (-1.0 * k, 1.5 * k), order=3, mode="reflect") for c in range(3)], -1)
              for k in range(4)]
    pairs = [compute_flow_pair(frames[k], frames[k + 1], FlowParams(preset="medium", upsample=2)) for k in range(3)]
    xy = chain_tracks([p["fwd"] for p in pairs], [p["valid_fwd"] for p in pairs], stride=6, seed_every=100)
    full = np.isfinite(xy[:, 3, 0])
    assert full.sum() > 20
    d = xy[full, 3] - xy[full, 0]
    assert np.median(np.linalg.norm(d - np.array([4.5, -3.0]), axis=-1)) < 0.3


def test_track_loss_is_zero_for_the_right_flow_and_grows_with_an_error():
    from dyngauss.losses.tracks import sample_image, track_loss

    H, W = 20, 30
    flow = torch.zeros(H, W, 2)
    flow[..., 0], flow[..., 1] = 2.0, -1.0
    rng = np.random.default_rng(3)
    pa = torch.tensor(rng.uniform([0, 0], [W - 1, H - 1], (50, 2)), dtype=torch.float32)
    pb = pa + torch.tensor([2.0, -1.0])
    assert float(track_loss(flow, None, pa, pb, kind="l1")) < 1e-6
    errs = [float(track_loss(flow, None, pa, pb + torch.tensor([off, 0.0]), kind="l1",
                                normalize=False)) for off in (0.5, 1.0, 2.0)]
    assert errs == pytest.approx([0.5, 1.0, 2.0], rel=1e-5)                  # |dx| + |dy| with dy = 0
    alpha = torch.zeros(H, W, 1)
    alpha[:, : W // 2] = 1.0
    left = pa[:, 0] < W // 2 - 0.5                    # bilinear alpha > 0.5 up to half a pixel before the edge
    mixed = pb.clone()
    mixed[~left] += 5.0                               # wrong only where nothing is rendered: ignored
    assert float(track_loss(flow, alpha, pa, mixed, kind="l1")) < 1e-6
    assert float(track_loss(flow, None, pa, mixed, kind="l1")) > 0.1  # without the mask they count
    img = torch.arange(H * W, dtype=torch.float64).reshape(H, W, 1)
    assert float(sample_image(img, torch.tensor([[3.5, 2.0]]))[0, 0]) == pytest.approx(2 * W + 3.5)


# ------------------------------------------------------------------------------------------ training

def test_photo_warp_gradients_reach_the_deformation_field(tiny_scene, tmp_path):
    from dyngauss.train.trainer import Trainer

    folder, _ = tiny_scene
    t = Trainer(_cfg(folder, tmp_path / "g", "motion.photo_warp_weight=1.0", "train.warmup_iters=0",
                     "motion.photo_warp_occlusion=none"))
    corr = t.terms.correspondence
    assert corr.neighbours, "the tiny scene must give the warp some frame pairs"
    idx = sorted(corr.neighbours)[0]
    with torch.no_grad():  # move the field off the identity so that the posed Gaussians depend on all its layers
        for p in t.deform.parameters():
            p.add_(0.05 * torch.randn_like(p))
    _, _, logs = t.compute_loss(idx, 0)
    assert "photo_warp" in logs
    # recompute only the warp term and check where its gradient goes
    posed = t.model.pose(float(t.cameras[idx].time), t.model.frame_index(float(t.cameras[idx].time)))
    feats, mode = t.terms.prepare(idx, 0, t.model, posed.means, None)
    assert mode == "RGB" and feats is not None and feats.shape[-1] == 3
    out = t.model.render(t.cameras[idx], float(t.cameras[idx].time), posed=posed, features=feats, backend="torch")
    term = t.terms.correspondence.losses(0, out)["photo_warp"]
    t._zero_grad()
    term.backward()
    grads = [p.grad for p in t.deform.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("extra", [
    ["motion.depth_weight=0.5"],
    ["motion.photo_warp_weight=1.0"],
    ["motion.track_weight=0.5", "motion.flow_upsample=1"],
    ["motion.photo_warp_weight=1.0", "motion.depth_weight=0.5", "motion.depth_kind=charbonnier",
     "motion.flow_weight=0.5", "motion.flow_upsample=1", "motion.photo_warp_every=2", "motion.track_weight=0.5"],
], ids=["depth", "warp", "tracks", "all"])
def test_tiny_training_with_each_switch(depth_scene, tmp_path, extra):
    from dyngauss.train.trainer import Trainer

    folder, _ = depth_scene
    t = Trainer(_cfg(folder, tmp_path / "t", *extra))
    seen: dict[str, list[float]] = {}
    for _ in range(8):
        logs = t.train_step()
        assert "skipped" not in logs
        for k, v in logs.items():
            if k not in ("loss", "psnr"):
                seen.setdefault(k, []).append(float(v))
    want = {"depth"} if "motion.depth_weight=0.5" in extra else set()
    want |= {"photo_warp"} if "motion.photo_warp_weight=1.0" in extra else set()
    want |= {"tracks"} if "motion.track_weight=0.5" in extra else set()
    assert want <= set(seen), seen.keys()
    assert all(math.isfinite(v) and v >= 0 for vals in seen.values() for v in vals)
    if "depth" in seen:
        assert max(seen["depth"]) > 0


def test_resume_with_warp_and_tracks_is_exact(tiny_scene, tmp_path):
    """The neighbour and track-partner draws come from checkpointed streams: a resumed run continues exactly."""
    from dyngauss.train.trainer import Trainer

    folder, _ = tiny_scene
    extra = ("motion.photo_warp_weight=1.0", "motion.track_weight=0.5", "motion.flow_upsample=1")
    a = Trainer(_cfg(folder, tmp_path / "a", *extra))
    logs_a = [a.train_step() for _ in range(6)]
    b = Trainer(_cfg(folder, tmp_path / "b", *extra))
    for _ in range(4):
        b.train_step()
    b.save()
    c = Trainer(_cfg(folder, tmp_path / "b", *extra), resume=True)
    logs_c = [c.train_step() for _ in range(2)]
    for la, lc in zip(logs_a[4:], logs_c):
        assert set(la) == set(lc) and {"photo_warp", "tracks"} & set(la)
        assert float(lc["loss"]) == pytest.approx(float(la["loss"]), rel=1e-3)

"""The built-in synthetic scene: geometry/camera consistency, exact flow/depth/tracks, determinism, caching."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dyngauss.data import synthetic as syn
from dyngauss.data.camera import Camera, look_at_viewmat, viewmat_to_opengl_c2w
from dyngauss.data.dnerf import available_splits, load_dnerf, load_tracks, load_video_gt
from dyngauss.data.synthetic import (SyntheticConfig, config_hash, ensure_scene, generate, object_bbox,
                                     scene_mesh)

ROOT = Path(__file__).resolve().parents[1]
CFG = SyntheticConfig(resolution=64, n_train=8, n_val=3, n_test=3, n_video=8, n_tracks=400)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "scene", CFG)


def _bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample img [H,W,...] at pixel coordinates uv [N,2] (centres at +0.5), clamped at the border."""
    H, W = img.shape[:2]
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    out = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            v = img[np.clip(y0 + dy, 0, H - 1), np.clip(x0 + dx, 0, W - 1)]
            w = wx * wy
            out = out + (w.reshape(-1, *([1] * (v.ndim - 1))) * v)
    return out


def _corners(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The 4 pixel values used by bilinear sampling at uv -> [N,4,...]."""
    H, W = img.shape[:2]
    x0, y0 = np.floor(uv[:, 0] - 0.5).astype(int), np.floor(uv[:, 1] - 0.5).astype(int)
    return np.stack([img[np.clip(y0 + dy, 0, H - 1), np.clip(x0 + dx, 0, W - 1)]
                     for dy in (0, 1) for dx in (0, 1)], 1)


# --------------------------------------------------------------------------------------------- structure

def test_layout_and_loading(scene):
    assert (scene / ".complete").is_file()
    assert available_splits(scene) == ["train", "val", "test", "video"]
    meta = json.loads((scene / "meta.json").read_text())
    assert meta["frame_counts"] == {"train": 8, "val": 3, "test": 3, "video": 8}
    assert meta["checks"]["frames_touching_border"]["train"] == "0/8"
    tr = load_dnerf(scene, "train")
    assert tr.images.shape == (8, 64, 64, 3) and tr.alphas.shape == (8, 64, 64, 1)
    assert torch.allclose(tr.times, torch.arange(8) / 7.0)
    assert tr.bbox_source == "meta" and [c.name for c in tr.cameras][:2] == ["r_000", "r_001"]
    cov = tr.alphas.mean(dim=(1, 2, 3))
    assert (cov > 0.05).all() and (cov < 0.4).all(), cov       # object fills a good part, not all
    # val/test times are random and distinct from the train times
    for s in ("val", "test"):
        t = load_dnerf(scene, s).times
        assert (torch.cdist(t[:, None], tr.times[:, None]).min(1).values > 1e-3).all()
    # video: one fixed camera
    v = load_dnerf(scene, "video")
    assert all(torch.equal(c.viewmat, v.cameras[0].viewmat) for c in v.cameras)
    gt = load_video_gt(scene)
    assert gt["depth"].shape == (8, 64, 64) and gt["flow"].shape == (7, 64, 64, 2)
    assert gt["flow_valid"].shape == (7, 64, 64) and gt["flow_valid"].dtype == torch.bool
    tk = load_tracks(scene)
    keys = {"point_ids", "tri_index", "bary", "rest_xyz"} | {f"{k}_{s}" for k in ("xyz", "times")
                                                             for s in ("train", "val", "test", "video")}
    assert keys == set(tk) - {"splits"}          # the same keys as ../shared/data/twist/gt_tracks.npz
    assert tk["xyz_train"].shape == (400, 8, 3) and tk["bary"].shape == (400, 3)
    assert torch.allclose(tk["bary"].sum(1), torch.ones(400), atol=1e-5)


def _track_check(split, tracks, name, cameras=None):
    """Project the track points of every frame with `cameras` (default: the split's) onto the alpha masks.

    Returns (fraction on alpha > 0.5, fraction on alpha > 0, max distance in px from a miss to the nearest
    alpha > 0.5 pixel centre)."""
    a_all, d_all = [], []
    for k, cam in enumerate(cameras or split.cameras):
        uv, z = cam.project(tracks[f"xyz_{name}"][:, split.cameras[k].index].float())
        uv = uv.numpy()
        col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height) & (z.numpy() > 0)
        alpha = split.alphas[k, :, :, 0].numpy()
        a = np.where(inside, alpha[row.clip(0, cam.height - 1), col.clip(0, cam.width - 1)], 0.0)
        ys, xs = np.nonzero(alpha > 0.5)
        centres = np.stack([xs + 0.5, ys + 0.5], -1)
        miss = a <= 0.5
        d = np.zeros(len(a))
        d[miss] = np.sqrt(((uv[miss, None] - centres[None]) ** 2).sum(-1)).min(1) if len(centres) else np.inf
        d[miss & ~inside] = np.inf
        a_all.append(a)
        d_all.append(d)
    a, d = np.concatenate(a_all), np.concatenate(d_all)
    return float((a > 0.5).mean()), float((a > 0).mean()), float(d.max())


def wrong_cameras(cameras):
    """The same cameras under two plausible convention bugs: c2w inverted without the OpenGL -> OpenCV flip
    (everything behind the camera), and only z flipped (image upside down)."""
    out = []
    for bug in (np.eye(4), np.diag([1.0, 1.0, -1.0, 1.0])):
        cams = []
        for c in cameras:
            c2w = viewmat_to_opengl_c2w(c.viewmat.numpy())
            cams.append(Camera(c.K, np.linalg.inv(c2w @ bug), c.width, c.height, c.time))
        out.append(cams)
    return out


def test_tracks_project_onto_alpha(scene):
    tracks = load_tracks(scene)
    for name in ("train", "test", "video"):
        sp = load_dnerf(scene, name)
        # Box-filtered 8x8 coverage: points on grazing sides sit at the silhouette; at 64 px a few % of the
        # points fall in pixels with < 50% coverage, but all within ~1 px of the mask.
        f05, f0, dmax = _track_check(sp, tracks, name)
        assert f05 >= 0.9 and f0 >= 0.97 and dmax <= 1.5, (name, f05, f0, dmax)
        # the same check with a wrong camera convention fails
        for cams in wrong_cameras(sp.cameras):
            f05, f0, dmax = _track_check(sp, tracks, name, cams)
            assert f05 < 0.9 or dmax > 1.5, (name, f05, dmax)


# --------------------------------------------------------------------------------------------- motion GT

def test_flow_warps_next_frame_onto_current(scene):
    v = load_dnerf(scene, "video", background=(1.0, 1.0, 1.0))
    gt = load_video_gt(scene)
    imgs = v.images.numpy()
    errs, errs0, n = [], [], 0
    for i in range(len(imgs) - 1):
        valid = gt["flow_valid"][i].numpy()
        # away from the silhouette (the anti-aliased edge mixes background into bilinear samples)
        a = v.alphas[i, :, :, 0].numpy()
        valid &= a > 0.99
        ys, xs = np.nonzero(valid)
        centres = np.stack([xs + 0.5, ys + 0.5], -1)
        flow = gt["flow"][i].numpy()[ys, xs]
        warped = _bilinear(imgs[i + 1], centres + flow)
        errs.append(np.abs(warped - imgs[i][ys, xs]).mean(1))
        errs0.append(np.abs(imgs[i + 1][ys, xs] - imgs[i][ys, xs]).mean(1))
        n += len(ys)
    e, e0 = np.concatenate(errs), np.concatenate(errs0)
    assert n > 1000
    # (at 64 px the checker cells are ~3 px: bilinear resampling alone costs ~0.02-0.04)
    assert e.mean() < 0.45 * e0.mean(), (e.mean(), e0.mean())
    assert np.median(e) < 0.045, np.median(e)
    # flow is non-trivial and the validity mask excludes background
    assert np.abs(gt["flow"].numpy()).max() > 1.0
    assert not (gt["flow_valid"].numpy() & ~np.isfinite(gt["depth"].numpy()[:-1])).any()


def test_flow_and_depth_match_tracks(scene):
    v = load_dnerf(scene, "video")
    gt = load_video_gt(scene)
    tk = load_tracks(scene)
    xyz = tk["xyz_video"].float()
    cam = v.cameras[0]
    ferr, derr, in_front = [], [], 0
    for i in range(len(v) - 1):
        uv0, z0 = cam.project(xyz[:, i])
        uv1, _ = cam.project(xyz[:, i + 1])
        uv0, z0, d_track = uv0.numpy().astype(np.float64), z0.numpy(), (uv1 - uv0).numpy()
        depth, flow, valid = gt["depth"][i].numpy(), gt["flow"][i].numpy(), gt["flow_valid"][i].numpy()
        dc = _corners(depth, uv0)                                    # [P,4]
        # visible track points: all 4 bilinear neighbours on the same surface as the point
        same = np.all(np.abs(dc - z0[:, None]) < 0.03, 1)
        in_front += int(np.sum(np.all(np.isfinite(dc), 1) & np.all(z0[:, None] < dc - 0.05, 1)))
        ok = same & np.all(_corners(valid, uv0), 1)
        derr.append(np.abs(_bilinear(depth, uv0[same]) - z0[same]))
        ferr.append(np.linalg.norm(_bilinear(flow, uv0[ok]) - d_track[ok], axis=1))
    ferr, derr = np.concatenate(ferr), np.concatenate(derr)
    assert len(ferr) > 200 and len(derr) > 200
    assert in_front == 0                     # no surface point is in front of the first hit along its ray
    assert np.median(ferr) < 0.01 and np.quantile(ferr, 0.95) < 0.05, (np.median(ferr), np.quantile(ferr, 0.95))
    assert np.median(derr) < 1e-3 and np.quantile(derr, 0.95) < 5e-3, (np.median(derr), np.quantile(derr, 0.95))


def test_object_deforms_non_rigidly(scene):
    x = load_tracks(scene)["xyz_video"].double()                    # [P,T,3]
    P, T, _ = x.shape
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, P, 2000), rng.integers(0, P, 2000)
    d = (x[i] - x[j]).norm(dim=-1)                                   # [2000,T]
    keep = d[:, 0] > 0.2
    rel = ((d[keep] - d[keep, :1]) / d[keep, :1]).abs()
    assert rel.max() > 0.15, rel.max()
    # best rigid fit (Kabsch) from t=0 to the last frame leaves a large residual
    a, b = x[:, 0], x[:, -1]
    ac, bc = a - a.mean(0), b - b.mean(0)
    U, S, Vt = torch.linalg.svd(bc.T @ ac)
    D = torch.diag(torch.tensor([1.0, 1.0, float(torch.sign(torch.det(U @ Vt)))], dtype=torch.float64))
    R = U @ D @ Vt
    resid = ((ac @ R.T - bc).norm(dim=1) ** 2).mean().sqrt()
    assert resid > 0.05, resid


def test_scene_mesh_tracks_and_bbox(scene):
    tk = load_tracks(scene)
    bb = object_bbox(CFG)
    for k, t in enumerate(tk["times_test"].tolist()):
        verts, faces = scene_mesh(t, CFG)
        assert (verts >= bb[0] - 1e-6).all() and (verts <= bb[1] + 1e-6).all()
        p = (verts[faces[tk["tri_index"].numpy()]] * tk["bary"].numpy()[:, :, None]).sum(1)
        assert np.abs(p - tk["xyz_test"][:, k].numpy()).max() < 1e-5
    v0, f = scene_mesh(0.0, CFG)
    assert f.max() < len(v0) and f.shape[1] == 3
    # rest positions of tracks equal the barycentric points of the rest mesh
    rm = syn.rest_mesh(CFG)
    p = (rm.verts[rm.faces[tk["tri_index"].numpy()]] * tk["bary"].numpy()[:, :, None]).sum(1)
    assert np.abs(p - tk["rest_xyz"].numpy()).max() < 1e-6


def test_raycast_analytic_plane():
    # exact depth, occlusion and perspective-correct barycentrics on planes facing the camera
    V = look_at_viewmat((0, 0, 5), (0, 0, 0), (0, 1, 0))
    K = np.array([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]])
    # two triangles of a square at depth 2, a small triangle in front (depth 1), one hidden behind (depth 4)
    verts = np.array([[-1.0, -1, 3], [1, -1, 3], [1, 1, 3], [-1, 1, 3], [-0.2, -0.2, 4], [0.2, -0.2, 4],
                      [0, 0.3, 4], [-0.5, -0.5, 1], [0.5, -0.5, 1], [0, 0.5, 1]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9]])
    q = np.stack(np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5), -1).reshape(-1, 2)
    tri, bary, depth = syn.raycast(verts, faces, V, K, 32, 32, q)
    hit = tri >= 0
    # the square spans +-1 at depth 2 -> +-20 px around the centre: covers the whole 32x32 image
    assert hit.all()
    front = tri == 2
    assert front.sum() > 10 and np.allclose(depth[front], 1.0) and np.allclose(depth[~front], 2.0)
    assert not (tri == 3).any()
    # reconstructed 3D points project back onto the query pixels
    p = (verts[faces[tri]] * bary[:, :, None]).sum(1)
    uv, _ = syn._project(p, V, K)
    assert np.abs(uv - q).max() < 1e-9
    # queries outside the image or past the object miss
    tri2, _, d2 = syn.raycast(verts, faces, V, K, 32, 32, np.array([[-3.0, 4.0], [40.0, 5.0]]))
    assert (tri2 == -1).all() and np.isinf(d2).all()


# --------------------------------------------------------------------------------------------- determinism, caching

def _file_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".complete"}


def test_deterministic_and_seed_dependent(tmp_path):
    cfg = SyntheticConfig(resolution=24, n_train=4, n_val=1, n_test=1, n_video=3, n_tracks=50)
    a = _file_bytes(generate(tmp_path / "a", cfg))
    b = _file_bytes(generate(tmp_path / "b", cfg))
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    c = _file_bytes(generate(tmp_path / "c", SyntheticConfig(**{**cfg.__dict__, "seed": 1})))
    assert c["transforms_train.json"] != a["transforms_train.json"]
    assert c["gt_tracks.npz"] != a["gt_tracks.npz"] and c["train/r_000.png"] != a["train/r_000.png"]
    assert config_hash(cfg) != config_hash(SyntheticConfig(**{**cfg.__dict__, "seed": 1}))


def test_ensure_scene_caches(tmp_path, monkeypatch):
    cfg = SyntheticConfig(resolution=16, n_train=3, n_val=1, n_test=1, n_video=2, n_tracks=20)
    p = ensure_scene(cfg, cache_dir=tmp_path)
    assert p == tmp_path / "synthetic" / config_hash(cfg) and (p / ".complete").is_file()
    stamp = (p / ".complete").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(syn, "_write_scene", lambda *a: calls.append(a))
    assert ensure_scene(cfg, cache_dir=tmp_path) == p and not calls         # cached: nothing regenerated
    assert (p / ".complete").stat().st_mtime_ns == stamp
    monkeypatch.setenv("DYNGAUSS_CACHE", str(tmp_path / "env"))
    from dyngauss.resources import cache_root

    assert cache_root() == tmp_path / "env" and cache_root(tmp_path / "x") == tmp_path / "x"


def test_generate_is_atomic(tmp_path, monkeypatch):
    cfg = SyntheticConfig(resolution=16, n_train=3, n_val=1, n_test=1, n_video=2, n_tracks=20)
    real = syn._write_split

    def boom(root, split, *a, **k):
        real(root, split, *a, **k)
        if split == "val":
            raise RuntimeError("interrupted")

    monkeypatch.setattr(syn, "_write_split", boom)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "scene", cfg)
    assert not (tmp_path / "scene").exists()
    assert list(tmp_path.iterdir()) == []                                   # temp folder cleaned up
    with pytest.raises(RuntimeError):
        ensure_scene(cfg, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "synthetic" / config_hash(cfg)).exists()
    # an unrelated existing folder is not overwritten
    monkeypatch.setattr(syn, "_write_split", real)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        generate(other, cfg)
    assert (other / "notes.txt").read_text() == "keep"


def test_make_synthetic_tool(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_synthetic
    finally:
        sys.path.remove(str(ROOT / "tools"))
    out = tmp_path / "s"
    assert make_synthetic.main(["--out", str(out), "--res", "16", "--n-train", "3", "--n-val", "1",
                                "--n-test", "1", "--n-video", "2", "--n-tracks", "10"]) == 0
    assert (out / ".complete").is_file()
    assert capsys.readouterr().out.strip() == str(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resolution"] == [16, 16]
    # rerun replaces its own previous output
    make_synthetic.main(["--out", str(out), "--res", "16", "--n-train", "3", "--n-val", "1", "--n-test", "1",
                         "--n-video", "2", "--n-tracks", "10", "--seed", "3"])
    assert json.loads((out / "meta.json").read_text())["seed"] == 3


def test_raycast_visibility_agrees_with_depth(scene):
    """The exact point-visibility test used for flow_valid: points on back-facing triangles of the closed mesh
    are always occluded; front-facing points whose depth-map neighbourhood agrees with them are visible."""
    v = load_dnerf(scene, "video", frames=[0])
    gt = load_video_gt(scene)
    tk = load_tracks(scene)
    cam = v.cameras[0]
    verts, faces = scene_mesh(float(tk["times_video"][0]), CFG)
    x = tk["xyz_video"][:, 0].double()
    uv, z = cam.project(x)
    uv, z = uv.numpy(), z.numpy()
    _, _, d = syn.raycast(verts, faces, cam.viewmat.double().numpy(), cam.K.double().numpy(), cam.width,
                          cam.height, uv)
    vis_ray = ~(d < z * (1 - 1e-5) - 1e-6)
    tri = verts[faces[tk["tri_index"].numpy()]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    back = ((cam.center.double().numpy() - tri[:, 0]) * normal).sum(1) < 0
    dc = _corners(gt["depth"][0].numpy(), uv)
    clear_vis = ~back & np.all(np.abs(dc - z[:, None]) < 0.06, 1)
    assert back.sum() > 100 and clear_vis.sum() > 50
    assert not vis_ray[back].any() and vis_ray[clear_vis].all()
    assert vis_ray.mean() > 0.3


def test_exact_flow_matches_video_gt_and_warps_across_cameras(scene):
    """exact_flow between consecutive video frames reproduces the written ground truth; between two training
    frames with different cameras and times it maps view b's colours onto view a (photometric check)."""
    from dyngauss.data.synthetic import exact_flow, rest_mesh

    mesh = rest_mesh(CFG)
    gt = load_video_gt(scene)
    vid = load_dnerf(scene, "video")
    c0, c1 = vid.cameras[2], vid.cameras[3]
    as64 = lambda x: x.numpy().astype(np.float64)  # noqa: E731
    flow, valid = exact_flow(c0.time, as64(c0.viewmat), as64(c0.K), c1.time, as64(c1.viewmat), as64(c1.K),
                             c0.width, c0.height, CFG, mesh)
    assert np.array_equal(valid, gt["flow_valid"][2].numpy())
    assert np.allclose(flow[valid], gt["flow"][2].numpy()[valid], atol=1e-3)

    tr = load_dnerf(scene, "train", background=(1.0, 1.0, 1.0))
    a, b = tr.cameras[3], tr.cameras[4]
    flow, valid = exact_flow(a.time, as64(a.viewmat), as64(a.K), b.time, as64(b.viewmat), as64(b.K),
                             a.width, a.height, CFG, mesh)
    valid &= tr.alphas[3, :, :, 0].numpy() > 0.99
    ys, xs = np.nonzero(valid)
    assert len(ys) > 300
    centres = np.stack([xs + 0.5, ys + 0.5], -1)
    imgs = tr.images.numpy()
    warped = _bilinear(imgs[4], centres + flow[ys, xs])
    e = np.abs(warped - imgs[3][ys, xs]).mean(1)
    e0 = np.abs(imgs[4][ys, xs] - imgs[3][ys, xs]).mean(1)   # no motion assumed
    assert np.median(e) < 0.08 and e.mean() < 0.5 * e0.mean(), (np.median(e), e.mean(), e0.mean())

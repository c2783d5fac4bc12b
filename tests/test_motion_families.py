"""Motion families and camera protocols of the built-in scene (dyngauss/data/motion_families.py, synthetic.py):
every family x protocol generates and loads; tracks, flow and depth agree with the deformation and the cameras;
each family has the motion it claims (rigid bones, non-rigid blob, two independent rigid parts, a large spin);
the orbit camera moves smoothly; the default scene's hash is unchanged; the run config reaches the generator."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dyngauss.data import motion_families as mf
from dyngauss.data import synthetic as syn
from dyngauss.data.camera import opengl_c2w_to_viewmat
from dyngauss.data.dnerf import load_dnerf, load_tracks, load_video_gt
from dyngauss.data.synthetic import SyntheticConfig, config_hash, generate
from test_synthetic import _bilinear  # bilinear sampling at pixel centres, clamped at the border

FAMILIES = ["twist", "limb", "blob", "two_objects", "spin"]
PROTOCOLS = ["random", "orbit"]
RES = 40


def _cfg(motion: str, camera: str = "random", **kw) -> SyntheticConfig:
    base = dict(resolution=RES, n_train=6, n_val=1, n_test=1, n_video=5, n_tracks=1200, supersample=2,
                motion=motion, train_camera=camera, train_depth=True)
    return SyntheticConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict:
    """One generated scene per (family, protocol), made on first use."""
    root = tmp_path_factory.mktemp("families")
    made: dict = {}

    def get(motion: str, camera: str = "random") -> Path:
        if (motion, camera) not in made:
            made[motion, camera] = generate(root / f"{motion}_{camera}", _cfg(motion, camera))
        return made[motion, camera]

    return get


def _corners(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The 4 pixel values bilinear sampling at uv [N,2] uses -> [N,4,...]."""
    H, W = img.shape[:2]
    x0, y0 = np.floor(uv[:, 0] - 0.5).astype(int), np.floor(uv[:, 1] - 0.5).astype(int)
    return np.stack([img[np.clip(y0 + dy, 0, H - 1), np.clip(x0 + dx, 0, W - 1)] for dy in (0, 1) for dx in (0, 1)], 1)


def _kabsch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Best rotation R with b - mean(b) ~ R (a - mean(a)) and the RMS residual."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    U, _, Vt = np.linalg.svd(bc.T @ ac)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    return R, float(np.sqrt(((ac @ R.T - bc) ** 2).sum(1).mean()))


def _angle(R: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))


def _pair_dist(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


# --------------------------------------------------------------------------------------------- every family

@pytest.mark.parametrize("camera", PROTOCOLS)
@pytest.mark.parametrize("motion", FAMILIES)
def test_scene_generates_tracks_and_depth(scenes, motion, camera):
    """The scene loads; its tracks are the posed mesh's barycentric points, within tessellation error of
    deform_points of the rest points, and project onto the alpha masks; the training depth maps agree with the
    visible track points."""
    cfg = _cfg(motion, camera)
    path = scenes(motion, camera)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["config"]["motion" if motion != "twist" else "n_tracks"] == (motion if motion != "twist" else 1200)
    assert meta.get("family", "twist") == motion and meta["scene"] == mf.family(motion).describe(cfg)["scene"]
    assert meta["checks"]["frames_touching_border"]["train"] == "0/6"
    assert "train/depth_XXX.npz" in meta["conventions"]["train_depth"]
    tr = load_dnerf(path, "train")
    cov = tr.alphas.mean(dim=(1, 2, 3))
    assert (cov > 0.02).all() and (cov < 0.5).all(), cov
    tk = load_tracks(path)
    mesh = syn.rest_mesh(cfg)
    tri, bary = tk["tri_index"].numpy(), tk["bary"].numpy().astype(np.float64)
    rest = tk["rest_xyz"].numpy().astype(np.float64)
    ext = np.ptp(mesh.verts, 0).max()
    on_alpha, derr, n_same = [], [], 0
    for k, t in enumerate(tk["times_train"].tolist()):
        verts, faces = syn.scene_mesh(t, cfg)
        on_mesh = (verts[faces[tri]] * bary[:, :, None]).sum(1)
        xyz = tk["xyz_train"][:, k].numpy()
        assert np.abs(on_mesh - xyz).max() < 1e-5
        # direct evaluation of the deformation at the rest points: equal up to the mesh's piecewise-linear error
        direct = syn.deform_points(rest, t, cfg)
        assert np.abs(direct - xyz).max() < 0.01 * ext, np.abs(direct - xyz).max()
        # projection onto the alpha mask; visible points (exact ray cast at their projection) on the depth map
        cam = tr.cameras[k]
        V, K = cam.viewmat.double().numpy(), cam.K.double().numpy()
        uv, z = syn._project(on_mesh, V, K)
        inside = (uv >= 0).all(1) & (uv[:, 0] < RES) & (uv[:, 1] < RES) & (z > 0)
        assert inside.all()
        col, row = uv[:, 0].astype(int), uv[:, 1].astype(int)
        alpha = tr.alphas[k, :, :, 0].numpy()
        # every surface point lies in the silhouette: on a covered pixel, or (a point at the silhouette whose
        # pixel none of the supersamples hit) next to one
        pad = np.pad(alpha, 1)
        grown = np.max([pad[dy:dy + RES, dx:dx + RES] for dy in range(3) for dx in range(3)], 0)
        on_alpha.append(alpha[row, col] > 0)
        assert (grown[row, col] > 0).all()
        # depth map: at visible points (exact ray cast at their projection) whose 4 bilinear neighbours lie on
        # the same surface, the interpolated depth is the point's camera z
        _, _, d = syn.raycast(verts, faces, V, K, RES, RES, uv)
        vis = np.abs(d - z) < 1e-6 * z
        depth = np.load(path / "train" / f"depth_{k:03d}.npz")["depth"]
        assert depth.shape == (RES, RES) and depth.dtype == np.float32
        assert np.isinf(depth[alpha == 0]).all() and np.isfinite(depth[alpha == 1]).all()
        same = vis & np.all(np.abs(_corners(depth, uv) - z[:, None]) < 0.03, 1)
        n_same += int(same.sum())
        derr.append(np.abs(_bilinear(depth, uv[same]) - z[same]))
        # no surface point is in front of the depth map's surface
        dc = _corners(depth, uv)
        assert not np.any(np.all(dc > z[:, None] + 0.05, 1) & np.all(np.isfinite(dc), 1))
    assert np.mean(np.concatenate(on_alpha)) > 0.85
    derr = np.concatenate(derr)
    # (bilinear interpolation of z is not exact under perspective: a few mm at 40 px)
    assert n_same > 100 and np.median(derr) < 4e-3 and np.quantile(derr, 0.9) < 1.5e-2, \
        (n_same, np.median(derr), np.quantile(derr, 0.9))


@pytest.mark.parametrize("motion", FAMILIES)
def test_flow_matches_track_projections(scenes, motion):
    """Video split: the projection difference of an unoccluded surface point between frames i and i+1 is the
    ground-truth flow at its pixel; the depth there is the point's camera z."""
    path = scenes(motion)
    v = load_dnerf(path, "video")
    gt = load_video_gt(path)
    xyz = load_tracks(path)["xyz_video"].double()
    cam = v.cameras[0]
    ferr, derr, flow_mag = [], [], []
    for i in range(len(v) - 1):
        uv0, z0 = cam.project(xyz[:, i])
        uv1, _ = cam.project(xyz[:, i + 1])
        uv0, z0, d_track = uv0.numpy(), z0.numpy(), (uv1 - uv0).numpy()
        depth, flow, valid = gt["depth"][i].numpy(), gt["flow"][i].numpy(), gt["flow_valid"][i].numpy()
        same = np.all(np.abs(_corners(depth, uv0) - z0[:, None]) < 0.03, 1)   # the 4 neighbours: this surface
        ok = same & np.all(_corners(valid, uv0), 1)
        derr.append(np.abs(_bilinear(depth, uv0[same]) - z0[same]))
        ferr.append(np.linalg.norm(_bilinear(flow, uv0[ok]) - d_track[ok], axis=1))
        flow_mag.append(np.linalg.norm(d_track[ok], axis=1))
    ferr, derr, flow_mag = np.concatenate(ferr), np.concatenate(derr), np.concatenate(flow_mag)
    assert len(ferr) > 60 and len(derr) > 60
    assert np.median(flow_mag) > 0.3                      # the object moves in the image
    # (bilinear interpolation of the flow between pixel centres costs a few hundredths of a pixel at 40 px)
    assert np.median(ferr) < 0.03 and np.quantile(ferr, 0.9) < 0.1, (np.median(ferr), np.quantile(ferr, 0.9))
    assert np.median(ferr) < 0.1 * np.median(flow_mag)
    assert np.median(derr) < 4e-3, np.median(derr)


# --------------------------------------------------------------------------------------------- family motions

def _rest_samples(cfg: SyntheticConfig, n: int = 400, seed: int = 0) -> np.ndarray:
    mesh = syn.rest_mesh(cfg)
    tri, bary = syn._sample_tracks(mesh, n, np.random.default_rng(seed))
    return (mesh.verts[mesh.faces[tri]] * bary.astype(np.float64)[:, :, None]).sum(1)


def test_limb_bones_rigid_joints_bend(scenes):
    cfg = _cfg("limb")
    x = _rest_samples(cfg, 1500)
    z = x[:, 2]
    (j0, j1), b = mf.LIMB_JOINTS, mf.LIMB_BAND
    bones = [z < j0 - b - 1e-3, np.abs(z) < j1 - b - 1e-3, z > j1 + b + 1e-3]
    assert all(m.sum() > 50 for m in bones)
    ts = np.linspace(0.0, 1.0, 7)
    posed = [syn.deform_points(x, t, cfg) for t in ts]
    d0 = _pair_dist(x)
    for m in bones:
        for p in posed:
            assert np.abs(_pair_dist(p[m]) - d0[np.ix_(m, m)]).max() < 1e-9
    # the bones move differently (the hinges turn), and the blending bands stretch
    across = np.ix_(bones[0], bones[2])
    assert max(np.abs(_pair_dist(p)[across] - d0[across]).max() for p in posed) > 0.3
    band = np.abs(z - j1) < 0.5 * b
    assert max(np.abs(_pair_dist(p[band]) - d0[np.ix_(band, band)]).max() for p in posed) > 0.01
    # the stored tracks (float32) of bone points are rigid too
    tk = load_tracks(scenes("limb"))
    rz = tk["rest_xyz"].numpy()[:, 2]
    m = np.abs(rz) < j1 - b - 0.04          # whole triangles inside the rigid part (rings are 0.03 apart)
    xyz = tk["xyz_train"].double().numpy()[m]
    d_first = _pair_dist(xyz[:, 0])
    assert max(np.abs(_pair_dist(xyz[:, k]) - d_first).max() for k in range(xyz.shape[1])) < 1e-5
    # no fold in the bands: the deformation keeps its orientation (finite-difference Jacobian det > 0)
    eps = 1e-5
    for t in ts:
        J = np.stack([(syn.deform_points(x + eps * e, t, cfg) - syn.deform_points(x - eps * e, t, cfg)) / (2 * eps)
                      for e in np.eye(3)], -1)
        assert np.linalg.det(J).min() > 0.05


def test_blob_is_non_rigid():
    cfg = _cfg("blob")
    x = _rest_samples(cfg, 800)
    d0 = _pair_dist(x)
    far = d0 > 0.2
    worst_rel, worst_res, worst_turn = 0.0, 0.0, 0.0
    for t in np.linspace(0.1, 1.0, 6):
        p = syn.deform_points(x, t, cfg)
        worst_rel = max(worst_rel, float((np.abs(_pair_dist(p) - d0)[far] / d0[far]).max()))
        worst_res = max(worst_res, _kabsch(x, p)[1])
        # the swirl moves points along the surface: directions change, not only radii
        cosang = (x * (p - p.mean(0))).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(p - p.mean(0), axis=1)
        worst_turn = max(worst_turn, float(np.degrees(np.arccos(np.clip(cosang, -1, 1))).max()))
    assert worst_rel > 0.15 and worst_res > 0.04 and worst_turn > 30.0, (worst_rel, worst_res, worst_turn)


def test_two_objects_move_rigidly_and_differently():
    cfg = _cfg("two_objects")
    x = _rest_samples(cfg, 800)
    a = x[:, 0] < 0
    assert 100 < a.sum() < len(x) - 100
    rot_a, rot_b, joint = [], [], []
    for t in np.linspace(0.1, 1.0, 6):
        p = syn.deform_points(x, t, cfg)
        for m in (a, ~a):
            assert np.abs(_pair_dist(p[m]) - _pair_dist(x[m])).max() < 1e-9
        Ra, _ = _kabsch(x[a], p[a])
        Rb, _ = _kabsch(x[~a], p[~a])
        rot_a.append(_angle(Ra))
        rot_b.append(_angle(Rb))
        joint.append(_kabsch(x, p)[1])
        assert np.linalg.norm(p[~a].mean(0) - x[~a].mean(0)) > 0.01 or abs(math.sin(2 * math.pi * t)) < 0.1
    assert max(rot_a) > 90.0 and max(rot_b) < 1e-4, (rot_a, rot_b)   # A turns, B only translates
    assert max(joint) > 0.05                                           # no single rigid motion fits both


def test_spin_turns_at_least_half_a_turn():
    cfg = _cfg("spin")
    x = _rest_samples(cfg, 300)
    ts = np.linspace(0.0, 1.0, 41)
    posed = [syn.deform_points(x, t, cfg) for t in ts]
    total = 0.0
    for p, q in zip(posed[:-1], posed[1:]):
        R, res = _kabsch(p, q)
        assert res < 1e-9 and np.abs(_pair_dist(q) - _pair_dist(x)).max() < 1e-9   # rigid
        total += _angle(R)
    assert total >= 180.0, total
    assert np.linalg.norm(posed[10].mean(0) - x.mean(0)) > 0.05            # and it translates


# --------------------------------------------------------------------------------------------- cameras

def _centres(path: Path, split: str) -> tuple[np.ndarray, list[np.ndarray]]:
    fr = json.loads((path / f"transforms_{split}.json").read_text())["frames"]
    c2w = [np.array(f["transform_matrix"]) for f in fr]
    return np.stack([m[:3, 3] for m in c2w]), c2w


@pytest.mark.parametrize("n", [6, 60])
def test_orbit_camera_moves_smoothly_around_the_object(n):
    cfg = SyntheticConfig(n_train=n, train_camera="orbit", seed=3)
    views = syn.train_cameras(cfg)
    c = np.stack([-V[:3, :3].T @ V[:3, 3] for V in views])
    assert np.allclose(np.linalg.norm(c, axis=1), cfg.camera_radius)
    step = np.linalg.norm(np.diff(c, axis=0), axis=1)
    bound = 1.1 * cfg.camera_radius * math.radians(cfg.orbit_sweep_deg + abs(np.diff(cfg.orbit_elevation_deg)[0])) \
        / (n - 1)
    assert (step > 0).all() and step.max() < bound, (step.max(), bound)
    assert step.max() < 2.0 * step.min()                                   # no jumps: near-constant speed
    az = np.degrees(np.unwrap(np.arctan2(c[:, 1], c[:, 0])))
    assert abs(az[-1] - az[0]) == pytest.approx(cfg.orbit_sweep_deg)
    assert 120.0 <= cfg.orbit_sweep_deg <= 180.0
    el = np.degrees(np.arcsin(c[:, 2] / cfg.camera_radius))
    assert el[0] == pytest.approx(cfg.orbit_elevation_deg[0]) and el[-1] == pytest.approx(cfg.orbit_elevation_deg[1])
    for V, ci in zip(views, c):                                            # every camera looks at the origin
        forward = V[2, :3]                                                 # OpenCV +z in world coordinates
        assert np.dot(forward, -ci / np.linalg.norm(ci)) > 1 - 1e-9
    # the random protocol teleports: its mean step is far larger
    rnd = syn.train_cameras(SyntheticConfig(n_train=n, seed=3))
    cr = np.stack([-V[:3, :3].T @ V[:3, 3] for V in rnd])
    assert np.linalg.norm(np.diff(cr, axis=0), axis=1).mean() > 3.0 * step.mean()


def test_orbit_scene_files_held_out_views_inside_the_arc(scenes):
    """The written orbit scene has the moving camera for train, val/test views inside the filmed arc (at the
    random protocol's times), the random protocol's fixed video camera, and that camera inside the arc."""
    po, pr = scenes("limb", "orbit"), scenes("limb", "random")
    c, c2w = _centres(po, "train")
    cfg = _cfg("limb", "orbit")
    views = syn.train_cameras(cfg)
    assert all(np.allclose(opengl_c2w_to_viewmat(m), V, atol=1e-9) for m, V in zip(c2w, views))
    assert (po / "transforms_video.json").read_text() == (pr / "transforms_video.json").read_text()

    def azel(centres):
        return (np.degrees(np.arctan2(centres[:, 1], centres[:, 0])),
                np.degrees(np.arcsin(centres[:, 2] / np.linalg.norm(centres, axis=1))))

    az_tr, _ = azel(c)
    ref = az_tr[len(az_tr) // 2]                                            # unwrap around the arc's middle
    wrap = lambda a: (a - ref + 180.0) % 360.0 - 180.0                      # noqa: E731
    lo, hi = wrap(az_tr).min(), wrap(az_tr).max()
    e_lo, e_hi = sorted(cfg.orbit_elevation_deg)
    for split in ("val", "test", "video"):
        cs, _ = _centres(po, split)
        az, el = azel(cs)
        assert np.all((wrap(az) >= lo - 1e-6) & (wrap(az) <= hi + 1e-6)), split
        if split != "video":
            assert np.all((el >= e_lo - 1e-6) & (el <= e_hi + 1e-6)), split
            times = [f["time"] for f in json.loads((po / f"transforms_{split}.json").read_text())["frames"]]
            want = [f["time"] for f in json.loads((pr / f"transforms_{split}.json").read_text())["frames"]]
            assert times == want
    meta = json.loads((po / "meta.json").read_text())
    assert meta["train_camera"]["protocol"] == "orbit"
    assert "train_camera" not in json.loads((pr / "meta.json").read_text())


# --------------------------------------------------------------------------------------------- config, hash, wiring

def test_default_hash_and_dict_unchanged():
    d = SyntheticConfig()
    # the value of the generator before the multi-camera mode, the families and the camera protocols existed
    assert config_hash(d) == "7335125e425d6b56"
    assert set(d.to_dict()) == {"resolution", "n_train", "n_val", "n_test", "n_video", "seed", "n_tracks",
                                "supersample", "camera_angle_x", "camera_radius", "elevation_deg",
                                "video_azimuth_deg", "video_elevation_deg", "size", "segments", "checker_size",
                                "motion_scale"}
    hashes = {config_hash(SyntheticConfig(motion=m)) for m in FAMILIES}
    hashes |= {config_hash(SyntheticConfig(train_camera="orbit")), config_hash(SyntheticConfig(train_depth=True))}
    assert len(hashes) == len(FAMILIES) + 2
    c = SyntheticConfig(motion="blob", train_camera="orbit", train_depth=True)
    assert {"motion", "train_camera", "train_depth"} <= set(c.to_dict())
    assert SyntheticConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    for bad in (dict(motion="wave"), dict(train_camera="teleport"), dict(train_camera="orbit", n_cameras=3),
                dict(orbit_sweep_deg=0.0), dict(orbit_elevation_deg=(10.0,)), dict(train_depth=1)):
        with pytest.raises(ValueError):
            SyntheticConfig(**bad)


def test_multiview_mode_with_a_family(tmp_path):
    cfg = SyntheticConfig(resolution=16, n_train=3, n_tracks=30, supersample=1, n_cameras=3, motion="two_objects")
    p = generate(tmp_path / "mv", cfg)
    meta = json.loads((p / "meta.json").read_text())
    assert meta["scene"] == "synthetic_two_objects_multiview" and meta["config"]["motion"] == "two_objects"
    tk = load_tracks(p)
    verts, faces = syn.scene_mesh(1.0, cfg)
    on = (verts[faces[tk["tri_index"].numpy()]] * tk["bary"].double().numpy()[:, :, None]).sum(1)
    assert np.abs(on - tk["xyz_train"][:, -1].numpy()).max() < 1e-5


def test_make_synthetic_command_options(tmp_path, capsys):
    from dyngauss.cli.make_synthetic import main

    out = tmp_path / "s"
    assert main(["--out", str(out), "--res", "16", "--n-train", "3", "--n-val", "1", "--n-test", "1", "--n-video",
                 "2", "--n-tracks", "10", "--supersample", "1", "--motion", "spin", "--train-camera", "orbit",
                 "--depth"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["family"] == "spin" and meta["train_camera"]["protocol"] == "orbit"
    assert sorted(q.name for q in (out / "train").glob("depth_*.npz")) == [f"depth_{i:03d}.npz" for i in range(3)]
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--motion", "wave"])


def test_run_config_builds_and_trains_a_family(tmp_path):
    from dyngauss.config import ConfigError, load_config
    from dyngauss.data.loaders import resolve_dataset
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = load_config(None, [
        f"out={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", "data.synthetic_motion=limb",
        "data.synthetic_train_camera=orbit", "data.synthetic_depth=true", "data.synthetic_resolution=32",
        "data.synthetic_train_frames=6", "model.num_points=200", "render.backend=torch", "train.iters=5",
        "train.warmup_iters=2", "train.progress=false", "train.log_every=1", "train.image_log_every=0",
        "train.save_every=0", "train.time_limit_s=600"])
    path = resolve_dataset(cfg.data)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["family"] == "limb" and meta["config"]["train_camera"] == "orbit"
    assert (path / "train" / "depth_005.npz").is_file()
    trainer = Trainer(cfg)
    means0 = trainer.gaussians.means.detach().clone()
    logs = [trainer.train_step() for _ in range(5)]
    assert all(math.isfinite(float(lg["loss"])) and not lg.get("skipped") for lg in logs)
    assert trainer.step == 5 and not torch.equal(trainer.gaussians.means.detach()[: len(means0)], means0)
    for bad in (["data.synthetic_motion=wave"], ["data.synthetic_train_camera=teleport"],
                ["data.synthetic_train_camera=orbit", "data.synthetic_cameras=3"]):
        with pytest.raises(ConfigError):
            load_config(None, bad)

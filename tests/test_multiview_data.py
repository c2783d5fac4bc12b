"""Multi-camera captures: the built-in scene's multi-camera mode (Panoptic layout), the Panoptic and Neural 3D Video
loaders (cameras round-trip onto the generator's masks, the LLFF axis convention both ways, lazy decoding, time
subsampling), their errors, format detection and config keys, and a short training run on the multi-camera scene."""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dyngauss.data import n3v
from dyngauss.data.camera import Camera, look_at_viewmat
from dyngauss.data.dnerf import DatasetError, load_tracks
from dyngauss.data.images import read_image
from dyngauss.data.loaders import available_splits, dataset_format, load_split, resolve_dataset, split_options
from dyngauss.data.multiview import MultiViewSplit
from dyngauss.data.synthetic import GENERATOR_VERSION, OPTIONAL_DEFAULTS, SyntheticConfig, config_hash, generate
from dyngauss.data.synthetic_multiview import read_depth

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

RES, CAMS, TIMES = 48, 4, 6
CFG = SyntheticConfig(resolution=RES, n_train=TIMES, n_tracks=300, supersample=2, n_cameras=CAMS)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("mv") / "scene", CFG)


def _copy(scene: Path, dst: Path) -> Path:
    shutil.copytree(scene, dst)
    return dst


def _generator_mask(scene: Path, cam: str | int, step: int) -> np.ndarray:
    """The generator's coverage alpha [H,W] of camera `cam` at time step `step` (from its RGBA image)."""
    _, a = read_image(scene / "ims" / str(cam) / f"{step:06d}.png")
    return a[..., 0]


def _on_mask(cam: Camera, xyz: torch.Tensor, mask: np.ndarray) -> tuple[float, float]:
    """Project points [P,3] with `cam` onto a coverage mask [H,W]: (fraction on > 0.5, max distance in px from a
    miss to the nearest > 0.5 pixel centre; inf when a point falls outside the image or behind the camera)."""
    uv, z = cam.project(xyz.float())
    uv = uv.numpy()
    col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height) & (z.numpy() > 0)
    a = np.where(inside, mask[row.clip(0, cam.height - 1), col.clip(0, cam.width - 1)], 0.0)
    miss = a <= 0.5
    ys, xs = np.nonzero(mask > 0.5)
    centres = np.stack([xs + 0.5, ys + 0.5], -1)
    d = np.zeros(len(a))
    if miss.any():
        d[miss] = np.sqrt(((uv[miss, None] - centres[None]) ** 2).sum(-1)).min(1) if len(centres) else np.inf
    d[miss & ~inside] = np.inf
    return float((a > 0.5).mean()), float(d.max()) if len(d) else 0.0


def _round_trip(split: MultiViewSplit, tracks: dict, masks, cameras=None) -> tuple[float, float]:
    """Every frame: the generator's track points at the frame's source time step, projected with `cameras`
    (default the split's), onto masks(frame row) -> (worst fraction, worst distance) over the frames."""
    xyz = tracks["xyz_train"]
    fr, dist = [], []
    for k, cam in enumerate(cameras or split.cameras):
        step = int(split.source_frames[split.time_index[k]])
        f, d = _on_mask(cam, xyz[:, step], masks(k))
        fr.append(f)
        dist.append(d)
    return min(fr), max(dist)


def _wrong(cameras: list[Camera], flip: np.ndarray) -> list[Camera]:
    """The same cameras with their axes flipped by `flip` [3,3] (a convention bug)."""
    F = np.eye(4)
    F[:3, :3] = flip
    return [Camera(c.K, F @ c.viewmat.double().numpy(), c.width, c.height, c.time) for c in cameras]


# --------------------------------------------------------------------------------------------- generator

def test_multiview_scene_layout(scene):
    meta = json.loads((scene / "meta.json").read_text())
    assert meta["n_cameras"] == CAMS and meta["n_times"] == TIMES and meta["layout"] == "panoptic"
    assert meta["frame_counts"] == {"train": TIMES * (CAMS - 1), "test": TIMES}
    assert [c["split"] for c in meta["cameras"]] == ["test"] + ["train"] * (CAMS - 1)
    assert all(v == f"0/{TIMES}" for v in meta["checks"]["frames_touching_border"].values())
    tr_meta = json.loads((scene / "train_meta.json").read_text())
    assert tr_meta["cam_id"][0] == list(range(1, CAMS)) and len(tr_meta["fn"]) == TIMES
    # fixed cameras: the same pose at every time step, distinct cameras
    assert all(row == tr_meta["w2c"][0] for row in tr_meta["w2c"])
    assert len({json.dumps(w) for w in tr_meta["w2c"][0]}) == CAMS - 1
    tk = load_tracks(scene)
    assert tk["xyz_train"].shape == (300, TIMES, 3) and torch.allclose(tk["times_test"], torch.arange(TIMES) / 5.0)
    d = read_depth(scene, 2, 3)
    a = _generator_mask(scene, 2, 3)
    assert d.shape == (RES, RES) and np.isfinite(d[a > 0.99]).all() and np.isinf(d[a == 0]).all()


def test_multiview_generation_is_deterministic_and_monocular_unchanged(tmp_path):
    cfg = SyntheticConfig(resolution=16, n_train=3, n_tracks=20, supersample=1, n_cameras=3)
    a, b = generate(tmp_path / "a", cfg), generate(tmp_path / "b", cfg)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != ".complete")
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # the monocular config's dict (and so its hash, meta.json and cache folder) has no n_cameras
    mono = SyntheticConfig()
    assert "n_cameras" not in mono.to_dict() and cfg.to_dict()["n_cameras"] == 3
    old = {f.name: (list(v) if isinstance(v := getattr(mono, f.name), tuple) else v) for f in fields(mono)
           if f.name not in OPTIONAL_DEFAULTS}
    blob = json.dumps({"generator_version": GENERATOR_VERSION, **old}, sort_keys=True)
    assert config_hash(mono) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert config_hash(cfg) != config_hash(SyntheticConfig(resolution=16, n_train=3, n_tracks=20, supersample=1))
    with pytest.raises(ValueError, match="n_cameras"):
        SyntheticConfig(n_cameras=1)


def test_make_synthetic_multiview_command(tmp_path, capsys):
    from dyngauss.cli.make_synthetic import main

    out = tmp_path / "mv"
    assert main(["--multiview", "--cameras", "3", "--n-train", "2", "--res", "16", "--supersample", "1",
                 "--n-tracks", "10", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_cameras"] == 3 and meta["n_times"] == 2 and dataset_format(out) == "panoptic"
    with pytest.raises(SystemExit):
        main(["--cameras", "1", "--out", str(tmp_path / "one")])


# --------------------------------------------------------------------------------------------- Panoptic loader

def test_panoptic_split_structure_and_lazy_decoding(scene):
    tr = load_split(scene, "train")
    assert isinstance(tr, MultiViewSplit) and len(tr) == TIMES * (CAMS - 1)
    assert tr.camera_names == [str(c) for c in range(1, CAMS)] and tr.n_times == TIMES
    assert tr.images.store.decoded_groups == 0                      # nothing decoded at load time
    assert tuple(tr.images.shape) == (len(tr), RES, RES, 3) and tr.alphas is not None and tr.masks is not None
    # time-major order; frames_at gives every camera at one time
    assert tr.frames_at(2) == [6, 7, 8] and all(float(tr.cameras[i].time) == pytest.approx(0.4) for i in [6, 7, 8])
    g = tr.grid()
    assert g.shape == (TIMES, CAMS - 1) and g[3, 1] == 10 and int(tr.camera_index[10]) == 1
    img = tr.images[10]
    assert img.shape == (RES, RES, 3) and tr.images.store.decoded_groups == 1
    # composited on white, like the D-NeRF loader
    rgb, a = read_image(scene / "ims" / "2" / "000003.png")
    want = rgb * a + (1 - a)
    assert np.abs(img.numpy() - want).max() <= 0.5 / 255 + 1e-6
    assert np.abs(tr.alphas[10, :, :, 0].numpy() - a[..., 0]).max() <= 0.5 / 255 + 1e-6
    assert torch.equal(tr.images.to("cpu")[10], img) and torch.equal(tr.images[[10, 3]][0], img)
    te = load_split(scene, "test")
    assert te.camera_names == ["0"] and len(te) == TIMES and torch.equal(te.times, tr.time_values)
    assert te.bbox_source == "meta" and tr.meta["points"].shape[1] == 3


def test_panoptic_cameras_round_trip_onto_the_generators_masks(scene):
    tracks = load_tracks(scene)
    for name in ("train", "test"):
        sp = load_split(scene, name)
        f, d = _round_trip(sp, tracks, lambda k: sp.alphas[k, :, :, 0].numpy())
        assert f >= 0.9 and d <= 1.5, (name, f, d)
        # the loaded seg masks (coverage >= 0.5) agree
        f, d = _round_trip(sp, tracks, lambda k: sp.masks[k, :, :, 0].numpy())
        assert f >= 0.9 and d <= 1.5, (name, f, d)
        # a convention bug (y and z of the camera flipped: OpenGL read as OpenCV; or only y) misses the masks
        for flip in (np.diag([1.0, -1.0, -1.0]), np.diag([1.0, -1.0, 1.0])):
            f, d = _round_trip(sp, tracks, lambda k: sp.alphas[k, :, :, 0].numpy(), _wrong(sp.cameras, flip))
            assert f < 0.9 or d > 1.5, (name, flip, f, d)


def test_panoptic_depth_agrees_with_the_cameras(scene):
    """Visible track points: their camera depth under the loaded cameras equals the generator's depth map."""
    sp = load_split(scene, "train")
    xyz = load_tracks(scene)["xyz_train"]
    errs = []
    for k in sp.frames_at(4):
        cam = sp.cameras[k]
        uv, z = cam.project(xyz[:, 4].float())
        depth = read_depth(scene, sp.camera_names[int(sp.camera_index[k])], 4)
        col, row = uv[:, 0].floor().long().clamp(0, RES - 1), uv[:, 1].floor().long().clamp(0, RES - 1)
        dm = torch.from_numpy(depth)[row, col]
        vis = torch.isfinite(dm) & ((dm - z).abs() < 0.05)  # front-facing points; occluded ones are deeper
        ahead = torch.isfinite(dm) & (z < dm - 0.1)       # in front of the visible surface: only at silhouettes
        assert vis.float().mean() > 0.2 and ahead.float().mean() < 0.05, (vis.float().mean(), ahead.float().mean())
        errs.append((dm - z)[vis].abs().median())
    assert max(errs) < 0.02, errs


def test_panoptic_time_subsampling_and_frame_subset(scene):
    sp = load_split(scene, "train", time_stride=2, max_frames=2)
    assert sp.source_frames.tolist() == [0, 2] and sp.time_values.tolist() == pytest.approx([0.0, 0.4])
    assert len(sp) == 2 * (CAMS - 1) and sp.frames_at(1) == [3, 4, 5]
    sub = load_split(scene, "train", frames=[4, 1])
    assert [c.index for c in sub.cameras] == [4, 1] and len(sub.images) == 2
    full = load_split(scene, "train")
    assert torch.equal(sub.images[0], full.images[4])
    half = load_split(scene, "train", downscale=2)
    assert half.width == RES // 2 and torch.allclose(half.cameras[0].K[0, 0], full.cameras[0].K[0, 0] / 2)


def test_frame_cache_stays_within_its_budget(scene):
    frame_bytes = RES * RES * 5                                        # rgb + alpha + mask, uint8
    sp = load_split(scene, "train", cache_gb=2.5 * frame_bytes / 2**30)
    for i in range(len(sp)):
        sp.images[i]
    assert sp.images.store.cached_bytes <= 2.5 * frame_bytes and sp.images.store.decoded_groups == len(sp)
    sp.images[len(sp) - 1]                                            # the newest is cached
    assert sp.images.store.decoded_groups == len(sp)
    sp.images[0]                                                       # the oldest was evicted
    assert sp.images.store.decoded_groups == len(sp) + 1


def test_panoptic_seg_masks_as_alpha_on_a_jpeg_capture(scene, tmp_path):
    """Dynamic3DGaussians' layout: RGB JPEG photos + seg masks. seg_as_alpha composites the photo on the background
    through the mask; without it the full photo trains and the masks stay in split.masks."""
    root = _copy(scene, tmp_path / "jpg")
    for name in ("train_meta.json", "test_meta.json"):
        m = json.loads((root / name).read_text())
        m["fn"] = [[f.replace(".png", ".jpg") for f in row] for row in m["fn"]]
        (root / name).write_text(json.dumps(m))
    for p in sorted((root / "ims").rglob("*.png")):
        rgb, a = read_image(p)
        Image.fromarray(np.round(rgb * a * 255).astype(np.uint8)).save(p.with_suffix(".jpg"), quality=95)
        p.unlink()
    sp = load_split(root, "train", background=(0.0, 1.0, 0.0))
    assert sp.alphas is not None
    img, mask = sp.images[5].numpy(), sp.masks[5, :, :, 0].numpy()
    assert np.allclose(img[mask == 0], [0.0, 1.0, 0.0], atol=1e-6)     # background replaced through the mask
    f, d = _round_trip(sp, load_tracks(root), lambda k: sp.alphas[k, :, :, 0].numpy())
    assert f >= 0.9 and d <= 1.5
    raw = load_split(root, "train", background=(0.0, 1.0, 0.0), seg_as_alpha=False)
    assert raw.alphas is None and raw.masks is not None
    assert raw.images[5].numpy()[mask == 0].mean() < 0.05               # the photo's own (black) background


def test_panoptic_init_points_feed_the_model_init(scene):
    from dyngauss.config import ModelConfig
    from dyngauss.train.init import initial_gaussians

    sp = load_split(scene, "train")
    pts, cols = sp.meta["points"], sp.meta["point_colors"]
    assert len(pts) > 100 and cols.shape == pts.shape and 0 <= cols.min() and cols.max() <= 1
    assert (sp.meta["point_seg"] == 1).all()
    # the points lie on the object at t = 0: they project onto the masks of the training frames at time 0
    for k in sp.frames_at(0):
        f, _ = _on_mask(sp.cameras[k], torch.from_numpy(pts), sp.alphas[k, :, :, 0].numpy())
        assert f > 0.6
    g = initial_gaussians(ModelConfig(num_points=50), sp.cameras, sp.images, sp.alphas, points=pts, colors=cols,
                          center=sp.scene_center.numpy(), radius=sp.scene_radius)
    assert len(g) == len(pts) + 50 and torch.allclose(g.means[: len(pts)], torch.from_numpy(pts))


# --------------------------------------------------------------------------------------------- Panoptic errors

def _edit_meta(root: Path, fn, name: str = "train_meta.json") -> None:
    m = json.loads((root / name).read_text())
    fn(m)
    (root / name).write_text(json.dumps(m))


def test_panoptic_errors_name_the_file(scene, tmp_path):
    root = _copy(scene, tmp_path / "bad")
    mp = root / "train_meta.json"
    good = mp.read_text()
    _edit_meta(root, lambda m: m.pop("w2c"))
    with pytest.raises(DatasetError, match=r"train_meta\.json: missing key 'w2c'"):
        load_split(root, "train")
    mp.write_text(good)
    _edit_meta(root, lambda m: m["k"].pop())
    with pytest.raises(DatasetError, match=r"train_meta\.json: 'k' must be a list of 6 time steps"):
        load_split(root, "train")
    mp.write_text(good)
    _edit_meta(root, lambda m: m["w2c"][1].__setitem__(0, (np.diag([1.0, 2.0, 1.0, 1.0])).tolist()))
    with pytest.raises(DatasetError, match=r"time step 1, camera 0 .*'w2c' is not a camera pose"):
        load_split(root, "train")
    mp.write_text(good)
    _edit_meta(root, lambda m: [m[k].pop() for k in ("k", "w2c", "fn", "cam_id")], "test_meta.json")
    with pytest.raises(DatasetError, match=r"has 6 time steps but .*test_meta\.json has 5"):
        load_split(root, "train")
    shutil.copy(scene / "test_meta.json", root / "test_meta.json")
    mp.write_text("{ not json")
    with pytest.raises(DatasetError, match=r"malformed JSON in .*train_meta\.json"):
        load_split(root, "train")
    mp.write_text(good)
    with pytest.raises(DatasetError, match=r"split 'val': meta file not found: .*val_meta\.json"):
        load_split(root, "val")
    (root / "ims" / "2" / "000004.png").unlink()                       # a missing camera image
    with pytest.raises(DatasetError, match=r"camera 2: image file not found: .*ims/2/000004\.png"):
        load_split(root, "train")
    shutil.copy(scene / "ims" / "2" / "000004.png", root / "ims" / "2" / "000004.png")
    (root / "seg" / "3" / "000001.png").unlink()
    with pytest.raises(DatasetError, match=r"has no mask .*seg/3/000001\.png"):
        load_split(root, "train")
    shutil.copy(scene / "seg" / "3" / "000001.png", root / "seg" / "3" / "000001.png")
    (root / "ims" / "1" / "000005.png").write_bytes(b"not an image")   # unreadable: an error on access
    sp = load_split(root, "train")
    with pytest.raises(DatasetError, match=r"corrupt or unreadable image .*ims/1/000005\.png"):
        sp.images[sp.frames_at(5)[0]]
    (root / "init_pt_cld.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"init_pt_cld\.npz"):
        load_split(root, "test")
    np.savez(root / "init_pt_cld.npz", data=np.zeros((5, 4)))
    with pytest.raises(DatasetError, match=r"init_pt_cld\.npz: 'data' must be an \[M,7\]"):
        load_split(root, "test")


# --------------------------------------------------------------------------------------------- Neural 3D Video

def _write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    H, W = frames[0].shape[:2]
    w = imageio_ffmpeg.write_frames(str(path), (W, H), fps=fps, codec="libx264", pix_fmt_out="yuv444p",
                                    output_params=["-crf", "0"], macro_block_size=1, ffmpeg_log_level="error")
    w.send(None)
    for f in frames:
        w.send(np.ascontiguousarray(f))
    w.close()


def _composite_frames(scene: Path, cam: int, steps) -> list[np.ndarray]:
    out = []
    for t in steps:
        rgb, a = read_image(scene / "ims" / str(cam) / f"{t:06d}.png")
        out.append(np.round(rgb * a * 255).astype(np.uint8))            # on black
    return out


def write_n3v(scene: Path, root: Path, steps=range(TIMES)) -> Path:
    """A Neural 3D Video capture of the multi-camera scene: camera c -> camNN.mp4 (its frames on black), its
    pose (from the generator's w2c and K) written in LLFF's [down, right, back] axes into poses_bounds.npy."""
    root.mkdir(parents=True)
    cams = {}
    for name in ("train_meta.json", "test_meta.json"):
        m = json.loads((scene / name).read_text())
        for c, cid in enumerate(m["cam_id"][0]):
            cams[cid] = (np.array(m["w2c"][0][c]), np.array(m["k"][0][c]))
    rows = []
    for cid in sorted(cams):
        w2c, K = cams[cid]
        pose = n3v.viewmat_to_llff(w2c, RES, RES, K[0, 0])
        rows.append(np.r_[pose.ravel(), 1.5, 5.0])
        _write_video(root / f"cam{cid:02d}.mp4", _composite_frames(scene, cid, steps))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


@pytest.fixture(scope="module")
def capture(scene, tmp_path_factory) -> Path:
    return write_n3v(scene, tmp_path_factory.mktemp("n3v") / "cap")


def test_llff_axis_convention_both_ways():
    # a camera at -3 y looking at the origin, z up: right = +x, down = -z, back = -y (towards the camera)
    V = look_at_viewmat((0.0, -3.0, 0.0), (0, 0, 0), (0, 0, 1))
    pose = n3v.viewmat_to_llff(V, 480, 640, 500.0)
    assert np.allclose(pose[:, 0], [0, 0, -1]) and np.allclose(pose[:, 1], [1, 0, 0])
    assert np.allclose(pose[:, 2], [0, -1, 0]) and np.allclose(pose[:, 3], [0, -3, 0])
    assert np.allclose(pose[:, 4], [480, 640, 500])
    back, hwf = n3v.llff_to_viewmat(pose)
    assert np.allclose(back, V) and hwf == (480.0, 640.0, 500.0)
    # and from LLFF: a random rotation in [down, right, back] columns survives the trip
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    P = np.concatenate([q, [[0.3], [-1.0], [2.0]], [[100], [200], [150]]], 1)
    assert np.allclose(n3v.viewmat_to_llff(n3v.llff_to_viewmat(P)[0], 100, 200, 150), P)


def test_n3v_cameras_round_trip_onto_the_generators_masks(scene, capture):
    assert dataset_format(capture) == "n3v" and available_splits(capture) == ["train", "test"]
    tr = load_split(capture, "train")
    assert tr.camera_names == ["cam01", "cam02", "cam03"] and tr.n_times == TIMES   # cam00 held out
    assert tr.images.store.decoded_groups == 0
    meta = json.loads((scene / "train_meta.json").read_text())
    for k in tr.frames_at(0):                                          # the generator's cameras, exactly
        c = int(tr.camera_index[k])
        assert np.allclose(tr.cameras[k].viewmat.numpy(), meta["w2c"][0][c], atol=1e-5)
        assert np.allclose(tr.cameras[k].K.numpy(), meta["k"][0][c], atol=1e-4)
    tracks = load_tracks(scene)

    def masks(sp):
        return lambda k: _generator_mask(scene, int(sp.camera_names[int(sp.camera_index[k])][3:]),
                                         int(sp.source_frames[sp.time_index[k]]))

    for sp in (tr, load_split(capture, "test")):
        f, d = _round_trip(sp, tracks, masks(sp))
        assert f >= 0.9 and d <= 1.5, (sp.split, f, d)
    # reading LLFF's columns as if they were OpenCV's (no axis swap), or as OpenGL's, misses the masks
    raw = np.load(capture / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    for conv in (np.eye(3), np.diag([1.0, -1.0, -1.0])):
        wrong = []
        for cam in tr.cameras:
            c2w = np.eye(4)
            c2w[:3, :3] = raw[int(cam.name[3:5])][:, :3] @ conv
            c2w[:3, 3] = raw[int(cam.name[3:5])][:, 3]
            wrong.append(Camera(cam.K, np.linalg.inv(c2w), cam.width, cam.height, cam.time))
        f, d = _round_trip(tr, tracks, masks(tr), wrong)
        assert f < 0.9 or d > 1.5, (conv, f, d)


def test_n3v_frames_decode_in_order_and_chunks_seek_exactly(scene, capture):
    tr = n3v.load_n3v(capture, "train", chunk_frames=4)
    whole = n3v.load_n3v(capture, "train", chunk_frames=100)
    src = {t: _composite_frames(scene, 2, [t])[0].astype(np.float32) / 255 for t in range(TIMES)}
    for t in range(TIMES):
        k = tr.frames_at(t)[1]                                          # cam02
        img = tr.images[k].numpy()
        err = {s: np.abs(img - v).mean() for s, v in src.items()}
        assert min(err, key=err.get) == t and err[t] < 0.01, (t, err)  # the right frame, nearly lossless
        assert torch.equal(tr.images[k], whole.images[k])               # chunk 1 (a seek) decodes as from frame 0
    assert tr.images.store.decoded_groups == 2 and whole.images.store.decoded_groups == 1
    sub = n3v.load_n3v(capture, "train", time_stride=2, max_frames=2, downscale=2)
    assert sub.source_frames.tolist() == [0, 2] and sub.times.tolist()[:3] == [0.0] * 3
    assert sub.time_values.tolist() == pytest.approx([0.0, 0.4]) and sub.width == RES // 2
    assert torch.allclose(sub.cameras[0].K[0, 0], tr.cameras[0].K[0, 0] / 2)
    te = n3v.load_n3v(capture, "test", test_camera="cam01,cam03")
    assert te.camera_names == ["cam01", "cam03"]
    assert n3v.load_n3v(capture, "train", test_camera="cam01,cam03").camera_names == ["cam00", "cam02"]
    assert available_splits(capture, test_camera="") == ["train"]


def test_n3v_errors_name_the_file(scene, capture, tmp_path):
    root = _copy(capture, tmp_path / "bad")
    (root / "cam02.mp4").rename(tmp_path / "cam02.mp4")                # a missing camera video
    with pytest.raises(DatasetError, match=r"4 camera poses but .* 3 videos .*missing: cam02\.mp4"):
        load_split(root, "train")
    (tmp_path / "cam02.mp4").rename(root / "cam02.mp4")
    _write_video(root / "cam03.mp4", _composite_frames(scene, 3, range(4)))   # shorter video
    with pytest.raises(DatasetError, match=r"different frame counts: .*cam03\.mp4 has 4"):
        load_split(root, "train")
    assert len(load_split(root, "train", max_frames=4)) == 4 * 3        # the common part is usable
    shutil.copy(capture / "cam03.mp4", root / "cam03.mp4")
    (root / "cam01.mp4").write_bytes(b"\x00not a video" * 100)         # unreadable
    with pytest.raises(DatasetError, match=r"cannot read video .*cam01\.mp4"):
        load_split(root, "test")
    shutil.copy(capture / "cam01.mp4", root / "cam01.mp4")
    _write_video(root / "cam01.mp4", [np.zeros((RES, RES + 16, 3), np.uint8)] * TIMES)   # another size
    with pytest.raises(DatasetError, match=r"videos differ in size: .*cam01\.mp4"):
        load_split(root, "train")
    shutil.copy(capture / "cam01.mp4", root / "cam01.mp4")
    good = np.load(capture / "poses_bounds.npy")
    np.save(root / "poses_bounds.npy", good[:, :15])                   # wrong shape
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy: expected an N x 17 array"):
        load_split(root, "train")
    bad = good.copy()
    bad[2, :15] = (good[2, :15].reshape(3, 5) * [[1, 1, 2, 1, 1]] * np.ones((3, 1))).ravel()  # not a rotation
    np.save(root / "poses_bounds.npy", bad)
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy: row 2 \(cam02\.mp4\): pose"):
        load_split(root, "train")
    bad = good.copy()
    bad[1, 15:] = [3.0, 1.0]
    np.save(root / "poses_bounds.npy", bad)
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy: row 1: near/far"):
        load_split(root, "train")
    np.save(root / "poses_bounds.npy", good)
    with pytest.raises(DatasetError, match=r"test camera 'cam9' is not one of the videos"):
        load_split(root, "train", test_camera="cam9")
    with pytest.raises(DatasetError, match="no split 'val'"):
        load_split(root, "val")
    for v in root.glob("*.mp4"):
        v.unlink()
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy but no camera videos"):
        load_split(root, "train")


def test_unrecognised_folder_names_every_format(tmp_path):
    with pytest.raises(DatasetError, match=r"train_meta\.json .*poses_bounds\.npy"):
        dataset_format(tmp_path)


# --------------------------------------------------------------------------------------------- config + training

def _tiny(tmp: Path, overrides: list[str]):
    from dyngauss.config import load_config

    return load_config(None, [
        f"out={tmp / 'run'}", f"data.cache_dir={tmp / 'cache'}", "data.synthetic_resolution=16",
        "data.synthetic_train_frames=3", "data.synthetic_cameras=3", "model.num_points=100", "render.backend=torch",
        "train.iters=4", "train.warmup_iters=2", "train.progress=false", "train.log_every=1",
        "train.image_log_every=0", "train.save_every=0", "train.time_limit_s=600", "densify.refine_start_iter=1",
        "densify.refine_every=2", "eval.lpips=false", "export.frames=2"] + overrides)


def test_data_config_keys_reach_the_loader(tmp_path):
    from dyngauss.config import ConfigError

    cfg = _tiny(tmp_path, ["data.time_stride=2", "data.max_frames=1", "data.frame_cache_gb=0.5",
                           "data.seg_as_alpha=false", "data.test_camera=cam00"])
    opts = split_options(cfg.data)
    assert opts["time_stride"] == 2 and opts["max_frames"] == 1 and opts["cache_gb"] == 0.5
    assert opts["seg_as_alpha"] is False and opts["test_camera"] == "cam00"
    path = resolve_dataset(cfg.data)
    assert dataset_format(path) == "panoptic" and json.loads((path / "meta.json").read_text())["n_cameras"] == 3
    sp = load_split(path, "train", **opts)
    assert sp.source_frames.tolist() == [0] and sp.images.store.budget_bytes == 2**29
    for bad in ("data.synthetic_cameras=1", "data.time_stride=0", "data.max_frames=-1", "data.frame_cache_gb=0",
                "data.test_camera=cam 00"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            _tiny(tmp_path, [bad])


def test_training_runs_on_the_multi_camera_scene(tmp_path):
    from dyngauss.train.run import run_job

    torch.set_num_threads(1)
    cfg = _tiny(tmp_path, [])
    metrics = run_job(cfg, log=lambda *a: None)
    assert metrics["split"] == "test" and metrics["num_eval_frames"] == 3 and np.isfinite(metrics["psnr"])
    assert metrics["track_split"] == "test" and np.isfinite(metrics["track_epe"])
    assert (Path(cfg.out) / "renders" / "test").is_dir()

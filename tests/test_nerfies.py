"""Nerfies / HyperNeRF loader: cameras against known OpenCV viewmats, an independent projection check with the
Nerfies camera model, image scales, lens undistortion, splits and times, errors, and format dispatch."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dyngauss.data.camera import look_at_viewmat, viewmat_to_opengl_c2w
from dyngauss.data.dnerf import DatasetError, load_dnerf
from dyngauss.data.loaders import available_splits, dataset_format, load_split
from dyngauss.data.nerfies import is_nerfies_folder, load_nerfies

CENTER = np.array([0.3, -0.2, 0.5])
SCALE = 0.25
IDS = [f"left1_{i:06d}" for i in range(6)]
TRAIN = [IDS[i] for i in (0, 2, 3, 5)]
VAL = [IDS[1], IDS[4]]
FOCAL, PAR, PP = 30.0, 1.1, (15.7, 12.2)
W0, H0 = 32, 24
X_NORM = np.array([0.1, -0.05, 0.08])   # marker point, normalised scene coordinates
X_WORLD = X_NORM / SCALE + CENTER       # the same point in the capture's world
MARK = np.array([1.0, 0.0, 1.0])


def _viewmat(i: int) -> np.ndarray:
    """Known OpenCV world-to-camera matrix of frame i (normalised scene)."""
    a = 0.25 * i
    eye = [2.0 * np.cos(a), 2.0 * np.sin(a), 0.4 + 0.05 * i]
    return look_at_viewmat(eye, target=(0.05, 0.0, 0.0), up=(0, 0, 1))


def _camera_json(V: np.ndarray, **kw) -> dict:
    """Nerfies camera JSON of an OpenCV viewmat in the normalised scene."""
    R = V[:3, :3]
    centre = -R.T @ V[:3, 3]
    cam = {"orientation": R.tolist(), "position": (centre / SCALE + CENTER).tolist(), "focal_length": FOCAL,
           "principal_point": list(PP), "skew": 0.0, "pixel_aspect_ratio": PAR,
           "radial_distortion": [0.0, 0.0, 0.0], "tangential_distortion": [0.0, 0.0], "image_size": [W0, H0]}
    cam.update(kw)
    return cam


def nerfies_project(cam: dict, X: np.ndarray) -> np.ndarray:
    """Pixel (x, y) of world point X by the Nerfies camera model (camera.py ``project``), from the JSON."""
    R, p = np.asarray(cam["orientation"]), np.asarray(cam["position"])
    loc = R @ (X - p)
    x, y = loc[0] / loc[2], loc[1] / loc[2]
    k1, k2, k3 = cam["radial_distortion"]
    p1, p2 = cam.get("tangential_distortion", cam.get("tangential"))
    r2 = x * x + y * y
    d = 1.0 + r2 * (k1 + r2 * (k2 + k3 * r2))
    xd = x * d + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * d + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)
    f, (ppx, ppy) = cam["focal_length"], cam["principal_point"]
    return np.array([f * xd + cam["skew"] * yd + ppx, f * cam["pixel_aspect_ratio"] * yd + ppy])


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(img * 255), 0, 255).astype(np.uint8)).save(path)


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def make_capture(root: Path, scales=(1, 2), time_key: str = "time_id", points: bool = False) -> Path:
    """6 frames of 32x24 (rgb/1x) and 16x12 (rgb/2x) with a magenta marker at the Nerfies projection of X."""
    rng = np.random.default_rng(0)
    _write(root / "dataset.json", {"count": 6, "num_exemplars": 4, "ids": IDS, "train_ids": TRAIN,
                                   "val_ids": VAL})
    _write(root / "metadata.json", {i: {"warp_id": k, "appearance_id": k, "camera_id": 0,
                                        **({time_key: 2 * k} if time_key else {})} for k, i in enumerate(IDS)})
    _write(root / "scene.json", {"scale": SCALE, "center": CENTER.tolist(), "near": 0.5, "far": 4.0})
    for k, item in enumerate(IDS):
        cam = _camera_json(_viewmat(k))
        _write(root / "camera" / f"{item}.json", cam)
        img = rng.uniform(0.0, 0.3, (H0, W0, 3))
        u, v = nerfies_project(cam, X_WORLD)
        img[int(v), int(u)] = MARK
        for s in scales:
            small = img.reshape(H0 // s, s, W0 // s, s, 3).mean(axis=(1, 3))
            _save(root / "rgb" / f"{s}x" / f"{item}.png", small)
    if points:
        np.save(root / "points.npy", np.array([[-1.0, -1, -1], [1, 1, 1], [0, 0, 0]]) / SCALE + CENTER)
    return root


def _K(s: float = 1.0) -> torch.Tensor:
    return torch.tensor([[FOCAL * s, 0, PP[0] * s], [0, FOCAL * PAR * s, PP[1] * s], [0, 0, 1]])


def _raises(parts, fn, *a, **k) -> str:
    with pytest.raises(DatasetError) as ei:
        fn(*a, **k)
    msg = str(ei.value)
    for part in parts:
        assert str(part) in msg, (part, msg)
    return msg


# --------------------------------------------------------------------------------------------- loading

def test_cameras_times_and_splits(tmp_path):
    root = make_capture(tmp_path / "cap")
    assert is_nerfies_folder(root) and dataset_format(root) == "nerfies"
    d = load_nerfies(root, "train")
    assert d.names == TRAIN and [c.index for c in d.cameras] == [0, 1, 2, 3]
    assert d.images.shape == (4, H0, W0, 3) and d.images.dtype == torch.float32 and d.alphas is None
    assert d.meta["image_scale"] == 1
    for c in d.cameras:
        k = IDS.index(c.name)
        assert (c.width, c.height) == (W0, H0)
        assert torch.allclose(c.K, _K(), atol=1e-5)
        assert np.allclose(c.viewmat.numpy(), _viewmat(k), atol=1e-5)
        assert abs(c.time - k / 5) < 1e-7                      # time_id 2k, max 10
    assert torch.allclose(d.times, torch.tensor([IDS.index(n) / 5 for n in TRAIN]))
    assert load_nerfies(root, "val").names == VAL and load_nerfies(root, "test").names == VAL
    assert load_nerfies(root, "all").names == IDS
    assert available_splits(root) == ["train", "val", "test", "all"]
    assert d.bbox_source == "cameras" and np.isfinite(d.scene_radius) and d.scene_radius > 0
    assert d.meta["near"] == 0.5 and d.meta["far"] == 4.0
    # frames subset keeps the row in the full split
    sub = load_nerfies(root, "train", frames=[2])
    assert sub.names == [TRAIN[2]] and sub.cameras[0].index == 2


def test_marker_projects_where_nerfies_puts_it(tmp_path):
    """Independent check of the convention: the Nerfies model (from the JSON, raw world) and our Camera
    (normalised world) put X on the same pixel, and the image has the marker there."""
    root = make_capture(tmp_path / "cap")
    d = load_nerfies(root, "all")
    for k, c in enumerate(d.cameras):
        cam = json.loads((root / "camera" / f"{c.name}.json").read_text())
        expect = nerfies_project(cam, X_WORLD)
        uv, z = c.project(torch.tensor(X_NORM, dtype=torch.float32))
        assert z > 0 and np.allclose(uv.numpy(), expect, atol=1e-3), (uv, expect)
        col, row = int(uv[0]), int(uv[1])
        assert np.allclose(d.images[k, row, col].numpy(), MARK, atol=1 / 255)
        others = d.images[k].clone()
        others[row, col] = 0
        assert others.max() < 0.31                            # the marker is the only such pixel


def test_image_scale_picks_folder_and_scales_intrinsics(tmp_path):
    root = make_capture(tmp_path / "cap")
    d2 = load_nerfies(root, "train", image_scale=2)
    assert d2.images.shape == (4, H0 // 2, W0 // 2, 3) and d2.meta["image_scale"] == 2
    full = load_nerfies(root, "train")
    for c, c1 in zip(d2.cameras, full.cameras):
        assert (c.width, c.height) == (W0 // 2, H0 // 2)
        assert torch.allclose(c.K, _K(0.5), atol=1e-5)
        assert torch.allclose(c.viewmat, c1.viewmat)
        uv2, _ = c.project(torch.tensor(X_NORM, dtype=torch.float32))
        uv1, _ = c1.project(torch.tensor(X_NORM, dtype=torch.float32))
        assert torch.allclose(uv2, uv1 / 2, atol=1e-4)
    shutil.rmtree(root / "rgb" / "1x")                      # smallest available k is picked
    d = load_nerfies(root, "train")
    assert d.meta["image_scale"] == 2 and torch.allclose(d.cameras[0].K, _K(0.5), atol=1e-5)
    # downscale on top of the chosen folder, like load_dnerf
    d4 = load_nerfies(root, "train", downscale=2)
    assert d4.images.shape == (4, H0 // 4, W0 // 4, 3) and torch.allclose(d4.cameras[0].K, _K(0.25), atol=1e-5)


def test_warp_id_times_and_points(tmp_path):
    root = make_capture(tmp_path / "cap", scales=(1,), time_key="", points=True)
    d = load_nerfies(root, "all")
    assert torch.allclose(d.times, torch.arange(6, dtype=torch.float32) / 5)   # warp_id k, max 5
    assert d.bbox_source == "points"
    pts = d.meta["points"]
    assert np.allclose(pts, [[-1, -1, -1], [1, 1, 1], [0, 0, 0]], atol=1e-5)
    assert d.bbox.shape == (2, 3) and d.scene_center.abs().max() < 0.05 and d.scene_radius > 1.0


def test_distortion_and_skew_are_removed(tmp_path):
    """A blob drawn at the distorted Nerfies projection ends up at the pinhole projection of our Camera."""
    W, H, f = 64, 48, 50.0
    dist = {"radial_distortion": [-0.3, 0.05, 0.01], "tangential_distortion": [0.02, -0.015], "skew": 0.5,
            "focal_length": f, "principal_point": [32.3, 23.8], "image_size": [W, H]}
    root = make_capture(tmp_path / "cap", scales=(1,))
    shutil.rmtree(root / "rgb")
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    points = []
    for k, item in enumerate(IDS):
        V = _viewmat(k)
        Xn = V[:3, :3].T @ (np.array([0.45, 0.28, 1.0]) * 2.0 - V[:3, 3])   # off-axis, depth 2
        points.append(Xn)
        cam = _camera_json(V, **dist)
        if k == 0:                                            # the key google/nerfies' camera.py reads
            cam["tangential"] = cam.pop("tangential_distortion")
        _write(root / "camera" / f"{item}.json", cam)
        u, v = nerfies_project(cam, Xn / SCALE + CENTER)
        blob = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5 ** 2))
        _save(root / "rgb" / "1x" / f"{item}.png", np.repeat(blob[..., None], 3, -1))
    d = load_nerfies(root, "all")
    for k, c in enumerate(d.cameras):
        assert c.K[0, 1] == 0 and abs(float(c.K[0, 0]) - f) < 1e-4 and abs(float(c.K[1, 1]) - f * PAR) < 1e-4
        uv = c.project(torch.tensor(points[k], dtype=torch.float32))[0].numpy()
        img = d.images[k, :, :, 0].numpy().astype(np.float64)
        r0, c0 = int(uv[1]), int(uv[0])
        win = (slice(r0 - 5, r0 + 6), slice(c0 - 5, c0 + 6))
        w = img[win]
        centroid = np.array([(w * xx[win]).sum(), (w * yy[win]).sum()]) / w.sum()
        assert np.allclose(centroid, uv, atol=0.3), (k, centroid, uv)
        cam = json.loads((root / "camera" / f"{c.name}.json").read_text())
        assert np.linalg.norm(nerfies_project(cam, points[k] / SCALE + CENTER) - uv) > 1.5   # distortion matters


# --------------------------------------------------------------------------------------------- errors

def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_errors_name_the_file(tmp_path):
    root = make_capture(tmp_path / "cap", scales=(1,))
    cam0 = root / "camera" / f"{TRAIN[1]}.json"
    backup = cam0.read_text()

    (root / "metadata.json").rename(root / "m.bak")
    _raises([root / "metadata.json", "not found"], load_nerfies, root)
    (root / "m.bak").rename(root / "metadata.json")

    _edit_json(root / "metadata.json", lambda m: m.pop(IDS[4]))
    _raises([root / "metadata.json", IDS[4]], load_nerfies, root)
    _edit_json(root / "metadata.json", lambda m: m.update({IDS[4]: {"warp_id": 4, "time_id": 8}}))

    cam0.write_text("{ not json")
    _raises([cam0, "malformed JSON"], load_nerfies, root)
    for bad, key in ((lambda c: c.update(orientation=[[1, 0, 0], [0, 1, 0]]), "orientation"),
                     (lambda c: c.update(orientation=np.diag([1.0, 1, -1]).tolist()), "orientation"),
                     (lambda c: c.pop("focal_length"), "focal_length"),
                     (lambda c: c.update(position=[0, 1]), "position"),
                     (lambda c: c.update(radial_distortion=[0.1]), "radial_distortion"),
                     (lambda c: c.update(image_size=[64, 24]), "image_size")):
        cam0.write_text(backup)
        _edit_json(cam0, bad)
        _raises([cam0, key], load_nerfies, root)
    cam0.write_text(backup)

    cam0.rename(tmp_path / "c.bak")
    _raises([cam0, "not found", TRAIN[1]], load_nerfies, root)
    (tmp_path / "c.bak").rename(cam0)

    img = root / "rgb" / "1x" / f"{TRAIN[1]}.png"
    img.rename(tmp_path / "i.bak")
    _raises([img, "not found"], load_nerfies, root)
    img.write_bytes(b"not a png")
    _raises([img, "corrupt"], load_nerfies, root)
    (tmp_path / "i.bak").rename(img)

    _raises([root / "rgb" / "3x"], load_nerfies, root, image_scale=3)
    _raises(["unknown split"], load_nerfies, root, "video")
    assert len(load_nerfies(root)) == len(TRAIN)                # all repaired

    (root / "dataset.json").write_text('{"train_ids": [1, 2')
    _raises([root / "dataset.json", "malformed JSON"], load_nerfies, root)
    _write(root / "dataset.json", {"ids": IDS, "train_ids": "left1_000000", "val_ids": VAL})
    _raises([root / "dataset.json", "train_ids"], load_nerfies, root)
    (root / "dataset.json").unlink()
    _raises([root / "dataset.json", "not found"], load_nerfies, root)
    shutil.rmtree(root / "rgb")
    _write(root / "dataset.json", {"ids": IDS, "train_ids": TRAIN, "val_ids": VAL})
    _raises([root / "rgb"], load_nerfies, root)


# --------------------------------------------------------------------------------------------- dispatch

def _make_dnerf(root: Path) -> Path:
    root.mkdir(parents=True)
    frames = []
    for i in range(2):
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(root / f"r_{i:03d}.png")
        frames.append({"file_path": f"./r_{i:03d}", "time": float(i),
                       "transform_matrix": viewmat_to_opengl_c2w(_viewmat(i)).tolist()})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    return root


def test_load_split_dispatches_both_formats(tmp_path):
    dn = _make_dnerf(tmp_path / "dnerf")
    assert dataset_format(dn) == "dnerf" and available_splits(dn) == ["train"]
    a, b = load_split(dn, "train", background=(0, 0, 0)), load_dnerf(dn, "train", background=(0, 0, 0))
    assert torch.equal(a.images, b.images) and a.names == b.names
    assert all(torch.equal(x.viewmat, y.viewmat) and torch.equal(x.K, y.K) for x, y in zip(a.cameras, b.cameras))

    nf = make_capture(tmp_path / "nerfies", scales=(2,))
    s = load_split(nf, "val", downscale=2)
    assert s.names == VAL and s.images.shape == (2, H0 // 4, W0 // 4, 3)

    _raises([tmp_path / "empty" / "transforms_train.json", "dataset.json"], load_split,
            (tmp_path / "empty").mkdir() or tmp_path / "empty")
    _raises(["not found"], load_split, tmp_path / "missing")

    from dyngauss.config import Config
    from dyngauss.train.scene import load_scene

    cfg = Config()
    cfg.data.path = str(nf)
    scene = load_scene(cfg)
    assert scene.train.names == TRAIN and scene.split("test").names == VAL
    assert np.allclose(scene.train_times, sorted(IDS.index(n) / 5 for n in TRAIN))

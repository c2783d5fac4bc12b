"""D-NeRF loader: camera conventions on the shared twist scene, motion ground truth, errors, downscaling."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dyngauss.data.camera import Camera, opengl_c2w_to_viewmat, viewmat_to_opengl_c2w
from dyngauss.data.dnerf import (DatasetError, available_splits, load_cameras, load_dnerf, load_tracks,
                                 load_video_gt, read_transforms)

TWIST = Path(__file__).resolve().parents[1].parent / "shared/data/twist"
needs_twist = pytest.mark.skipif(not (TWIST / "transforms_train.json").is_file(),
                                 reason=f"shared twist scene not found at {TWIST}")


def _track_fraction(split, xyz: torch.Tensor, cameras=None) -> float:
    """Fraction of projected track points (all frames of `split`) inside the image on alpha > 0.5."""
    hits = []
    for k, cam in enumerate(cameras or split.cameras):
        uv, z = cam.project(xyz[:, split.cameras[k].index].float())
        col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        ok = (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height) & (z > 0)
        a = split.alphas[k, :, :, 0][row.clamp(0, cam.height - 1), col.clamp(0, cam.width - 1)]
        hits.append(ok & (a > 0.5))
    return torch.cat(hits).float().mean().item()


def _wrong(cameras, bug: np.ndarray) -> list[Camera]:
    out = []
    for c in cameras:
        c2w = viewmat_to_opengl_c2w(c.viewmat.numpy())
        out.append(Camera(c.K, np.linalg.inv(c2w @ bug), c.width, c.height, c.time))
    return out


# --------------------------------------------------------------------------------------------- shared twist scene

@needs_twist
def test_twist_all_splits_load():
    assert available_splits(TWIST) == ["train", "val", "test", "video"]
    counts = {"train": 100, "val": 20, "test": 20, "video": 30}
    for split, n in counts.items():
        d = load_dnerf(TWIST, split, downscale=4)
        assert len(d) == n and d.images.shape == (n, 100, 100, 3) and d.alphas.shape == (n, 100, 100, 1)
        assert d.images.dtype == torch.float32 and 0.0 <= d.images.min() and d.images.max() <= 1.0
        assert d.times.shape == (n,) and (d.times >= 0).all() and (d.times <= 1).all()
        assert (d.times[1:] >= d.times[:-1]).all()
        c = d.cameras[7]
        assert c.name == "r_007" and c.index == 7 and (c.width, c.height) == (100, 100)
        assert abs(c.K[0, 0].item() - 555.5555 / 4) < 1e-2 and c.K[0, 2].item() == 50.0
        assert abs(c.center.norm().item() - 4.0) < 1e-3           # cameras on a sphere of radius 4
        assert d.bbox_source == "meta" and 1.0 < d.scene_radius < 2.0
    tr = load_dnerf(TWIST, "train", downscale=4)
    assert torch.allclose(tr.times, torch.arange(100) / 99.0, atol=1e-6)
    # composited on white: background pixels are white
    assert torch.allclose(tr.images[0, 0, 0], torch.ones(3))


@needs_twist
def test_twist_tracks_project_onto_alpha():
    tracks = load_tracks(TWIST)
    assert tracks["splits"] == ["train", "val", "test", "video"]
    for split, frames in (("train", range(0, 100, 9)), ("test", range(0, 20, 3))):
        d = load_dnerf(TWIST, split, frames=list(frames))
        assert [c.index for c in d.cameras] == list(frames)
        xyz = tracks[f"xyz_{split}"]
        assert torch.allclose(tracks[f"times_{split}"][list(frames)], d.times)
        frac = _track_fraction(d, xyz)
        assert frac >= 0.98, (split, frac)
        # the same check fails under a wrong convention: no OpenGL -> OpenCV flip (all behind the camera) or
        # only z flipped (image upside down; the bar is roughly symmetric, so this still overlaps ~80%)
        for bug in (np.eye(4), np.diag([1.0, 1.0, -1.0, 1.0])):
            wrong = _track_fraction(d, xyz, _wrong(d.cameras, bug))
            assert wrong < 0.9, (split, wrong)


@needs_twist
def test_twist_video_gt_and_tracks():
    gt = load_video_gt(TWIST)
    assert gt["depth"].shape == (30, 400, 400) and gt["flow"].shape == (29, 400, 400, 2)
    assert gt["flow_valid"].shape == (29, 400, 400) and gt["flow_valid"].dtype == torch.bool
    assert torch.allclose(gt["times"], torch.arange(30) / 29.0, atol=1e-6)
    assert torch.isinf(gt["depth"][0, 0, 0]) and torch.isfinite(gt["depth"]).any()
    tk = load_tracks(TWIST)
    assert tk["xyz_video"].shape == (2000, 30, 3) and tk["bary"].shape == (2000, 3)
    # depth at the projected track points (nearest pixel) matches their camera z for most visible points
    v = load_dnerf(TWIST, "video", frames=[0])
    uv, z = v.cameras[0].project(tk["xyz_video"][:, 0].float())
    col, row = uv[:, 0].long().clamp(0, 399), uv[:, 1].long().clamp(0, 399)
    dz = (gt["depth"][0][row, col] - z).abs()
    assert (dz < 0.05).float().mean() > 0.4                      # front-facing half of the surface


# --------------------------------------------------------------------------------------------- fixtures

def _c2w(i: int) -> list:
    a = 0.3 * i
    eye = np.array([4 * np.cos(a), 4 * np.sin(a), 1.0])
    from dyngauss.data.camera import look_at_viewmat
    return viewmat_to_opengl_c2w(look_at_viewmat(eye)).tolist()


def _make_scene(root: Path, n: int = 3, size=(8, 6), split: str = "train", rgba: bool = True, seed: int = 0,
                ext_in_json: bool = False, **top) -> Path:
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        w, h = size
        arr = rng.integers(0, 256, (h, w, 4 if rgba else 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / split / f"r_{i:03d}.png")
        frames.append({"file_path": f"./{split}/r_{i:03d}" + (".png" if ext_in_json else ""),
                       "time": i / max(n - 1, 1), "transform_matrix": _c2w(i)})
    data = {"camera_angle_x": 0.8, **top, "frames": frames}
    (root / f"transforms_{split}.json").write_text(json.dumps(data, indent=2))
    return root


def _raises(match_parts, fn, *a, **k) -> str:
    with pytest.raises(DatasetError) as ei:
        fn(*a, **k)
    msg = str(ei.value)
    for part in match_parts:
        assert str(part) in msg, (part, msg)
    assert isinstance(ei.value, ValueError)
    return msg


def test_small_scene_loads(tmp_path):
    root = _make_scene(tmp_path / "s", n=3)
    d = load_dnerf(root, "train")
    assert d.images.shape == (3, 6, 8, 3) and d.alphas.shape == (3, 6, 8, 1)
    raw = np.asarray(Image.open(root / "train/r_001.png")).astype(np.float32) / 255
    a = raw[..., 3:]
    assert np.allclose(d.images[1].numpy(), raw[..., :3] * a + (1 - a), atol=1e-6)    # white background
    d0 = load_dnerf(root, "train", background=(0, 0, 0))
    assert np.allclose(d0.images[1].numpy(), raw[..., :3] * a, atol=1e-6)
    assert np.allclose(d.alphas[1].numpy(), a)
    c = d.cameras[2]
    assert c.name == "r_002" and abs(c.time - 1.0) < 1e-9
    f = 0.5 * 8 / np.tan(0.4)
    assert torch.allclose(c.K, torch.tensor([[f, 0, 4.0], [0, f, 3.0], [0, 0, 1]], dtype=torch.float32))
    assert np.allclose(c.viewmat.numpy(), opengl_c2w_to_viewmat(np.array(_c2w(2))), atol=1e-6)
    # camera-based bounds (no meta.json): the cameras look at the origin
    assert d.bbox_source == "cameras" and d.scene_center.norm() < 0.05 and d.scene_radius > 0.5
    # RGB images: alpha = 1 -> alphas None; file_path with extension; explicit pixel intrinsics
    r2 = _make_scene(tmp_path / "rgb", n=2, rgba=False, ext_in_json=True, fl_x=10.0, fl_y=11.0, cx=3.5, cy=2.5)
    d2 = load_dnerf(r2, "train")
    assert d2.alphas is None and d2.images.shape == (2, 6, 8, 3)
    assert torch.allclose(d2.cameras[0].K, torch.tensor([[10.0, 0, 3.5], [0, 11.0, 2.5], [0, 0, 1]]))


def test_downscale_halves_size_and_scales_K(tmp_path):
    root = _make_scene(tmp_path / "s", n=2, size=(16, 12))
    full = load_dnerf(root, "train")
    half = load_dnerf(root, "train", downscale=2)
    assert half.images.shape == (2, 6, 8, 3) and half.alphas.shape == (2, 6, 8, 1)
    assert (half.cameras[0].width, half.cameras[0].height) == (8, 6)
    assert torch.allclose(half.cameras[0].K[:2], full.cameras[0].K[:2] / 2)
    assert torch.equal(half.cameras[0].K, full.cameras[0].scaled(0.5).K)
    # area resize of the composited image (== compositing the premultiplied area average)
    ref = full.images[0].reshape(6, 2, 8, 2, 3).mean(dim=(1, 3))
    assert torch.allclose(half.images[0], ref, atol=1e-6)
    assert torch.allclose(half.alphas[0], full.alphas[0].reshape(6, 2, 8, 2, 1).mean(dim=(1, 3)), atol=1e-6)
    # a projected point keeps its relative position
    p = torch.tensor([[0.1, -0.2, 0.3]])
    uv_f, _ = full.cameras[1].project(p)
    uv_h, _ = half.cameras[1].project(p)
    assert torch.allclose(uv_h, uv_f / 2, atol=1e-4)
    # cameras without decoding the images are identical
    for ds in (1, 2):
        ref = load_dnerf(root, "train", downscale=ds).cameras
        cams = load_cameras(root, "train", downscale=ds)
        assert [(c.width, c.height, c.name, c.index, c.time) for c in cams] == \
            [(c.width, c.height, c.name, c.index, c.time) for c in ref]
        assert all(torch.equal(a.K, b.K) and torch.equal(a.viewmat, b.viewmat) for a, b in zip(cams, ref))
    # non-integer factor: box resize, size rounded as Camera.scaled
    d3 = load_dnerf(root, "train", downscale=3)
    assert d3.images.shape == (2, 4, 5, 3) and d3.cameras[0].width == 5
    with pytest.raises(ValueError):
        load_dnerf(root, "train", downscale=0.5)


# --------------------------------------------------------------------------------------------- errors

def test_error_missing_folder(tmp_path):
    _raises(["not found", tmp_path / "nope"], load_dnerf, tmp_path / "nope", "train")
    _raises([tmp_path / "nope"], available_splits, tmp_path / "nope")


def test_error_missing_transforms(tmp_path):
    root = _make_scene(tmp_path / "s")
    msg = _raises(["transforms_test.json", "not found"], load_dnerf, root, "test")
    assert "train" in msg                                      # lists the available splits


def test_error_malformed_json(tmp_path):
    root = _make_scene(tmp_path / "s")
    p = root / "transforms_train.json"
    lines = p.read_text().splitlines()
    lines[3] = lines[3] + ","                                  # trailing comma: invalid JSON on line 4
    p.write_text("\n".join(lines))
    _raises([p, "malformed JSON", "line"], load_dnerf, root, "train")
    p.write_text("[1, 2]")
    _raises([p, "object"], load_dnerf, root, "train")


def test_error_missing_time(tmp_path):
    root = _make_scene(tmp_path / "s")
    p = root / "transforms_train.json"
    data = json.loads(p.read_text())
    del data["frames"][1]["time"]
    p.write_text(json.dumps(data))
    _raises([p, "frame 1", "r_001", "time"], load_dnerf, root, "train")
    data["frames"][1]["time"] = "soon"
    p.write_text(json.dumps(data))
    _raises(["frame 1", "time"], load_dnerf, root, "train")


def test_error_missing_image(tmp_path):
    root = _make_scene(tmp_path / "s")
    (root / "train/r_002.png").unlink()
    _raises(["frame 2", root / "train" / "r_002.png", "not found"], load_dnerf, root, "train")


def test_error_corrupt_image(tmp_path):
    root = _make_scene(tmp_path / "s")
    (root / "train/r_001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)
    _raises(["frame 1", root / "train" / "r_001.png", "corrupt"], load_dnerf, root, "train")
    (root / "train/r_001.png").write_bytes(b"garbage, not an image")
    _raises([root / "train" / "r_001.png"], load_dnerf, root, "train")


def test_error_mismatched_sizes(tmp_path):
    root = _make_scene(tmp_path / "s")
    Image.fromarray(np.zeros((5, 9, 4), np.uint8)).save(root / "train/r_002.png")
    _raises(["frame 2", root / "train" / "r_002.png", "9x5", "8x6"], load_dnerf, root, "train")


def test_error_missing_intrinsics_and_bad_matrix(tmp_path):
    root = _make_scene(tmp_path / "s")
    p = root / "transforms_train.json"
    data = json.loads(p.read_text())
    del data["camera_angle_x"]
    p.write_text(json.dumps(data))
    _raises([p, "camera_angle_x"], load_dnerf, root, "train")
    data["camera_angle_x"] = 0.8
    data["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    p.write_text(json.dumps(data))
    _raises([p, "frame 0", "transform_matrix"], load_dnerf, root, "train")
    data["frames"] = []
    p.write_text(json.dumps(data))
    _raises([p, "frames"], read_transforms, root, "train")


def test_error_ground_truth_files(tmp_path):
    root = _make_scene(tmp_path / "s")
    _raises([root], load_video_gt, root)
    _raises([root / "gt_tracks.npz"], load_tracks, root)
    (root / "gt_tracks.npz").write_bytes(b"nope")
    _raises(["corrupt", root / "gt_tracks.npz"], load_tracks, root)
    (root / "video").mkdir()
    np.savez(root / "video" / "depth_000.npz", depth=np.ones((6, 8), np.float32))
    np.savez(root / "video" / "depth_001.npz", depth=np.ones((6, 8), np.float32))
    _raises(["flow"], load_video_gt, root)
    np.savez(root / "video" / "flow_000.npz", flow=np.zeros((6, 8, 2), np.float32))
    _raises([root / "video" / "flow_valid.npz"], load_video_gt, root)
    np.savez(root / "video" / "flow_valid.npz", valid=np.ones((1, 6, 8), bool))
    gt = load_video_gt(root)
    assert gt["depth"].shape == (2, 6, 8) and gt["flow_valid"].all() and "times" not in gt

"""Evaluation renders get one file per frame (issue 19, item 7): multi-camera layouts whose frames share a file
name (cam00/0000.png ... cam03/0000.png) keep every render."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
from PIL import Image

from dyngauss.data.camera import Camera, look_at_viewmat, viewmat_to_opengl_c2w
from dyngauss.data.dnerf import load_dnerf
from dyngauss.eval.evaluate import evaluate_split, render_names


def _cam(name: str, file_path: str) -> Camera:
    return Camera(np.eye(3) * 10 + np.diag([0, 0, -9.0]), np.eye(4), 4, 4, name=name, meta={"file_path": file_path})


def test_unique_stems_are_kept_as_they_are(tmp_path):
    split = SimpleNamespace(path=tmp_path, cameras=[_cam(f"r_{i:03d}", str(tmp_path / "test" / f"r_{i:03d}.png"))
                                                    for i in range(3)])
    assert render_names(split) == ["r_000", "r_001", "r_002"]


def test_colliding_stems_use_the_relative_path_without_the_shared_folders(tmp_path):
    cams = [_cam("0000", str(tmp_path / "test" / f"cam{k:02d}" / "0000.png")) for k in range(4)]
    names = render_names(SimpleNamespace(path=tmp_path, cameras=cams))
    assert names == ["cam00/0000", "cam01/0000", "cam02/0000", "cam03/0000"]  # "test/" is common: dropped
    # the same image listed twice, and a frame without a file: still one distinct name each
    cams = [_cam("a", str(tmp_path / "x" / "a.png")), _cam("a", str(tmp_path / "x" / "a.png")),
            _cam("a_2", str(tmp_path / "y" / "a_2.png")), _cam("", "")]
    names = render_names(SimpleNamespace(path=tmp_path, cameras=cams))
    assert len(set(names)) == 4 and names[0] == "x/a" and names[3] == "003"
    # an image outside the dataset folder never escapes the renders folder
    cams = [_cam("0", "/elsewhere/c0/0.png"), _cam("0", "/elsewhere/c1/0.png")]
    names = render_names(SimpleNamespace(path=tmp_path, cameras=cams))
    assert names == ["c0/0", "c1/0"]


class _FlatModel:
    """Stands in for DynamicGaussians: renders a flat grey image (evaluate_split only calls these)."""

    device = __import__("torch").device("cpu")

    def background(self):
        import torch
        return torch.ones(3)

    def render(self, cam, t, background=None, backend="auto"):
        import torch
        return SimpleNamespace(rgb=torch.full((1, cam.height, cam.width, 3), 0.5))


def test_multi_camera_test_split_keeps_every_render(tmp_path):
    """C14-like layout: four cameras, each with its own folder holding 0000.png."""
    root = tmp_path / "scene"
    frames = []
    for k in range(4):
        (root / f"cam{k:02d}").mkdir(parents=True)
        Image.fromarray(np.full((6, 8, 3), 60 * k, np.uint8)).save(root / f"cam{k:02d}" / "0000.png")
        a = 0.5 * k
        c2w = viewmat_to_opengl_c2w(look_at_viewmat(np.array([4 * math.cos(a), 4 * math.sin(a), 1.0])))
        frames.append({"file_path": f"cam{k:02d}/0000.png", "time": k / 3, "transform_matrix": c2w.tolist()})
    (root / "transforms_test.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    split = load_dnerf(root, "test")
    run = tmp_path / "run"
    m = evaluate_split(_FlatModel(), split, run, "test", save_renders=True, lpips=False)
    files = sorted(p.relative_to(run / "renders" / "test").as_posix() for p in (run / "renders").rglob("*.png"))
    assert files == [f"cam{k:02d}/0000.png" for k in range(4)]
    assert m["frame_names"] == [f"cam{k:02d}/0000" for k in range(4)] and m["num_frames"] == 4
    # each file is its own frame's render (the flat model: all equal grey, the right size)
    for f in files:
        assert np.asarray(Image.open(run / "renders" / "test" / f)).shape == (6, 8, 3)

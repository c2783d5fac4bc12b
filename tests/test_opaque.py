"""Opaque scenes (video frames without alpha): initialisation from a sparse SfM point cloud, training."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dyngauss.config import ModelConfig, load_config
from dyngauss.io.ply import write_points_ply
from dyngauss.train.init import initial_gaussians, load_sfm_points
from dyngauss.train.trainer import Trainer


@pytest.fixture(scope="module")
def opaque_scene(tmp_path_factory):
    """The tiny built-in scene with its images flattened onto an opaque backdrop colour (no alpha channel) and
    a sparse 'SfM' cloud: points on a plane behind the object."""
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    src = generate(tmp_path_factory.mktemp("tiny_src") / "scene", cfg)
    dst = tmp_path_factory.mktemp("opaque") / "scene"
    shutil.copytree(src, dst)
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for fr in json.loads((dst / f"transforms_{split}.json").read_text())["frames"]:
            p = dst / (fr["file_path"] + ("" if fr["file_path"].endswith(".png") else ".png"))
            rgba = np.asarray(Image.open(p).convert("RGBA"), np.float32) / 255
            back = np.array([0.3, 0.5, 0.4], np.float32)
            rgb = rgba[..., :3] * rgba[..., 3:] + back * (1 - rgba[..., 3:])
            Image.fromarray((rgb * 255).round().astype(np.uint8), "RGB").save(p)
    pts = np.stack(np.meshgrid(np.linspace(-3, 3, 12), np.linspace(-3, 3, 12), [-2.5]), -1).reshape(-1, 3)
    write_points_ply(dst / "points3d.ply", pts, rng.integers(0, 256, (len(pts), 3)).astype(np.uint8))
    return dst


def test_load_sfm_points_thins_and_drops_nonfinite(tmp_path):
    pts = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    pts[3] = np.nan
    write_points_ply(tmp_path / "p.ply", pts, np.full((50, 3), 255, np.uint8))
    p, c = load_sfm_points(tmp_path / "p.ply")
    assert p.shape == (49, 3) and np.isfinite(p).all() and np.allclose(c, 1.0)
    p, _ = load_sfm_points(tmp_path / "p.ply", max_points=10)
    assert p.shape == (10, 3)


def test_auto_init_uses_points3d(opaque_scene):
    from dyngauss.data.dnerf import load_dnerf

    tr = load_dnerf(opaque_scene, "train")
    assert tr.alphas is None, "the flattened images must have no alpha channel"
    mcfg = ModelConfig(init="auto", num_points=100, init_extent=1.0)
    g = initial_gaussians(mcfg, tr.cameras, tr.images, tr.alphas, dataset=opaque_scene)
    sfm, _ = load_sfm_points(opaque_scene / "points3d.ply")
    assert len(g) == len(sfm) + 100
    assert torch.allclose(g.means[:len(sfm)], torch.from_numpy(sfm))
    assert g.means[len(sfm):].abs().max() <= 1.0  # the extra points fill the region of interest
    with pytest.raises(ValueError, match="points3d.ply"):
        initial_gaussians(replace(mcfg, init="points"), tr.cameras, tr.images, tr.alphas, dataset=opaque_scene / "nope")


def test_trains_on_opaque_scene(opaque_scene, tmp_path):
    """No alpha: random backgrounds must not be composited in, and the loss must fall."""
    cfg = load_config(None, [f"data.path={opaque_scene}", f"out={tmp_path / 'run'}", "train.iters=60",
                             "train.warmup_iters=20", "model.num_points=300", "densify.enabled=false",
                             "train.progress=false", "train.save_every=0", "train.random_background=true",
                             "deform.kind=mlp", "deform.width=32", "deform.depth=2", "model.sh_degree=0"])
    t = Trainer(cfg)
    assert t.alphas is None and len(t.gaussians) == 144 + 300
    losses = [float(t.train_step()["loss"]) for _ in range(60)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_loader_points_used_when_no_ply(tmp_path):
    """A Nerfies capture's points.npy (passed by the loader as `points`) seeds the Gaussians, grey."""
    pts = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32)
    g = initial_gaussians(ModelConfig(init="auto", num_points=10, init_extent=1.0), dataset=tmp_path, points=pts)
    assert len(g) == 50 and torch.allclose(g.means[:40], torch.from_numpy(pts))
    dc = g.params["sh0"][:40, 0]
    assert torch.allclose(dc * 0.28209479177387814 + 0.5, torch.full((40, 3), 0.5), atol=1e-5)  # grey

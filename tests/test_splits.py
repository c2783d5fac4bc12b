"""Every split a run uses is checked before the first training step (issue 19, item 2), a missing test split
is decided up front, and a plain nerfstudio-style transforms.json trains with a derived split (item 9)."""
from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dyngauss.config import load_config
from dyngauss.data.camera import look_at_viewmat, viewmat_to_opengl_c2w
from dyngauss.data.dnerf import DatasetError, DatasetWarning, available_splits, load_dnerf
from dyngauss.train.scene import load_scene


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=24, n_train=6, n_val=2, n_test=3, n_video=3, n_tracks=32, supersample=1)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _copy(tiny: Path, dst: Path) -> Path:
    shutil.copytree(tiny, dst)
    return dst


def _cfg(path: Path, out: Path, *extra: str):
    return load_config(None, [f"data.path={path}", f"out={out}", "train.iters=3", "train.warmup_iters=1",
                              "model.num_points=200", "densify.enabled=false", "train.progress=false",
                              "train.save_every=0", "render.backend=torch", "deform.width=16", "deform.depth=2",
                              "eval.lpips=false", "export.frames=2", *extra])


def _edit_json(p: Path, fn) -> None:
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def _no_training(monkeypatch):
    """Make any training step fail the test: errors must come before it."""
    from dyngauss.train.trainer import Trainer

    def boom(self):
        raise AssertionError("a training step ran before the input error was found")
    monkeypatch.setattr(Trainer, "train_step", boom)


# ------------------------------------------------------------------------------------------------ item 2

def test_test_split_without_time_fails_before_training(tiny, tmp_path, monkeypatch):
    from dyngauss.train.run import run_job

    root = _copy(tiny, tmp_path / "s")
    _edit_json(root / "transforms_test.json", lambda d: d["frames"][1].pop("time"))
    _no_training(monkeypatch)
    with pytest.raises(DatasetError) as ei:
        run_job(_cfg(root, tmp_path / "run"), log=lambda *a: None)
    assert str(root / "transforms_test.json") in str(ei.value) and "frame 1" in str(ei.value)
    assert "time" in str(ei.value)
    assert not list((tmp_path / "run").rglob("ckpt_*.pt"))


def test_corrupt_test_image_fails_before_training(tiny, tmp_path, monkeypatch):
    root = _copy(tiny, tmp_path / "s")
    img = sorted((root / "test").glob("*.png"))[2]
    img.write_bytes(b"not a png")
    _no_training(monkeypatch)
    with pytest.raises(DatasetError) as ei:
        load_scene(_cfg(root, tmp_path / "run"))
    assert str(img) in str(ei.value) and "corrupt" in str(ei.value)


@pytest.mark.parametrize("what", ["tracks", "depth", "video_cameras"])
def test_broken_motion_ground_truth_fails_before_training(tiny, tmp_path, what):
    root = _copy(tiny, tmp_path / "s")
    if what == "tracks":
        bad = root / "gt_tracks.npz"
        bad.write_bytes(b"PK-broken")
    elif what == "depth":
        bad = root / "video" / "depth_001.npz"
        bad.write_bytes(b"PK-broken")
    else:
        bad = root / "transforms_video.json"
        _edit_json(bad, lambda d: d["frames"].pop())
    with pytest.raises(DatasetError, match="motion ground truth") as ei:
        load_scene(_cfg(root, tmp_path / "run"))
    assert str(bad) in str(ei.value)


def test_eval_split_is_loaded_up_front(tiny, tmp_path):
    scene = load_scene(_cfg(tiny, tmp_path / "run"))
    assert scene.eval_split == "test" and "test" in scene._splits  # loaded now, not after training
    assert len(scene._splits["test"]) == 3


def test_missing_test_split_falls_back_to_val_with_a_warning(tiny, tmp_path):
    root = _copy(tiny, tmp_path / "s")
    (root / "transforms_test.json").unlink()
    with pytest.warns(DatasetWarning, match="val split"):
        scene = load_scene(_cfg(root, tmp_path / "run"))
    assert scene.eval_split == "val" and "val" in scene._splits


def test_no_test_and_no_val_trains_exports_and_skips_evaluation(tiny, tmp_path):
    """C07f-like: only transforms_train.json. Training and export run; metrics.json says why there are no
    image metrics; the decision is announced before training."""
    from dyngauss.train.run import run_job

    root = _copy(tiny, tmp_path / "s")
    (root / "transforms_test.json").unlink()
    (root / "transforms_val.json").unlink()
    with pytest.warns(DatasetWarning, match="evaluation is skipped"):
        m = run_job(_cfg(root, tmp_path / "run"), log=lambda *a: None)
    assert m["split"] is None and m["psnr"] is None and "no test split" in m["eval_skipped"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["eval_skipped"] == m["eval_skipped"] and saved["steps"] == 3
    assert len(list((tmp_path / "run" / "ply").glob("*.ply"))) == 2


def test_named_eval_split_that_is_missing_is_an_error_and_none_skips(tiny, tmp_path):
    with pytest.raises(DatasetError, match="data.eval_split='bogus'"):
        load_scene(_cfg(tiny, tmp_path / "a", "data.eval_split=bogus"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # asked for: no warning
        scene = load_scene(_cfg(tiny, tmp_path / "b", "data.eval_split=none"))
    assert scene.eval_split is None and not scene._splits


# ------------------------------------------------------------------------------------------------ item 9

def _nerfstudio(root: Path, n: int = 12, times: bool = False, shuffle: bool = True, **top) -> Path:
    """A plain transforms.json in nerfstudio's layout: per-frame intrinsics, images/frame_<k>.png (k from 1, not
    zero-padded, so that text order differs from frame order), frames listed in shuffled order."""
    (root / "images").mkdir(parents=True)
    frames = []
    for k in range(1, n + 1):
        Image.fromarray(np.full((12, 16, 3), 10 * k, np.uint8)).save(root / "images" / f"frame_{k}.png")
        a = 0.25 * k
        c2w = viewmat_to_opengl_c2w(look_at_viewmat(np.array([4 * math.cos(a), 4 * math.sin(a), 1.5])))
        fr = {"file_path": f"images/frame_{k}.png", "transform_matrix": c2w.tolist(),
              "fl_x": 14.0, "fl_y": 14.0, "cx": 8.0, "cy": 6.0, "w": 16, "h": 12}
        if times:
            fr["time"] = 1.0 - (k - 1) / (n - 1)  # reversed: times, not names, decide the order then
        frames.append(fr)
    if shuffle:
        frames = [frames[i] for i in np.random.default_rng(0).permutation(n)]
    (root / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0,
                                                      "p2": 0.0, **top, "frames": frames}))
    return root


def _frame_numbers(split) -> list[int]:
    return [int(c.name.split("_")[1]) for c in split.cameras]


def test_plain_transforms_json_has_derived_splits_and_times_from_the_file_names(tmp_path):
    root = _nerfstudio(tmp_path / "ns")
    assert available_splits(root, test_every=4) == ["train", "test", "all"]
    train = load_dnerf(root, "train", test_every=4)
    test = load_dnerf(root, "test", test_every=4)
    # natural order frame_1, frame_2, ..., frame_12 (not frame_1, frame_10, ...); every 4th from the first: test
    assert sorted(_frame_numbers(test)) == [1, 5, 9]
    assert sorted(_frame_numbers(train)) == [2, 3, 4, 6, 7, 8, 10, 11, 12]
    for sp in (train, test):
        for c, k in zip(sp.cameras, _frame_numbers(sp)):
            assert c.time == pytest.approx((k - 1) / 11)  # spread over [0, 1] in that order
    assert load_dnerf(root, "all").times.numel() == 12
    # test_every=0: everything trains, and there is no test split (the error says how to get one)
    assert available_splits(root, test_every=0) == ["train", "all"]
    assert len(load_dnerf(root, "train", test_every=0)) == 12
    with pytest.raises(DatasetError, match="test_every"):
        load_dnerf(root, "test", test_every=0)
    with pytest.raises(DatasetError, match="test_every"):
        load_dnerf(root, "train", test_every=1)


def test_plain_transforms_json_with_times_and_with_split_lists(tmp_path):
    root = _nerfstudio(tmp_path / "t", times=True)
    test = load_dnerf(root, "test", test_every=4)
    # time order is frame_12 (t=0), frame_11, ...: the test frames are 12, 8, 4
    assert sorted(_frame_numbers(test)) == [4, 8, 12]
    assert all(c.time == pytest.approx(1 - (k - 1) / 11) for c, k in zip(test.cameras, _frame_numbers(test)))
    # nerfstudio's explicit lists win over test_every
    lists = {"train_filenames": [f"images/frame_{k}.png" for k in range(1, 11)],
             "test_filenames": ["./images/frame_11.png", "images/frame_12"]}
    root = _nerfstudio(tmp_path / "l", **lists)
    assert available_splits(root) == ["train", "test", "all"]
    assert sorted(_frame_numbers(load_dnerf(root, "test"))) == [11, 12]
    assert len(load_dnerf(root, "train")) == 10
    with pytest.raises(DatasetError, match="val_filenames"):
        load_dnerf(root, "val")
    _edit_json(root / "transforms.json", lambda d: d["test_filenames"].append("images/nope.png"))
    with pytest.raises(DatasetError, match="nope.png"):
        load_dnerf(root, "test")


def test_plain_transforms_json_with_some_times_missing_is_an_error(tmp_path):
    root = _nerfstudio(tmp_path / "m", times=True, shuffle=False)
    _edit_json(root / "transforms.json", lambda d: d["frames"][3].pop("time"))
    with pytest.raises(DatasetError) as ei:
        load_dnerf(root, "train")
    assert str(root / "transforms.json") in str(ei.value) and "frame 3" in str(ei.value)


def test_split_files_win_over_a_plain_transforms_json(tiny, tmp_path):
    """casual_twist-like: transforms.json next to transforms_train/test.json: the split files are the splits."""
    root = _copy(tiny, tmp_path / "s")
    data = json.loads((root / "transforms_train.json").read_text())
    (root / "transforms.json").write_text(json.dumps(data))
    assert len(load_dnerf(root, "train", test_every=2)) == 6
    assert len(load_dnerf(root, "test", test_every=2)) == 3


def test_nerfstudio_folder_trains_and_evaluates_on_its_derived_test_split(tmp_path):
    from dyngauss.train.run import run_job

    root = _nerfstudio(tmp_path / "ns")
    m = run_job(_cfg(root, tmp_path / "run", "data.test_every=4", "data.background=[0,0,0]"), log=lambda *a: None)
    assert m["split"] == "test" and m["num_eval_frames"] == 3 and math.isfinite(m["psnr"])
    renders = sorted(p.name for p in (tmp_path / "run" / "renders" / "test").glob("*.png"))
    assert renders == ["frame_1.png", "frame_5.png", "frame_9.png"]


def test_nerfstudio_opencv_distortion_is_removed_and_fisheye_refused(tmp_path):
    from dyngauss.data.images import read_image, undistort_to_pinhole

    root = _nerfstudio(tmp_path / "d", n=4, shuffle=False)
    _edit_json(root / "transforms.json", lambda d: d.update({"k1": -0.2, "p1": 0.01}))
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(root / "images" / "frame_1.png")
    sp = load_dnerf(root, "all")
    raw, _ = read_image(root / "images" / "frame_1.png")
    K = sp.cameras[0].K.double().numpy()
    want = undistort_to_pinhole(raw, K, (-0.2, 0.0, 0.0), (0.01, 0.0))
    assert np.allclose(sp.images[0].numpy(), want, atol=1e-6) and not np.allclose(want, raw, atol=1e-2)
    _edit_json(root / "transforms.json", lambda d: d.update({"camera_model": "OPENCV_FISHEYE"}))
    with pytest.raises(DatasetError, match="OPENCV_FISHEYE"):
        load_dnerf(root, "all")
    _edit_json(root / "transforms.json", lambda d: d.update({"camera_model": "OPENCV", "k4": 0.1}))
    with pytest.raises(DatasetError, match="k4"):
        load_dnerf(root, "all")

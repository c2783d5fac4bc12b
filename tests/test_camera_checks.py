"""Camera matrices and intrinsics are checked when a dataset is read (issue 19, item 4): a bottom row other than
[0, 0, 0, 1], shear / non-uniform scale / reflections, non-finite values and impossible focal lengths are errors
naming the file and frame; a uniformly scaled rotation block is normalised with a warning."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dyngauss.data.camera import CameraError, check_c2w, check_intrinsics, look_at_viewmat, viewmat_to_opengl_c2w
from dyngauss.data.dnerf import DatasetError, DatasetWarning, load_cameras, load_dnerf


def _c2w(i: int) -> np.ndarray:
    a = 0.4 * i
    return viewmat_to_opengl_c2w(look_at_viewmat(np.array([4 * math.cos(a), 4 * math.sin(a), 1.0])))


def _scene(root: Path, n: int = 4, edit=None, **top) -> Path:
    """A D-NeRF train split of n 8x6 frames; edit(i, frame) may change a frame's JSON."""
    (root / "train").mkdir(parents=True)
    frames = []
    for i in range(n):
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(root / "train" / f"r_{i}.png")
        fr = {"file_path": f"train/r_{i}.png", "time": i / (n - 1), "transform_matrix": _c2w(i).tolist()}
        if edit is not None:
            edit(i, fr)
        frames.append(fr)
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, **top, "frames": frames}))
    return root


def _error(root: Path, *parts) -> str:
    with pytest.raises(DatasetError) as ei:
        load_cameras(root, "train")
    msg = str(ei.value)
    for p in (root / "transforms_train.json",) + parts:
        assert str(p) in msg, (p, msg)
    return msg


def _set(i_bad, fn):
    def edit(i, fr):
        if i == i_bad:
            fr["transform_matrix"] = fn(np.asarray(fr["transform_matrix"])).tolist()
    return edit


def test_bottom_row_must_be_0001(tmp_path):
    def bad(m):
        m[3] = [0.0, 0.0, 0.5, 1.0]
        return m
    _error(_scene(tmp_path / "a", edit=_set(2, bad)), "frame 2", "bottom row", "[0.0, 0.0, 0.5, 1.0]")
    # a transposed (column-major) matrix: translation in the bottom row; the message says so
    msg = _error(_scene(tmp_path / "b", edit=_set(1, lambda m: m.T)), "frame 1", "bottom row")
    assert "transposed" in msg


def test_non_finite_matrix_names_the_value_not_a_shape(tmp_path):
    def nan(m):
        m[1, 2] = float("nan")
        return m
    msg = _error(_scene(tmp_path / "a", edit=_set(0, nan)), "frame 0", "non-finite", "row 1, column 2")
    assert "shape" not in msg  # it used to say "got shape (4, 4)"
    msg = _error(_scene(tmp_path / "b", edit=_set(0, lambda m: m[:2])), "frame 0")
    assert "shape (2, 4)" in msg


@pytest.mark.parametrize("what,fn", [
    ("non-uniform scale", lambda m: m @ np.diag([1.0, 2.0, 1.0, 1.0])),
    ("shear", lambda m: m @ np.array([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])),
    ("reflection", lambda m: m @ np.diag([-1.0, 1.0, 1.0, 1.0])),
    ("singular", lambda m: m @ np.diag([1.0, 1.0, 0.0, 1.0])),
])
def test_rotation_block_that_is_no_rotation_is_refused(tmp_path, what, fn):
    msg = _error(_scene(tmp_path / "s", edit=_set(3, fn)), "frame 3", "rotation block")
    assert ("reflection" in msg) == (what == "reflection")
    assert ("singular" in msg) == (what == "singular")


@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_uniformly_scaled_rotation_is_normalised_with_a_warning(tmp_path, scale):
    """C16-like input: every rotation block times `scale`. The cameras equal the unscaled ones (inverting the
    scaled matrix would put the centres at t / s^2) and one warning per file says what was done."""
    good = load_cameras(_scene(tmp_path / "good"), "train")

    def edit(i, fr):
        m = np.asarray(fr["transform_matrix"])
        m[:3, :3] *= scale
        fr["transform_matrix"] = m.tolist()
    root = _scene(tmp_path / "scaled", edit=edit)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cams = load_dnerf(root, "train").cameras
    msgs = [str(x.message) for x in w if issubclass(x.category, DatasetWarning)]
    assert len(msgs) == 1 and str(root / "transforms_train.json") in msgs[0] and f"{scale:g}" in msgs[0]
    for a, b in zip(cams, good):
        assert np.allclose(a.viewmat.numpy(), b.viewmat.numpy(), atol=1e-5)
        assert np.allclose(a.center.numpy(), b.center.numpy(), atol=1e-4)
    # an unscaled dataset gives no warning
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        load_cameras(tmp_path / "good", "train")
    assert not [x for x in w if issubclass(x.category, DatasetWarning)]


@pytest.mark.parametrize("key,value,part", [
    ("fl_x", 1e-9, "field of view"),
    ("fl_x", -300.0, "positive"),
    ("fl_x", 0.0, "positive"),
    ("fl_x", float("inf"), "not finite"),
    ("fl_x", float("nan"), "not finite"),
    ("fl_x", 1e9, "field of view"),
    ("cx", float("nan"), "not finite"),
])
def test_bad_focal_lengths_are_refused(tmp_path, key, value, part):
    """Per-frame (nerfstudio) and top-level intrinsics alike; json writes NaN/Infinity tokens, which it reads."""
    def edit(i, fr):
        if i == 1:
            fr.update({"fl_x": 7.0, "fl_y": 7.0, key: value})
    _error(_scene(tmp_path / "frame", edit=edit), "frame 1", key if part == "not finite" else "", part)
    _error(_scene(tmp_path / "top", **{"fl_x": 7.0, key: value}), part)


def test_normalised_intrinsics_get_a_hint(tmp_path):
    """Intrinsics in units of the image size read as pixels (fl_x 0.2 for an 8 px wide image: a 174 degree
    field of view) are refused with a hint."""
    msg = _error(_scene(tmp_path / "s", fl_x=0.2, cx=0.5, cy=0.5), "field of view")
    assert "units of the image size" in msg


def test_check_functions_directly():
    m = _c2w(0)
    out, s = check_c2w(m)
    assert s == 1.0 and np.array_equal(out, m)  # a good matrix passes unchanged (no numerics change)
    out, s = check_c2w(np.concatenate([0.5 * m[:3, :3], m[:3, 3:]], 1))  # 3x4 accepted, scale removed
    assert s == pytest.approx(0.5) and np.allclose(out[:3, :3], m[:3, :3]) and np.allclose(out[3], [0, 0, 0, 1])
    with pytest.raises(CameraError):
        check_c2w(np.eye(3))
    check_intrinsics(100.0, 100.0, 32.0, 24.0, 64, 48)
    for bad in [(1e-9, 100.0), (100.0, -1.0), (float("nan"), 100.0)]:
        with pytest.raises(CameraError):
            check_intrinsics(*bad, 32.0, 24.0, 64, 48)


def test_nerfies_focal_length_is_checked(tmp_path):
    from dyngauss.data.nerfies import read_nerfies_camera

    cam = {"orientation": np.eye(3).tolist(), "position": [0, 0, -4], "focal_length": 1e-9,
           "principal_point": [32, 24], "image_size": [64, 48]}
    p = tmp_path / "cam.json"
    p.write_text(json.dumps(cam))
    with pytest.raises(DatasetError, match="field of view") as ei:
        read_nerfies_camera(p)
    assert str(p) in str(ei.value)
    cam["focal_length"] = 60.0
    p.write_text(json.dumps(cam))
    assert read_nerfies_camera(p).focal_length == 60.0

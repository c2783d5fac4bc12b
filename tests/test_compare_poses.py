"""tools/compare_poses.py: true cameras mapped into the prepared frame reproduce the prepared cameras."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]


def _pose(rng) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    m[:3, 3] = rng.normal(size=3) * 3
    return m


def test_truth_twin_matches_prepared_cameras(tmp_path):
    rng = np.random.default_rng(0)
    est = [_pose(rng) for _ in range(6)]
    s, R, t = 2.5, Rotation.random(random_state=1).as_matrix(), np.array([1.0, -2.0, 0.5])
    gt = []
    for m in est:  # truth = similarity of the estimate (camera axes rotate by R, centres map by s R c + t)
        g = np.eye(4)
        g[:3, :3] = R @ m[:3, :3]
        g[:3, 3] = s * R @ m[:3, 3] + t
        gt.append(g)
    truth_dir, prep = tmp_path / "truth", tmp_path / "prep"
    (truth_dir / "frames").mkdir(parents=True)
    prep.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 6)).save(truth_dir / "frames" / f"{i:06d}.png")
    intr = {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6}
    (truth_dir / "transforms.json").write_text(json.dumps({**intr, "frames": [
        {"file_path": f"./frames/{i:06d}", "time": i / 5, "frame_index": i, "transform_matrix": gt[i].tolist()}
        for i in range(6)]}))
    for split, rows in (("train", [1, 2, 4, 5]), ("test", [0, 3])):
        (prep / f"transforms_{split}.json").write_text(json.dumps({**intr, "frames": [
            {"file_path": f"./frames/{i:06d}", "time": i / 5, "frame_index": i, "transform_matrix": est[i].tolist()}
            for i in rows]}))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "compare_poses.py"), "--prepared", str(prep),
                        "--truth", str(truth_dir / "transforms.json"), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    err = json.loads((out / "pose_errors.json").read_text())
    assert err["rot_err_deg_mean"] < 1e-6 and err["pos_err_pct_path_mean"] < 1e-6
    assert abs(err["scale_truth_per_prepared"] - s) < 1e-9
    for split, rows in (("train", [1, 2, 4, 5]), ("test", [0, 3])):
        doc = json.loads((out / "truth_data" / f"transforms_{split}.json").read_text())
        assert [f["frame_index"] for f in doc["frames"]] == rows
        for f in doc["frames"]:
            assert np.allclose(f["transform_matrix"], est[f["frame_index"]], atol=1e-9)
            assert Path(f["file_path"]).is_file()

"""`dyngauss compare-poses`: estimated vs true cameras of a prepared video: pose errors, and a twin dataset
with the true poses.

    dyngauss compare-poses --prepared runs/myvideo_data --truth ../shared/data/casual_twist/transforms.json \
        --out runs/poses_check

Matches the prepared frames to the true ones by ``frame_index``, aligns the estimated cameras to the true ones
with a similarity (orientations and centres, see ``dyngauss.sfm.normalize.align_cameras``), prints rotation /
position errors (position as % of the true path length) and writes ``OUT/truth_data``: the same frames and
the same train/test split with the TRUE cameras, mapped into the prepared (normalised) frame by the inverse
alignment and with the true intrinsics, the original images and the prepared ``points3d.ply``. Training the
same config on both folders isolates what the pose estimate costs in test PSNR (docs/results.md, "your own
video" figures). ``OUT/pose_errors.json`` keeps the numbers.
`python tools/compare_poses.py ...` is the same command. Exit codes: 0 ok, 1 unmatched frames or a missing image
(the message says which).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ..sfm.normalize import align_cameras

_INTR = ("camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y",
         "k1", "k2", "p1", "p2")


def _frames_by_index(doc: dict, where: Path) -> dict[int, dict]:
    out = {}
    for i, fr in enumerate(doc.get("frames", [])):
        if "frame_index" not in fr:
            raise SystemExit(f"error: {where}: frame {i} has no 'frame_index' (needed to match frames)")
        out[int(fr["frame_index"])] = fr
    return out


def _image_path(folder: Path, file_path: str) -> str:
    p = Path(file_path)
    p = p if p.is_absolute() else (folder / p)
    for ext in ("", ".png", ".jpg", ".jpeg"):
        q = p.with_name(p.name + ext)
        if q.is_file():
            return str(q.resolve())
    raise SystemExit(f"error: image not found: {p}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", required=True, type=Path, help="folder written by dyngauss prepare-video")
    ap.add_argument("--truth", required=True, type=Path, help="transforms JSON with the true cameras (all frames)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)

    truth = json.loads(args.truth.read_text())
    gt = _frames_by_index(truth, args.truth)
    splits = {}
    for split in ("train", "test"):
        p = args.prepared / f"transforms_{split}.json"
        splits[split] = json.loads(p.read_text())
    est_frames = [(s, fr) for s in ("train", "test") for fr in splits[s]["frames"]]
    missing = [int(fr["frame_index"]) for _, fr in est_frames if int(fr["frame_index"]) not in gt]
    if missing:
        raise SystemExit(f"error: frames {missing[:10]} of the prepared folder are not in {args.truth}")
    est_c2w = np.array([fr["transform_matrix"] for _, fr in est_frames], np.float64)
    gt_c2w = np.array([gt[int(fr["frame_index"])]["transform_matrix"] for _, fr in est_frames], np.float64)
    al = align_cameras(est_c2w, gt_c2w)
    order = np.argsort([int(fr["frame_index"]) for _, fr in est_frames])
    centers = gt_c2w[order, :3, 3]
    path_len = float(np.linalg.norm(np.diff(centers, axis=0), axis=1).sum())
    errors = {"frames": len(est_frames), "rot_err_deg_mean": float(al.rot_err_deg.mean()),
              "rot_err_deg_max": float(al.rot_err_deg.max()), "pos_err_mean": float(al.pos_err.mean()),
              "path_length": path_len, "pos_err_pct_path_mean": float(100 * al.pos_err.mean() / path_len),
              "scale_truth_per_prepared": float(al.s)}
    print(f"{len(est_frames)} frames: rotation error mean {errors['rot_err_deg_mean']:.3f} deg "
          f"(max {errors['rot_err_deg_max']:.3f}), position error mean {errors['pos_err_pct_path_mean']:.3f}% "
          f"of the path length ({path_len:.3f})")

    # true cameras in the prepared frame: x_prep = (R^T (x_gt - t)) / s; camera axes rotate by R^T
    Ri = al.R.T
    data = args.out / "truth_data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    intr = {k: truth[k] for k in _INTR if k in truth}
    for split, doc in splits.items():
        frames = []
        for fr in doc["frames"]:
            g = np.asarray(gt[int(fr["frame_index"])]["transform_matrix"], np.float64)
            m = np.eye(4)
            m[:3, :3] = Ri @ g[:3, :3]
            m[:3, 3] = Ri @ (g[:3, 3] - al.t) / al.s
            src = gt[int(fr["frame_index"])]["file_path"]
            frames.append({"file_path": _image_path(args.truth.parent, src), "time": fr["time"],
                           "frame_index": fr["frame_index"], "transform_matrix": m.tolist()})
        (data / f"transforms_{split}.json").write_text(json.dumps({**intr, "frames": frames}, indent=1))
    if (args.prepared / "points3d.ply").is_file():
        shutil.copy2(args.prepared / "points3d.ply", data / "points3d.ply")
    (args.out / "pose_errors.json").write_text(json.dumps(errors, indent=1))
    print(f"wrote {data} (true cameras, same frames and split) and {args.out / 'pose_errors.json'}")
    print("train both with the same config, e.g.:\n"
          f"  dyngauss train --config video data.path={args.prepared} out={args.out}/run_estimated\n"
          f"  dyngauss train --config video data.path={data} out={args.out}/run_true")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writing the prepared folder: built in ``OUT.tmp-XXXX`` next to ``OUT`` and renamed when complete (a failed
or interrupted run never leaves a folder that looks complete), D-NeRF headers, frame records and splits."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np

from .errors import PrepareError

__all__ = ["write_json", "make_tmp", "install", "pinhole_header", "frame_record", "write_splits"]


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented UTF-8 JSON (the folder is renamed into place as a whole, so no per-file atomicity)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def make_tmp(out: Path) -> Path:
    """A new empty folder ``OUT.tmp-XXXX`` next to ``out`` (ordinary permissions). PrepareError(kind="output")."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise PrepareError(f"cannot create the output folder next to {out}: {e}", "output") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    return tmp


def install(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished tmp folder to ``out`` (replacing an existing one when allowed)."""
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise PrepareError(f"output {out} exists (use --overwrite to replace it)", "output")
        old = out.with_name(f"{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def pinhole_header(fx: float, fy: float, cx: float, cy: float, W: int, H: int) -> dict:
    """Top-level camera keys of a D-NeRF transforms file: an undistorted pinhole camera (px), FOV in radians."""
    return {"camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": W, "h": H,
            "camera_angle_x": 2.0 * math.atan(0.5 * W / fx), "camera_angle_y": 2.0 * math.atan(0.5 * H / fy),
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}


def write_splits(tmp: Path, head: dict, recs: list[dict], test_every: int) -> tuple[list[dict], list[dict]]:
    """transforms.json (all), transforms_train.json, transforms_test.json (every ``test_every``-th record; not
    written when 0). Returns (train, test) records."""
    te = test_every
    test = [r for k, r in enumerate(recs) if te and k % te == 0]
    train = [r for k, r in enumerate(recs) if not (te and k % te == 0)]
    write_json(tmp / "transforms.json", {**head, "frames": recs})
    write_json(tmp / "transforms_train.json", {**head, "frames": train})
    if test:
        write_json(tmp / "transforms_test.json", {**head, "frames": test})
    return train, test


def frame_record(i: int, time: float, timestamp: float, c2w: np.ndarray) -> dict:
    """One D-NeRF frame: file ``./frames/{i:06d}`` (no extension), ``time`` in [0, 1], ``timestamp`` (s since
    the video's first frame), ``frame_index`` i, ``transform_matrix`` (OpenGL camera-to-world [4,4])."""
    return {"file_path": f"./frames/{i:06d}", "time": float(time), "timestamp": float(timestamp),
            "frame_index": i, "transform_matrix": np.asarray(c2w, np.float64).tolist()}

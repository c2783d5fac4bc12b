"""Dataset cameras for the web viewer: poses as frustums, a thumbnail each, the scene's up direction.

Cameras follow the OpenCV convention (x right, y down, z forward; docs/design.md), as viser's frustums and
client cameras do, so a pose passes through unchanged: a frustum at camera-to-world ``c2w`` has orientation
``R = c2w[:3,:3]`` (as a wxyz quaternion) and position ``c2w[:3,3]``.

:func:`dataset_cameras` reads the training and evaluation splits of a run's dataset (at most `max_per_split`
evenly spaced views each, images shrunk to thumbnails); a dataset that cannot be read gives no cameras and a
note saying why, never an error: the scene can be viewed without them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

THUMB_PX = 96  # longest side of a frustum's thumbnail, pixels


@dataclass
class ViewCamera:
    """One camera to draw. c2w [4,4] float64 camera-to-world (OpenCV); fov_y: vertical field of view (radians);
    aspect = width / height; time in [0,1] (None when unknown); thumbnail [h,w,3] uint8 or None."""

    name: str
    split: str
    c2w: np.ndarray
    fov_y: float
    aspect: float
    time: float | None = None
    thumbnail: np.ndarray | None = None

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()

    @property
    def wxyz(self) -> np.ndarray:
        return matrix_to_wxyz(self.c2w[:3, :3])

    @property
    def forward(self) -> np.ndarray:
        """Viewing direction (+z of the camera) in world coordinates [3]."""
        return self.c2w[:3, 2].copy()

    @property
    def up(self) -> np.ndarray:
        """Image-up direction (-y of the camera) in world coordinates [3]."""
        return -self.c2w[:3, 1]


def matrix_to_wxyz(r: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) [4] of a rotation matrix [3,3] (Shepperd's method: the largest of
    w, x, y, z is recovered from the trace first, the others from the off-diagonal terms)."""
    r = np.asarray(r, np.float64)
    tr = np.trace(r)
    cand = [tr, r[0, 0], r[1, 1], r[2, 2]]
    k = int(np.argmax(cand))
    if k == 0:
        s = math.sqrt(max(tr + 1.0, 1e-12)) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif k == 1:
        s = math.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 1e-12)) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif k == 2:
        s = math.sqrt(max(1.0 + r[1, 1] - r[0, 0] - r[2, 2], 1e-12)) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = math.sqrt(max(1.0 + r[2, 2] - r[0, 0] - r[1, 1], 1e-12)) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def thumbnail(image, longest: int = THUMB_PX) -> np.ndarray:
    """[H,W,3] float in [0,1] (numpy or torch) -> uint8 [h,w,3] with max(h, w) <= `longest` (area resize)."""
    import cv2

    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    h, w = img.shape[:2]
    f = min(1.0, longest / max(h, w))
    if f < 1.0:
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def from_camera(cam, split: str, image=None) -> ViewCamera:
    """A :class:`dyngauss.data.camera.Camera` (viewmat world-to-camera, K in pixels) as a :class:`ViewCamera`;
    `image` [H,W,3] in [0,1] becomes its thumbnail."""
    viewmat = np.asarray(cam.viewmat.detach().cpu().numpy() if hasattr(cam.viewmat, "detach") else cam.viewmat,
                         np.float64)
    K = np.asarray(cam.K.detach().cpu().numpy() if hasattr(cam.K, "detach") else cam.K, np.float64)
    fov_y = 2.0 * math.atan(cam.height / (2.0 * K[1, 1]))
    return ViewCamera(str(cam.name or f"{split} {cam.index}"), split, np.linalg.inv(viewmat), fov_y,
                      cam.width / cam.height, float(cam.time) if cam.time is not None else None,
                      None if image is None else thumbnail(image))


def evenly(n: int, k: int) -> list[int]:
    """At most `k` indices of range(n), evenly spaced, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [0]


def split_cameras(split, name: str, max_count: int = 60) -> list[ViewCamera]:
    """ViewCameras (with thumbnails) of a loaded split (:class:`dyngauss.data.dnerf.DNeRFSplit`), at most
    `max_count`, evenly spaced."""
    rows = evenly(len(split.cameras), max_count)
    return [from_camera(split.cameras[i], name, split.images[i]) for i in rows]


def dataset_cameras(dataset: str, data_cfg=None, splits: Sequence[str] = ("train", "test"),
                    max_per_split: int = 60) -> tuple[list[ViewCamera], str]:
    """(cameras, note) of a dataset folder's `splits` (those it has). `data_cfg`: the run's
    :class:`dyngauss.config.DataConfig` (background, test_every) or None. The note says what was loaded or
    why nothing was (missing folder, unreadable files)."""
    from pathlib import Path

    if not dataset:
        return [], "no dataset recorded: no cameras shown"
    path = Path(dataset)
    if not path.is_dir():
        return [], f"dataset {path} not found: no cameras shown"
    try:
        from ..data.loaders import available_splits, load_split

        test_every = int(getattr(data_cfg, "test_every", 10)) if data_cfg is not None else 10
        bg = list(getattr(data_cfg, "background", (1.0, 1.0, 1.0))) if data_cfg is not None else [1.0, 1.0, 1.0]
        have = available_splits(path, test_every=test_every)
        out: list[ViewCamera] = []
        for name in splits:
            if name not in have:
                continue
            # the downscale keeps memory small: only thumbnails are kept
            split = load_split(path, name, downscale=4, background=bg, test_every=test_every)
            out += split_cameras(split, name, max_per_split)
        return out, f"{len(out)} cameras from {path}"
    except Exception as e:  # a viewer without cameras is still a viewer: say why
        return [], f"cameras of {path} not loaded: {type(e).__name__}: {e}"


def scene_up(cameras: Sequence[ViewCamera]) -> np.ndarray | None:
    """The scene's up direction [3]: the normalised mean image-up vector of the cameras (None without cameras
    or when they disagree so much that the mean vanishes)."""
    if not cameras:
        return None
    u = np.mean([c.up for c in cameras], axis=0)
    n = float(np.linalg.norm(u))
    return u / n if n > 1e-3 else None

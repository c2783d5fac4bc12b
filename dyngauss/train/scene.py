"""Resolve, check and load the training scene named by the config (a D-NeRF or Nerfies folder, or the built-in
scene) — every split and ground-truth file the run will read, before the first training step.

:func:`load_scene` loads the training split, resolves and loads the evaluation split (:func:`resolve_eval_split`)
and reads the motion ground truth the evaluation will use (:func:`check_motion_ground_truth`), so a missing
``time``, a corrupt image, a malformed camera or an unreadable ``gt_tracks.npz`` in any of them stops the run
with a DatasetError naming the file before hours of training, not after.

Missing evaluation split (the default ``data.eval_split=test``): the ``val`` split is evaluated instead when the
dataset has one, else evaluation is skipped; both with a :class:`~dyngauss.data.dnerf.DatasetWarning` at load
time (training and export run as usual; metrics.json says why there are no image metrics). Any other
``data.eval_split`` that the dataset lacks is an error; ``data.eval_split=none`` skips evaluation on purpose.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config

# data.eval_split values that turn evaluation off
NO_EVAL = ("", "none")


@dataclass
class SceneData:
    """Training split plus the evaluation split of one dataset.

    eval_split: the split evaluated after training (resolved by :func:`resolve_eval_split`; None = skip
    evaluation, `eval_note` says why). scene_scale: gsplat's camera-based scene scale (:func:`camera_scene_scale`),
    which scales the learning rate of the means and the densification thresholds. world_center [3] /
    world_radius: the object's bounding sphere (:func:`scene_frame`), the unit every other length of the
    method follows (init box, the deformation field's input normalisation, motion-loss lengths);
    world_rotation [3,3]: the scene's axes (:func:`scene_axes`), which orient the init cube and the field."""

    path: Path
    cfg: Config
    train: object                         # DNeRFSplit
    train_times: list[float]
    scene_scale: float
    _splits: dict = field(default_factory=dict)
    eval_split: str | None = None
    eval_note: str = ""
    _depth: object = field(default=None, repr=False)
    _depth_read: bool = field(default=False, repr=False)

    def split(self, name: str):
        if name == "train":
            return self.train
        if name not in self._splits:
            from ..data.loaders import load_split, split_options

            self._splits[name] = load_split(self.path, name, **split_options(self.cfg.data))
        return self._splits[name]

    @property
    def train_depth(self):
        """Depth maps of the training frames (:class:`~dyngauss.data.depth.FrameDepths`: camera z-depth [F,H,W]
        at the training image size, +inf where unknown; layouts in dyngauss/data/depth.py), None when no training
        frame has one. Read on first use (the depth loss reads it before the first step); DatasetError naming the
        file for a bad map."""
        if not self._depth_read:
            from ..data.depth import load_split_depths

            self._depth = load_split_depths(self.train, self.path)
            self._depth_read = True
        return self._depth

    @property
    def has_train_depth(self) -> bool:
        """Whether some training frame has a depth map (reads them: :attr:`train_depth`)."""
        d = self.train_depth
        return d is not None and d.count > 0

    @property
    def world_center(self) -> torch.Tensor:
        return scene_frame(self.train)[0]

    @property
    def world_radius(self) -> float:
        return scene_frame(self.train)[1]

    @property
    def world_rotation(self) -> torch.Tensor:
        return scene_axes(self.train.cameras)


def camera_scene_scale(cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (gsplat's scene scale). Cameras that all sit
    at one point (a fixed camera) have no spread: then 1.1 x the mean distance from the camera to the point the
    cameras look at is used (:func:`~dyngauss.data.dnerf.estimate_bounds`), so the scale still follows the world's
    units (a constant 1.0 would not)."""
    centers = torch.stack([c.center for c in cameras]).double()
    d = (centers - centers.mean(0)).norm(dim=-1).max().item()
    if d > 1e-6 * max(1.0, centers.norm(dim=-1).max().item()):
        return 1.1 * d
    from ..data.dnerf import estimate_bounds

    center, _ = estimate_bounds(cameras)
    dist = float((centers - torch.as_tensor(center, dtype=torch.float64)).norm(dim=-1).mean())
    return 1.1 * dist if math.isfinite(dist) and dist > 0 else 1.0


def scene_frame(split) -> tuple[torch.Tensor, float]:
    """(centre [3] float32, radius) of a split's object bounds (``scene_center`` / ``scene_radius`` of the
    loaders: meta.json's bounding box, Nerfies points, or the sphere every camera sees). A non-finite or zero
    radius falls back to half the camera scene scale."""
    center = torch.as_tensor(split.scene_center, dtype=torch.float32).reshape(3)
    radius = float(split.scene_radius)
    if not (math.isfinite(radius) and radius > 0 and bool(torch.isfinite(center).all())):
        cams = torch.stack([c.center for c in split.cameras]).float()
        center = cams.mean(0) if not bool(torch.isfinite(center).all()) else center
        radius = 0.5 * camera_scene_scale(split.cameras)
    return center, radius


def set_world_frame(field, scene: SceneData):
    """Give a deformation field the scene's centre and radius (its input normalisation, deform/shared.py) when it
    has one (the static field has none); returns the field."""
    if field is not None and hasattr(field, "set_world_frame"):
        field.set_world_frame(scene.world_center, scene.world_radius, scene.world_rotation)
    return field


def scene_axes(cameras) -> torch.Tensor:
    """Axes [3,3] float64 (columns, a rotation) of the scene's frame, taken from the cameras so that they turn with
    any rotation of the world: z = the mean camera up (-y of the OpenCV cameras; captures are mostly upright),
    x = the first camera's right axis made perpendicular to it (its forward axis when the right axis is nearly
    parallel to up), y = z x x. The deformation fields and the initial cube use them, so the field's positional
    encoding keeps one orientation relative to the scene however the world is rotated (its axis-aligned
    frequencies otherwise change the result: +-10% track error for a rotated built-in scene)."""
    V = torch.stack([c.viewmat[:3, :3] for c in cameras]).double()
    up = (-V[:, 1]).mean(0)
    if float(up.norm()) < 1e-3:  # ups that cancel (cameras upside down half the time): the first camera's
        up = -V[0, 1]
    up = up / up.norm()
    a = V[0, 0] - (V[0, 0] @ up) * up
    if float(a.norm()) < 0.1:
        a = V[0, 2] - (V[0, 2] @ up) * up
    a = a / a.norm()
    return torch.stack([a, torch.linalg.cross(up, a), up], 1)


def resolve_eval_split(path: Path, cfg: Config) -> tuple[str | None, str]:
    """(the split to evaluate after training or None to skip, a note saying what was decided and why; "" when
    the configured split is there). Rules: module docstring. Raises DatasetError for a named split other than
    ``test`` that the dataset lacks."""
    from ..data.dnerf import DatasetError
    from ..data.loaders import available_splits

    want = (cfg.data.eval_split or "").strip()
    if want.lower() in NO_EVAL:
        return None, "evaluation skipped: data.eval_split=none"
    have = available_splits(path, test_every=cfg.data.test_every, test_camera=cfg.data.test_camera)
    if want in have:
        return want, ""
    if want != "test":
        raise DatasetError(f"data.eval_split={want!r}: the dataset {path} has no such split (it has "
                           f"{', '.join(have) or 'none'}); set data.eval_split to one of them or to none")
    if "val" in have:
        return "val", (f"the dataset {path} has no test split: evaluating on the val split instead "
                       "(set data.eval_split to choose)")
    return None, (f"the dataset {path} has no test split (and no val split): training and export run, "
                  "evaluation is skipped (add transforms_test.json, or for a plain transforms.json set "
                  "data.test_every, or set data.eval_split)")


def check_motion_ground_truth(path: Path) -> None:
    """Read the motion ground truth the evaluation will use — ``video`` depth/flow (and the video cameras: one per
    depth frame) and ``gt_tracks.npz`` — when present, so a corrupt file is an error now, not after training.
    Raises DatasetError naming the file (remove the file to train without it)."""
    from ..data.dnerf import DatasetError, load_tracks, load_video_gt
    from ..data.loaders import available_splits, dataset_format

    if dataset_format(path) != "dnerf":
        return
    has_video = any((path / "video").glob("depth_*.npz")) or (path / "depth").is_dir()
    try:
        if has_video:
            gt = load_video_gt(path)
            n = int(gt["depth"].shape[0])
            split = next((s for s in ("video", "all") if s in available_splits(path)), None)
            if split is not None:
                from ..data.dnerf import load_cameras

                cams = load_cameras(path, split)
                if split == "video" and len(cams) != n:
                    raise DatasetError(f"{path / 'transforms_video.json'}: {len(cams)} frames but {n} "
                                       "ground-truth depth frames")
            del gt
        if (path / "gt_tracks.npz").is_file():
            load_tracks(path)
    except DatasetError as e:
        raise DatasetError(f"motion ground truth unusable (it is read before training so that the evaluation "
                           f"cannot fail after it; fix or remove the file): {e}") from None


def load_scene(cfg: Config) -> SceneData:
    """Load the training split and check/load every other input of the run (module docstring). Raises
    DatasetError naming the file for any problem; warns (DatasetWarning) when the evaluation split changes. Raises
    ConfigError before any work when motion.depth_weight > 0 on the built-in scene without data.synthetic_depth
    (and motion.depth_missing=error)."""
    from ..config import ConfigError
    from ..data.dnerf import DatasetWarning
    from ..data.loaders import load_split, resolve_dataset, split_options

    if not cfg.data.path and cfg.motion.depth_weight > 0 and not cfg.data.synthetic_depth \
            and cfg.motion.depth_missing == "error":
        raise ConfigError(f"motion.depth_weight={cfg.motion.depth_weight:g} needs depth maps of the training "
                          "frames, and the built-in scene (data.path=\"\") has them only with "
                          "data.synthetic_depth=true: set it, or motion.depth_weight=0 (or motion.depth_missing=skip)")
    path = resolve_dataset(cfg.data)
    train = load_split(path, "train", **split_options(cfg.data))
    times = sorted({round(float(t), 8) for t in train.times.tolist()})
    scene = SceneData(path, cfg, train, times, camera_scene_scale(train.cameras))
    scene.eval_split, scene.eval_note = resolve_eval_split(path, cfg)
    if scene.eval_note and cfg.data.eval_split.strip().lower() not in NO_EVAL:
        warnings.warn(scene.eval_note, DatasetWarning, stacklevel=2)
    if scene.eval_split is not None:
        scene.split(scene.eval_split)  # loads (and so checks) every frame, camera and image now
    check_motion_ground_truth(path)
    return scene

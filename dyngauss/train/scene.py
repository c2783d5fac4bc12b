"""Resolve and load the training scene named by the config (a D-NeRF or Nerfies folder, or the built-in
scene)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config


@dataclass
class SceneData:
    """Training split plus lazily loaded evaluation splits of one dataset."""

    path: Path
    cfg: Config
    train: object                         # DNeRFSplit
    train_times: list[float]
    scene_scale: float
    _splits: dict = field(default_factory=dict)

    def split(self, name: str):
        if name == "train":
            return self.train
        if name not in self._splits:
            from ..data.loaders import load_split

            self._splits[name] = load_split(self.path, name, downscale=self.cfg.data.downscale,
                                            background=tuple(self.cfg.data.background))
        return self._splits[name]



def camera_scene_scale(cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (gsplat's scene scale)."""
    centers = torch.stack([c.center for c in cameras]).double()
    d = (centers - centers.mean(0)).norm(dim=-1).max().item()
    return 1.1 * d if d > 1e-6 else 1.0


def load_scene(cfg: Config) -> SceneData:
    from ..data.loaders import load_split

    from ..data.loaders import resolve_dataset

    path = resolve_dataset(cfg.data)
    train = load_split(path, "train", downscale=cfg.data.downscale, background=tuple(cfg.data.background))
    times = sorted({round(float(t), 8) for t in train.times.tolist()})
    return SceneData(path, cfg, train, times, camera_scene_scale(train.cameras))

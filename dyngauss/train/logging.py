"""TensorBoard logging (scalars and image grids) that degrades to nothing when unavailable."""
from __future__ import annotations

from pathlib import Path

import torch


class Logger:
    """Thin wrapper over SummaryWriter; all methods are no-ops if tensorboard is missing."""

    def __init__(self, log_dir: str | Path, enabled: bool = True):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(log_dir))
            except Exception:  # noqa: BLE001 - tensorboard missing or broken: keep training
                self.writer = None

    def scalars(self, values: dict[str, float], step: int, prefix: str = "train/") -> None:
        if self.writer is not None:
            for k, v in values.items():
                if v is not None:
                    self.writer.add_scalar(prefix + k, float(v), step)

    def images(self, tag: str, images: list[torch.Tensor], step: int) -> None:
        """Side-by-side grid of [H,W,3] images."""
        if self.writer is not None and images:
            grid = torch.cat([im.detach().clamp(0, 1).cpu() for im in images], dim=1)
            self.writer.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

"""Image metrics: PSNR, SSIM, optional LPIPS (only with locally available weights; never downloaded)."""
from __future__ import annotations

import torch

from ..losses.photometric import psnr, ssim

__all__ = ["psnr", "ssim", "LpipsMetric"]


class LpipsMetric:
    """LPIPS if the `lpips` package and its backbone weights are already on disk, else unavailable.

    Nothing is downloaded: torchvision's pretrained backbone must be in the torch hub cache already.
    """

    def __init__(self, net: str = "alex"):
        self.model = None
        self.reason = ""
        try:
            import os

            import lpips  # type: ignore

            hub = torch.hub.get_dir()
            if not os.path.isdir(os.path.join(hub, "checkpoints")) or not os.listdir(os.path.join(hub, "checkpoints")):
                self.reason = f"no backbone weights in {hub}/checkpoints (downloads are disabled)"
                return
            self.model = lpips.LPIPS(net=net, verbose=False).eval()
        except Exception as e:  # noqa: BLE001 - any failure means LPIPS is just not reported
            self.reason = f"lpips unavailable: {type(e).__name__}: {e}"
            self.model = None

    @property
    def available(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def __call__(self, img: torch.Tensor, ref: torch.Tensor) -> float | None:
        """LPIPS between [H,W,3] images in [0,1]; None when unavailable."""
        if self.model is None:
            return None
        x = img.permute(2, 0, 1)[None] * 2 - 1
        y = ref.permute(2, 0, 1)[None] * 2 - 1
        return float(self.model.to(x.device)(x, y).mean())

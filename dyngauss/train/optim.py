"""Optimizers: one Adam per Gaussian parameter (gsplat strategies replace tensors per name) plus one for the
deformation field, with exponential learning-rate decay."""
from __future__ import annotations

import torch

from ..config import OptimConfig
from ..deform.base import DeformField
from ..model.gaussians import Gaussians


def gaussian_lrs(cfg: OptimConfig, scene_scale: float) -> dict[str, float]:
    return {"means": cfg.means_lr * scene_scale, "quats": cfg.quats_lr, "scales": cfg.scales_lr,
            "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}


def build_gaussian_optimizers(g: Gaussians, cfg: OptimConfig, scene_scale: float) -> dict[str, torch.optim.Adam]:
    lrs = gaussian_lrs(cfg, scene_scale)
    return {name: torch.optim.Adam([{"params": [p], "lr": lrs[name], "name": name}], eps=1e-15)
            for name, p in g.params.items()}


def decay_gamma(lr0: float, lr1: float, iters: int) -> float:
    """Per-step factor taking lr0 to lr1 in `iters` steps."""
    if lr0 <= 0 or lr1 <= 0 or iters <= 0:
        return 1.0
    return (lr1 / lr0) ** (1.0 / iters)


def build_deform_optimizer(deform: DeformField, lr: float) -> torch.optim.Adam | None:
    groups = deform.param_groups(lr)
    return torch.optim.Adam(groups, eps=1e-15) if groups else None

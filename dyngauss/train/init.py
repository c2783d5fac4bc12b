"""Initial canonical Gaussians: random in the scene bounds, or carved from the training alpha masks."""
from __future__ import annotations

import numpy as np
import torch

from ..data.camera import Camera
from ..gaussians import GaussianInitConfig, Gaussians


def carve_points_from_masks(cameras: list[Camera], images: torch.Tensor, alphas: torch.Tensor, num_points: int,
                            extent: float, seed: int = 0, min_fraction: float = 0.7,
                            max_views: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Random points in [-extent, extent]^3 kept when they project inside the alpha mask (> 0.5) in at least
    `min_fraction` of the views that see them (a visual hull over time, loose enough for moving objects).
    Returns (points [M,3], mean colour at their projections [M,3])."""
    rng = np.random.default_rng(seed)
    sel = np.linspace(0, len(cameras) - 1, min(max_views, len(cameras))).round().astype(int)
    kept_p, kept_c = [], []
    for _ in range(20):  # rejection sampling rounds
        cand = torch.from_numpy(rng.uniform(-extent, extent, (max(num_points * 4, 4096), 3)).astype(np.float32))
        inside = torch.zeros(len(cand))
        seen = torch.zeros(len(cand))
        col = torch.zeros(len(cand), 3)
        for i in sel:
            cam = cameras[i]
            uv, z = cam.project(cand)
            px, py = uv[:, 0].floor().long(), uv[:, 1].floor().long()
            ok = (z > 0) & (px >= 0) & (py >= 0) & (px < cam.width) & (py < cam.height)
            a = torch.zeros(len(cand))
            a[ok] = alphas[i][py[ok], px[ok], 0]
            hit = ok & (a > 0.5)
            seen += ok.float()
            inside += hit.float()
            col[hit] += images[i][py[hit], px[hit]]
        keep = (seen > 0) & (inside >= min_fraction * seen.clamp_min(1))
        kept_p.append(cand[keep].numpy())
        kept_c.append((col[keep] / inside[keep, None].clamp_min(1)).numpy())
        if sum(len(p) for p in kept_p) >= num_points:
            break
    pts = np.concatenate(kept_p)[:num_points]
    cols = np.concatenate(kept_c)[:num_points]
    return pts, cols


def initial_gaussians(kind: str, cfg: GaussianInitConfig, cameras: list[Camera] | None = None,
                      images: torch.Tensor | None = None, alphas: torch.Tensor | None = None,
                      seed: int = 0) -> Gaussians:
    """Build the initial Gaussians; kind auto|random|masks (auto = masks when alpha masks exist)."""
    if kind not in ("auto", "random", "masks"):
        raise ValueError(f"model.init must be auto, random or masks, got {kind!r}")
    use_masks = kind == "masks" or (kind == "auto" and alphas is not None)
    if use_masks:
        if alphas is None or cameras is None or images is None:
            raise ValueError("model.init=masks needs training images with an alpha channel")
        pts, cols = carve_points_from_masks(cameras, images, alphas, cfg.num_points, cfg.extent, seed)
        if len(pts) >= 100:
            return Gaussians.from_points(pts, cols, cfg)
    return Gaussians.random(cfg, seed)

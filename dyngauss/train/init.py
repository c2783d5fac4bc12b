"""Initial canonical Gaussians: from a sparse SfM point cloud, carved from the training alpha masks, or random
in the scene bounds.

Every region here is the scene's: the cube of half-size ``model.init_extent`` x the scene radius around the scene
centre, its edges along the scene's axes (the loader's object bounds and the cameras' up: dyngauss/train/scene.py
``scene_frame``, ``scene_axes``), so a similarity transform of the
world coordinates (cameras moved by (6, -4, 3), scaled x20) moves the initial points with it instead of leaving
them in a fixed box around the origin."""
from __future__ import annotations

import numpy as np
import torch

from pathlib import Path

from ..data.camera import Camera
from ..data.points import POINTS_FILE, load_sfm_points
from ..config import ModelConfig
from ..model.gaussians import Gaussians


def carve_points_from_masks(cameras: list[Camera], images: torch.Tensor, alphas: torch.Tensor, num_points: int,
                            extent: float, seed: int = 0, min_fraction: float = 0.7,
                            max_views: int = 40, center=(0.0, 0.0, 0.0),
                            axes=None) -> tuple[np.ndarray, np.ndarray]:
    """Random points in the cube center ± extent (world units; its edges along the columns of the rotation
    `axes` [3,3], default the world axes) kept when they project inside the alpha mask (> 0.5) in at least
    `min_fraction` of the views that see them (a visual hull over time, loose enough for moving objects).
    Returns (points [M,3], mean colour at their projections [M,3])."""
    rng = np.random.default_rng(seed)
    sel = np.linspace(0, len(cameras) - 1, min(max_views, len(cameras))).round().astype(int)
    kept_p, kept_c = [], []
    for _ in range(20):  # rejection sampling rounds
        u = rng.uniform(-extent, extent, (max(num_points * 4, 4096), 3))
        cand = torch.from_numpy(_place(u, center, axes))
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


def _init_kwargs(cfg: ModelConfig) -> dict:
    return dict(init_opacity=cfg.init_opacity, init_scale_mult=cfg.init_scale_mult, sh_degree=cfg.sh_degree)


def _place(u: np.ndarray, center, axes) -> np.ndarray:
    """Points [M,3] float32 at center + axes @ u for offsets u [M,3] (float64) in the scene's axes."""
    x = u if axes is None else u @ np.asarray(axes, np.float64).T
    return (x + np.asarray(center, np.float64).reshape(1, 3)).astype(np.float32)


def points_init(points: np.ndarray, colors: np.ndarray, cfg: ModelConfig, seed: int = 0,
                center=(0.0, 0.0, 0.0), radius: float = 1.0, axes=None) -> Gaussians:
    """SfM points (background and whatever of the moving object was triangulated) plus `cfg.num_points`
    random points in the region of interest (the cube of half-size `cfg.init_extent` x `radius` around
    `center`, along `axes`), so a moving object that structure-from-motion could not triangulate still has
    Gaussians to start from."""
    rng = np.random.default_rng(seed)
    e = cfg.init_extent * float(radius)
    extra = _place(rng.uniform(-e, e, (cfg.num_points, 3)), center, axes)
    pts = np.concatenate([np.asarray(points, np.float32), extra])
    cols = np.concatenate([np.asarray(colors, np.float32), rng.uniform(0, 1, (cfg.num_points, 3)).astype(np.float32)])
    return Gaussians.from_points(pts, cols, **_init_kwargs(cfg))


def initial_gaussians(cfg: ModelConfig, cameras: list[Camera] | None = None,
                      images: torch.Tensor | None = None, alphas: torch.Tensor | None = None,
                      seed: int = 0, dataset: str | Path | None = None,
                      points: np.ndarray | None = None, center=(0.0, 0.0, 0.0),
                      radius: float = 1.0, axes=None, colors: np.ndarray | None = None) -> Gaussians:
    """Build the initial Gaussians as `cfg` (the model section) says; cfg.init is auto|points|masks|random.

    auto: the dataset's ``points3d.ply`` when there is one (opaque scenes prepared from a video), else the
    loader's sparse points (`points` [M,3], e.g. a Nerfies capture's ``points.npy``; grey unless `colors`
    [M,3] are given, e.g. a Panoptic capture's ``init_pt_cld.npz``), else the alpha masks
    when the images have an alpha channel, else random. Random and mask-carved candidates (and the extra points
    next to SfM points) fill the cube of half-size ``cfg.init_extent * radius`` around `center` with edges
    along `axes` (the scene's centre [3], radius (world units) and axes [3,3]; the default is the unit-radius
    scene at the origin along the world axes). Raises ValueError when the chosen source is missing."""
    kind = cfg.init
    if kind not in ("auto", "random", "masks", "points"):
        raise ValueError(f"model.init must be auto, points, masks or random, got {kind!r}")
    ply = Path(dataset) / POINTS_FILE if dataset is not None else None
    has_ply = ply is not None and ply.is_file()
    center = tuple(float(v) for v in np.asarray(center, np.float64).reshape(3))
    radius = float(radius)
    if not (np.isfinite(radius) and radius > 0 and np.all(np.isfinite(center))):
        raise ValueError(f"scene centre/radius must be finite with a positive radius, got {center}, {radius}")
    if points is not None and len(points) and not has_ply and kind in ("auto", "points"):
        pts = np.asarray(points, np.float32)
        cols = np.asarray(colors, np.float32) if colors is not None and len(colors) == len(pts) else \
            np.full_like(pts, 0.5)  # `colors` [M,3] in [0,1]: e.g. a Panoptic capture's init_pt_cld.npz
        return points_init(pts, cols, cfg, seed, center, radius, axes)
    if kind == "points" or (kind == "auto" and has_ply):
        if not has_ply:
            raise ValueError(f"model.init=points needs {POINTS_FILE} in the dataset folder ({dataset})")
        pts, cols = load_sfm_points(ply, seed=seed)
        return points_init(pts, cols, cfg, seed, center, radius, axes)
    use_masks = kind == "masks" or (kind == "auto" and alphas is not None)
    if use_masks:
        if alphas is None or cameras is None or images is None:
            raise ValueError("model.init=masks needs training images with an alpha channel")
        pts, cols = carve_points_from_masks(cameras, images, alphas, cfg.num_points, cfg.init_extent * radius,
                                            seed, center=center, axes=axes)
        if len(pts) >= 100:
            return Gaussians.from_points(pts, cols, **_init_kwargs(cfg))
    if axes is None:
        return Gaussians.random(cfg.num_points, cfg.init_extent * radius, seed, center, **_init_kwargs(cfg))
    rng = np.random.default_rng(seed)  # Gaussians.random's draws, turned to the scene's axes
    e = cfg.init_extent * radius
    pts = _place(rng.uniform(-1, 1, (cfg.num_points, 3)) * e, center, axes)
    cols = rng.uniform(0, 1, (cfg.num_points, 3)).astype(np.float32)
    return Gaussians.from_points(pts, cols, **_init_kwargs(cfg))

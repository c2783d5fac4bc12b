"""Canonical 3D Gaussians: raw parameters, activations, initialisation, SH degree schedule."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..geometry.sh import num_sh_bases, rgb_to_sh0

# Keys of the parameter dict. They follow gsplat's strategies ("scales" holds log-scales, "opacities"
# holds logits) so its densification works on it unchanged; the properties below give docs/design.md's names.
PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")


def _knn_mean_dist(points: np.ndarray, k: int = 3) -> np.ndarray:
    from scipy.spatial import cKDTree

    if len(points) <= 1:
        return np.full(len(points), 0.01)
    k = min(k, len(points) - 1)
    d, _ = cKDTree(points).query(points, k=k + 1)
    return np.sqrt((d[:, 1:] ** 2).mean(-1)).clip(1e-7)


class Gaussians(nn.Module):
    """N canonical Gaussians. Parameters (docs/design.md): means [N,3], quats [N,4] wxyz, log_scales [N,3],
    opacity_logits [N], and SH split as sh0 [N,1,3] (DC) and shN [N,K-1,3] (rest, K=(d+1)^2) so they can
    have different learning rates. `sh` concatenates them. Stored in `params` under PARAM_NAMES."""

    def __init__(self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
                 opacity_logits: torch.Tensor, sh0: torch.Tensor, shN: torch.Tensor, sh_degree: int = 3):
        super().__init__()
        self.max_sh_degree = int(sh_degree)
        self.params = nn.ParameterDict({
            "means": nn.Parameter(means), "quats": nn.Parameter(quats),
            "scales": nn.Parameter(log_scales), "opacities": nn.Parameter(opacity_logits),
            "sh0": nn.Parameter(sh0), "shN": nn.Parameter(shN)})

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_points(cls, points: np.ndarray | torch.Tensor, colors: np.ndarray | torch.Tensor | None = None, *,
                    init_opacity: float = ModelConfig.init_opacity,
                    init_scale_mult: float = ModelConfig.init_scale_mult,
                    sh_degree: int = ModelConfig.sh_degree) -> "Gaussians":
        """Gaussians at `points` [N,3] with colours [N,3] in [0,1] (grey if None): identity rotations, isotropic
        scales `init_scale_mult` x the mean distance to the 3 nearest neighbours, opacity `init_opacity`, SH of
        degree `sh_degree` (higher bands zero). Keyword names and defaults are ModelConfig's (3DGS init).
        Raises ValueError for points or colours of the wrong shape."""
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must be [N,3], got {pts.shape}")
        n = len(pts)
        col = np.full((n, 3), 0.5, np.float32) if colors is None else np.asarray(colors, np.float32)
        if col.shape != (n, 3):
            raise ValueError(f"colors must be [{n},3], got {col.shape}")
        dist = _knn_mean_dist(pts) * init_scale_mult
        means = torch.from_numpy(pts)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        log_scales = torch.from_numpy(np.log(dist)).float()[:, None].repeat(1, 3)
        p = float(np.clip(init_opacity, 1e-4, 1 - 1e-4))
        opacity_logits = torch.full((n,), float(np.log(p / (1 - p))))
        sh0 = rgb_to_sh0(torch.from_numpy(col))[:, None, :]
        shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3)
        return cls(means, quats, log_scales, opacity_logits, sh0, shN, sh_degree)

    @classmethod
    def random(cls, num_points: int = ModelConfig.num_points, init_extent: float = ModelConfig.init_extent,
               seed: int = 0, center: tuple[float, float, float] = (0.0, 0.0, 0.0), *,
               init_opacity: float = ModelConfig.init_opacity, init_scale_mult: float = ModelConfig.init_scale_mult,
               sh_degree: int = ModelConfig.sh_degree) -> "Gaussians":
        """`num_points` uniform random points in the cube center ± init_extent with random colours (numpy
        generator seeded with `seed`), then :meth:`from_points`."""
        rng = np.random.default_rng(seed)
        pts = (rng.uniform(-1, 1, (num_points, 3)) * init_extent + np.asarray(center)).astype(np.float32)
        cols = rng.uniform(0, 1, (num_points, 3)).astype(np.float32)
        return cls.from_points(pts, cols, init_opacity=init_opacity, init_scale_mult=init_scale_mult,
                               sh_degree=sh_degree)

    @classmethod
    def empty_like_state(cls, state: dict[str, torch.Tensor], sh_degree: int) -> "Gaussians":
        """Shell with the shapes of a saved state dict (for loading checkpoints)."""
        g = {k.split(".")[-1]: torch.zeros_like(v) for k, v in state.items() if k.startswith("params.")}
        missing = [k for k in PARAM_NAMES if k not in g]
        if missing:
            raise KeyError(f"Gaussian state is missing {missing}")
        return cls(g["means"], g["quats"], g["scales"], g["opacities"], g["sh0"], g["shN"], sh_degree)

    # ---- views --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def means(self) -> torch.Tensor:
        return self.params["means"]

    @property
    def quats(self) -> torch.Tensor:
        return self.params["quats"]

    @property
    def log_scales(self) -> torch.Tensor:
        return self.params["scales"]

    @property
    def opacity_logits(self) -> torch.Tensor:
        return self.params["opacities"]

    @property
    def scales(self) -> torch.Tensor:
        """Activated scales exp(log_scales) [N,3]."""
        return torch.exp(self.params["scales"])

    @property
    def opacities(self) -> torch.Tensor:
        """Activated opacities sigmoid(logits) [N]."""
        return torch.sigmoid(self.params["opacities"])

    @property
    def sh(self) -> torch.Tensor:
        """All SH coefficients [N,(d+1)^2,3]."""
        return torch.cat([self.params["sh0"], self.params["shN"]], 1)

    def sh_degree_at(self, step: int, every: int = 1000) -> int:
        """Progressive SH: one more degree every `every` steps, up to the maximum."""
        return min(self.max_sh_degree, step // max(1, every))

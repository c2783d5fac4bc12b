"""One time step of a dynamic scene as the web viewer draws it: posed Gaussians as numpy arrays.

A :class:`SplatFrame` is what a source (a model, a PLY sequence, a live training) hands to the web viewer for
time t; it holds plain CPU arrays, so the viewer's threads never touch a model's tensors. The splats are drawn
by viser's client-side Gaussian-splat renderer (Kerbl et al. 2023, "3D Gaussian Splatting for Real-Time
Radiance Field Rendering"), which takes a covariance Sigma = R diag(s^2) R^T and one base colour per Gaussian:
view-dependent colour (SH degree > 0) is not shown, the DC term is (``dc_to_rgb``).

numpy only (torch tensors are accepted by :meth:`SplatFrame.from_posed`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.ply import dc_to_rgb
from .glyphs import normalize_quats, quats_to_matrices


def _np32(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


@dataclass
class SplatFrame:
    """N posed Gaussians at time `t`.

    means [N,3] float32 (world units); quats [N,4] float32 unit wxyz; scales [N,3] float32 standard deviations
    (world units, > 0); opacities [N] float32 in [0,1]; rgb [N,3] float32 base colour in [0,1]. Row i is the
    same Gaussian at every time of one source (so rows are 3D tracks)."""

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    rgb: np.ndarray
    t: float

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        for name, shape in (("means", (n, 3)), ("quats", (n, 4)), ("scales", (n, 3)), ("opacities", (n,)),
                            ("rgb", (n, 3))):
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"SplatFrame.{name} must be {list(shape)}, got {list(got)}")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def from_posed(cls, posed) -> "SplatFrame":
        """From a :class:`dyngauss.model.dynamic.PosedGaussians` (any device; copied to CPU float32)."""
        sh = _np32(posed.sh)
        return cls(_np32(posed.means), normalize_quats(_np32(posed.quats)), np.exp(_np32(posed.log_scales)),
                   _np32(posed.opacities).reshape(-1), dc_to_rgb(sh[:, 0, :]), float(posed.t))

    @classmethod
    def from_gaussian_ply(cls, rec: dict, t: float) -> "SplatFrame":
        """From :func:`dyngauss.io.ply.read_gaussians_ply`'s dict (logit opacities, log scales, SH)."""
        logits = np.asarray(rec["opacity_logits"], np.float32).reshape(-1)
        return cls(_np32(rec["means"]), normalize_quats(_np32(rec["quats"])), np.exp(_np32(rec["log_scales"])),
                   (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), dc_to_rgb(rec["sh"][:, 0, :]), float(t))

    @classmethod
    def from_points(cls, xyz: np.ndarray, rgb_uint8: np.ndarray, radius: float, t: float) -> "SplatFrame":
        """Coloured points (a ``format="points"`` sequence) as round opaque splats of standard deviation
        `radius` (world units)."""
        xyz = _np32(xyz)
        n = len(xyz)
        quats = np.zeros((n, 4), np.float32)
        quats[:, 0] = 1.0
        return cls(xyz, quats, np.full((n, 3), radius, np.float32), np.ones(n, np.float32),
                   np.asarray(rgb_uint8, np.float32) / 255.0, float(t))

    def covariances(self) -> np.ndarray:
        """Sigma = R diag(s^2) R^T [N,3,3] float32 (world units squared)."""
        r = quats_to_matrices(self.quats)
        rs = r * self.scales.astype(np.float64)[:, None, :]
        return (rs @ rs.transpose(0, 2, 1)).astype(np.float32)

    def subset(self, rows: np.ndarray) -> "SplatFrame":
        """The frame of these rows only (a bool mask [N] or indices)."""
        return SplatFrame(self.means[rows], self.quats[rows], self.scales[rows], self.opacities[rows],
                          self.rgb[rows], self.t)

    def visible(self, threshold: float) -> np.ndarray:
        """Row mask [N] bool: opacity >= threshold and finite means."""
        return (self.opacities >= threshold) & np.isfinite(self.means).all(1)


def bounds(means: np.ndarray, quantile: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Robust axis-aligned bounds (lo [3], hi [3]) of points [N,3]: the `quantile` / 1-`quantile` values per
    axis (outlying floaters do not inflate the framing); the unit cube around 0 for no points."""
    m = np.asarray(means, np.float64)
    m = m[np.isfinite(m).all(1)] if m.size else m.reshape(0, 3)
    if len(m) == 0:
        return -np.ones(3), np.ones(3)
    if len(m) < 50:
        return m.min(0), m.max(0)
    lo, hi = np.quantile(m, [quantile, 1 - quantile], axis=0)
    return lo, hi

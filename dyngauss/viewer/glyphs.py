"""Ellipsoid glyphs: one triangle mesh showing each Gaussian as an oriented ellipsoid (numpy; open3d only for
the unit sphere).

A Gaussian with unit quaternion q (w, x, y, z) and standard deviations s [3] is the unit sphere mapped by
``R(q) diag(sigma * s)``; normals transform by the inverse transpose, ``R(q) diag(1 / s)``.
"""
from __future__ import annotations

import numpy as np

GLYPH_SIGMA = 1.0  # ellipsoid glyph radius in standard deviations


def normalize_quats(q: np.ndarray) -> np.ndarray:
    """Unit quaternions [...,4] (zero quaternions stay finite)."""
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)


def quats_to_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [G,3,3] float64 of quaternions [G,4] (w, x, y, z; normalised here), acting on column
    vectors. The numpy twin of dyngauss.geometry.quaternion.quat_to_matrix (torch), for the torch-free viewer."""
    w, x, y, z = normalize_quats(q.astype(np.float64)).T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


class GlyphBuilder:
    """One triangle mesh of `n` oriented ellipsoids (a low-poly unit sphere per Gaussian, S vertices each).

    `colors` [n,3] in [0,1]; `triangles` [n*T,3] int32 and `vertex_colors` [n*S,3] are fixed; the vertices and
    normals of each frame come from :meth:`vertices_normals`."""

    def __init__(self, n: int, colors: np.ndarray, resolution: int = 6):
        import open3d as o3d

        sphere = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=resolution)
        self.unit = np.asarray(sphere.vertices, np.float64)          # [S,3]
        tri = np.asarray(sphere.triangles, np.int32)                   # [T,3]
        s = len(self.unit)
        self.triangles = (tri[None] + (s * np.arange(n, dtype=np.int32))[:, None, None]).reshape(-1, 3)
        self.vertex_colors = np.repeat(np.asarray(colors, np.float64), s, axis=0)
        self.n = n

    def vertices_normals(self, means: np.ndarray, quats: np.ndarray, scales: np.ndarray,
                         sigma: float = GLYPH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
        """Vertices and unit normals [n*S,3] float64 for centres `means` [n,3], quaternions [n,4] and linear
        scales [n,3] (world units), the ellipsoid radii being `sigma` standard deviations."""
        R = quats_to_matrices(quats)
        s = np.maximum(scales.astype(np.float64), 1e-9)
        M = R * (sigma * s)[:, None, :]                                # R diag(sigma s)
        v = np.einsum("gij,sj->gsi", M, self.unit) + means[:, None, :].astype(np.float64)
        Ninv = R / s[:, None, :]                                       # R diag(1/s): normal transform
        nrm = np.einsum("gij,sj->gsi", Ninv, self.unit)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
        return v.reshape(-1, 3), nrm.reshape(-1, 3)

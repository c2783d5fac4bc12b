"""Axial twist error of predicted tracks: how far (degrees) a model turns each cross-section of an elongated
object about its own axis compared with the ground truth.

Why: on bar-like scenes (the built-in scene, ``../shared/data/twist``) most of the 3D track error is one
global ambiguity: the photometric fit can explain part of the bar's twist by texture sliding around the
cross-section, which keeps local shapes and colours right while points travel the wrong way. The mean track
EPE mixes this with everything else; this diagnostic isolates it.

Protocol (:func:`axial_twist_error`): the ground-truth points are split into ``slices`` equal bins of their
rest coordinate along ``axis``. At each time, for each slice: c = centroid of the slice's ground-truth
points, n = the direction of least variance of those points (the cross-section's normal; oriented from the
previous slice's centroid to the next one's, so the sign is the same along the bar), and every point's
signed angle about n from (gt - c) to (pred - c), both projected onto the plane orthogonal to n. The slice's
value is the median over its points (robust to points near the axis). Positive = the prediction is turned
further counter-clockwise about n than the truth. Rigid motions applied to both pred and gt do not change it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["axial_twist_error", "slice_edges"]


def _slice_normal(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = g.mean(0)
    _, _, vt = np.linalg.svd(g - c, full_matrices=False)
    return c, vt[-1]


def slice_edges(rest_coord: np.ndarray, slices: int) -> np.ndarray:
    """The `slices` + 1 edges of the equal bins of the rest coordinate that :func:`axial_twist_error` uses."""
    z = np.asarray(rest_coord, dtype=np.float64).reshape(-1)
    return np.linspace(z.min(), z.max(), slices + 1)


def axial_twist_error(pred: np.ndarray, gt: np.ndarray, rest_coord: np.ndarray, slices: int = 6) -> np.ndarray:
    """Signed twist error in degrees, [slices, T] (protocol in the module docstring).

    Args:
        pred, gt: predicted and true positions [P,T,3].
        rest_coord: each point's rest coordinate along the object's long axis [P].
        slices: number of equal bins of rest_coord (>= 2; each needs >= 3 points).
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    z = np.asarray(rest_coord, dtype=np.float64).reshape(-1)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred and gt must both be [P,T,3], got {pred.shape} and {gt.shape}")
    if z.shape[0] != gt.shape[0]:
        raise ValueError(f"rest_coord has {z.shape[0]} entries for {gt.shape[0]} points")
    if slices < 2:
        raise ValueError("slices must be >= 2")
    edges = slice_edges(z, slices)
    which = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, slices - 1)
    members = [np.nonzero(which == s)[0] for s in range(slices)]
    if min(len(m) for m in members) < 3:
        raise ValueError(f"every slice needs >= 3 points; counts {[len(m) for m in members]}")
    T = gt.shape[1]
    out = np.zeros((slices, T))
    for j in range(T):
        cn = [_slice_normal(gt[m, j]) for m in members]
        for s, m in enumerate(members):
            c, n = cn[s]
            ahead = cn[min(s + 1, slices - 1)][0] - cn[max(s - 1, 0)][0]
            if float(n @ ahead) < 0:
                n = -n
            a, b = gt[m, j] - c, pred[m, j] - c
            a = a - np.outer(a @ n, n)
            b = b - np.outer(b @ n, n)
            ang = np.arctan2(np.cross(a, b) @ n, (a * b).sum(1))
            out[s, j] = np.degrees(np.median(ang))
    return out

"""Geometry of the web viewer's overlays (numpy only): motion trails, node-graph lines, picking Gaussians.

* Trails: the 3D track of a Gaussian (its posed mean over time; row i of every frame is the same Gaussian) drawn
  as a polyline coloured from blue (earliest) to red (latest).
* Node graph: node positions at time t and the graph's edges as line segments.
* Picking: the Gaussians inside a screen rectangle of a viewer camera (viser's rectangle select gives the
  corners in normalised OpenCV image coordinates, (0,0) top left, (1,1) bottom right), or the ones that move
  the most.
"""
from __future__ import annotations

import math

import numpy as np

from .glyphs import quats_to_matrices

EARLY_RGB = np.array([40, 90, 230], np.float64)
LATE_RGB = np.array([230, 50, 40], np.float64)


def trail_segments(tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line segments of tracks [R,T,3] -> (points [S,2,3] float32, colours [S,2,3] uint8), S <= R*(T-1);
    segments with a non-finite end are left out. Colours go from EARLY_RGB at the first time to LATE_RGB at
    the last."""
    tracks = np.asarray(tracks, np.float32)
    r, t = tracks.shape[:2]
    if r == 0 or t < 2:
        return np.zeros((0, 2, 3), np.float32), np.zeros((0, 2, 3), np.uint8)
    seg = np.stack([tracks[:, :-1], tracks[:, 1:]], 2).reshape(-1, 2, 3)
    a = np.linspace(0.0, 1.0, t)
    cols = (1 - a)[:, None] * EARLY_RGB + a[:, None] * LATE_RGB       # [T,3]
    col = np.stack([cols[:-1], cols[1:]], 1)                            # [T-1,2,3]
    col = np.broadcast_to(col, (r, t - 1, 2, 3)).reshape(-1, 2, 3)
    ok = np.isfinite(seg).all((1, 2))
    return np.ascontiguousarray(seg[ok]), np.rint(col[ok]).astype(np.uint8)


def edge_segments(positions: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Node positions [M,3] + edges [E,2] -> segments [E,2,3] float32."""
    positions = np.asarray(positions, np.float32)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    return np.ascontiguousarray(positions[edges]) if len(edges) else np.zeros((0, 2, 3), np.float32)


def project_normalized(points: np.ndarray, wxyz: np.ndarray, position: np.ndarray, fov_y: float,
                       aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """World points [N,3] -> (normalised image coordinates [N,2] (u right, v down, 0..1 across the view),
    depth [N]) for a pinhole camera at `position` with orientation `wxyz` (camera-to-world, OpenCV axes),
    vertical field of view `fov_y` (radians) and `aspect` = width / height."""
    r = quats_to_matrices(np.asarray(wxyz, np.float64)[None])[0]
    pc = (np.asarray(points, np.float64) - np.asarray(position, np.float64)) @ r  # world -> camera: R^T (p - c)
    z = pc[:, 2]
    th = math.tan(fov_y / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = 0.5 + pc[:, 0] / z / (2.0 * th * aspect)
        v = 0.5 + pc[:, 1] / z / (2.0 * th)
    return np.stack([u, v], 1), z


def select_in_rect(points: np.ndarray, candidates: np.ndarray, wxyz, position, fov_y: float, aspect: float,
                   screen_min, screen_max, max_count: int, seed: int = 0) -> np.ndarray:
    """Rows of `points` [N,3] among `candidates` (bool mask [N]) in front of the camera whose projection lies
    inside the rectangle [screen_min, screen_max] (normalised image coordinates); at most `max_count` of them
    (an evenly random subset when more). Sorted int64 array."""
    uv, z = project_normalized(points, wxyz, position, fov_y, aspect)
    (u0, v0), (u1, v1) = np.minimum(screen_min, screen_max), np.maximum(screen_min, screen_max)
    inside = candidates & (z > 0) & (uv[:, 0] >= u0) & (uv[:, 0] <= u1) & (uv[:, 1] >= v0) & (uv[:, 1] <= v1)
    rows = np.flatnonzero(inside)
    if len(rows) > max_count:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_count, replace=False))
    return rows.astype(np.int64)


def most_moving(tracks: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """The `count` rows (of `rows`, whose tracks [R,T,3] are given) with the longest paths, sorted."""
    tracks = np.asarray(tracks, np.float64)
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    steps = np.linalg.norm(np.diff(tracks, axis=1), axis=-1)
    length = np.nansum(steps, axis=1)
    best = np.argsort(-length, kind="stable")[:count]
    return np.sort(np.asarray(rows, np.int64)[best])

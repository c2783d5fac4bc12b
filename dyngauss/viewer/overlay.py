"""Drawing a 3D line set (the node graph) into an RGB image with a pinhole camera; numpy only.

Used by the splat view, where the image comes from the rasterizer rather than from Open3D's scene. Camera
convention: K [3,3] pixels with pixel centres at (col + 0.5, row + 0.5), viewmat [4,4] world-to-camera (OpenCV).
"""
from __future__ import annotations

import numpy as np

from .scene import NODE_RGB


def draw_line_set(img: np.ndarray, K: np.ndarray, viewmat: np.ndarray, vertices: np.ndarray, edges: np.ndarray,
                  edge_rgb: np.ndarray | None = None, near: float = 1e-3, thickness: int = 2) -> int:
    """Draw `edges` [E,2] between `vertices` [M,3] (world units) into `img` uint8 [H,W,3] in place, `thickness`
    pixels wide, coloured `edge_rgb` [E,3] uint8 (default :data:`NODE_RGB`). Edges with an end behind the
    camera (depth <= `near`) are skipped; pixels outside the image are dropped. Returns the number of pixel writes."""
    H, W = img.shape[:2]
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    if not len(edges):
        return 0
    R, t = np.asarray(viewmat, np.float64)[:3, :3], np.asarray(viewmat, np.float64)[:3, 3]
    cam = np.asarray(vertices, np.float64) @ R.T + t
    z = cam[:, 2]
    ok = (z[edges[:, 0]] > near) & (z[edges[:, 1]] > near)
    edges = edges[ok]
    rgb = np.tile(NODE_RGB, (len(ok), 1)) if edge_rgb is None else np.asarray(edge_rgb).reshape(-1, 3)
    rgb = rgb[ok].astype(np.uint8)
    if not len(edges):
        return 0
    K = np.asarray(K, np.float64)
    uv = cam[:, :2] / np.where(z > near, z, 1.0)[:, None] * np.diag(K)[:2] + K[:2, 2] - 0.5  # pixel indices
    a, b = uv[edges[:, 0]], uv[edges[:, 1]]
    steps = np.ceil(np.abs(b - a).max(1)).clip(1, 4 * (W + H)).astype(np.int64) + 1
    owner = np.repeat(np.arange(len(edges)), steps)
    frac = (np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(steps - 1, steps).clip(1)
    p = a[owner] + (b - a)[owner] * frac[:, None]
    written = 0
    for dx in range(thickness):
        for dy in range(thickness):
            c = np.rint(p[:, 0]).astype(np.int64) + dx
            r = np.rint(p[:, 1]).astype(np.int64) + dy
            inside = (c >= 0) & (c < W) & (r >= 0) & (r < H)
            img[r[inside], c[inside]] = rgb[owner[inside]]
            written += int(inside.sum())
    return written

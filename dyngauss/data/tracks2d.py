"""Long-range 2D point tracks from chained optical flow (Sundaram et al. 2010, "Dense point trajectories by
GPU-accelerated large displacement optical flow"; the long-range supervision of Shape of Motion / OmniMotion,
here from forward-backward-checked DIS flow, data/flow.py, instead of a learned tracker).

Frames are linked into chains of time-consecutive pairs that qualify for flow (the same test as the flow prior:
:func:`~dyngauss.data.flow.select_flow_pairs`); a video-like sequence (a moving phone camera) gives one long
chain, a D-NeRF capture with teleporting cameras gives short ones or none. Along a chain, seed points on a pixel
grid are carried from frame to frame by the forward flow (bilinear) while the forward-backward check passes at
their position and they stay inside the image; new seeds start every few frames, so regions that appear later
get tracks too.

Positions are pixel indices (pixel centres at integers, the convention of the flow arrays: ``flow[r, c]`` moves
the pixel (c, r)); NaN where a track is not followed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["TrackSet", "link_chains", "chain_tracks"]


@dataclass
class TrackSet:
    """Tracks along one chain of frames. frames: the frame indices (into the caller's frame list) in chain order;
    xy float32 [P,L,2] positions in frame frames[k] (NaN = not followed there)."""

    frames: list[int]
    xy: np.ndarray

    def pairs(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (in chain positions a and b) of the tracks followed in both: ([M,2], [M,2])."""
        pa, pb = self.xy[:, a], self.xy[:, b]
        ok = np.isfinite(pa).all(-1) & np.isfinite(pb).all(-1)
        return pa[ok], pb[ok]


def link_chains(pairs: Sequence[tuple[int, int]], times: Sequence[float]) -> list[list[int]]:
    """Chains of frames from qualifying pairs: frame i is followed by the frame nearest after it in time among
    its pair partners (ties: lower index), when i is also that frame's nearest partner before it. Chains of at
    least two frames, each in time order; a frame is in at most one chain."""
    t = [float(x) for x in times]
    nxt: dict[int, int] = {}
    prv: dict[int, int] = {}
    for a, b in pairs:
        i, j = (a, b) if (t[a], a) < (t[b], b) else (b, a)
        if i not in nxt or (t[j], j) < (t[nxt[i]], nxt[i]):
            nxt[i] = j
        if j not in prv or (t[i], i) > (t[prv[j]], prv[j]):
            prv[j] = i
    succ = {i: j for i, j in nxt.items() if prv.get(j) == i}
    pred = {j: i for i, j in succ.items()}
    chains = []
    for start in sorted(succ, key=lambda i: (t[i], i)):
        if start in pred:
            continue
        chain = [start]
        while chain[-1] in succ:
            chain.append(succ[chain[-1]])
        chains.append(chain)
    return chains


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """field [H,W,C] at positions (x [M], y [M]) inside the image, bilinear -> [M,C]."""
    H, W = field.shape[:2]
    x0 = np.clip(np.floor(x).astype(np.int64), 0, W - 1)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, H - 1)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return (field[y0, x0] * (1 - fx) * (1 - fy) + field[y0, x1] * fx * (1 - fy)
            + field[y1, x0] * (1 - fx) * fy + field[y1, x1] * fx * fy)


def chain_tracks(flows: Sequence[np.ndarray], valid: Sequence[np.ndarray], stride: int = 4, seed_every: int = 8,
                 min_length: int = 3, seeds: np.ndarray | None = None) -> np.ndarray:
    """Tracks [P,L,2] (float32, NaN = not followed) along L = len(flows) + 1 frames.

    Args:
        flows: L-1 forward flows [H,W,2] (frame k -> k+1, pixels). valid: L-1 masks [H,W] bool (the
            forward-backward check of each flow; False also outside object masks).
        stride: seed grid spacing (pixels); seeds sit at pixel centres ``stride/2 + k stride``.
        seed_every: new seeds every this many frames (frame 0, seed_every, ...), only where the flow out of
            that frame is valid.
        min_length: tracks followed over fewer frames are dropped.
        seeds: optional [S,2] seed positions (replace the grid; all start in frame 0).
    A track moves on from frame k while the forward-backward check passes at its nearest pixel and its new
    position lies inside the image; it is not resumed after it stops."""
    L = len(flows) + 1
    if len(valid) != len(flows):
        raise ValueError(f"{len(flows)} flows but {len(valid)} validity masks")
    if L < 2:
        return np.zeros((0, L, 2), np.float32)
    H, W = flows[0].shape[:2]
    if seeds is None:
        gy, gx = np.mgrid[stride // 2:H:stride, stride // 2:W:stride]
        grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float64)
        starts = [(k, grid) for k in range(0, L - 1, max(1, seed_every))]
    else:
        starts = [(0, np.asarray(seeds, np.float64).reshape(-1, 2))]
    out = []
    for k0, pts in starts:
        r = np.clip(np.rint(pts[:, 1]).astype(np.int64), 0, H - 1)
        c = np.clip(np.rint(pts[:, 0]).astype(np.int64), 0, W - 1)
        pts = pts[valid[k0][r, c]] if seeds is None else pts
        xy = np.full((len(pts), L, 2), np.nan)
        xy[:, k0] = pts
        alive = np.ones(len(pts), bool)
        cur = pts.copy()
        for k in range(k0, L - 1):
            if not alive.any():
                break
            idx = np.flatnonzero(alive)
            p = cur[idx]
            inside = (p[:, 0] >= 0) & (p[:, 0] <= W - 1) & (p[:, 1] >= 0) & (p[:, 1] <= H - 1)
            r = np.clip(np.rint(p[:, 1]).astype(np.int64), 0, H - 1)
            c = np.clip(np.rint(p[:, 0]).astype(np.int64), 0, W - 1)
            ok = inside & valid[k][r, c]
            q = p + _bilinear(flows[k].astype(np.float64), p[:, 0], p[:, 1])
            ok &= (q[:, 0] >= 0) & (q[:, 0] <= W - 1) & (q[:, 1] >= 0) & (q[:, 1] <= H - 1)
            alive[idx[~ok]] = False
            cur[idx[ok]] = q[ok]
            xy[idx[ok], k + 1] = q[ok]
        length = np.isfinite(xy[..., 0]).sum(1)
        out.append(xy[length >= min_length])
    return np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, L, 2), np.float32)

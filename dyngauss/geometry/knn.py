"""Exact k-nearest neighbours in 3D: chunked brute force in torch, or scipy's cKDTree for large sets on CPU.

Both paths return the same thing: squared distances [M,k] (ascending, recomputed in torch from the indices,
so they are differentiable w.r.t. query and ref) and indices [M,k] (int64) into `ref`.
"""
from __future__ import annotations

import numpy as np
import torch

# "auto" switches to the KD-tree when query * ref pairs exceed this (CPU tensors only).
KDTREE_MIN_PAIRS = 20_000_000


def _exact_dist2(query: torch.Tensor, ref: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return ((query.unsqueeze(1) - ref[idx]) ** 2).sum(-1)


def knn_brute(query: torch.Tensor, ref: torch.Tensor, k: int, chunk: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked brute force. Candidates are found with the fast |a|^2 + |b|^2 - 2ab expansion; the returned
    distances are recomputed exactly from the differences and the k results re-sorted."""
    m, n = query.shape[0], ref.shape[0]
    if chunk is None:  # keep each [chunk, N] distance block around 64 MB
        chunk = max(1, min(m, (16 * 1024 * 1024) // max(n, 1)))
    idx_all = []
    with torch.no_grad():
        r2 = (ref * ref).sum(-1)
        for s in range(0, m, chunk):
            q = query[s:s + chunk].detach()
            d = (q * q).sum(-1, keepdim=True) + r2[None] - 2.0 * (q @ ref.detach().T)
            idx_all.append(torch.topk(d, k, dim=-1, largest=False, sorted=True).indices)
    idx = torch.cat(idx_all, 0) if idx_all else torch.zeros(0, k, dtype=torch.long, device=query.device)
    return _resort(query, ref, idx)


def _resort(query, ref, idx):
    d2 = _exact_dist2(query, ref, idx)
    order = torch.argsort(d2.detach(), dim=-1, stable=True)
    return torch.gather(d2, 1, order), torch.gather(idx, 1, order)


def knn_kdtree(query: torch.Tensor, ref: torch.Tensor, k: int, workers: int = 1
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """scipy cKDTree (float64) search; same outputs as :func:`knn_brute`."""
    from scipy.spatial import cKDTree

    r = ref.detach().cpu().double().numpy()
    q = query.detach().cpu().double().numpy()
    _, idx = cKDTree(r).query(q, k=k, workers=workers)
    idx = np.asarray(idx, dtype=np.int64).reshape(len(q), k)
    return _resort(query, ref, torch.from_numpy(idx).to(query.device))


def knn(query: torch.Tensor, ref: torch.Tensor, k: int, method: str = "auto",
        chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest `ref` points [N,3] of every `query` point [M,3] -> (dist2 [M,k], idx [M,k]).

    method: "auto" (KD-tree on CPU for large problems, else brute force), "brute" or "kdtree".
    k must be <= N. A query point that is also in `ref` finds itself first (distance 0)."""
    if query.dim() != 2 or ref.dim() != 2 or query.shape[-1] != ref.shape[-1]:
        raise ValueError(f"knn expects [M,D] and [N,D], got {tuple(query.shape)} and {tuple(ref.shape)}")
    n = ref.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    if method == "auto":
        big = query.shape[0] * n > KDTREE_MIN_PAIRS
        method = "kdtree" if (big and query.device.type == "cpu") else "brute"
    if method == "brute":
        return knn_brute(query, ref, k, chunk)
    if method == "kdtree":
        return knn_kdtree(query, ref, k)
    raise ValueError(f"unknown knn method {method!r}")


def knn_self(points: torch.Tensor, k: int, method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest *other* points of every point [N,3] -> (dist2 [N,k], idx [N,k]); self excluded."""
    n = points.shape[0]
    d2, idx = knn(points, points, min(k + 1, n), method)
    self_idx = torch.arange(n, device=points.device)[:, None]
    is_self = idx == self_idx
    # drop the self column (normally the first; robust to exact duplicates)
    keep = ~is_self
    has_self = is_self.any(1)
    # rows without self (duplicates pushed it out): drop the last column instead
    keep[~has_self, -1] = False
    d2 = d2[keep].reshape(n, -1)
    idx = idx[keep].reshape(n, -1)
    return d2[:, :k], idx[:, :k]


def farthest_point_sample(points: torch.Tensor, m: int, start: int | None = None) -> torch.Tensor:
    """Indices [m] of a farthest-point sample of points [N,3] (deterministic: starts at the point closest to
    the centroid unless `start` is given). m > N returns all N indices."""
    n = points.shape[0]
    m = min(m, n)
    if m <= 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    p = points.detach()
    if start is None:
        start = int(((p - p.mean(0)) ** 2).sum(-1).argmin())
    idx = torch.empty(m, dtype=torch.long, device=p.device)
    idx[0] = start
    dist = ((p - p[start]) ** 2).sum(-1)
    for i in range(1, m):
        j = torch.argmax(dist)
        idx[i] = j
        dist = torch.minimum(dist, ((p - p[j]) ** 2).sum(-1))
    return idx

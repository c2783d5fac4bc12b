"""Rigidity regularisers.

- :func:`arap_node_loss`: DynamicFusion's embedded-deformation regulariser E_reg between neighbouring nodes
  of a node graph: node j's transform applied to node k's position must agree with node k's own transform,
  sum over edges w_jk || R_j (g_k - g_j) + g_j + t_j - (g_k + t_k) ||^2.
- Dynamic3DGaussians' regularisers between each Gaussian i and its K nearest neighbours j (neighbours found
  once on the canonical means, :func:`knn_neighbors`), between two states a and b (a = canonical or time t,
  b = time t'), with weights w_ij = exp(-lam |mu_j - mu_i|^2):
  * :func:`local_rigidity_loss`: neighbour offsets rotate with the Gaussian's own rotation,
    || (mu_j,b - mu_i,b) - R_i,b R_i,a^-1 (mu_j,a - mu_i,a) ||;
  * :func:`rotation_similarity_loss`: neighbours share the same relative rotation from a to b,
    || q_j,b q_j,a^-1 - q_i,b q_i,a^-1 ||;
  * :func:`isometry_loss`: neighbour distances are kept, | |mu_j,b - mu_i,b| - |mu_j,a - mu_i,a| |.
  Rotations may be the posed quaternions (rot ⊗ q) or the field's motion rotations: the relative rotation
  q_b q_a^-1 is the same for both.
All return a scalar tensor, 0 for a rigid motion of the whole set.
"""
from __future__ import annotations

import torch

from ..geometry.knn import knn_self
from ..geometry.quaternion import quat_conjugate, quat_multiply, quat_normalize, quat_rotate

__all__ = ["knn_neighbors", "arap_node_loss", "local_rigidity_loss", "rotation_similarity_loss", "isometry_loss"]


@torch.no_grad()
def knn_neighbors(points: torch.Tensor, k: int = 8, lam: float | None = None, method: str = "auto"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """K nearest other points of each canonical point [N,3] -> (idx [N,K] int64, weights [N,K]).

    weights = exp(-lam d^2), lam default 1 / (2 * mean squared neighbour distance) (scale-free). Computed
    without gradient; recompute after densification/pruning changed the Gaussians."""
    n = points.shape[0]
    k = max(1, min(k, n - 1))
    d2, idx = knn_self(points.detach(), k, method)
    if lam is None:
        lam = 1.0 / (2.0 * float(d2.mean().clamp_min(1e-12)))
    return idx, torch.exp(-lam * d2)


def _smooth_norm(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return torch.sqrt((v * v).sum(-1) + eps * eps) - eps


def _reduce(err: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if err.numel() == 0:
        return err.sum() * 0.0
    if weights is None:
        return err.mean()
    w = weights.to(err)
    return (w * err).sum() / w.sum().clamp_min(1e-12)


def _rows(n: int, idx: torch.Tensor, weights: torch.Tensor | None, anchors: torch.Tensor | None):
    if idx.dim() != 2:
        raise ValueError(f"idx must be [N,K], got {tuple(idx.shape)}")
    if anchors is None:
        if idx.shape[0] != n:
            raise ValueError(f"idx has {idx.shape[0]} rows for {n} points (pass anchors for a subset)")
        return torch.arange(n, device=idx.device), idx, weights
    anchors = anchors.to(idx.device)
    return anchors, idx[anchors], None if weights is None else weights[anchors]


def arap_node_loss(node_pos: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, edges: torch.Tensor,
                   weights: torch.Tensor | None = None, convention: str = "world") -> torch.Tensor:
    """DynamicFusion E_reg (as-rigid-as-possible between graph neighbours); scalar.

    Args:
        node_pos [M,3]: canonical node positions g.
        rot [M,4] (wxyz), trans [M,3]: node motions canonical -> t. convention "world" (default, what
            ``NodeDeformField.node_motion(t)`` returns): x' = R_j x + T_j; "node" (DynamicFusion): x' =
            R_j (x - g_j) + g_j + t_j, i.e. t_j is the node's displacement.
        edges [E,2] int (j, k): include both directions for a symmetric term.
        weights [E] or None: edge weights (e.g. from ``field.node_graph()``).
    Returns the weighted mean over edges of || R_j (g_k - g_j) + g_j + t_j - (g_k + t_k) ||^2 (written for
    the chosen convention; in "world" form || R_j g_k + T_j - (R_k g_k + T_k) ||^2)."""
    if edges.numel() == 0:
        return (trans * 0.0).sum()
    j, k = edges[:, 0].long(), edges[:, 1].long()
    gj, gk = node_pos[j], node_pos[k]
    qj, qk = quat_normalize(rot[j]), quat_normalize(rot[k])
    if convention == "world":
        r = quat_rotate(qj, gk) + trans[j] - (quat_rotate(qk, gk) + trans[k])
    elif convention == "node":
        r = quat_rotate(qj, gk - gj) + gj + trans[j] - (gk + trans[k])
    else:
        raise ValueError(f"unknown convention {convention!r}; use world or node")
    return _reduce((r * r).sum(-1), weights)


def local_rigidity_loss(means_a: torch.Tensor, rots_a: torch.Tensor, means_b: torch.Tensor,
                        rots_b: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor | None = None,
                        anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Dynamic3DGaussians local rigidity between states a and b; scalar.

    Args:
        means_a, means_b [N,3]; rots_a, rots_b [N,4] (wxyz): positions and rotations at the two states
            (a = canonical: ``means_a = gaussians.means``, ``rots_a`` = identity, ``rots_b = motion.rot``).
        idx [N,K] (or rows for ``anchors``), weights [N,K] or None: neighbours from :func:`knn_neighbors`.
        anchors [A] int or None: evaluate only these Gaussians (random subsample per step).
    Weighted mean of || (mu_j,b - mu_i,b) - R_i,b R_i,a^-1 (mu_j,a - mu_i,a) ||."""
    i, nb, w = _rows(means_a.shape[0], idx, weights, anchors)
    rel = quat_multiply(quat_normalize(rots_b[i]), quat_conjugate(quat_normalize(rots_a[i])))  # [A,4]
    off_a = means_a[nb] - means_a[i][:, None]
    off_b = means_b[nb] - means_b[i][:, None]
    pred = quat_rotate(rel[:, None].expand(-1, nb.shape[1], -1), off_a)
    return _reduce(_smooth_norm(off_b - pred), w)


def rotation_similarity_loss(rots_a: torch.Tensor, rots_b: torch.Tensor, idx: torch.Tensor,
                             weights: torch.Tensor | None = None, anchors: torch.Tensor | None = None
                             ) -> torch.Tensor:
    """Dynamic3DGaussians rotation similarity; scalar. Weighted mean of || r_j - s r_i || with
    r = q_b q_a^-1 (unit) and s = ±1 the sign making them closest (q and -q are one rotation)."""
    i, nb, w = _rows(rots_a.shape[0], idx, weights, anchors)
    r = quat_multiply(quat_normalize(rots_b), quat_conjugate(quat_normalize(rots_a)))  # [N,4]
    ri, rj = r[i][:, None].expand(-1, nb.shape[1], -1), r[nb]
    s = torch.where((ri * rj).sum(-1, keepdim=True).detach() < 0, -1.0, 1.0).to(r)
    return _reduce(_smooth_norm(rj - s * ri), w)


def isometry_loss(means_a: torch.Tensor, means_b: torch.Tensor, idx: torch.Tensor,
                  weights: torch.Tensor | None = None, anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Dynamic3DGaussians isometry between states a and b (canonical and time t, or times t and t'); scalar.
    Weighted mean of | |mu_j,b - mu_i,b| - |mu_j,a - mu_i,a| |."""
    i, nb, w = _rows(means_a.shape[0], idx, weights, anchors)
    da = _smooth_norm(means_a[nb] - means_a[i][:, None])
    db = _smooth_norm(means_b[nb] - means_b[i][:, None])
    return _reduce((db - da).abs(), w)

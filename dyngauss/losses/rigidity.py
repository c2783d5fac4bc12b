"""Rigidity regularisers.

- :func:`arap_node_loss`: DynamicFusion's embedded-deformation regulariser E_reg between neighbouring nodes
  of a node graph: node j's transform applied to node k's position must agree with node k's own transform,
  sum over edges w_jk || R_j (g_k - g_j) + g_j + t_j - (g_k + t_k) ||^2, optionally through a Geman-McClure
  kernel (:func:`geman_mcclure`) so that joints between rigid parts are not smoothed over.
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

__all__ = ["knn_neighbors", "geman_mcclure", "arap_node_loss", "local_rigidity_loss", "rotation_similarity_loss",
           "isometry_loss"]


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


def geman_mcclure(sq: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Geman-McClure kernel of squared residuals sq [...] (>= 0) with scale s (float or broadcastable tensor, > 0,
    same length unit as the residual): rho = s^2 sq / (sq + s^2).

    rho = sq - sq^2 / s^2 + O(sq^3) for sq << s^2 (plain L2 for small residuals: d rho / d sq -> 1), and rho -> s^2
    (saturated, gradient s^4 / (sq + s^2)^2 -> 0) for sq >> s^2. Geman & McClure 1987; as a robust ARAP term cf.
    Black & Rangarajan 1996 (the kernel is the minimum over a per-edge weight w in [0, 1] of
    w sq + s^2 (sqrt(w) - 1)^2, i.e. an edge rigidity weight optimised in closed form)."""
    s2 = torch.as_tensor(scale, dtype=sq.dtype, device=sq.device) ** 2
    return s2 * sq / (sq + s2)


def arap_node_loss(node_pos: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, edges: torch.Tensor,
                   weights: torch.Tensor | None = None, convention: str = "world",
                   robust_scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """DynamicFusion E_reg (as-rigid-as-possible between graph neighbours); scalar.

    Robust variant (`robust_scale`): each edge's squared residual e goes through the Geman-McClure kernel
    s^2 e / (e + s^2) (:func:`geman_mcclure`). Why a robust kernel and not learned per-edge rigidity weights:
    an edge across a joint of a piecewise-rigid motion (two bones) has a large residual that plain L2 keeps
    pulling on (it smooths the joint into a bend); the kernel stops pulling once the residual passes s, while
    leaving small residuals (noise inside a rigid part) at plain L2. By Black & Rangarajan's line-process
    duality the kernel *is* a per-edge weight w in [0, 1] optimised in closed form, w = (s^2 / (e + s^2))^2 —
    so it gives what learned edge weights would, without the E extra parameters that every re-binding and
    node densification of the graph would have to remap, and without the extra prior that stops learned weights
    from collapsing to 0 (the trivial minimiser). Geman-McClure rather than Welsch: its tail falls as 1/e, not
    exponentially, so a residual well past s still has some pull early in training, when everything is far
    off. Values and gradients for residuals well below s equal the plain term's.

    Args:
        node_pos [M,3]: canonical node positions g.
        rot [M,4] (wxyz), trans [M,3]: node motions canonical -> t. convention "world" (default, what
            ``NodeDeformField.node_motion(t)`` returns): x' = R_j x + T_j; "node" (DynamicFusion): x' =
            R_j (x - g_j) + g_j + t_j, i.e. t_j is the node's displacement.
        edges [E,2] int (j, k): include both directions for a symmetric term.
        weights [E] or None: edge weights (e.g. from ``field.node_graph()``).
        robust_scale: None or 0 (plain L2), a float, or per-edge [E] (e.g. ``field.arap_scale(edges)``): the
            Geman-McClure scale s in the units of node_pos (entries <= 0 leave their edge at plain L2).
    Returns the weighted mean over edges of || R_j (g_k - g_j) + g_j + t_j - (g_k + t_k) ||^2 (written for
    the chosen convention; in "world" form || R_j g_k + T_j - (R_k g_k + T_k) ||^2), each through the kernel
    when robust. Raises ValueError for an unknown convention or a per-edge scale of another length than edges."""
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
    sq = (r * r).sum(-1)
    if robust_scale is not None:
        s = torch.as_tensor(robust_scale, dtype=sq.dtype, device=sq.device)
        if s.dim() > 0 and s.shape != sq.shape:
            raise ValueError(f"robust_scale has shape {tuple(s.shape)} for {sq.shape[0]} edges")
        robust = s > 0
        sq = torch.where(robust, geman_mcclure(sq, torch.where(robust, s, torch.ones_like(s))), sq)
    return _reduce(sq, weights)


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

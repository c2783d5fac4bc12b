"""Unit dual quaternions for rigid transforms and dual-quaternion blending (Kavan et al. 2007).

A dual quaternion is a tensor [...,8] = (real [...,4], dual [...,4]), both wxyz. For a rigid transform
x' = R x + t with rotation quaternion q: real = q, dual = 0.5 (0, t) ⊗ q.
"""
from __future__ import annotations

import torch

from .quaternion import quat_conjugate, quat_multiply, quat_rotate


def _pure(v: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros_like(v[..., :1]), v], -1)


def dq_from_quat_trans(quat: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(unit quat [...,4], trans [...,3]) -> dual quaternion [...,8]."""
    return torch.cat([quat, 0.5 * quat_multiply(_pure(trans), quat)], -1)


def dq_normalize(dq: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Project onto unit dual quaternions: |real| = 1 and real · dual = 0."""
    r, d = dq[..., :4], dq[..., 4:]
    n = r.norm(dim=-1, keepdim=True).clamp_min(eps)
    r, d = r / n, d / n
    d = d - (r * d).sum(-1, keepdim=True) * r
    return torch.cat([r, d], -1)


def dq_to_quat_trans(dq: torch.Tensor, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual quaternion [...,8] -> (unit quat [...,4], trans [...,3]); t = 2 vec(dual ⊗ real*)."""
    if normalize:
        dq = dq_normalize(dq)
    r, d = dq[..., :4], dq[..., 4:]
    return r, 2.0 * quat_multiply(d, quat_conjugate(r))[..., 1:]


def dq_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a ⊗ b (apply b first)."""
    ar, ad, br, bd = a[..., :4], a[..., 4:], b[..., :4], b[..., 4:]
    return torch.cat([quat_multiply(ar, br), quat_multiply(ar, bd) + quat_multiply(ad, br)], -1)


def dq_apply(dq: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Transform points x [...,3] by (normalised) dual quaternions."""
    q, t = dq_to_quat_trans(dq)
    return quat_rotate(q, x) + t


def dq_align(dq: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Flip each dual quaternion to the hemisphere of `ref` (real parts with non-negative dot product).

    dq [...,K,8] (or [...,8]), ref broadcastable to dq's real part, e.g. [...,1,4]."""
    s = (dq[..., :4] * ref[..., :4]).sum(-1, keepdim=True)
    return torch.where(s < 0, -dq, dq)


def dq_blend(dq: torch.Tensor, weights: torch.Tensor, ref: torch.Tensor | None = None,
             normalize: bool = True) -> torch.Tensor:
    """Dual-quaternion linear blending.

    dq [...,K,8], weights [...,K] (need not sum to 1). Every dq is first sign-aligned to `ref` [...,8]
    (default: the one with the largest weight), then the weighted sum is normalised. Returns [...,8]."""
    if ref is None:
        idx = weights.argmax(-1, keepdim=True)  # [...,1]
        ref = torch.gather(dq, -2, idx.unsqueeze(-1).expand(idx.shape + (8,))).squeeze(-2)
    dq = dq_align(dq, ref.unsqueeze(-2))
    out = (weights.unsqueeze(-1) * dq).sum(-2)
    return dq_normalize(out) if normalize else out

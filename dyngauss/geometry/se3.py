"""SE(3) exponential and logarithm for screw axes (Nerfies style), plus small rigid-transform helpers.

A screw axis / twist is a 6-vector S = (w, v): w [3] the rotation (axis-angle), v [3] the translational part.
exp(S) = (R, t) with R = exp(hat(w)) and t = V(w) v, V the SO(3) left Jacobian
(V = I + (1-cos th)/th^2 hat(w) + (th - sin th)/th^3 hat(w)^2). The transform acts as x' = R x + t.
Rigid transforms are passed around as (quat [...,4] wxyz, trans [...,3]).
"""
from __future__ import annotations

import torch

from .quaternion import quat_conjugate, quat_multiply, quat_rotate, quat_to_matrix, matrix_to_quat
from .so3 import (SMALL_ANGLE2, _safe_theta, one_minus_cos_over_t2, so3_exp_quat, so3_log_quat,
                  t_minus_sin_over_t3)


def _v_times(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """V(w) v without forming matrices."""
    theta2 = (w * w).sum(-1, keepdim=True)
    wxv = torch.cross(w, v, dim=-1)
    return v + one_minus_cos_over_t2(theta2) * wxv + t_minus_sin_over_t3(theta2) * torch.cross(w, wxv, dim=-1)


def _vinv_coeff(theta2: torch.Tensor) -> torch.Tensor:
    """D(theta) = (1 - (theta/2) cot(theta/2)) / theta^2, so that V^-1 = I - hat(w)/2 + D hat(w)^2."""
    small = theta2 < SMALL_ANGLE2
    th = _safe_theta(theta2, small)
    series = 1 / 12 + theta2 * (1 / 720 + theta2 * (1 / 30240 + theta2 * (1 / 1209600 + theta2 / 47900160)))
    half = th / 2
    closed = (1 - half * torch.cos(half) / torch.sin(half)) / (th * th)
    return torch.where(small, series, closed)


def _vinv_times(w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    theta2 = (w * w).sum(-1, keepdim=True)
    wxt = torch.cross(w, t, dim=-1)
    return t - 0.5 * wxt + _vinv_coeff(theta2) * torch.cross(w, wxt, dim=-1)


def se3_exp(screw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Screw axis [...,6] = (w, v) -> (unit quaternion [...,4], translation [...,3])."""
    w, v = screw[..., :3], screw[..., 3:]
    return so3_exp_quat(w), _v_times(w, v)


def se3_log(quat: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(quaternion [...,4], translation [...,3]) -> screw axis [...,6] with rotation angle in [0, pi]."""
    w = so3_log_quat(quat)
    return torch.cat([w, _vinv_times(w, trans)], -1)


def se3_exp_matrix(screw: torch.Tensor) -> torch.Tensor:
    """Screw axis [...,6] -> homogeneous transform [...,4,4]."""
    q, t = se3_exp(screw)
    return to_matrix(q, t)


def se3_log_matrix(T: torch.Tensor) -> torch.Tensor:
    """Homogeneous transform [...,4,4] -> screw axis [...,6]."""
    return se3_log(matrix_to_quat(T[..., :3, :3]), T[..., :3, 3])


def to_matrix(quat: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(quat, trans) -> [...,4,4]."""
    R = quat_to_matrix(quat)
    top = torch.cat([R, trans.unsqueeze(-1)], -1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)


def rigid_apply(quat: torch.Tensor, trans: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x' = R x + t."""
    return quat_rotate(quat, x) + trans


def rigid_compose(q1: torch.Tensor, t1: torch.Tensor, q2: torch.Tensor, t2: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """T1 ∘ T2 (apply T2 first): (q1 ⊗ q2, R1 t2 + t1)."""
    return quat_multiply(q1, q2), quat_rotate(q1, t2) + t1


def rigid_inverse(quat: torch.Tensor, trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """T^-1 = (q*, -R^T t) for unit quaternions."""
    qi = quat_conjugate(quat)
    return qi, -quat_rotate(qi, trans)

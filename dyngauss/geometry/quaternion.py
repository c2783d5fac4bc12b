"""Quaternion ops, (w, x, y, z) order, acting on column vectors: x' = R(q) x."""
from __future__ import annotations

import torch


def quat_normalize(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit quaternion [...,4]."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a ⊗ b (apply b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (= inverse for unit quaternions). Built on the device (no host-to-device sign vector), so it
    can run inside a CUDA-graph capture."""
    return torch.cat([q[..., :1], -q[..., 1:]], -1)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [...,3,3] of a (not necessarily unit) quaternion [...,4]."""
    w, x, y, z = quat_normalize(q).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v [...,3] by quaternions q [...,4]."""
    return (quat_to_matrix(q) @ v.unsqueeze(-1)).squeeze(-1)


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternion [...,4] (w >= 0) of rotation matrices [...,3,3]; stable for all angles."""
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # four candidate (4 * component^2) values; pick the largest for stability
    cand = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                        1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    idx = cand.argmax(-1)
    s = cand.gather(-1, idx[:, None]).squeeze(-1).clamp_min(1e-12).sqrt() * 2  # = 4 * |component|
    qs = torch.stack([
        torch.stack([s / 4, (m[:, 2, 1] - m[:, 1, 2]) / s, (m[:, 0, 2] - m[:, 2, 0]) / s, (m[:, 1, 0] - m[:, 0, 1]) / s], -1),
        torch.stack([(m[:, 2, 1] - m[:, 1, 2]) / s, s / 4, (m[:, 0, 1] + m[:, 1, 0]) / s, (m[:, 0, 2] + m[:, 2, 0]) / s], -1),
        torch.stack([(m[:, 0, 2] - m[:, 2, 0]) / s, (m[:, 0, 1] + m[:, 1, 0]) / s, s / 4, (m[:, 1, 2] + m[:, 2, 1]) / s], -1),
        torch.stack([(m[:, 1, 0] - m[:, 0, 1]) / s, (m[:, 0, 2] + m[:, 2, 0]) / s, (m[:, 1, 2] + m[:, 2, 1]) / s, s / 4], -1),
    ], 1)
    q = qs[torch.arange(m.shape[0]), idx]
    q = torch.where(q[:, :1] < 0, -q, q)
    return quat_normalize(q).reshape(R.shape[:-2] + (4,))


def quat_identity(shape: tuple[int, ...] = (), device=None, dtype=torch.float32) -> torch.Tensor:
    """Identity quaternions [*shape, 4]."""
    q = torch.zeros(*shape, 4, device=device, dtype=dtype)
    q[..., 0] = 1.0
    return q


def quat_standardize(q: torch.Tensor) -> torch.Tensor:
    """The representative with w >= 0 (q and -q are the same rotation)."""
    return torch.where(q[..., :1] < 0, -q, q)


def quat_inverse(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Inverse of any non-zero quaternion (conjugate / |q|^2)."""
    return quat_conjugate(q) / (q * q).sum(-1, keepdim=True).clamp_min(eps)


def quat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """4D inner product [...]."""
    return (a * b).sum(-1)


def quat_angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rotation angle in [0, pi] of a^-1 b for unit quaternions (sign-invariant)."""
    d = quat_dot(quat_normalize(a), quat_normalize(b)).abs().clamp(max=1.0)
    return 2.0 * torch.acos(d)


def quat_slerp(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation from unit a (w=0) to unit b (w=1) along the shorter arc."""
    w = torch.as_tensor(w, dtype=a.dtype, device=a.device)
    if w.dim() < a.dim():
        w = w.unsqueeze(-1)
    d = quat_dot(a, b).unsqueeze(-1)
    b = torch.where(d < 0, -b, b)
    d = d.abs().clamp(max=1.0)
    theta = torch.acos(d)
    s = torch.sin(theta)
    near = s < 1e-6
    s_safe = torch.where(near, torch.ones_like(s), s)
    wa = torch.where(near, 1 - w, torch.sin((1 - w) * theta) / s_safe)
    wb = torch.where(near, w, torch.sin(w * theta) / s_safe)
    return quat_normalize(wa * a + wb * b)

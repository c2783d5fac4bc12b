"""SO(3) exponential and logarithm maps (axis-angle vectors <-> unit quaternions (wxyz) and matrices).

All functions are batched over leading dimensions, work in float32 and float64 and are differentiable
everywhere, including exactly at angle 0 (series expansions replace the removable singularities, with
"safe" branches so that no NaN gradient leaks through `torch.where`) and up to angle pi.

An axis-angle vector w = theta * axis (theta = |w|) rotates by theta radians about `axis` (right hand).
"""
from __future__ import annotations

import torch

from .quaternion import matrix_to_quat, quat_normalize, quat_standardize

# Below this squared angle the closed forms are replaced by their Taylor series (truncation error of the
# series used here < 1e-15 relative there; the closed forms lose < ~1e-5 relative in float32 above it).
SMALL_ANGLE2 = 0.05


def _safe_theta(theta2: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """sqrt(theta2) where not small, 1 elsewhere (keeps gradients of the unused branch finite)."""
    return torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))


def sinc(theta2: torch.Tensor) -> torch.Tensor:
    """sin(theta) / theta as a function of theta^2."""
    small = theta2 < SMALL_ANGLE2
    th = _safe_theta(theta2, small)
    series = 1 - theta2 / 6 * (1 - theta2 / 20 * (1 - theta2 / 42 * (1 - theta2 / 72 * (1 - theta2 / 110))))
    return torch.where(small, series, torch.sin(th) / th)


def one_minus_cos_over_t2(theta2: torch.Tensor) -> torch.Tensor:
    """(1 - cos theta) / theta^2 = sinc(theta/2)^2 / 2 (no cancellation)."""
    return 0.5 * sinc(theta2 / 4) ** 2


def t_minus_sin_over_t3(theta2: torch.Tensor) -> torch.Tensor:
    """(theta - sin theta) / theta^3."""
    small = theta2 < SMALL_ANGLE2
    th = _safe_theta(theta2, small)
    series = (1 - theta2 / 20 * (1 - theta2 / 42 * (1 - theta2 / 72 * (1 - theta2 / 110)))) / 6
    return torch.where(small, series, (th - torch.sin(th)) / (th * th * th))


def hat(w: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrix [...,3,3] with hat(w) v = w x v."""
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(w.shape[:-1] + (3, 3))


def vee(W: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hat` (uses the antisymmetric part)."""
    return 0.5 * torch.stack([W[..., 2, 1] - W[..., 1, 2], W[..., 0, 2] - W[..., 2, 0],
                              W[..., 1, 0] - W[..., 0, 1]], -1)


def so3_exp_quat(w: torch.Tensor) -> torch.Tensor:
    """Axis-angle [...,3] -> unit quaternion [...,4] (wxyz), q = (cos(theta/2), sin(theta/2) axis)."""
    theta2 = (w * w).sum(-1, keepdim=True)
    half = 0.5 * sinc(theta2 / 4)  # sin(theta/2) / theta
    small = theta2 < SMALL_ANGLE2
    th = _safe_theta(theta2, small)
    y = theta2 / 4
    series = 1 - y / 2 * (1 - y / 12 * (1 - y / 30 * (1 - y / 56 * (1 - y / 90))))
    cos_half = torch.where(small, series, torch.cos(th / 2))
    return torch.cat([cos_half, half * w], -1)


def so3_log_quat(q: torch.Tensor) -> torch.Tensor:
    """Unit (or any non-zero) quaternion [...,4] -> axis-angle [...,3] with angle in [0, pi].

    q and -q give the same result (the w >= 0 representative is used). At exactly pi the axis sign is
    whatever the quaternion's vector part says (both are valid logarithms)."""
    q = quat_standardize(quat_normalize(q))
    w, v = q[..., :1], q[..., 1:]
    n2 = (v * v).sum(-1, keepdim=True)
    small = n2 < 1e-8
    n = _safe_theta(n2, small)
    # theta / n with theta = 2 atan2(n, w); for small n (then w ~ 1): 2/w (1 - n^2 / (3 w^2))
    w_safe = torch.where(small, w.clamp_min(0.5), torch.ones_like(w))
    series = 2 / w_safe * (1 - n2 / (3 * w_safe * w_safe))
    factor = torch.where(small, series, 2 * torch.atan2(n, w) / n)
    return factor * v


def so3_exp_matrix(w: torch.Tensor) -> torch.Tensor:
    """Axis-angle [...,3] -> rotation matrix [...,3,3] (Rodrigues)."""
    theta2 = (w * w).sum(-1)[..., None, None]
    W = hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(W.shape)
    return eye + sinc(theta2) * W + one_minus_cos_over_t2(theta2) * (W @ W)


def so3_log_matrix(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [...,3,3] -> axis-angle [...,3]; stable at 0 and at pi (goes through the quaternion)."""
    return so3_log_quat(matrix_to_quat(R))


def so3_left_jacobian(w: torch.Tensor) -> torch.Tensor:
    """Left Jacobian V(w) [...,3,3] = I + B hat(w) + C hat(w)^2 (also the translation map of se(3) exp)."""
    theta2 = (w * w).sum(-1)[..., None, None]
    W = hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(W.shape)
    return eye + one_minus_cos_over_t2(theta2) * W + t_minus_sin_over_t3(theta2) * (W @ W)


def random_rotvec(n: int, max_angle: float = torch.pi, generator: torch.Generator | None = None,
                  dtype=torch.float32) -> torch.Tensor:
    """n axis-angle vectors with uniformly random axes and angles uniform in [0, max_angle] (for tests)."""
    axis = torch.randn(n, 3, generator=generator, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    ang = torch.rand(n, 1, generator=generator, dtype=dtype) * max_angle
    return axis * ang

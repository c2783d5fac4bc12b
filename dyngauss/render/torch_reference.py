"""Pure-torch reference rasterizer: the specification every kernel is tested against.

Semantics (shared exactly by kernels/cpu and, up to tolerance, gsplat):
- Projection (EWA): camera-space mean p = R mu + t; culled when z <= near or z >= far.
  mean2d = (fx x/z + cx, fy y/z + cy) in pixels (pixel centres at +0.5).
  Sigma = R(q) diag(s)^2 R(q)^T, cov_cam = W Sigma W^T, cov2d = J cov_cam J^T + eps2d I with the
  perspective Jacobian J evaluated at x/z, y/z clamped to 1.3x the field of view (as 3DGS).
  conic = inverse(cov2d) stored as (a, b, c) = [[a, b], [b, c]].
  extent = 3 sqrt(diag(cov2d)) per axis; radii = ceil(extent) (0 where culled or off-screen).
- Rasterization: Gaussian i touches pixel centre p when |p - mean2d| <= extent on both axes.
  sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, alpha = min(0.99, o exp(-sigma)); skipped when sigma < 0
  or alpha < 1/255. Gaussians are composited front to back in order of (depth, index); compositing
  stops before the Gaussian that would bring transmittance to <= 1e-4.
  Outputs sum_i w_i c_i with w_i = alpha_i T_i, and alpha = sum_i w_i.
The image is processed in square tiles that only see Gaussians whose extent box overlaps them; the
tile size changes speed, never the result.
"""
from __future__ import annotations


import torch

from ..geometry.quaternion import quat_to_matrix

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4


def project_gaussians(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                      viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                      eps2d: float = 0.3, near: float = 0.01, far: float = 1e10):
    """Project N Gaussians into C cameras.

    Args: means [N,3], quats [N,4] (wxyz, any norm), scales [N,3] (activated), viewmats [C,4,4], Ks [C,3,3].
    Returns: means2d [C,N,2], conics [C,N,3], depths [C,N], extents [C,N,2] (no grad), radii [C,N,2] int32.
    """
    R = viewmats[:, None, :3, :3]  # [C,1,3,3]
    t = viewmats[:, None, :3, 3]
    pc = (R @ means[None, :, :, None]).squeeze(-1) + t  # [C,N,3]
    x, y, z = pc.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    valid = (z > near) & (z < far)
    zs = torch.where(valid, z, torch.ones_like(z))  # keep culled entries finite
    # Jacobian of the projection, with x/z and y/z clamped to 1.3x the frustum (3DGS)
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / (zs * zs),
                     zero, fy / zs, -fy * ty / (zs * zs)], -1).reshape(zs.shape + (2, 3))
    Rq = quat_to_matrix(quats)  # [N,3,3]
    M = Rq * scales[:, None, :]  # R diag(s)
    cov3d = M @ M.transpose(-1, -2)  # [N,3,3]
    cov_cam = R @ cov3d[None] @ R.transpose(-1, -2)  # [C,N,3,3]
    cov2d = J @ cov_cam @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    valid = valid & (det > 0)
    det_s = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], -1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    with torch.no_grad():
        ext = 3.0 * torch.stack([a, c], -1).clamp_min(0).sqrt()
        u, v = means2d.unbind(-1)
        onscreen = (u + ext[..., 0] > 0) & (u - ext[..., 0] < width) & \
                   (v + ext[..., 1] > 0) & (v - ext[..., 1] < height)
        valid = valid & onscreen
        ext = torch.where(valid[..., None], ext, torch.zeros_like(ext))
        radii = torch.ceil(ext).to(torch.int32)
    depths = torch.where(valid, z, torch.zeros_like(z))
    return means2d, conics, depths, ext, radii


def _composite(alpha: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of depth-sorted alpha [P,M] and values [M,D] -> ([P,D], [P])."""
    if alpha.shape[1] == 0:
        return alpha.new_zeros(alpha.shape[0], values.shape[-1]), alpha.new_zeros(alpha.shape[0])
    keep = torch.cumprod(1.0 - alpha.detach(), dim=1) > T_MIN  # stop before T drops to <= 1e-4
    alpha = alpha * keep
    one_minus = 1.0 - alpha
    T = torch.cumprod(torch.cat([torch.ones_like(one_minus[:, :1]), one_minus[:, :-1]], 1), 1)
    w = alpha * T
    return w @ values, w.sum(1)


def rasterize_pixels(means2d: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor,
                     opacities: torch.Tensor, depths: torch.Tensor, extents: torch.Tensor,
                     width: int, height: int, tile_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-composite projected Gaussians.

    Args: means2d [C,N,2], conics [C,N,3], colors [C,N,D], opacities [N] or [C,N], depths [C,N],
    extents [C,N,2] (0 = culled). Returns (image [C,H,W,D], alpha [C,H,W,1]).
    """
    C, N = means2d.shape[:2]
    D = colors.shape[-1]
    if opacities.dim() == 1:
        opacities = opacities[None].expand(C, N)
    dev, dt = means2d.device, means2d.dtype
    out_img = []
    out_alpha = []
    ts = max(1, int(tile_size))
    for ci in range(C):
        ext = extents[ci].detach()
        live = (ext > 0).all(-1)
        order = torch.argsort(depths[ci].detach(), stable=True)
        order = order[live[order]]
        m2, ext_o = means2d[ci][order], ext[order]
        lo, hi = (m2.detach() - ext_o), (m2.detach() + ext_o)
        rows_img = []
        rows_a = []
        for y0 in range(0, height, ts):
            y1 = min(height, y0 + ts)
            tiles_img = []
            tiles_a = []
            for x0 in range(0, width, ts):
                x1 = min(width, x0 + ts)
                # pixel centres of this tile span [x0+0.5, x1-0.5]
                hit = (hi[:, 0] >= x0 + 0.5) & (lo[:, 0] <= x1 - 0.5) & \
                      (hi[:, 1] >= y0 + 0.5) & (lo[:, 1] <= y1 - 0.5)
                idx = order[hit]
                ys, xs = torch.meshgrid(torch.arange(y0, y1, device=dev, dtype=dt) + 0.5,
                                        torch.arange(x0, x1, device=dev, dtype=dt) + 0.5, indexing="ij")
                pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)  # [P,2]
                mu, cn, e = means2d[ci][idx], conics[ci][idx], ext[idx]
                d = pix[:, None, :] - mu[None]  # [P,M,2]
                dx, dy = d[..., 0], d[..., 1]
                sigma = 0.5 * (cn[:, 0] * dx * dx + cn[:, 2] * dy * dy) + cn[:, 1] * dx * dy
                al = torch.clamp_max(opacities[ci][idx] * torch.exp(-sigma), ALPHA_MAX)
                inside = (dx.detach().abs() <= e[:, 0]) & (dy.detach().abs() <= e[:, 1]) & \
                         (sigma.detach() >= 0) & (al.detach() >= ALPHA_MIN)
                al = torch.where(inside, al, torch.zeros_like(al))
                img, acc = _composite(al, colors[ci][idx])
                tiles_img.append(img.reshape(y1 - y0, x1 - x0, D))
                tiles_a.append(acc.reshape(y1 - y0, x1 - x0, 1))
            rows_img.append(torch.cat(tiles_img, 1))
            rows_a.append(torch.cat(tiles_a, 1))
        out_img.append(torch.cat(rows_img, 0))
        out_alpha.append(torch.cat(rows_a, 0))
    return torch.stack(out_img), torch.stack(out_alpha)

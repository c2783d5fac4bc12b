"""2D optical flow of posed Gaussians: per-Gaussian screen motion, and its alpha-composited image.

Flow from time t (camera ``cam_t``) to time t' (camera ``cam_t2``) of Gaussian i is the projection of its
posed mean at t' with the camera of t' minus the projection of its posed mean at t with the camera of t
(pixels, x right / y down). It includes camera motion when the cameras differ, so it is comparable with
optical flow computed between the two images (DIS priors, ground-truth flow).

:func:`render_flow` composites these per-Gaussian vectors as extra ``features`` channels at time t's pose
(each pixel gets the blend of the Gaussians it sees at t) and divides by the accumulated alpha, giving an
image-space flow field that is differentiable w.r.t. both poses (NSFF / shape-of-motion style).
"""
from __future__ import annotations

import torch

from ..data.camera import Camera
from .api import rasterize

__all__ = ["project_points", "gaussian_flow_2d", "render_flow", "normalize_flow"]


def project_points(points: torch.Tensor, cam: Camera, min_depth: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [N,3] -> (pixels [N,2] with centres at +0.5, camera z-depth [N]).

    Same formula as :meth:`Camera.project`, but the depth used in the division is clamped to
    ``min_depth`` (keeping its sign) so points on / behind the camera plane give large finite values
    instead of inf/NaN (they are culled by the rasterizer anyway)."""
    R = cam.viewmat[:3, :3].to(points)
    t = cam.viewmat[:3, 3].to(points)
    K = cam.K.to(points)
    pc = points @ R.T + t
    z = pc[..., 2]
    zs = torch.where(z.abs() < min_depth, torch.full_like(z, min_depth), z)
    uv = torch.stack([K[0, 0] * pc[..., 0] / zs + K[0, 2], K[1, 1] * pc[..., 1] / zs + K[1, 2]], -1)
    return uv, z


def gaussian_flow_2d(means_t: torch.Tensor, cam_t: Camera, means_t2: torch.Tensor, cam_t2: Camera,
                     near: float = 0.01) -> torch.Tensor:
    """Screen-space flow [N,2] (pixels) of N points from (means_t [N,3], cam_t) to (means_t2 [N,3], cam_t2).

    flow_i = proj(cam_t2, means_t2[i]) - proj(cam_t, means_t[i]). Points with camera depth <= ``near`` in
    either view get flow 0 (they are behind the camera; the rasterizer culls them at t). Both inputs keep
    their gradients, so the flow supervises the motion at t and t'."""
    if means_t.shape != means_t2.shape or means_t.dim() != 2 or means_t.shape[-1] != 3:
        raise ValueError(f"means must both be [N,3], got {tuple(means_t.shape)} and {tuple(means_t2.shape)}")
    uv1, z1 = project_points(means_t, cam_t)
    uv2, z2 = project_points(means_t2, cam_t2)
    ok = ((z1 > near) & (z2 > near))[:, None]
    flow = uv2 - uv1
    return torch.where(ok, flow, torch.zeros_like(flow))


def normalize_flow(features: torch.Tensor, alpha: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Alpha-composited flow channels [...,2] divided by the accumulated alpha [...,1] (eps-clamped)."""
    return features / alpha.clamp_min(eps)


def render_flow(gaussians, posed_means_t: torch.Tensor, posed_quats_t: torch.Tensor,
                posed_log_scales_t: torch.Tensor, cam_t: Camera, flow2d: torch.Tensor, *,
                backend: str = "auto", opacities: torch.Tensor | None = None, eps: float = 1e-6,
                **raster_kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the flow image of Gaussians posed at time t, seen from ``cam_t``.

    Args:
        gaussians: the canonical :class:`~dyngauss.model.gaussians.Gaussians` (only ``opacities`` is read,
            unless ``opacities`` [N] is given).
        posed_means_t [N,3], posed_quats_t [N,4], posed_log_scales_t [N,3]: the Gaussians at time t
            (e.g. ``DynamicGaussians.pose(t)``).
        cam_t: the camera of time t (one Camera).
        flow2d [N,2]: per-Gaussian flow, e.g. :func:`gaussian_flow_2d`.
        backend, raster_kw: passed to :func:`dyngauss.render.api.rasterize` (near, far, eps2d, tile_size).
    Returns:
        (flow [H,W,2] = composited flow / alpha, alpha [H,W,1]). Where alpha is ~0 the flow is ~0.

    To save a rasterization in training, pass ``features=flow2d`` to the RGB render instead and apply
    :func:`normalize_flow` to ``out.features[0]`` and ``out.alpha[0]`` -- the result is identical.
    """
    if flow2d.dim() != 2 or flow2d.shape[-1] != 2 or flow2d.shape[0] != posed_means_t.shape[0]:
        raise ValueError(f"flow2d must be [N,2] with N={posed_means_t.shape[0]}, got {tuple(flow2d.shape)}")
    op = gaussians.opacities if opacities is None else opacities
    colors = torch.zeros(posed_means_t.shape[0], 3, device=posed_means_t.device, dtype=posed_means_t.dtype)
    out = rasterize(posed_means_t, posed_quats_t, torch.exp(posed_log_scales_t), op, colors, cam_t,
                    features=flow2d, backend=backend, **raster_kw)
    alpha = out.alpha[0]
    return normalize_flow(out.features[0], alpha, eps), alpha

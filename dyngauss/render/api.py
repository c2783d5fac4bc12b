"""The one rendering entry point, :func:`rasterize`, with interchangeable backends behind it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch

from ..data.camera import Camera, stack_cameras
from ..geometry.sh import sh_to_rgb

RenderMode = Literal["RGB", "RGB+D", "RGB+ED"]
Backend = Literal["auto", "torch", "cpu", "gsplat"]


@dataclass
class RenderOutput:
    """Rendered images, batch-first. rgb [C,H,W,3], alpha [C,H,W,1], depth [C,H,W,1] or None
    (accumulated for "RGB+D", expected = accumulated / alpha for "RGB+ED"), features [C,H,W,F] or None
    (alpha-composited like colour, not normalised), info: what densification strategies need."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor | None = None
    features: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


def cpu_kernel_available() -> bool:
    """True when the C++ CPU kernel is built (or can be JIT-built) and loads."""
    try:
        from . import cpu_backend
        return cpu_backend.is_available()
    except Exception:  # noqa: BLE001 - any build/import problem means "not available"
        return False


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that renders: 'auto' -> gsplat on CUDA tensors, else the C++ CPU kernel when it loads, else torch.

    When 'auto' has to use the torch reference because the kernel does not load, a KernelFallbackWarning says
    so once per process, with the reason and the fix (render.backend=torch silences it).

    Raises:
        ValueError: unknown backend name.
        dyngauss.render.cpu_backend.KernelUnavailableError: backend 'cpu' and the kernel cannot be built or loaded
            (the message gives the cause and what to install).
    """
    if backend not in ("auto", "torch", "cpu", "gsplat"):
        raise ValueError(f"unknown render backend {backend!r}; use auto, torch, cpu or gsplat")
    if backend == "cpu":
        from . import cpu_backend
        cpu_backend.build_extension()  # raises KernelUnavailableError with the cause (remembered; cheap after)
        return "cpu"
    if backend != "auto":
        return backend
    if device.type == "cuda":
        return "gsplat"
    from . import cpu_backend
    reason = cpu_backend.unavailable_reason()
    if reason is None:
        return "cpu"
    cpu_backend.warn_fallback(reason)
    return "torch"


def _as_cameras(cameras: Camera | Sequence[Camera]) -> list[Camera]:
    return [cameras] if isinstance(cameras, Camera) else list(cameras)


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
              colors: torch.Tensor, cameras: Camera | Sequence[Camera], *, sh_degree: int | None = None,
              background: torch.Tensor | None = None, features: torch.Tensor | None = None,
              render_mode: RenderMode = "RGB", backend: Backend = "auto", near: float = 0.01,
              far: float = 1e10, eps2d: float = 0.3, tile_size: int = 16) -> RenderOutput:
    """Render N Gaussians into C cameras of one size.

    Args:
        means [N,3], quats [N,4] (wxyz, normalised inside), scales [N,3] (positive), opacities [N] in [0,1].
        colors: [N,3] / [C,N,3] RGB, or SH coefficients [N,K,3] when `sh_degree` is given (view-dependent).
        cameras: a Camera or a list of Cameras sharing width and height.
        background: [3] or [C,3] colour behind the Gaussians (default black).
        features: [N,F] or [C,N,F] extra channels composited like colour (e.g. 2D flow).
        render_mode: "RGB", "RGB+D" (accumulated z-depth) or "RGB+ED" (expected depth).
        backend: "auto" (gsplat on CUDA, else C++ CPU kernel, else torch), "torch", "cpu", "gsplat".
    Returns: RenderOutput; info["means2d"] [C,N,2] keeps its gradient for densification.
    """
    cams = _as_cameras(cameras)
    if means.dim() != 2 or means.shape[-1] != 3:
        raise ValueError(f"means must be [N,3], got {tuple(means.shape)}")
    N = means.shape[0]
    for name, t, shp in (("quats", quats, (N, 4)), ("scales", scales, (N, 3)), ("opacities", opacities, (N,))):
        if tuple(t.shape) != shp:
            raise ValueError(f"{name} must be {list(shp)}, got {list(t.shape)}")
    if render_mode not in ("RGB", "RGB+D", "RGB+ED"):
        raise ValueError(f"unknown render_mode {render_mode!r}")
    dev, dt = means.device, means.dtype
    viewmats, Ks, W, H = stack_cameras(cams)
    viewmats, Ks = viewmats.to(dev, dt), Ks.to(dev, dt)
    C = len(cams)

    # per-camera colour channels [C,N,3]
    if sh_degree is not None:
        if colors.dim() != 3 or colors.shape[0] != N or colors.shape[-1] != 3:
            raise ValueError(f"SH colors must be [N,K,3], got {tuple(colors.shape)}")
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C,3]
        dirs = means[None] - campos[:, None]
        rgb = sh_to_rgb(colors[None].expand(C, -1, -1, -1), dirs, sh_degree)
    else:
        if colors.dim() == 2:
            colors = colors[None].expand(C, -1, -1)
        if tuple(colors.shape) != (C, N, 3):
            raise ValueError(f"colors must be [N,3] or [C,N,3], got {tuple(colors.shape)}")
        rgb = colors
    chans = [rgb]
    F = 0
    if features is not None:
        if features.dim() == 2:
            features = features[None].expand(C, -1, -1)
        if features.dim() != 3 or features.shape[:2] != (C, N):
            raise ValueError(f"features must be [N,F] or [C,N,F], got {tuple(features.shape)}")
        F = features.shape[-1]
        chans.append(features.to(dt))
    want_depth = render_mode != "RGB"
    if want_depth:
        z = (means[None] @ viewmats[:, :3, :3].transpose(-1, -2))[..., 2] + viewmats[:, None, :3, 3][..., 2]
        chans.append(z[..., None])
    values = torch.cat(chans, -1) if len(chans) > 1 else rgb

    name = resolve_backend(backend, means.device)
    if name == "gsplat":
        from . import gsplat_backend
        img, alpha, info = gsplat_backend.render(means, quats, scales, opacities, values, viewmats, Ks, W, H,
                                                 near=near, far=far, eps2d=eps2d, tile_size=tile_size)
    elif name == "cpu":
        from . import cpu_backend
        img, alpha, info = cpu_backend.render(means, quats, scales, opacities, values, viewmats, Ks, W, H,
                                              near=near, far=far, eps2d=eps2d, tile_size=tile_size)
    else:
        from . import torch_reference as ref
        means2d, conics, depths, ext, radii = ref.project_gaussians(means, quats, scales, viewmats, Ks, W, H,
                                                                    eps2d=eps2d, near=near, far=far)
        if means2d.requires_grad:
            means2d.retain_grad()
        img, alpha = ref.rasterize_pixels(means2d, conics, values, opacities, depths, ext, W, H, tile_size)
        info = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics}
    info.update({"width": W, "height": H, "n_cameras": C, "backend": name})
    info.setdefault("gaussian_ids", None)  # set by gsplat in packed mode

    out_rgb = img[..., :3]
    if background is not None:
        bg = torch.as_tensor(background, device=dev, dtype=dt)
        bg = bg.expand(C, 3) if bg.dim() == 1 else bg
        out_rgb = out_rgb + (1.0 - alpha) * bg[:, None, None, :]
    feats = img[..., 3:3 + F] if F else None
    depth = None
    if want_depth:
        depth = img[..., 3 + F:4 + F]
        if render_mode == "RGB+ED":
            depth = depth / alpha.clamp_min(1e-10)
    return RenderOutput(out_rgb, alpha, depth, feats, info)

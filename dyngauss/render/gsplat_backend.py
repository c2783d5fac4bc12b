"""gsplat (CUDA) backend of :func:`dyngauss.render.rasterize`; imported lazily, only for CUDA tensors.

Colours, extra features and depth arrive as one per-camera channel tensor [C,N,D] (SH already evaluated by
the API), so gsplat is called in plain "RGB" mode with D channels; background and depth normalisation are
applied by the API exactly as for the other backends. `packed` is used for large scenes (lower memory);
in that mode `info["gaussian_ids"]` is set, which gsplat's strategies understand.
"""
from __future__ import annotations

import torch

PACKED_ABOVE = 500_000  # Gaussians x cameras above which packed mode is used


def is_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return torch.cuda.is_available()


def render(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
           values: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int, *,
           near: float = 0.01, far: float = 1e10, eps2d: float = 0.3, tile_size: int = 16,
           packed: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """values [C,N,D] -> (img [C,H,W,D], alpha [C,H,W,1], info with means2d, radii, gaussian_ids...)."""
    if means.device.type != "cuda":
        raise RuntimeError("the gsplat backend needs CUDA tensors; use backend='cpu' or 'torch' on a CPU")
    try:
        from gsplat import rasterization
    except ImportError as e:
        raise RuntimeError("the gsplat backend needs `pip install gsplat==1.5.3` (and a CUDA build of torch)") from e
    C, N = values.shape[:2]
    if packed is None:
        packed = C * N > PACKED_ABOVE
    img, alpha, meta = rasterization(means, quats, scales, opacities, values, viewmats, Ks, width, height,
                                     near_plane=near, far_plane=far, eps2d=eps2d, sh_degree=None,
                                     packed=packed, tile_size=tile_size, render_mode="RGB",
                                     rasterize_mode="classic")
    info = dict(meta)
    means2d = info.get("means2d")
    if means2d is not None and means2d.requires_grad:
        means2d.retain_grad()
    info.setdefault("gaussian_ids", None)
    return img, alpha, info

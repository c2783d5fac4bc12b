"""dyngauss: dynamic 3D Gaussian splatting with SE(3) deformation fields, CPU and GPU.

Public API (imported lazily, so ``import dyngauss`` stays cheap):

* :class:`DynamicGaussians` — the model: canonical Gaussians + deformation field; ``pose(t)``, ``render()``,
  ``save()`` / ``DynamicGaussians.load(run_or_checkpoint)``;
* :func:`rasterize` — render Gaussians into cameras (gsplat on CUDA, the C++ kernel on CPU, a torch reference);
* :func:`load_config` — the run configuration (dataclasses, YAML, dotted overrides).

See docs/design.md for the architecture and conventions.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "DynamicGaussians": ("dyngauss.model.dynamic", "DynamicGaussians"),
    "PosedGaussians": ("dyngauss.model.dynamic", "PosedGaussians"),
    "Gaussians": ("dyngauss.model.gaussians", "Gaussians"),
    "Camera": ("dyngauss.data.camera", "Camera"),
    "rasterize": ("dyngauss.render.api", "rasterize"),
    "load_config": ("dyngauss.config", "load_config"),
    "Config": ("dyngauss.config", "Config"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dyngauss' has no attribute {name!r}")

"""Gaussian rasterization: one API (:func:`rasterize`), backends gsplat (CUDA), C++ CPU kernel, torch."""
from .api import RenderOutput, rasterize, resolve_backend

__all__ = ["RenderOutput", "rasterize", "resolve_backend"]

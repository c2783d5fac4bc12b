"""The model: canonical Gaussians, the deformation field that moves them, and its checkpoints."""
from .gaussians import Gaussians

__all__ = ["Gaussians"]

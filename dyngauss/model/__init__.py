"""The model: canonical Gaussians, the deformation field that moves them, and its checkpoints."""
from .checkpoint import CheckpointError
from .dynamic import CheckpointInfo, DynamicGaussians, PosedGaussians
from .gaussians import Gaussians

__all__ = ["CheckpointError", "CheckpointInfo", "DynamicGaussians", "Gaussians", "PosedGaussians"]

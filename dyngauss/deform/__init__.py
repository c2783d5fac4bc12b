"""Deformation fields: canonical Gaussians -> per-Gaussian SE(3) motion at time t."""
from .base import DeformField, IdentityField, Motion, apply_motion

__all__ = ["DeformField", "IdentityField", "Motion", "apply_motion"]

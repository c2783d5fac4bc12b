"""Deformation fields: canonical Gaussians -> per-Gaussian SE(3) motion at time t. One config dataclass per field
kind (deform/config.py) builds its field."""
from .base import DeformField, IdentityField, Motion, apply_motion
from .config import (FIELD_CONFIGS, BasesFieldConfig, FieldConfig, MLPFieldConfig, NetworkFieldConfig, NodeFieldConfig,
                     StaticFieldConfig, TrackingFieldConfig, field_config)

__all__ = ["BasesFieldConfig", "DeformField", "IdentityField", "Motion", "apply_motion", "FIELD_CONFIGS", "FieldConfig",
           "MLPFieldConfig", "NetworkFieldConfig", "NodeFieldConfig", "StaticFieldConfig", "TrackingFieldConfig",
           "field_config"]

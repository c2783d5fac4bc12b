"""dyngauss: dynamic 3D Gaussian splatting with SE(3) deformation fields, CPU and GPU."""

__version__ = "0.1.0"

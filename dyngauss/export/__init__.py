"""Export: 3DGS PLY read/write (numpy only) and per-frame PLY sequences (needs torch, imported lazily so
that the viewer can read PLYs without importing torch)."""
from ..io.ply import (PlyError, read_gaussians_ply, read_line_set_ply, read_points_ply, write_gaussians_ply,
                  write_line_set_ply, write_points_ply)

_SEQUENCE_NAMES = ("export_sequence", "times_for", "load_manifest", "is_complete_sequence", "SequenceError")

__all__ = ["PlyError", "read_gaussians_ply", "read_line_set_ply", "read_points_ply", "write_gaussians_ply",
           "write_line_set_ply", "write_points_ply", *_SEQUENCE_NAMES]


def __getattr__(name):  # lazy: dyngauss.export.sequence imports torch
    if name in _SEQUENCE_NAMES:
        from . import sequence
        return getattr(sequence, name)
    raise AttributeError(f"module 'dyngauss.export' has no attribute {name!r}")

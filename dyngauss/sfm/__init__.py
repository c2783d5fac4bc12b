"""From a video to a D-NeRF-format dataset: frame decoding, structure-from-motion poses (pycolmap),
normalisation into the D-NeRF / Blender frame and evaluation against known cameras.

Modules (import the heavy ones lazily; ``normalize`` is pure numpy):
  errors.py     ``PrepareError`` — every expected failure (bad video, too few frames, static camera, ...).
  video.py      probe / decode a video into an even subsample of frames with their original indices.
  colmap.py     pycolmap wrapper: SIFT extraction, sequential matching, incremental mapping, diagnostics.
  undistort.py  resample frames of the estimated (SIMPLE_RADIAL) camera to a pinhole camera of the same size.
  normalize.py  look-at centre, up axis, scale, OpenCV <-> OpenGL poses, ``align_cameras`` (Sim(3)).
  prepare.py    ``prepare_video``: the whole pipeline, writing the folder atomically.
"""
from .errors import PrepareError

__all__ = ["PrepareError"]

"""From a video to a D-NeRF-format dataset: frame decoding, structure-from-motion poses (pycolmap),
normalisation into the D-NeRF / Blender frame and evaluation against known cameras.

Modules (import the heavy ones lazily; ``normalize`` is pure numpy):
  errors.py     ``PrepareError`` — every expected failure (bad video, too few frames, static camera, ...).
  video.py      probe a video (every frame's presentation timestamp, VFR-safe), select frames on real time,
                decode each kept frame once.
  camera_motion.py  does the camera move? a pixel test on thumbnails, before SfM (a fixed camera is refused).
  masks.py      user masks of the moving object: matching to frames, COLMAP masks, thumbnails.
  colmap.py     pycolmap wrapper: SIFT extraction, sequential matching, incremental mapping, diagnostics.
  plausibility.py  is the SfM camera believable? field of view range / ``--fov``, feature coverage.
  undistort.py  resample frames of the estimated (SIMPLE_RADIAL) camera to a pinhole camera of the same size.
  normalize.py  look-at centre, up axis, scale, OpenCV <-> OpenGL poses, ``align_cameras`` (Sim(3)).
  output.py     the output folder (built as OUT.tmp-XXXX, renamed when complete), D-NeRF records and splits.
  prepare.py    ``prepare_video``: the whole pipeline (SfM or ``fixed_camera`` mode).
"""
from .errors import PrepareError

__all__ = ["PrepareError"]

"""Open3D playback of exported PLY sequences (numpy + open3d; no torch; open3d is imported only to draw).

Modules: sequence (loading), framing (the fixed camera), playback (the state machine), glyphs (ellipsoid
meshes), scene (the Open3D geometries per frame), runtime / backends / probe (GL back-ends), offscreen
(rendering to PNGs / video through dyngauss.io.video), player (the interactive window); splats (rasterized
Gaussians for --splats: imports torch, so it is imported only when used) and overlay (node graph drawn into an image).
"""
from .backends import open_offscreen
from .framing import Framing, auto_point_size, frame_bbox
from .offscreen import RenderStats, render_offscreen
from .playback import PlaybackState
from .player import Player
from .probe import probe_offscreen
from .runtime import OffscreenUnavailable
from .sequence import LoadedSequence, SequenceLoadError, load_sequence

__all__ = ["Framing", "LoadedSequence", "OffscreenUnavailable", "PlaybackState", "Player", "RenderStats",
           "SequenceLoadError", "auto_point_size", "frame_bbox", "load_sequence", "open_offscreen",
           "probe_offscreen", "render_offscreen"]

"""Open3D playback of exported PLY sequences (numpy + open3d; no torch)."""
from .open3d_player import (LoadedSequence, OffscreenUnavailable, PlaybackState, Player, SequenceLoadError,
                            frame_bbox, load_sequence, open_offscreen, probe_offscreen, render_offscreen)

__all__ = ["LoadedSequence", "OffscreenUnavailable", "PlaybackState", "Player", "SequenceLoadError", "frame_bbox",
           "load_sequence", "open_offscreen", "probe_offscreen", "render_offscreen"]

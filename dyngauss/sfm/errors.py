"""The one exception type of the video-preparation pipeline."""
from __future__ import annotations


class PrepareError(RuntimeError):
    """An input problem the user can act on (the message says what happened and what to try).

    ``kind`` names the failure for programs and tests: ``video`` (missing / unreadable), ``frames`` (too few
    decoded), ``masks`` (folder does not match the frames), ``output`` (exists, not writable), ``texture``
    (too few features), ``static`` (the camera barely moves: found before SfM from the pixels, or after it from
    the baseline), ``registration`` (too few frames registered), ``implausible`` (an SfM camera no real camera
    has: field of view out of range or far from ``--fov``), ``sfm`` (other reconstruction failures), ``args``
    (invalid options).
    """

    def __init__(self, message: str, kind: str = "sfm"):
        super().__init__(message)
        self.kind = kind

"""User masks of the moving object (white = moving): matching them to the video's frames, turning them into
COLMAP feature masks, and into thumbnails for the camera check."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import PrepareError

__all__ = ["MASK_EXTENSIONS", "check_masks", "colmap_mask", "moving_thumbnail"]

MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS)


def check_masks(folder: str | os.PathLike, num_video_frames: int, kept: list[int], size: tuple[int, int]) -> dict[int, Path]:
    """Validate a masks folder against the video and return {frame index: mask file} for the kept frames.

    Accepted: one mask per video frame (the i-th file, sorted by name, belongs to frame i) or one per kept frame.
    Every mask must have the video's frame size (W, H). Raises PrepareError(kind="masks")."""
    from PIL import Image

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PrepareError(f"masks folder not found: {folder}", "masks")
    files = _list_images(folder)
    if len(files) == num_video_frames:
        chosen = {i: files[i] for i in kept}
    elif len(files) == len(kept):
        chosen = dict(zip(kept, files))
    else:
        raise PrepareError(
            f"masks folder {folder} has {len(files)} images, but the video has {num_video_frames} frames "
            f"({len(kept)} kept): give one mask per video frame (or one per kept frame), sorted by name "
            "like the frames", "masks")
    W, H = size
    for i, p in chosen.items():
        try:
            with Image.open(p) as im:
                w, h = im.size
        except Exception as e:
            raise PrepareError(f"mask {p} cannot be read: {e}", "masks") from None
        if (w, h) != (W, H):
            raise PrepareError(f"mask {p.name} is {w}x{h} but the video frames are {W}x{H}: masks must have the "
                               "size of the video frames", "masks")
    return chosen


def colmap_mask(path: Path, size: tuple[int, int], dilate: int) -> np.ndarray:
    """COLMAP mask (255 = use features, 0 = ignore) from a user mask (white = moving), resized to ``size``."""
    import cv2
    from PIL import Image

    with Image.open(path) as im:
        m = np.asarray(im.convert("L")) > 127
    W, H = size
    if m.shape != (H, W):
        m = cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    if dilate > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        m = cv2.dilate(m.astype(np.uint8), k) > 0
    return np.where(m, 0, 255).astype(np.uint8)


def moving_thumbnail(mask_path: Path, size: tuple[int, int]) -> np.ndarray:
    """Boolean [h, w] (True = moving) of a user mask resized (nearest) to ``size`` = (w, h)."""
    import cv2
    from PIL import Image

    with Image.open(mask_path) as im:
        m = (np.asarray(im.convert("L")) > 127).astype(np.uint8)
    return cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) > 0

"""Image and array I/O shared by the dataset loaders and the synthetic scene writer.

Conventions: images are float32 in [0, 1], [H, W, C]; alpha is straight (not premultiplied); sRGB values are
used as-is (no linearisation). Compositing on a background and area (box) downscaling are done on
premultiplied colour, so ``downscale(composite(x)) == composite(downscale(x))``.
"""
from __future__ import annotations

import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


class ImageReadError(OSError):
    """An image file exists but cannot be decoded."""


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an 8/16-bit image -> (rgb float32 [H,W,3] in [0,1], alpha float32 [H,W,1] or None).

    Grey images are expanded to RGB; palette images are converted through RGBA (alpha kept when the
    palette has transparency). Raises FileNotFoundError or ImageReadError (with the path) on failure.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
                mode = "RGB"
            elif mode == "PA":
                im = im.convert("RGBA")
                mode = "RGBA"
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"cannot decode image {path}: {e}") from e
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype in (np.uint16, np.int32) or mode.startswith("I"):
        x = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.bool_:
        x = arr.astype(np.float32)
    else:
        x = arr.astype(np.float32)
    x = np.clip(x, 0.0, 1.0)
    if x.ndim == 2:
        x = x[..., None]
    c = x.shape[-1]
    if c == 1:
        return np.repeat(x, 3, axis=-1), None
    if c == 2:  # grey + alpha
        return np.repeat(x[..., :1], 3, axis=-1), x[..., 1:2]
    if c == 3:
        return x, None
    if c == 4:
        return x[..., :3], x[..., 3:4]
    raise ImageReadError(f"unsupported channel count {c} in image {path}")


_T = TypeVar("_T")
_R = TypeVar("_R")


def decode_ahead(items: Sequence[_T], read: Callable[[_T], _R], workers: int) -> Iterator[_R]:
    """``read(item)`` for every item, in order, decoded ahead on a thread pool (PIL releases the GIL) with a
    bounded window of 2 x workers, so memory stays at the caller's output arrays plus a few full images."""
    n = len(items)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        window = 2 * max(1, workers)
        futs = [ex.submit(read, it) for it in items[:window]]
        for j in range(n):
            if j + window < n:
                futs.append(ex.submit(read, items[j + window]))
            yield futs[j].result()
            futs[j] = None


def composite(rgb: np.ndarray, alpha: np.ndarray | None, background: Sequence[float]) -> np.ndarray:
    """Straight-alpha RGB over a constant background colour."""
    if alpha is None:
        return rgb
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    return rgb * alpha + bg * (1.0 - alpha)


def area_resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area (box-filter) resize of a float [H,W,C] image. Exact block mean for integer factors."""
    h, w = x.shape[:2]
    if (w, h) == (width, height):
        return x
    if w % width == 0 and h % height == 0 and w // width == h // height:
        f = w // width
        return x.reshape(height, f, width, f, -1).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    out = np.empty((height, width, x.shape[2]), dtype=np.float32)
    for c in range(x.shape[2]):
        im = Image.fromarray(np.ascontiguousarray(x[..., c], dtype=np.float32), mode="F")
        out[..., c] = np.asarray(im.resize((width, height), Image.BOX), dtype=np.float32)
    return out


def undistort_to_pinhole(img: np.ndarray, K: np.ndarray, radial=(0.0, 0.0, 0.0), tangential=(0.0, 0.0),
                         skew_px: float = 0.0) -> np.ndarray:
    """Resample an image [H,W,C] taken through OpenCV's lens model (radial k1 k2 k3, tangential p1 p2, pixel
    skew) to the pinhole camera with the same intrinsics K [3,3] (fx, fy, cx, cy; pixel centres at +0.5):
    for every output pixel the normalised point (x, y) is distorted, x_d = x (1 + k1 r^2 + k2 r^4 + k3 r^6)
    + 2 p1 x y + p2 (r^2 + 2 x^2) (y_d likewise), and the input is sampled bilinearly at
    (fx x_d + skew y_d + cx, fy y_d + cy). Edges are replicated."""
    import cv2

    H, W = img.shape[:2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    x, y = (u - cx) / fx, (v - cy) / fy
    k1, k2, k3 = (float(c) for c in radial)
    p1, p2 = (float(c) for c in tangential)
    r2 = x * x + y * y
    d = 1.0 + r2 * (k1 + r2 * (k2 + k3 * r2))
    xd = x * d + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * d + 2.0 * p2 * x * y + p1 * (r2 + 2.0 * y * y)
    mx = (fx * xd + skew_px * yd + cx - 0.5).astype(np.float32)  # cv2: integer = pixel centre
    my = (fy * yd + cy - 0.5).astype(np.float32)
    out = cv2.remap(np.ascontiguousarray(img, dtype=np.float32), mx, my, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(img.shape)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_png(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write float [H,W,3] (+ straight alpha [H,W] or [H,W,1]) in [0,1] as an 8-bit RGB(A) PNG.

    Deterministic bytes (no timestamps or extra chunks)."""
    rgb8 = to_uint8(rgb)
    if alpha is not None:
        a8 = to_uint8(np.asarray(alpha).reshape(rgb8.shape[:2])[..., None])
        im = Image.fromarray(np.concatenate([rgb8, a8], axis=-1), mode="RGBA")
    else:
        im = Image.fromarray(rgb8, mode="RGB")
    im.save(path, format="PNG", optimize=False, compress_level=6)


def save_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but byte-for-byte deterministic (fixed zip timestamps)."""
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())

"""2D optical-flow priors: OpenCV DIS flow (no learned weights), forward-backward occlusion masks, the choice
of frame pairs to compute it on, and an on-disk cache.

Conventions: flow [H,W,2] float32 in pixels, x right / y down, ``flow[r, c]`` = where the content at pixel
(c, r) of image 1 moved to in image 2, minus (c, r). The forward-backward check marks a pixel x of image 1
valid when its target x + f(x) is inside image 2 and

    |f(x) + b(x + f(x))| < tau + rel * (|f(x)| + |b(x + f(x))|)

(b = flow from image 2 back to image 1, sampled bilinearly), i.e. going there and back returns close to the
start; pixels that get occluded or leave the image fail it (Sundaram et al. 2010, NSFF's occlusion handling).

The cache never writes next to the dataset (datasets are read-only): the caller gives a cache folder, e.g.
the run folder or :func:`default_flow_cache_dir` (``$DYNGAUSS_CACHE`` or ``~/.cache/dyngauss``
``/flow/<hash of the dataset path>``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["FlowParams", "FlowPrior", "FlowPriorCache", "dis_flow", "fb_consistency_mask", "compute_flow_pair",
           "select_flow_pairs", "default_flow_cache_dir", "to_gray_u8"]

CACHE_VERSION = 1
_PRESETS = {"ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST", "fast": "DISOPTICAL_FLOW_PRESET_FAST",
            "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM"}


@dataclass
class FlowParams:
    """DIS settings and the forward-backward check. Part of the cache key.

    preset: ultrafast | fast | medium (OpenCV's DIS presets).
    finest_scale, patch_size, patch_stride, grad_descent_iters, var_refine_iters: optional overrides of the
        preset (-1 = keep the preset's value).
    upsample: DIS runs on the images enlarged by this integer factor (bicubic) and the flow is area-averaged
        back, so DIS's patches (8-12 px) see more than a few texels on small images. 0 = auto: the smallest
        factor that makes the shorter side at least ``auto_min_side`` px, at most 4. On the built-in 128^2
        scene (exact flow from the mesh, 40 training pairs) auto (4x) with fb_tau 0.5 cuts the mean error of
        the flow that passes the check from 2.6 px (1x, fb_tau 1.0) to 1.0 px (tools/check_flow_prior.py).
    fb_tau (px), fb_rel: forward-backward threshold |f + b| < fb_tau + fb_rel (|f| + |b|), checked at the
        original resolution.
    """

    preset: str = "medium"
    finest_scale: int = -1
    patch_size: int = -1
    patch_stride: int = -1
    grad_descent_iters: int = -1
    var_refine_iters: int = -1
    upsample: int = 0
    auto_min_side: int = 512
    fb_tau: float = 0.5
    fb_rel: float = 0.02

    def upsample_factor(self, height: int, width: int) -> int:
        """The integer factor DIS's input images are enlarged by (see ``upsample``)."""
        if self.upsample < 0:
            raise ValueError(f"upsample must be >= 0 (0 = auto), got {self.upsample}")
        if self.upsample > 0:
            return int(self.upsample)
        return int(min(4, max(1, math.ceil(self.auto_min_side / max(1, min(height, width))))))

    def key(self) -> dict:
        return asdict(self)


@dataclass
class FlowPrior:
    """Flow from frame ``src`` to frame ``dst`` (indices into the caller's frame list): flow [H,W,2] float32
    pixels, valid [H,W] bool (forward-backward consistent, inside the image, inside the masks if given)."""

    src: int
    dst: int
    flow: torch.Tensor
    valid: torch.Tensor

    def to(self, device) -> "FlowPrior":
        return FlowPrior(self.src, self.dst, self.flow.to(device), self.valid.to(device))


# ------------------------------------------------------------------------------------------ flow

def to_gray_u8(img) -> np.ndarray:
    """[H,W,3] / [H,W] float in [0,1] (numpy or torch) or uint8 -> [H,W] uint8 grey (what DIS sees)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3:
        import cv2

        if a.shape[2] == 1:
            a = a[..., 0]
        else:
            a = cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
    if a.ndim != 2:
        raise ValueError(f"image must be [H,W], [H,W,1] or [H,W,3], got {a.shape}")
    return np.ascontiguousarray(a)


def _make_dis(params: FlowParams):
    import cv2

    if params.preset not in _PRESETS:
        raise ValueError(f"unknown DIS preset {params.preset!r}; use one of {sorted(_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(getattr(cv2, _PRESETS[params.preset]))
    if params.finest_scale >= 0:
        dis.setFinestScale(int(params.finest_scale))
    if params.patch_size > 0:
        dis.setPatchSize(int(params.patch_size))
    if params.patch_stride > 0:
        dis.setPatchStride(int(params.patch_stride))
    if params.grad_descent_iters >= 0:
        dis.setGradientDescentIterations(int(params.grad_descent_iters))
    if params.var_refine_iters >= 0:
        dis.setVariationalRefinementIterations(int(params.var_refine_iters))
    return dis


def dis_flow(img1, img2, params: FlowParams | None = None) -> np.ndarray:
    """DIS optical flow [H,W,2] float32 from img1 to img2 (images as accepted by :func:`to_gray_u8`)."""
    params = params or FlowParams()
    g1, g2 = to_gray_u8(img1), to_gray_u8(img2)
    if g1.shape != g2.shape:
        raise ValueError(f"images differ in size: {g1.shape} vs {g2.shape}")
    H, W = g1.shape
    up = params.upsample_factor(H, W)
    if up == 1:
        flow = _make_dis(params).calc(g1, g2, None)
        return np.ascontiguousarray(flow.astype(np.float32))
    import cv2

    big = [cv2.resize(g, (W * up, H * up), interpolation=cv2.INTER_CUBIC) for g in (g1, g2)]
    flow = _make_dis(params).calc(big[0], big[1], None)
    # the mean of the up x up sub-pixel flows, in original pixels
    flow = cv2.resize(flow, (W, H), interpolation=cv2.INTER_AREA) / float(up)
    return np.ascontiguousarray(flow.astype(np.float32))


def _warp_sample(field: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample field [H,W,C] at x + flow(x) bilinearly -> (values [H,W,C], inside [H,W] bool)."""
    import cv2

    H, W = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    mx, my = xs + flow[..., 0], ys + flow[..., 1]
    inside = (mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)
    out = cv2.remap(field.astype(np.float32), mx, my, interpolation=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2:
        out = out[..., None]
    return out, inside


def fb_consistency_mask(fwd: np.ndarray, bwd: np.ndarray, tau: float = 1.0, rel: float = 0.05,
                        mask2: np.ndarray | None = None) -> np.ndarray:
    """Valid [H,W] bool for the forward flow ``fwd`` (1->2) given the backward flow ``bwd`` (2->1).

    Valid where x + f(x) lands inside image 2 and |f(x) + b(x + f(x))| < tau + rel (|f(x)| + |b(x + f(x))|).
    ``mask2`` [H,W] (optional, bool/float) additionally requires the target to fall on mask2 > 0.5."""
    b_at, inside = _warp_sample(bwd, fwd)
    err = np.linalg.norm(fwd + b_at, axis=-1)
    mag = np.linalg.norm(fwd, axis=-1) + np.linalg.norm(b_at, axis=-1)
    valid = inside & (err < tau + rel * mag)
    if mask2 is not None:
        m_at, _ = _warp_sample(np.asarray(mask2, np.float32), fwd)
        valid &= m_at[..., 0] > 0.5
    return valid


def compute_flow_pair(img1, img2, params: FlowParams | None = None, mask1=None, mask2=None
                      ) -> dict[str, np.ndarray]:
    """Forward and backward DIS flow between two images with their forward-backward validity masks.

    mask1 / mask2 [H,W] (optional): regions (e.g. object masks) outside which no flow is trusted.
    Returns dict: ``fwd`` [H,W,2], ``bwd`` [H,W,2] float32, ``valid_fwd``, ``valid_bwd`` [H,W] bool."""
    params = params or FlowParams()
    fwd = dis_flow(img1, img2, params)
    bwd = dis_flow(img2, img1, params)
    m1 = None if mask1 is None else _mask_np(mask1)
    m2 = None if mask2 is None else _mask_np(mask2)
    vf = fb_consistency_mask(fwd, bwd, params.fb_tau, params.fb_rel, m2)
    vb = fb_consistency_mask(bwd, fwd, params.fb_tau, params.fb_rel, m1)
    if m1 is not None:
        vf &= m1 > 0.5
    if m2 is not None:
        vb &= m2 > 0.5
    return {"fwd": fwd, "bwd": bwd, "valid_fwd": vf, "valid_bwd": vb}


def _mask_np(m) -> np.ndarray:
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().numpy()
    m = np.asarray(m, dtype=np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    return m


# ------------------------------------------------------------------------------------------ pairs

def _rot_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    c = (np.trace(Ra @ Rb.T) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))


def _look_at_center(centers: np.ndarray, axes: np.ndarray) -> np.ndarray | None:
    """Least-squares point closest to all optical axes, None when ill-conditioned (e.g. parallel axes)."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(centers, axes):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
    w = np.linalg.eigvalsh(A)
    if w[0] < 1e-3 * max(w[-1], 1e-12):
        return None
    return np.linalg.solve(A, b)


def select_flow_pairs(cameras: Sequence, times: Sequence[float] | None = None, max_angle_deg: float = 15.0,
                      max_dt: float = 0.05, max_per_frame: int = 2, center: Sequence[float] | None = None
                      ) -> list[tuple[int, int]]:
    """Frame pairs (i, j), i < j (indices into ``cameras``), close enough in time and viewpoint for 2D flow.

    A pair qualifies when 0 < |t_j - t_i| <= max_dt and the camera change is at most ``max_angle_deg``: the
    larger of the relative rotation angle and the angle between the two camera centres seen from ``center``
    (default: the point the optical axes meet, least squares; skipped when the axes are parallel). For each
    frame i the ``max_per_frame`` qualifying later frames nearest in time (then in angle) are kept.

    With a fixed camera this gives consecutive frames; with D-NeRF's "teleporting" cameras usually few or
    no pairs (nothing to supervise with 2D flow there), which is the intended behaviour.
    """
    n = len(cameras)
    if times is None:
        times = [float(c.time) for c in cameras]
    times = [float(t) for t in times]
    if len(times) != n:
        raise ValueError(f"{n} cameras but {len(times)} times")
    Rs, Cs, axes = [], [], []
    for c in cameras:
        V = c.viewmat.double().cpu().numpy() if isinstance(c.viewmat, torch.Tensor) else np.asarray(c.viewmat)
        R = V[:3, :3]
        Rs.append(R)
        Cs.append(-R.T @ V[:3, 3])
        axes.append(R[2] / np.linalg.norm(R[2]))
    Cs, axes = np.asarray(Cs), np.asarray(axes)
    ctr = np.asarray(center, np.float64) if center is not None else (_look_at_center(Cs, axes) if n > 1 else None)
    pairs: list[tuple[int, int]] = []
    for i in range(n):
        cands = []
        for j in range(n):
            if j == i or not (times[j] > times[i] or (times[j] == times[i] and j > i)):
                continue
            dt = abs(times[j] - times[i])
            if dt <= 0 or dt > max_dt + 1e-9:
                continue
            ang = _rot_angle_deg(Rs[i], Rs[j])
            if ctr is not None:
                a, b = Cs[i] - ctr, Cs[j] - ctr
                na, nb = np.linalg.norm(a), np.linalg.norm(b)
                if na > 1e-9 and nb > 1e-9:
                    ang = max(ang, math.degrees(math.acos(float(np.clip(a @ b / (na * nb), -1, 1)))))
            if ang <= max_angle_deg:
                cands.append((dt, ang, j))
        cands.sort()
        for _, _, j in cands[:max_per_frame]:
            pairs.append((min(i, j), max(i, j)))
    return sorted(set(pairs))


# ------------------------------------------------------------------------------------------ cache

def default_flow_cache_dir(dataset_path: str | os.PathLike, cache_root: str | os.PathLike = "") -> Path:
    """``<cache_root>/flow/<sha1(abs dataset path)[:16]>``; cache_root "" = ``$DYNGAUSS_CACHE`` or
    ``~/.cache/dyngauss``."""
    from ..resources import cache_root as default_root

    h = hashlib.sha1(str(Path(dataset_path).expanduser().resolve()).encode()).hexdigest()[:16]
    return default_root(cache_root) / "flow" / h


def _hash_array(a: np.ndarray | None) -> str:
    if a is None:
        return "none"
    a = np.ascontiguousarray(a)
    h = hashlib.sha1(str((a.shape, str(a.dtype))).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


class FlowPriorCache:
    """Compute DIS flow priors for frame pairs once, keep them on disk (one npz per pair).

    The key of a pair hashes the dataset path, both images as DIS sees them (uint8 grey), the masks and the
    :class:`FlowParams`, so changed images or settings never reuse stale flow. Writes are atomic
    (temporary file + rename); an unreadable cache file is recomputed.

    Args:
        cache_dir: folder for the npz files (created). Must not be inside ``dataset_path``.
        dataset_path: the dataset folder ("" for in-memory data); part of the key.
        params: DIS / forward-backward settings.
    """

    def __init__(self, cache_dir: str | os.PathLike, dataset_path: str | os.PathLike = "",
                 params: FlowParams | None = None):
        self.cache_dir = Path(cache_dir).expanduser()
        self.dataset_path = str(Path(dataset_path).expanduser().resolve()) if str(dataset_path) else ""
        if self.dataset_path and _is_within(self.cache_dir, Path(self.dataset_path)):
            raise ValueError(f"flow cache dir {self.cache_dir} is inside the dataset {self.dataset_path}; "
                             "caches must go to the run folder or a user cache dir")
        self.params = params or FlowParams()
        self.hits = 0
        self.misses = 0

    def key(self, g1: np.ndarray, g2: np.ndarray, m1=None, m2=None) -> str:
        payload = json.dumps({"v": CACHE_VERSION, "data": self.dataset_path, "i1": _hash_array(g1),
                              "i2": _hash_array(g2), "m1": _hash_array(m1), "m2": _hash_array(m2),
                              "params": self.params.key()}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()

    def path_for(self, key: str, tag: str = "") -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in tag)[:40]
        return self.cache_dir / (f"{safe}_{key[:20]}.npz" if safe else f"{key[:20]}.npz")

    def pair(self, img1, img2, mask1=None, mask2=None, tag: str = "") -> dict[str, np.ndarray]:
        """Flow dict of :func:`compute_flow_pair` for (img1, img2), from the cache when present."""
        g1, g2 = to_gray_u8(img1), to_gray_u8(img2)
        m1 = None if mask1 is None else (_mask_np(mask1) > 0.5)
        m2 = None if mask2 is None else (_mask_np(mask2) > 0.5)
        key = self.key(g1, g2, m1, m2)
        path = self.path_for(key, tag)
        res = self._read(path, key)
        if res is not None:
            self.hits += 1
            return res
        self.misses += 1
        res = compute_flow_pair(g1, g2, self.params, m1, m2)
        self._write(path, key, res)
        return res

    def _read(self, path: Path, key: str) -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                return {k: z[k] for k in ("fwd", "bwd", "valid_fwd", "valid_bwd")}
        except Exception:  # noqa: BLE001 - corrupt / partial / foreign file: recompute
            return None

    def _write(self, path: Path, key: str, res: dict[str, np.ndarray]) -> None:
        from ..io import atomic_write

        atomic_write(path, lambda f: np.savez_compressed(f, key=np.asarray(key), **res))

    def priors(self, images, pairs: Sequence[tuple[int, int]], masks=None, names: Sequence[str] | None = None,
               progress: bool = False) -> list[FlowPrior]:
        """Directed priors for all pairs: for each (i, j) a FlowPrior i->j and one j->i (2 per pair).

        images: [F,H,W,3] (torch or numpy, floats in [0,1]) or a list of images; masks: optional [F,H,W(,1)]
        object masks (flow kept only inside them); names: optional frame names used in file names."""
        out: list[FlowPrior] = []
        for n, (i, j) in enumerate(pairs):
            tag = f"{names[i]}-{names[j]}" if names is not None else f"{i}-{j}"
            r = self.pair(images[i], images[j], None if masks is None else masks[i],
                          None if masks is None else masks[j], tag=tag)
            out.append(FlowPrior(i, j, torch.from_numpy(r["fwd"]), torch.from_numpy(r["valid_fwd"])))
            out.append(FlowPrior(j, i, torch.from_numpy(r["bwd"]), torch.from_numpy(r["valid_bwd"])))
            if progress:
                print(f"\rflow priors {n + 1}/{len(pairs)}", end="", flush=True)
        if progress and pairs:
            print()
        return out

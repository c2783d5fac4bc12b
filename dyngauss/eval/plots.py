"""Figures for motion evaluation: 3D track comparison and optical-flow colour coding (matplotlib Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["flow_to_color", "save_flow_comparison", "save_track_plot"]


def _colorwheel() -> np.ndarray:
    """The Middlebury flow colour wheel [55,3] in [0,1]: red-yellow-green-cyan-blue-magenta segments of
    15, 6, 4, 11, 13, 6 hues (Baker et al., "A Database and Evaluation Methodology for Optical Flow")."""
    segs = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
            (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    cols = []
    for n, a, b in segs:
        f = np.floor(255 * np.arange(n) / n)[:, None] / 255.0
        cols.append(np.asarray(a, float)[None] * (1 - f) + np.asarray(b, float)[None] * f)
    return np.concatenate(cols, 0)


def flow_to_color(flow, max_rad: float | None = None) -> np.ndarray:
    """Flow [H,W,2] (numpy or torch) -> RGB [H,W,3] float in [0,1]: hue = direction, saturation = magnitude
    (white = no motion). ``max_rad``: magnitude of full saturation (default: the largest magnitude);
    larger flows are darkened."""
    if hasattr(flow, "detach"):
        flow = flow.detach().cpu().numpy()
    flow = np.nan_to_num(np.asarray(flow, dtype=np.float64))
    u, v = flow[..., 0], flow[..., 1]
    mag = np.sqrt(u * u + v * v)
    if max_rad is None:
        max_rad = float(mag.max()) if mag.size else 1.0
    max_rad = max(float(max_rad), 1e-9)
    wheel = _colorwheel()
    n = len(wheel)
    ang = np.arctan2(-v, -u) / np.pi                 # (-1, 1]
    fk = (ang + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(fk).astype(int) % n
    k1 = (k0 + 1) % n
    f = (fk - np.floor(fk))[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    r = (mag / max_rad)[..., None]
    inside = r <= 1
    col = np.where(inside, 1 - np.minimum(r, 1) * (1 - col), col * 0.75)
    return np.clip(col, 0, 1)


def _savefig(fig, path) -> Path:
    from ..io.atomic import atomic_write  # OutputError naming `path` on a full disk; no temporary file left

    path = Path(path)
    return atomic_write(path, lambda f: fig.savefig(f, dpi=100, format=path.suffix.lstrip(".") or "png"),
                        fsync=False)


def save_flow_comparison(path, pred, gt, valid=None, max_rad: float | None = None,
                         labels: tuple[str, str] = ("rendered flow", "ground truth")) -> Path:
    """Write a PNG with predicted flow, ground-truth flow (same colour scale) and the end-point error map.

    pred, gt [H,W,2]; valid [H,W] bool (optional; the error is shown only there); labels: panel titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def npy(a):
        return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)

    pred, gt = npy(pred).astype(np.float64), npy(gt).astype(np.float64)
    v = np.ones(gt.shape[:2], bool) if valid is None else npy(valid).astype(bool)
    if max_rad is None:
        mag = np.linalg.norm(gt, axis=-1)[v]
        max_rad = float(mag.max()) if mag.size and mag.max() > 0 else 1.0
    epe = np.linalg.norm(pred - gt, axis=-1)
    epe_m = np.where(v, epe, np.nan)
    fig, ax = plt.subplots(1, 3, figsize=(12, 4.2))
    ax[0].imshow(flow_to_color(pred, max_rad))
    ax[0].set_title(labels[0])
    ax[1].imshow(flow_to_color(gt, max_rad))
    ax[1].set_title(f"{labels[1]} (colour scale {max_rad:.1f} px)")
    im = ax[2].imshow(epe_m, cmap="magma")
    ax[2].set_title(f"EPE on valid: mean {np.nanmean(epe_m) if v.any() else float('nan'):.2f} px")
    fig.colorbar(im, ax=ax[2], fraction=0.046)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    try:
        return _savefig(fig, path)
    finally:
        plt.close(fig)


def save_track_plot(path, gt, pred, max_points: int = 40, seed: int = 0, title: str | None = None) -> Path:
    """Write a PNG comparing 3D trajectories: a random subset of tracks in 3D (ground truth solid, prediction
    dashed, one colour per track) and the mean end-point error over time. gt, pred [P,T,3]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = np.asarray(gt.detach().cpu() if hasattr(gt, "detach") else gt, dtype=np.float64)
    pred = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, dtype=np.float64)
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[-1] != 3:
        raise ValueError(f"gt and pred must be [P,T,3] of one shape, got {gt.shape} and {pred.shape}")
    P = gt.shape[0]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(P, size=min(max_points, P), replace=False)) if P else np.zeros(0, int)
    cmap = plt.get_cmap("tab20")
    fig = plt.figure(figsize=(12, 5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    for n, p in enumerate(pick):
        c = cmap(n % 20)
        ax.plot(gt[p, :, 0], gt[p, :, 1], gt[p, :, 2], "-", color=c, lw=1.2)
        ax.plot(pred[p, :, 0], pred[p, :, 1], pred[p, :, 2], "--", color=c, lw=1.0)
        ax.scatter(gt[p, :1, 0], gt[p, :1, 1], gt[p, :1, 2], color=c, s=6)
    ax.set_title(title or f"tracks ({len(pick)} of {P}): ground truth solid, predicted dashed")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax2 = fig.add_subplot(1, 2, 2)
    err = np.linalg.norm(pred - gt, axis=-1)
    ax2.plot(err.mean(0), label="mean")
    ax2.plot(np.median(err, 0), label="median")
    ax2.set_xlabel("time index")
    ax2.set_ylabel("end-point error (scene units)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return _savefig(fig, path)
    finally:
        plt.close(fig)

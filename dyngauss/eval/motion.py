"""Motion accuracy of a trained model against ground truth: 2D flow end-point error and 3D track error.

Protocols (docs/motion.md quotes these):

**Flow EPE** (:func:`flow_epe`). For every pair of consecutive frames (i, i+1) of the ground-truth video,
the Gaussians are posed at t_i and t_{i+1}; each Gaussian's flow is its projection at t_{i+1} with camera
i+1 minus its projection at t_i with camera i (the same camera for a fixed-camera video); these vectors are
alpha-composited at t_i's pose from camera i and divided by the rendered alpha (:func:`render_flow`). The
end-point error |pred - gt| (pixels) is averaged over the pixels the ground truth marks valid (visible at
t_i, unoccluded and inside the image at t_{i+1}); pixels where the model renders nothing count with
flow ~0. ``flow_epe_px`` pools all valid pixels of all pairs; per-pair means are also returned.

**Track EPE** (:func:`track_epe`). Ground-truth surface points with known 3D trajectories (``gt_tracks.npz``,
``xyz_<split>`` [P,T,3] at ``times_<split>``) are attached at a reference time (``ref_index``, default the
first time) to their K nearest Gaussians posed at that time (Gaussians with opacity >= ``min_opacity``),
with inverse-distance weights w_k = 1/(d_k + eps) (normalised) and fixed offsets expressed in each
Gaussian's local frame: o_k = R_k(t_ref)^T (p - mu_k(t_ref)). At every other time t of the split the point is
carried rigidly by each Gaussian's SE(3) and blended: p(t) = sum_k w_k (mu_k(t) + R_k(t) o_k). The error is
|p(t) - p_gt(t)| over all points and all times except the reference. Reported: ``track_epe`` (mean, scene
units), ``track_epe_rel`` (mean / scene extent, the extent being the diagonal of the bounding box of all
ground-truth track positions of the split), ``track_within_1pct`` / ``track_within_5pct`` (fraction of
(point, time) errors below 1% / 5% of the extent). The model is evaluated in its own world frame, which must
be the ground truth's (true cameras); a model trained with estimated cameras needs aligning first.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..data.camera import Camera
from ..geometry.knn import knn
from ..geometry.quaternion import quat_rotate, quat_to_matrix
from ..render.flow import gaussian_flow_2d, render_flow

if TYPE_CHECKING:
    from ..model.dynamic import DynamicGaussians

__all__ = ["flow_epe", "track_epe", "evaluate_motion", "pose_at"]


@torch.no_grad()
def pose_at(model: "DynamicGaussians", t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(means [N,3], quats [N,4], log_scales [N,3], motion rotation [N,4]) of the model's Gaussians at t."""
    p = model.pose(float(t))
    return p.means, p.quats, p.log_scales, p.rotations


# ----------------------------------------------------------------------------------------------- flow

@torch.no_grad()
def flow_epe(model: "DynamicGaussians", video_cameras: Sequence[Camera], gt_flow: torch.Tensor, valid: torch.Tensor,
             backend: str = "auto", frames: Sequence[int] | None = None, return_maps: bool = False) -> dict:
    """Rendered-flow end-point error against ground-truth forward flow (protocol in the module docstring).

    Args:
        model: a :class:`dyngauss.model.DynamicGaussians` (its config's render options are used).
        video_cameras: F cameras with ``.time`` (F >= 2); camera i+1 may differ from camera i.
        gt_flow [F-1,H,W,2] (pixels, forward i -> i+1), valid [F-1,H,W] bool.
        frames: optional subset of pair indices i to evaluate.
        return_maps: also return the predicted flows (list of [H,W,2] numpy) and alphas.
    Returns: dict ``flow_epe_px`` (pooled mean over valid pixels, None when none), ``flow_epe_per_frame``
        (list, None entries for pairs without valid pixels), ``flow_num_valid``, ``flow_coverage`` (fraction of
        valid pixels with rendered alpha > 0.5), ``flow_pairs`` (the pair indices).
    """
    F1, H, W = int(gt_flow.shape[0]), int(gt_flow.shape[1]), int(gt_flow.shape[2])
    if len(video_cameras) != F1 + 1:
        raise ValueError(f"{len(video_cameras)} cameras for {F1} flow frames (need {F1 + 1})")
    if tuple(valid.shape) != (F1, H, W):
        raise ValueError(f"valid must be {[F1, H, W]}, got {list(valid.shape)}")
    kw = model.render_options()
    dev = model.gaussians.means.device

    def cam_at(i: int) -> Camera:
        c = video_cameras[i]
        if (c.width, c.height) != (W, H):
            if abs(W / c.width - H / c.height) > 1e-3:
                raise ValueError(f"camera {c.width}x{c.height} and flow {W}x{H} differ in aspect ratio")
            c = c.scaled(W / c.width)
        return c.to(dev)

    pairs = list(range(F1)) if frames is None else [int(i) for i in frames]
    total, count, covered = 0.0, 0, 0
    per, maps, alphas = [], [], []
    cache: dict[int, tuple] = {}
    for i in pairs:
        for j in (i, i + 1):
            if j not in cache:
                cache[j] = pose_at(model, float(video_cameras[j].time))
        for j in list(cache):
            if j < i:
                del cache[j]
        m0, q0, s0, _ = cache[i]
        m1 = cache[i + 1][0]
        c0, c1 = cam_at(i), cam_at(i + 1)
        f2d = gaussian_flow_2d(m0, c0, m1, c1)
        pred, alpha = render_flow(model.gaussians, m0, q0, s0, c0, f2d, backend=backend, **kw)
        pred, alpha = pred.float().cpu(), alpha[..., 0].float().cpu()
        v = valid[i].bool().cpu()
        n = int(v.sum())
        if n:
            err = (pred - gt_flow[i].float().cpu()).norm(dim=-1)[v]
            total += float(err.sum())
            count += n
            covered += int((alpha[v] > 0.5).sum())
            per.append(float(err.mean()))
        else:
            per.append(None)
        if return_maps:
            maps.append(pred.numpy())
            alphas.append(alpha.numpy())
    out = {"flow_epe_px": (total / count) if count else None, "flow_epe_per_frame": per,
           "flow_num_valid": count, "flow_coverage": (covered / count) if count else None, "flow_pairs": pairs}
    if return_maps:
        out["pred_flows"] = maps
        out["pred_alphas"] = alphas
    return out


# ----------------------------------------------------------------------------------------------- tracks

@torch.no_grad()
def track_poses(model: "DynamicGaussians", times) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(means, motion rotation) of the Gaussians at each time: posed once, shared by several references."""
    poses = []
    for t in times:
        means, _, _, rot = pose_at(model, float(t))
        poses.append((means.detach(), rot.detach()))  # a static model's pose is its parameters themselves
    return poses


def track_epe(model: "DynamicGaussians", tracks: dict, split: str = "video", ref_index: int = 0, k: int = 4,
              min_opacity: float = 0.05, return_pred: bool = False, poses: list | None = None) -> dict:
    """3D track end-point error (protocol in the module docstring).

    Args:
        tracks: dict from :func:`dyngauss.data.dnerf.load_tracks` (``xyz_<split>`` [P,T,3],
            ``times_<split>`` [T]; numpy arrays accepted).
        split: which trajectories/times to use ("video", "test", ...).
        ref_index: index of the reference time (where points are attached to Gaussians).
        k: Gaussians per point; min_opacity: ignore fainter Gaussians (used only if any Gaussian passes).
        return_pred: also return ``pred`` [P,T,3] and ``gt`` [P,T,3] numpy arrays (for plots).
        poses: :func:`track_poses` of the split's times, when the caller already has them (else posed here).
    Returns: dict ``track_epe``, ``track_epe_rel``, ``track_within_1pct``, ``track_within_5pct``,
        ``track_extent``, ``track_epe_per_time`` (list, 0 at the reference), ``track_split``,
        ``track_ref_time``, ``track_k``, ``track_num_points``.
    """
    key = f"xyz_{split}"
    if key not in tracks:
        have = [s[4:] for s in tracks if isinstance(s, str) and s.startswith("xyz_")]
        raise KeyError(f"tracks have no split {split!r} (have {have})")
    g = model.gaussians
    dev, dt = g.means.device, g.means.dtype
    gt = torch.as_tensor(np.asarray(tracks[key]), dtype=torch.float64)
    times = torch.as_tensor(np.asarray(tracks[f"times_{split}"]), dtype=torch.float64)
    P, T = gt.shape[0], gt.shape[1]
    if not -T <= ref_index < T:
        raise IndexError(f"ref_index {ref_index} out of range for {T} times")
    ref_index = ref_index % T
    flat = gt.reshape(-1, 3)
    extent = float((flat.max(0).values - flat.min(0).values).norm())

    if poses is None:
        poses = track_poses(model, times)
    if len(poses) != T:
        raise ValueError(f"{len(poses)} poses for {T} times")
    mu_ref, rot_ref = poses[ref_index]
    sel = torch.nonzero(g.opacities.detach().reshape(-1) >= min_opacity).reshape(-1)
    if sel.numel() == 0:
        sel = torch.arange(mu_ref.shape[0], device=dev)
    kk = max(1, min(int(k), sel.numel()))
    p_ref = gt[:, ref_index].to(dev, dt)
    d2, nn = knn(p_ref, mu_ref[sel], kk)
    idx = sel[nn]                                          # [P,K] into all Gaussians
    d = d2.clamp_min(0).sqrt().double()
    w = 1.0 / (d + 1e-6 * max(extent, 1e-12))
    w = w / w.sum(1, keepdim=True)                         # [P,K]
    R_ref = quat_to_matrix(rot_ref[idx]).double()          # [P,K,3,3]
    off = (R_ref.transpose(-1, -2) @ (p_ref.double()[:, None] - mu_ref[idx].double())[..., None])[..., 0]

    pred = torch.empty(P, T, 3, dtype=torch.float64)
    for j in range(T):
        if j == ref_index:
            pred[:, j] = p_ref.double().cpu()
            continue
        mu_t, rot_t = poses[j]
        carried = mu_t[idx].double() + quat_rotate(rot_t[idx].double(), off)
        pred[:, j] = (w[..., None] * carried).sum(1).cpu()
    err = (pred - gt).norm(dim=-1)                         # [P,T]
    others = [j for j in range(T) if j != ref_index]
    e = err[:, others] if others else err
    mean = float(e.mean())
    out = {"track_epe": mean, "track_epe_rel": mean / extent if extent > 0 else None,
           "track_within_1pct": float((e < 0.01 * extent).double().mean()),
           "track_within_5pct": float((e < 0.05 * extent).double().mean()),
           "track_extent": extent, "track_epe_per_time": [float(v) for v in err.mean(0)],
           "track_split": split, "track_ref_time": float(times[ref_index]), "track_k": kk,
           "track_num_points": P}
    if return_pred:
        out["pred"] = pred.numpy()
        out["gt"] = gt.numpy()
    return out


def track_epe_strided(model: "DynamicGaussians", tracks: dict, split: str = "video", stride: int = 5, k: int = 4,
                      min_opacity: float = 0.05, poses: list | None = None) -> dict:
    """3D track EPE with TAP-Vid's "strided" queries: :func:`track_epe` with the reference at every
    `stride`-th time (0, stride, 2 stride, ...), averaged, so that how well one frame (e.g. the first) is fitted
    does not decide where every point is attached. Each reference contributes the same number of errors
    (points x other times), so the mean of the per-reference means is the pooled mean.
    Returns ``track_epe_strided``, ``track_epe_strided_rel`` and ``track_strided_ref_times``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    times = np.asarray(tracks.get(f"times_{split}", []))
    if times.shape[0] == 0:
        raise KeyError(f"tracks have no times for split {split!r}")
    poses = track_poses(model, times) if poses is None else poses
    per = [track_epe(model, tracks, split, ref_index=r, k=k, min_opacity=min_opacity, poses=poses)
           for r in range(0, times.shape[0], stride)]
    rel = [r["track_epe_rel"] for r in per]
    return {"track_epe_strided": float(np.mean([r["track_epe"] for r in per])),
            "track_epe_strided_rel": float(np.mean(rel)) if None not in rel else None,
            "track_strided_ref_times": [r["track_ref_time"] for r in per]}


# ----------------------------------------------------------------------------------------------- driver

MOTION_KEYS = ("flow_epe_px", "track_epe", "track_epe_rel", "track_within_1pct", "track_within_5pct")


def _flow_cameras(path: Path, n_frames: int) -> list[Camera] | None:
    from ..data.loaders import available_splits, load_split

    splits = available_splits(path)
    for s in ("video", "all"):
        if s in splits:
            sp = load_split(path, s)
            if len(sp.cameras) == n_frames:
                return sp.cameras
    return None


def evaluate_motion(model: "DynamicGaussians", data_path, backend: str = "auto", track_split: str | None = None,
                    k: int = 4, plots_dir=None, flow_frames: Sequence[int] | None = None) -> dict:
    """Motion metrics of a model on a dataset folder, as flat keys for metrics.json.

    Always returns ``flow_epe_px``, ``track_epe``, ``track_epe_rel``, ``track_within_1pct``,
    ``track_within_5pct`` (None when the data lacks the ground truth: no video depth/flow for the flow
    metric, no ``gt_tracks.npz`` for the track metrics), plus ``flow_coverage``, ``track_split``,
    ``track_extent``. ``track_split`` None: "video" when present, else "test", else the first split.
    ``plots_dir``: also write ``tracks.png`` and ``flow_<i>.png`` (middle pair) there. Unreadable ground
    truth leaves its metrics None and adds a message to ``motion_errors`` (list; absent when all is well).
    """
    from ..data.dnerf import DatasetError, load_tracks, load_video_gt

    path = Path(data_path)
    out: dict = {k_: None for k_ in MOTION_KEYS}
    out.update({"flow_coverage": None, "track_split": None, "track_extent": None, "track_epe_strided": None,
                "track_epe_strided_rel": None})
    errors: list[str] = []
    # --- flow
    gt = None
    has_video = any((path / "video").glob("depth_*.npz")) or (path / "depth").is_dir()
    if has_video:
        try:
            gt = load_video_gt(path)
        except DatasetError as e:
            errors.append(f"flow ground truth unusable: {e}")
    if gt is not None:
        cams = None
        try:
            cams = _flow_cameras(path, int(gt["flow"].shape[0]) + 1)
        except DatasetError as e:
            errors.append(f"video cameras unusable: {e}")
        if cams is None and not errors:
            errors.append("no transforms file with one camera per ground-truth flow frame")
        if cams is not None:
            fl = flow_epe(model, cams, gt["flow"], gt["flow_valid"], backend=backend, frames=flow_frames,
                          return_maps=plots_dir is not None)
            out["flow_epe_px"] = fl["flow_epe_px"]
            out["flow_coverage"] = fl["flow_coverage"]
            if plots_dir is not None and fl["flow_pairs"]:
                from .plots import save_flow_comparison

                m = len(fl["flow_pairs"]) // 2
                i = fl["flow_pairs"][m]
                save_flow_comparison(Path(plots_dir) / f"flow_{i:03d}.png", fl["pred_flows"][m],
                                     gt["flow"][i].numpy(), gt["flow_valid"][i].numpy())
    # --- tracks
    if (path / "gt_tracks.npz").is_file():
        tr = None
        try:
            tr = load_tracks(path)
        except DatasetError as e:
            errors.append(f"tracks unusable: {e}")
        if tr is not None:
            splits = tr["splits"]
            split = track_split or ("video" if "video" in splits else ("test" if "test" in splits else splits[0]))
            poses = track_poses(model, tr[f"times_{split}"]) if f"times_{split}" in tr else None
            te = track_epe(model, tr, split=split, k=k, return_pred=plots_dir is not None, poses=poses)
            for key in ("track_epe", "track_epe_rel", "track_within_1pct", "track_within_5pct", "track_split",
                        "track_extent"):
                out[key] = te[key]
            st = track_epe_strided(model, tr, split=split, k=k, poses=poses)
            out["track_epe_strided"] = st["track_epe_strided"]
            out["track_epe_strided_rel"] = st["track_epe_strided_rel"]
            if plots_dir is not None:
                from .plots import save_track_plot

                save_track_plot(Path(plots_dir) / "tracks.png", te["gt"], te["pred"])
    if errors:
        out["motion_errors"] = errors
    for key, v in list(out.items()):
        if isinstance(v, float) and not math.isfinite(v):
            out[key] = None
    return out

"""Pose math of the video pipeline (pure numpy, no pycolmap): normalising an SfM reconstruction into the
D-NeRF / Blender frame and aligning two camera sets for evaluation.

Conventions: ``w2c`` are OpenCV world-to-camera [N,4,4] (x right, y down, z forward; what COLMAP gives and
``Camera.viewmat`` holds); ``c2w_gl`` are OpenGL camera-to-world [N,4,4] (x right, y up, looking along -z;
D-NeRF ``transform_matrix``). A similarity ``Sim3(scale, R, t)`` maps a point as ``x' = scale * R @ x + t``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["Sim3", "camera_centers", "camera_axes", "look_at_point", "compute_normalization", "transform_w2c",
           "w2c_to_opengl_c2w", "opengl_c2w_to_w2c", "baseline_ratio", "project_to_so3", "rotation_angle_deg",
           "umeyama", "align_cameras", "AlignResult"]

_GL_FLIP = np.diag([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL camera axes (flip y and z)


@dataclass(frozen=True)
class Sim3:
    """x' = scale * R @ x + t."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points [...,3] -> transformed points [...,3]."""
        return self.scale * np.asarray(points, np.float64) @ self.R.T + self.t

    def inverse(self) -> "Sim3":
        Ri = self.R.T
        return Sim3(1.0 / self.scale, Ri, -(Ri @ self.t) / self.scale)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix [[sR, t], [0, 1]]."""
        M = np.eye(4)
        M[:3, :3] = self.scale * self.R
        M[:3, 3] = self.t
        return M

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "rotation": self.R.tolist(), "translation": self.t.tolist(),
                "matrix": self.matrix().tolist(),
                "convention": "x_normalised = scale * rotation @ x_sfm + translation"}


# ----------------------------------------------------------------------------------------------- cameras

def _as_poses(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"expected poses [N,4,4] or [N,3,4], got {m.shape}")
    if m.shape[1] == 3:
        m = np.concatenate([m, np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(m), 1, 4))], axis=1)
    return m


def camera_centers(w2c) -> np.ndarray:
    """Camera centres in world coordinates [N,3] of OpenCV world-to-camera poses."""
    w2c = _as_poses(w2c)
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    return -np.einsum("nji,nj->ni", R, t)


def camera_axes(w2c) -> tuple[np.ndarray, np.ndarray]:
    """(forward [N,3], up [N,3]) unit vectors in world coordinates: the optical axis (+z of the OpenCV camera)
    and the image-up direction (-y of the OpenCV camera)."""
    w2c = _as_poses(w2c)
    R = w2c[:, :3, :3]
    fwd = R[:, 2, :] / np.linalg.norm(R[:, 2, :], axis=1, keepdims=True)
    up = -R[:, 1, :] / np.linalg.norm(R[:, 1, :], axis=1, keepdims=True)
    return fwd, up


def look_at_point(centers: np.ndarray, dirs: np.ndarray, prior: np.ndarray | None = None,
                  reg: float = 1e-3) -> tuple[np.ndarray, float]:
    """The point closest (least squares) to all optical axes ``centers[i] + s * dirs[i]``.

    When the axes are (nearly) parallel (conditioning below ``10 * reg``), a weak pull (``reg`` per camera)
    towards ``prior`` (default: the mean camera centre) keeps the solution finite. Returns (point [3], conditioning) where conditioning is the
    smallest eigenvalue of the mean projector (0 = all axes parallel, 2/3 = axes in every direction).
    """
    centers = np.asarray(centers, np.float64)
    dirs = np.asarray(dirs, np.float64)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    n = len(centers)
    P = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [N,3,3] projectors orthogonal to the axes
    A = P.sum(0)
    b = np.einsum("nij,nj->i", P, centers)
    p0 = centers.mean(0) if prior is None else np.asarray(prior, np.float64)
    cond = float(np.linalg.eigvalsh(A / n)[0])
    lam = reg * n if cond < 10 * reg else 0.0  # exact least squares unless (nearly) degenerate
    point = np.linalg.solve(A + lam * np.eye(3), b + lam * p0)
    return point, cond


def compute_normalization(w2c, points: np.ndarray | None = None, target_mean_distance: float = 4.0,
                          min_conditioning: float = 0.01) -> tuple[Sim3, dict]:
    """The similarity taking an SfM reconstruction to a D-NeRF-like frame.

    - centre -> origin: the point the cameras look at (least squares over the optical axes). When the axes
      are nearly parallel (conditioning < ``min_conditioning``, e.g. a camera walking forward), the median of
      the sparse ``points`` in front of the cameras is used instead (or the look-at estimate pulled to the
      camera centroid when there are no points).
    - up: the mean image-up direction of the cameras (OpenCV -y) -> world +z (Blender / D-NeRF z-up).
    - horizontal heading: the mean direction from the centre to the cameras -> world -y (the "front" view).
    - scale: mean camera distance to the centre -> ``target_mean_distance``.

    Returns (Sim3, info dict with ``center`` (in the input frame), ``conditioning``, ``center_source``).
    """
    w2c = _as_poses(w2c)
    C = camera_centers(w2c)
    fwd, up = camera_axes(w2c)
    prior = None
    pts = None
    if points is not None and len(points) > 0:
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        # points in front of at least the median camera: robust prior for the centre
        prior = np.median(pts, axis=0)
    center, cond = look_at_point(C, fwd, prior=prior)
    source = "look_at"
    if cond < min_conditioning:
        if pts is not None:
            center = prior
            source = "points_median"
        else:
            source = "look_at_regularised"

    up_mean = up.mean(0)
    if np.linalg.norm(up_mean) < 1e-6:
        up_mean = np.array([0.0, 0.0, 1.0])
    z = up_mean / np.linalg.norm(up_mean)
    # heading: cameras on average at -y (viewed from the "front"); fall back to the viewing direction -> +y
    rel = (C - center).mean(0)
    h = rel - (rel @ z) * z
    if np.linalg.norm(h) > 1e-6 * max(1.0, np.abs(C - center).max()):
        y = -h / np.linalg.norm(h)
    else:
        f = fwd.mean(0)
        f = f - (f @ z) * z
        if np.linalg.norm(f) < 1e-9:  # looking straight down the up axis: any horizontal direction
            f = np.cross(z, [1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.cross(z, [0.0, 1.0, 0.0])
        y = f / np.linalg.norm(f)
    x = np.cross(y, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: new axes in old coordinates -> maps old to new
    dist = np.linalg.norm(C - center, axis=1).mean()
    if not np.isfinite(dist) or dist <= 0:
        raise ValueError("cameras coincide with the scene centre; cannot normalise")
    s = float(target_mean_distance / dist)
    t = -s * (R @ center)
    return Sim3(s, R, t), {"center": center.tolist(), "conditioning": cond, "center_source": source,
                           "mean_camera_distance_sfm": float(dist)}


def transform_w2c(w2c, sim: Sim3) -> np.ndarray:
    """OpenCV world-to-camera poses of the same cameras in the world transformed by ``sim``."""
    w2c = _as_poses(w2c)
    Rc = w2c[:, :3, :3]
    C = camera_centers(w2c)
    Rn = Rc @ sim.R.T
    Cn = sim.apply(C)
    out = np.tile(np.eye(4), (len(w2c), 1, 1))
    out[:, :3, :3] = Rn
    out[:, :3, 3] = -np.einsum("nij,nj->ni", Rn, Cn)
    return out


def w2c_to_opengl_c2w(w2c) -> np.ndarray:
    """OpenCV world-to-camera [N,4,4] -> OpenGL camera-to-world [N,4,4] (D-NeRF ``transform_matrix``)."""
    w2c = _as_poses(w2c)
    out = np.tile(np.eye(4), (len(w2c), 1, 1))
    Rt = np.transpose(w2c[:, :3, :3], (0, 2, 1))
    out[:, :3, :3] = Rt @ _GL_FLIP
    out[:, :3, 3] = camera_centers(w2c)
    return out


def opengl_c2w_to_w2c(c2w_gl) -> np.ndarray:
    """Inverse of :func:`w2c_to_opengl_c2w` (rigid poses)."""
    c2w = _as_poses(c2w_gl)
    out = np.tile(np.eye(4), (len(c2w), 1, 1))
    R = (c2w[:, :3, :3] @ _GL_FLIP).transpose(0, 2, 1)
    out[:, :3, :3] = R
    out[:, :3, 3] = -np.einsum("nij,nj->ni", R, c2w[:, :3, 3])
    return out


def baseline_ratio(w2c, points: np.ndarray | None = None) -> float:
    """How far the camera travels relative to the scene depth: the largest distance between two camera
    centres divided by the median depth of the points in front of the cameras (or, without points, by the
    mean distance to the look-at point). Below ~0.02 structure-from-motion cannot triangulate reliably."""
    w2c = _as_poses(w2c)
    C = camera_centers(w2c)
    if len(C) < 2:
        return 0.0
    d = C[:, None, :] - C[None, :, :]
    span = float(np.sqrt((d ** 2).sum(-1)).max())
    depth = None
    if points is not None and len(points) > 0:
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        sel = np.linspace(0, len(w2c) - 1, min(len(w2c), 10)).round().astype(int)
        z = np.concatenate([(pts @ w2c[i, :3, :3].T + w2c[i, :3, 3])[:, 2] for i in sel])
        z = z[z > 0]
        if len(z):
            depth = float(np.median(z))
    if depth is None:
        fwd, _ = camera_axes(w2c)
        c, _ = look_at_point(C, fwd)
        depth = float(np.linalg.norm(C - c, axis=1).mean())
    return span / max(depth, 1e-12)


# ----------------------------------------------------------------------------------------------- alignment

def project_to_so3(M: np.ndarray) -> np.ndarray:
    """The rotation closest (Frobenius) to a 3x3 matrix."""
    U, _, Vt = np.linalg.svd(np.asarray(M, np.float64))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle(s) of rotation matrices [...,3,3] in degrees."""
    R = np.asarray(R, np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    # sin from the skew part: atan2 stays accurate near 0 and 180 degrees, unlike arccos alone
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = 0.5 * np.linalg.norm(w, axis=-1)
    return np.degrees(np.arctan2(sin, cos))


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Sim3:
    """Least-squares similarity with dst ~ s R src + t (Umeyama 1991) from point correspondences [N,3]."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    var = (a ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var) if with_scale else 1.0
    return Sim3(s, R, md - s * R @ ms)


class AlignResult(NamedTuple):
    """``s, R, t``: gt ~ s R est + t (points); per camera ``rot_err_deg`` [N] and ``pos_err`` [N] (gt units)."""

    s: float
    R: np.ndarray
    t: np.ndarray
    rot_err_deg: np.ndarray
    pos_err: np.ndarray


def align_cameras(est_c2w, gt_c2w, center_weight: float | str = "auto", iters: int = 10) -> AlignResult:
    """Similarity aligning estimated cameras to true ones (both camera-to-world [N,4,4], same axis convention,
    OpenGL or OpenCV; rows correspond).

    Aligning only the centres (Umeyama) is ill-conditioned when the cameras lie on a short arc: the rotation
    about the arc's chord is barely constrained, so small pose errors tilt the fit by degrees. The rotation is
    therefore estimated from the orientations — the chordal L2 mean of ``R_gt_i R_est_i^T`` projected to SO(3)
    — jointly with the centres: maximise ``tr(R^T (sum_i R_gt_i R_est_i^T + w s/sigma^2 sum_i g_i e_i^T))``
    (``g, e`` centred gt / est centres, ``sigma^2`` the mean squared spread of the gt centres, ``w`` =
    ``center_weight``), alternating with the least-squares scale. Translation then follows from the centroids.
    ``center_weight=0`` gives the pure orientation mean; ``"auto"`` weighs the two terms by the inverse of their
    residual variances after the orientation-only fit (maximum likelihood for isotropic noise): precise centres
    then help, noisy ones (relative to the orientations) barely move the rotation.

    Returns AlignResult(s, R, t, rot_err_deg [N], pos_err [N]) with gt ~ s R est + t.
    """
    est = _as_poses(est_c2w)
    gt = _as_poses(gt_c2w)
    if len(est) != len(gt):
        raise ValueError(f"need as many estimated as true cameras, got {len(est)} and {len(gt)}")
    if len(est) < 2:
        raise ValueError("need at least 2 cameras to align")
    Re, Rg = est[:, :3, :3], gt[:, :3, :3]
    ce, cg = est[:, :3, 3], gt[:, :3, 3]
    me, mg = ce.mean(0), cg.mean(0)
    e, g = ce - me, cg - mg
    ee = float((e ** 2).sum())
    sigma2 = max(float((g ** 2).sum(1).mean()), 1e-300)
    Mo = np.einsum("nij,nkj->ik", Rg, Re)  # sum_i R_gt_i R_est_i^T
    Mc = g.T @ e  # sum_i g_i e_i^T
    R = project_to_so3(Mo)
    s = float(np.einsum("ni,ni->", g, e @ R.T) / ee) if ee > 0 else 1.0
    if isinstance(center_weight, str):
        if center_weight != "auto":
            raise ValueError(f"center_weight must be a number or 'auto', got {center_weight!r}")
        theta = np.radians(rotation_angle_deg(np.einsum("nji,jk,nkl->nil", Rg, R, Re)))
        var_rot = 2.0 * float(np.mean(theta ** 2))  # ||R1 - R2||_F^2 ~ 2 theta^2
        var_ctr = float(np.mean(((s * e @ R.T - g) ** 2).sum(1))) / sigma2
        center_weight = var_rot / var_ctr if var_ctr > 0 else (1.0 if var_rot > 0 else 0.0)
    for _ in range(max(1, iters)):
        s = float(np.einsum("ni,ni->", g, e @ R.T) / ee) if ee > 0 else 1.0
        if center_weight <= 0 or ee <= 0:
            break
        R_new = project_to_so3(Mo + center_weight * max(s, 0.0) / sigma2 * Mc)
        if np.allclose(R_new, R, atol=1e-12):
            R = R_new
            break
        R = R_new
    if ee > 0:
        s = float(np.einsum("ni,ni->", g, e @ R.T) / ee)
    t = mg - s * R @ me
    rot_err = rotation_angle_deg(np.einsum("nji,jk,nkl->nil", Rg, R, Re))
    pos_err = np.linalg.norm(s * ce @ R.T + t - cg, axis=1)
    return AlignResult(s, R, t, rot_err, pos_err)

"""The built-in default scene: a procedurally textured bar that twists, bends and moves, rendered by an
independent z-buffer triangle rasterizer (numpy; not Gaussian splatting), written in D-NeRF format with the
same motion ground truth as ``../shared/data/twist`` (fixed-camera video split with exact depth, forward flow
and validity, and ``gt_tracks.npz``). With ``SyntheticConfig.n_cameras >= 2`` the same object is instead seen by
that many fixed synchronised cameras at every time step, written in the Panoptic layout
(dyngauss/data/synthetic_multiview.py).

World: z up (like Blender). The bar is a box ``size`` (default 0.5 x 0.4 x 1.6) centred at the origin with its
long axis along z, tessellated into a grid of triangles on each face. At time t in [0,1] a rest point is moved by
    twist about z (angle proportional to z, total -90..+110 deg) -> bend in the local x-z plane (constant
    curvature, total angle +-65 deg, sinusoidal in t) -> rotation about world z (+-20 deg) -> translation
    (<= ~0.12).
All are smooth in t. Rendering: albedo from a procedural texture evaluated in rest (object) coordinates per
sample (per-face colours, a colour ramp along the bar, a checkerboard of ``checker_size`` cells and dark rings
every 0.4 units), Lambertian shading with two fixed world-space lights plus ambient (view-independent),
smooth normals from the deformation Jacobian, ``supersample``^2 samples per pixel (box filter), alpha = coverage,
transparent background. Depth/flow/validity are exact ray casts through pixel centres (not anti-aliased).

Public API: :class:`SyntheticConfig`, :func:`generate`, :func:`ensure_scene`, :func:`config_hash`,
:func:`scene_mesh`, :func:`rest_mesh`, :func:`deform_points`, :func:`object_bbox`, :func:`render_view`,
:func:`raycast`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time as _time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..resources import cache_root

from .camera import intrinsics_from_fov, look_at_viewmat, viewmat_to_opengl_c2w
from .images import save_npz, write_png

GENERATOR_VERSION = 1
COMPLETE_MARKER = ".complete"

__all__ = ["SyntheticConfig", "generate", "ensure_scene", "config_hash", "scene_mesh", "rest_mesh",
           "deform_points", "object_bbox", "render_view", "raycast", "exact_flow", "RestMesh", "GENERATOR_VERSION",
           "COMPLETE_MARKER"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated scene (its hash names the cache folder)."""

    resolution: int = 128            # width = height in pixels
    n_train: int = 60                # train frames at t = i/(n-1), random cameras
    n_val: int = 10                  # random times (distinct from train times) and cameras
    n_test: int = 10
    n_video: int = 24                # fixed camera, t = i/(n-1); 0 disables the video split
    seed: int = 0
    n_tracks: int = 1000             # area-uniform surface samples in gt_tracks.npz
    supersample: int = 3             # samples per pixel per axis (anti-aliasing)
    camera_angle_x: float = 0.6911112070083618   # horizontal FOV (radians), as the shared twist scene
    camera_radius: float = 3.3
    elevation_deg: tuple = (5.0, 80.0)           # random cameras: elevation range (area-uniform)
    video_azimuth_deg: float = 40.0
    video_elevation_deg: float = 25.0
    size: tuple = (0.5, 0.4, 1.6)                # box extents (x, y, z)
    segments: tuple = (6, 5, 32)                 # tessellation of the box along x, y, z
    checker_size: float = 0.1
    motion_scale: float = 1.0                    # scales twist, bend, rotation and translation
    # 0: the monocular protocol above (one random camera per frame); >= 2: that many fixed synchronised cameras
    # seeing all n_train time steps, written in the Panoptic layout (dyngauss/data/synthetic_multiview.py)
    n_cameras: int = 0

    def __post_init__(self) -> None:
        if self.resolution < 4:
            raise ValueError(f"resolution must be >= 4, got {self.resolution}")
        if self.n_train < 2:
            raise ValueError("n_train must be >= 2")
        if min(self.n_val, self.n_test, self.n_video, self.n_tracks) < 0:
            raise ValueError("frame / track counts must be >= 0")
        if self.n_video == 1:
            raise ValueError("n_video must be 0 or >= 2")
        if self.supersample < 1:
            raise ValueError("supersample must be >= 1")
        if self.n_cameras < 0 or self.n_cameras == 1:
            raise ValueError(f"n_cameras must be 0 (monocular) or >= 2 (one is held out), got {self.n_cameras}")
        object.__setattr__(self, "elevation_deg", tuple(float(v) for v in self.elevation_deg))
        object.__setattr__(self, "size", tuple(float(v) for v in self.size))
        object.__setattr__(self, "segments", tuple(int(v) for v in self.segments))

    def to_dict(self) -> dict:
        """Every field (tuples as lists); ``n_cameras`` only when non-zero, so a monocular scene's dict, hash and
        files are those of the generator before the multi-camera mode existed."""
        d = {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
        if not self.n_cameras:
            del d["n_cameras"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def config_hash(cfg: SyntheticConfig) -> str:
    blob = json.dumps({"generator_version": GENERATOR_VERSION, **cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ============================================================================================= geometry

@dataclass
class RestMesh:
    verts: np.ndarray        # [V,3] float64 rest positions (object coordinates = world at rest)
    faces: np.ndarray        # [F,3] int64, counter-clockwise seen from outside
    face_label: np.ndarray   # [F] int64: box side 0..5 = +x,-x,+y,-y,+z,-z
    vert_label: np.ndarray   # [V] int64: box side of each vertex (vertices are not shared between sides)
    normals: np.ndarray      # [V,3] rest outward normal per vertex (its side's normal)


def rest_mesh(cfg: SyntheticConfig = SyntheticConfig()) -> RestMesh:
    """Tessellated box; each side is its own grid (vertices on edges duplicated, at identical positions)."""
    hx, hy, hz = (0.5 * s for s in cfg.size)
    half = np.array([hx, hy, hz])
    seg = cfg.segments
    verts, faces, flab, vlab, norms = [], [], [], [], []
    nv = 0
    for side in range(6):
        a = side // 2
        sgn = 1.0 if side % 2 == 0 else -1.0
        b, c = [k for k in range(3) if k != a]
        nb, nc = seg[b], seg[c]
        ub = np.linspace(-half[b], half[b], nb + 1)
        uc = np.linspace(-half[c], half[c], nc + 1)
        gb, gc = np.meshgrid(ub, uc, indexing="ij")
        v = np.zeros((gb.size, 3))
        v[:, a] = sgn * half[a]
        v[:, b] = gb.ravel()
        v[:, c] = gc.ravel()
        idx = np.arange(gb.size).reshape(nb + 1, nc + 1) + nv
        q00, q10, q01, q11 = idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:], idx[1:, 1:]
        tri = np.concatenate([np.stack([q00, q10, q11], -1).reshape(-1, 3),
                              np.stack([q00, q11, q01], -1).reshape(-1, 3)])
        n = np.zeros(3)
        n[a] = sgn
        # orient counter-clockwise about the outward normal
        p0, p1, p2 = v[tri[:, 0] - nv], v[tri[:, 1] - nv], v[tri[:, 2] - nv]
        flip = np.cross(p1 - p0, p2 - p0) @ n < 0
        tri[flip] = tri[flip][:, [0, 2, 1]]
        verts.append(v)
        faces.append(tri)
        flab.append(np.full(len(tri), side))
        vlab.append(np.full(len(v), side))
        norms.append(np.tile(n, (len(v), 1)))
        nv += len(v)
    return RestMesh(np.concatenate(verts), np.concatenate(faces).astype(np.int64),
                    np.concatenate(flab).astype(np.int64), np.concatenate(vlab).astype(np.int64),
                    np.concatenate(norms))


def motion_params(t: float, cfg: SyntheticConfig = SyntheticConfig()) -> dict:
    """Deformation parameters at time t (all smooth in t)."""
    s = cfg.motion_scale
    t = float(t)
    return {
        "twist": s * math.radians(-90.0 + 200.0 * (0.5 - 0.5 * math.cos(math.pi * t))),
        "bend": s * math.radians(65.0) * math.sin(2.0 * math.pi * t),
        "rot_z": s * math.radians(20.0) * math.sin(math.pi * (1.5 * t - 0.25)),
        "trans": s * np.array([0.10 * math.sin(2.0 * math.pi * t),
                               0.08 * math.sin(math.pi * t + 0.5) - 0.08 * math.sin(0.5),
                               0.06 * math.sin(1.5 * math.pi * t)]),
    }


def deform_points(x: np.ndarray, t: float, cfg: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
    """Rest positions [N,3] -> world positions at time t [N,3] (float64)."""
    x = np.asarray(x, dtype=np.float64)
    p = motion_params(t, cfg)
    L = cfg.size[2]
    X, Y, Z = x[:, 0], x[:, 1], x[:, 2]
    # twist about the long axis
    th = p["twist"] * Z / L
    c, s = np.cos(th), np.sin(th)
    X, Y = c * X - s * Y, s * X + c * Y
    # bend in the x-z plane: the axis (x=0) becomes an arc of curvature k, x is measured along the arc normal
    k = p["bend"] / L
    phi = k * Z
    sinc = np.sinc(phi / np.pi)                          # sin(phi)/phi
    cosc = np.where(np.abs(phi) < 1e-4, 0.5 * phi, (1.0 - np.cos(phi)) / np.where(phi == 0, 1.0, phi))
    X, Z = Z * cosc + X * np.cos(phi), Z * sinc - X * np.sin(phi)
    # global rotation about z, translation
    c, s = math.cos(p["rot_z"]), math.sin(p["rot_z"])
    X, Y = c * X - s * Y, s * X + c * Y
    return np.stack([X, Y, Z], -1) + p["trans"]


def _posed_normals(mesh: RestMesh, t: float, cfg: SyntheticConfig) -> np.ndarray:
    """Deformed vertex normals: cross product of the deformed side tangents (central differences)."""
    n = mesh.normals
    a = np.abs(n).argmax(1)
    t1 = np.zeros_like(n)
    t1[np.arange(len(n)), (a + 1) % 3] = 1.0
    t2 = np.cross(n, t1)                                 # cross(t1, t2) = n
    eps = 1e-4
    j1 = deform_points(mesh.verts + eps * t1, t, cfg) - deform_points(mesh.verts - eps * t1, t, cfg)
    j2 = deform_points(mesh.verts + eps * t2, t, cfg) - deform_points(mesh.verts - eps * t2, t, cfg)
    m = np.cross(j1, j2)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def scene_mesh(t: float, cfg: SyntheticConfig = SyntheticConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Posed mesh at time t: (vertices [V,3] float64 world, faces [F,3] int64)."""
    m = rest_mesh(cfg)
    return deform_points(m.verts, t, cfg), m.faces


def object_bbox(cfg: SyntheticConfig = SyntheticConfig(), n_times: int = 201) -> np.ndarray:
    """Axis-aligned bounding box [2,3] of the object over all times t in [0,1]."""
    m = rest_mesh(cfg)
    pts = np.concatenate([deform_points(m.verts, t, cfg) for t in np.linspace(0.0, 1.0, n_times)])
    return np.stack([pts.min(0), pts.max(0)])


# ============================================================================================= texture

_SIDE_COLORS = np.array([[0.90, 0.30, 0.15],   # +x orange-red
                         [0.15, 0.35, 0.90],   # -x blue
                         [0.20, 0.80, 0.25],   # +y green
                         [0.65, 0.20, 0.80],   # -y purple
                         [0.95, 0.85, 0.15],   # +z yellow
                         [0.10, 0.80, 0.85]])  # -z cyan


def _hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def albedo(rest: np.ndarray, side: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """Procedural albedo [N,3] in (0,1) at rest positions [N,3] on box sides [N]."""
    L = cfg.size[2]
    zn = np.clip((rest[:, 2] + 0.5 * L) / L, 0.0, 1.0)
    ramp = _hsv_to_rgb(0.7 * zn, 0.8, 0.95)
    base = 0.55 * _SIDE_COLORS[side] + 0.45 * ramp
    a = side // 2
    uv = np.stack([rest[np.arange(len(rest)), (a + 1) % 3], rest[np.arange(len(rest)), (a + 2) % 3]], -1)
    cell = np.floor(uv / cfg.checker_size + 1e-9).astype(np.int64)
    checker = ((cell[:, 0] + cell[:, 1]) % 2).astype(np.float64)
    col = base * (0.55 + 0.45 * checker)[:, None]
    ring = np.abs(((rest[:, 2] + 0.5 * L) / 0.4 + 0.5) % 1.0 - 0.5) * 0.4 < 0.015
    ring &= a != 2
    col[ring] *= 0.2
    return np.clip(col, 0.03, 0.92)


_LIGHTS = [(np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8]), 0.55),
           (np.array([-0.6, 0.5, 0.2]) / np.linalg.norm([-0.6, 0.5, 0.2]), 0.25)]
_AMBIENT = 0.45


def shade(alb: np.ndarray, normals: np.ndarray) -> np.ndarray:
    s = np.full(len(normals), _AMBIENT)
    for d, w in _LIGHTS:
        s += w * np.clip(normals @ d, 0.0, None)
    return np.clip(alb * s[:, None], 0.0, 1.0)


# ============================================================================================= rasterizer

def _project(points: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pc = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = pc[:, 2]
    uv = np.stack([K[0, 0] * pc[:, 0] / z + K[0, 2], K[1, 1] * pc[:, 1] / z + K[1, 2]], -1)
    return uv, z


def raycast(verts: np.ndarray, faces: np.ndarray, viewmat: np.ndarray, K: np.ndarray, width: int, height: int,
            queries: np.ndarray, near: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest surface hit along the camera rays through arbitrary pixel positions.

    verts [V,3] world, faces [F,3], viewmat [4,4] OpenCV world-to-camera, K [3,3], queries [Q,2] pixel
    coordinates (pixel centres at +0.5). Returns (tri [Q] int64, -1 for no hit; bary [Q,3] perspective-correct
    barycentrics of the hit in its triangle; depth [Q] camera z, +inf for no hit). Triangles with a vertex
    closer than `near` are skipped. Vectorised: enumerates (triangle, pixel cell) pairs of each projected
    triangle's bounding box, then the queries inside those cells; a z-buffer (lexsort) keeps the nearest.
    """
    W, H = int(width), int(height)
    q = np.asarray(queries, dtype=np.float64).reshape(-1, 2)
    Q = len(q)
    tri_out = np.full(Q, -1, np.int64)
    bary_out = np.zeros((Q, 3))
    depth_out = np.full(Q, np.inf)
    uv, z = _project(np.asarray(verts, np.float64), np.asarray(viewmat, np.float64), np.asarray(K, np.float64))
    tuv, tz = uv[faces], z[faces]                                   # [F,3,2], [F,3]
    # barycentric affine maps: b = M @ [x, y, 1]
    A = np.concatenate([tuv.transpose(0, 2, 1), np.ones((len(faces), 1, 3))], 1)  # [F,3,3] columns = vertices
    det = np.linalg.det(A)
    ok = (tz.min(1) > near) & (np.abs(det) > 1e-12)
    # query cells
    cx, cy = np.floor(q[:, 0]).astype(np.int64), np.floor(q[:, 1]).astype(np.int64)
    qin = (cx >= 0) & (cx < W) & (cy >= 0) & (cy < H) & np.isfinite(q).all(1)
    cell = np.where(qin, cy * W + cx, W * H)                        # out-of-image queries -> dummy cell
    order = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=W * H + 1)[: W * H]
    starts = np.cumsum(counts) - counts
    # triangle bounding boxes in cells
    mn, mx = tuv.min(1), tuv.max(1)
    x0 = np.clip(np.floor(mn[:, 0]), 0, W - 1).astype(np.int64)
    x1 = np.clip(np.floor(mx[:, 0]), 0, W - 1).astype(np.int64)
    y0 = np.clip(np.floor(mn[:, 1]), 0, H - 1).astype(np.int64)
    y1 = np.clip(np.floor(mx[:, 1]), 0, H - 1).astype(np.int64)
    ok &= (mx[:, 0] >= 0) & (mn[:, 0] < W) & (mx[:, 1] >= 0) & (mn[:, 1] < H)
    fid = np.nonzero(ok)[0]
    if len(fid) == 0 or Q == 0:
        return tri_out, bary_out, depth_out
    Minv = np.linalg.inv(A[fid])                                    # [F',3,3]
    nx, ny = x1[fid] - x0[fid] + 1, y1[fid] - y0[fid] + 1
    npair = nx * ny
    pt = np.repeat(np.arange(len(fid)), npair)
    k = np.arange(len(pt)) - np.repeat(np.cumsum(npair) - npair, npair)
    pcell = (y0[fid][pt] + k // nx[pt]) * W + x0[fid][pt] + k % nx[pt]
    c = counts[pcell]
    keep = c > 0
    pt, pcell, c = pt[keep], pcell[keep], c[keep]
    # expand (triangle, cell) -> (triangle, query)
    et = np.repeat(pt, c)
    ek = np.arange(len(et)) - np.repeat(np.cumsum(c) - c, c)
    eq = order[np.repeat(starts[pcell], c) + ek]
    M = Minv[et]
    p = q[eq]
    b = M[:, :, 0] * p[:, 0:1] + M[:, :, 1] * p[:, 1:2] + M[:, :, 2]  # screen-space barycentrics [E,3]
    inside = (b >= -1e-10).all(1)
    et, eq, b = et[inside], eq[inside], b[inside]
    inv_z = b / tz[fid][et]
    s = inv_z.sum(1)
    d = 1.0 / s
    # z-buffer: nearest per query
    o = np.lexsort((d, eq))
    eq_s = eq[o]
    first = np.ones(len(o), bool)
    first[1:] = eq_s[1:] != eq_s[:-1]
    sel = o[first]
    tri_out[eq[sel]] = fid[et[sel]]
    bary_out[eq[sel]] = inv_z[sel] * d[sel, None]
    depth_out[eq[sel]] = d[sel]
    return tri_out, bary_out, depth_out


def _pixel_centres(width: int, height: int, ss: int = 1) -> np.ndarray:
    """Sample positions [H*W*ss*ss, 2] (pixel units) ordered (row, col, sub-row, sub-col)."""
    off = (np.arange(ss) + 0.5) / ss
    r, c, sr, sc = np.meshgrid(np.arange(height), np.arange(width), off, off, indexing="ij")
    return np.stack([c + sc, r + sr], -1).reshape(-1, 2)


def render_view(t: float, viewmat: np.ndarray, K: np.ndarray, width: int, height: int,
                cfg: SyntheticConfig = SyntheticConfig(), supersample: int | None = None,
                mesh: RestMesh | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render the object at time t: (straight-alpha rgb [H,W,3], alpha [H,W]) float64 in [0,1]."""
    ss = int(supersample or cfg.supersample)
    mesh = mesh or rest_mesh(cfg)
    verts = deform_points(mesh.verts, t, cfg)
    normals = _posed_normals(mesh, t, cfg)
    q = _pixel_centres(width, height, ss)
    tri, bary, _ = raycast(verts, mesh.faces, viewmat, K, width, height, q)
    hit = tri >= 0
    col = np.zeros((len(q), 3))
    if hit.any():
        f = mesh.faces[tri[hit]]
        b = bary[hit][:, :, None]
        rest = (mesh.verts[f] * b).sum(1)
        n = (normals[f] * b).sum(1)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        col[hit] = shade(albedo(rest, mesh.face_label[tri[hit]], cfg), n)
    n_s = ss * ss
    cov = hit.reshape(height, width, n_s).sum(-1)
    prem = col.reshape(height, width, n_s, 3).sum(2)
    rgb = prem / np.maximum(cov, 1)[..., None]
    return rgb, cov / n_s


def _flow_from_hits(tri: np.ndarray, bary: np.ndarray, faces: np.ndarray, verts_b: np.ndarray,
                    viewmat_b: np.ndarray, K_b: np.ndarray, width: int, height: int, q: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Flow [Q,2] and validity [Q] of the pixels q of view a whose ray hits (tri, bary) carry to view b, where
    the mesh has vertices verts_b: valid when the moved surface point projects inside view b with nothing in
    front of it (its own triangle gives the same depth up to rounding)."""
    W, H = int(width), int(height)
    hit = tri >= 0
    flow, valid = np.zeros((len(q), 2)), np.zeros(len(q), bool)
    if hit.any():
        p1 = (verts_b[faces[tri[hit]]] * bary[hit][:, :, None]).sum(1)
        uv1, z1 = _project(p1, viewmat_b, K_b)
        flow[hit] = uv1 - q[hit]
        inside = (uv1[:, 0] >= 0) & (uv1[:, 0] < W) & (uv1[:, 1] >= 0) & (uv1[:, 1] < H) & (z1 > 0)
        _, _, d1 = raycast(verts_b, faces, viewmat_b, K_b, W, H, np.where(inside[:, None], uv1, -1.0))
        valid[np.nonzero(hit)[0]] = inside & ~(d1 < z1 * (1.0 - 1e-5) - 1e-6)
    return flow, valid


def exact_flow(t_a: float, viewmat_a: np.ndarray, K_a: np.ndarray, t_b: float, viewmat_b: np.ndarray,
               K_b: np.ndarray, width: int, height: int, cfg: SyntheticConfig = SyntheticConfig(),
               mesh: RestMesh | None = None) -> tuple[np.ndarray, np.ndarray]:
    """True 2D flow between two views of the object at two times (any cameras): (flow [H,W,2] pixels from
    view a to view b, valid [H,W] bool). A pixel of view a is valid when its ray hits the object and that
    surface point, moved to time t_b, projects inside view b with nothing in front of it (the rule of the
    video split's ground truth, which uses the same code). Used to measure flow priors between training
    frames."""
    mesh = mesh or rest_mesh(cfg)
    W, H = int(width), int(height)
    q = _pixel_centres(W, H, 1)
    tri, bary, _ = raycast(deform_points(mesh.verts, t_a, cfg), mesh.faces, viewmat_a, K_a, W, H, q)
    flow, valid = _flow_from_hits(tri, bary, mesh.faces, deform_points(mesh.verts, t_b, cfg), viewmat_b, K_b,
                                  W, H, q)
    return flow.reshape(H, W, 2), valid.reshape(H, W)


# ============================================================================================= dataset writer

def _camera_K(cfg: SyntheticConfig) -> np.ndarray:
    return intrinsics_from_fov(cfg.camera_angle_x, cfg.resolution, cfg.resolution)


def _eye(az: float, el: float, r: float) -> np.ndarray:
    return r * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _random_cameras(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> list[np.ndarray]:
    lo, hi = (math.sin(math.radians(e)) for e in cfg.elevation_deg)
    out = []
    for _ in range(n):
        az = rng.uniform(0.0, 2.0 * math.pi)
        el = math.asin(rng.uniform(lo, hi))
        out.append(look_at_viewmat(_eye(az, el, cfg.camera_radius), (0, 0, 0), (0, 0, 1)))
    return out


def _random_times(rng: np.random.Generator, n: int, avoid: np.ndarray, min_gap: float = 1e-3) -> np.ndarray:
    ts = []
    while len(ts) < n:
        t = rng.uniform(0.0, 1.0)
        if np.min(np.abs(avoid - t)) > min_gap:
            ts.append(t)
    return np.sort(np.array(ts))


def _sample_tracks(mesh: RestMesh, n: int, rng: np.random.Generator):
    v = mesh.verts[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    tri = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.uniform(size=n), rng.uniform(size=n)
    s1 = np.sqrt(r1)
    bary = np.stack([1.0 - s1, s1 * (1.0 - r2), s1 * r2], -1).astype(np.float32)
    return tri.astype(np.int32), bary


def _track_xyz(mesh: RestMesh, tri: np.ndarray, bary: np.ndarray, t: float, cfg: SyntheticConfig) -> np.ndarray:
    verts = deform_points(mesh.verts, t, cfg)
    return (verts[mesh.faces[tri]] * bary.astype(np.float64)[:, :, None]).sum(1)


def _frame_json(split: str, i: int, t: float, viewmat: np.ndarray) -> dict:
    return {"file_path": f"./{split}/r_{i:03d}", "time": float(t),
            "transform_matrix": viewmat_to_opengl_c2w(viewmat).tolist()}


def _write_split(root: Path, split: str, times: np.ndarray, viewmats: list[np.ndarray], cfg: SyntheticConfig,
                 mesh: RestMesh, stats: dict) -> None:
    W = H = cfg.resolution
    K = _camera_K(cfg)
    (root / split).mkdir()
    frames = []
    cover, border = [], 0
    for i, (t, V) in enumerate(zip(times, viewmats)):
        rgb, alpha = render_view(t, V, K, W, H, cfg, mesh=mesh)
        write_png(root / split / f"r_{i:03d}.png", rgb, alpha)
        frames.append(_frame_json(split, i, t, V))
        cover.append(float(alpha.mean()))
        border += bool(alpha[0].any() or alpha[-1].any() or alpha[:, 0].any() or alpha[:, -1].any())
    with open(root / f"transforms_{split}.json", "w") as f:
        json.dump({"camera_angle_x": cfg.camera_angle_x, "frames": frames}, f, indent=2)
    stats["frames_touching_border"][split] = f"{border}/{len(times)}"
    stats["alpha_coverage_min_mean_max"][split] = [round(min(cover), 4), round(float(np.mean(cover)), 4),
                                                   round(max(cover), 4)]


def _video_gt(root: Path, times: np.ndarray, V: np.ndarray, cfg: SyntheticConfig, mesh: RestMesh,
              stats: dict) -> None:
    """Exact depth, forward flow and validity for the fixed-camera video split."""
    W = H = cfg.resolution
    K = _camera_K(cfg)
    q = _pixel_centres(W, H, 1)
    n = len(times)
    posed = [deform_points(mesh.verts, t, cfg) for t in times]
    hits = []
    for i in range(n):
        tri, bary, depth = raycast(posed[i], mesh.faces, V, K, W, H, q)
        hits.append((tri, bary))
        save_npz(root / "video" / f"depth_{i:03d}.npz", depth=depth.reshape(H, W).astype(np.float32))
    valid_all = np.zeros((n - 1, H, W), bool)
    mags = []
    for i in range(n - 1):
        tri, bary = hits[i]
        hit = tri >= 0
        flow, valid = _flow_from_hits(tri, bary, mesh.faces, posed[i + 1], V, K, W, H, q)
        if hit.any():
            mags.append(np.linalg.norm(flow[hit], axis=1))
        save_npz(root / "video" / f"flow_{i:03d}.npz", flow=flow.reshape(H, W, 2).astype(np.float32))
        valid_all[i] = valid.reshape(H, W)
    save_npz(root / "video" / "flow_valid.npz", valid=valid_all)
    m = np.concatenate(mags) if mags else np.zeros(1)
    hit_px = sum(int((h[0] >= 0).sum()) for h in hits[:-1])
    stats["flow"] = {"flow_mag_px_mean_max": [round(float(m.mean()), 3), round(float(m.max()), 3)],
                     "valid_fraction_of_hit_pixels": round(float(valid_all.sum()) / max(hit_px, 1), 4)}


def _write_scene(root: Path, cfg: SyntheticConfig) -> None:
    if cfg.n_cameras:
        from .synthetic_multiview import write_multiview_scene

        write_multiview_scene(root, cfg)
        return
    t0 = _time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    mesh = rest_mesh(cfg)
    n_train = cfg.n_train
    t_train = np.arange(n_train) / (n_train - 1)
    splits = {"train": (t_train, _random_cameras(rng, n_train, cfg))}
    for name, n in (("val", cfg.n_val), ("test", cfg.n_test)):
        if n > 0:
            ts = _random_times(rng, n, t_train)
            splits[name] = (ts, _random_cameras(rng, n, cfg))
    V_video = look_at_viewmat(_eye(math.radians(cfg.video_azimuth_deg), math.radians(cfg.video_elevation_deg),
                                   cfg.camera_radius), (0, 0, 0), (0, 0, 1))
    if cfg.n_video >= 2:
        tv = np.arange(cfg.n_video) / (cfg.n_video - 1)
        splits["video"] = (tv, [V_video] * cfg.n_video)
    trk_tri, trk_bary = _sample_tracks(mesh, cfg.n_tracks, rng)

    stats = {"frames_touching_border": {}, "alpha_coverage_min_mean_max": {}}
    for name, (ts, Vs) in splits.items():
        _write_split(root, name, ts, Vs, cfg, mesh, stats)
    if "video" in splits:
        _video_gt(root, splits["video"][0], V_video, cfg, mesh, stats)

    tracks = {"point_ids": np.arange(cfg.n_tracks, dtype=np.int32), "tri_index": trk_tri, "bary": trk_bary,
              "rest_xyz": (mesh.verts[mesh.faces[trk_tri]] * trk_bary.astype(np.float64)[:, :, None]).sum(1)
              .astype(np.float32)}
    for name, (ts, _) in splits.items():
        tracks[f"times_{name}"] = ts.astype(np.float32)
        tracks[f"xyz_{name}"] = np.stack([_track_xyz(mesh, trk_tri, trk_bary, t, cfg) for t in ts], 1) \
            .astype(np.float32).reshape(cfg.n_tracks, len(ts), 3)
    save_npz(root / "gt_tracks.npz", **tracks)

    K = _camera_K(cfg)
    bbox = object_bbox(cfg)
    meta = {
        "scene": "synthetic_bar",
        "description": (f"Procedurally textured box {cfg.size[0]} x {cfg.size[1]} x {cfg.size[2]} along z; twist "
                        "about z (-90..110 deg over its length), bend in the local x-z plane (+-65 deg, "
                        "sinusoidal), rotation about world z (+-20 deg) and a small translation; rendered by "
                        "the dyngauss numpy z-buffer mesh rasterizer (not Gaussian splatting)."),
        "generator": "dyngauss.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "config": cfg.to_dict(),
        "config_hash": config_hash(cfg),
        "seed": cfg.seed,
        "resolution": [cfg.resolution, cfg.resolution],
        "camera_angle_x": cfg.camera_angle_x,
        "focal_px": float(K[0, 0]),
        "camera_radius": cfg.camera_radius,
        "frame_counts": {k: len(v[0]) for k, v in splits.items()},
        "n_flow": max(cfg.n_video - 1, 0) if "video" in splits else 0,
        "n_tracks": cfg.n_tracks,
        "mesh": {"n_vertices": int(len(mesh.verts)), "n_triangles": int(len(mesh.faces))},
        "object_bbox_all_times": bbox.tolist(),
        "motion": {"twist_deg": "-90 + 200*(1-cos(pi t))/2, angle(z) = twist * z / L",
                   "bend_deg": "65*sin(2 pi t), constant curvature bend/L in the local x-z plane",
                   "rot_z_deg": "20*sin(pi(1.5t - 0.25))",
                   "translation": "(0.10 sin 2pi t, 0.08(sin(pi t + 0.5) - sin 0.5), 0.06 sin 1.5pi t)",
                   "order": "twist -> bend -> rotate z -> translate; all scaled by motion_scale"},
        "conventions": {
            "world": "z up; object inside object_bbox_all_times",
            "transform_matrix": "camera-to-world 4x4, OpenGL/Blender camera (looks along -z, +y up), as in "
                                "NeRF-synthetic / D-NeRF",
            "time": "normalised t in [0,1]; train t_i = i/(n_train-1), video t_i = i/(n_video-1), val/test "
                    "uniform random (sorted, distinct from train times)",
            "images": "RGBA PNG, 8 bit, straight alpha (coverage of supersample^2 samples), transparent "
                      "background (composite on white as in D-NeRF loaders)",
            "pixel_coords": "u right, v down, pixel (col,row) centre at (col+0.5,row+0.5); "
                            "u = W/2 + f*x_c/(-z_c), v = H/2 - f*y_c/(-z_c)",
            "depth": "video/depth_XXX.npz key 'depth': float32 [H,W] camera z-depth, +inf on background; exact "
                     "ray cast of the mesh through pixel centres (not anti-aliased)",
            "flow": "video/flow_XXX.npz key 'flow': float32 [H,W,2] forward flow (dx,dy) in pixels from video "
                    "frame i to i+1: the surface point hit at the pixel centre at t_i (same triangle and "
                    "barycentrics) projected at t_{i+1} minus the pixel centre; 0 on background. "
                    "video/flow_valid.npz key 'valid' bool [n_video-1,H,W]: pixel centre hits the object at "
                    "t_i AND that point is unoccluded (exact ray cast, relative tolerance 1e-5) and inside the "
                    "image at t_{i+1}",
            "gt_tracks": "gt_tracks.npz: point_ids [P], tri_index [P], bary [P,3] (fixed barycentric samples, "
                         "area-uniform on the rest mesh), rest_xyz [P,3] (rest position), times_<split> [T], "
                         "xyz_<split> [P,T,3] world positions of the same barycentric points on the posed mesh",
        },
        "render_settings": {"renderer": "numpy z-buffer triangle rasterizer (dyngauss.data.synthetic.raycast)",
                            "supersample": cfg.supersample, "pixel_filter": "box",
                            "shading": "Lambertian (view-independent), 2 directional lights + ambient",
                            "lights": [[d.tolist(), w] for d, w in _LIGHTS], "ambient": _AMBIENT},
        "checks": stats,
    }
    with open(root / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
    marker = {"generator_version": GENERATOR_VERSION, "config_hash": config_hash(cfg),
              "seconds": round(_time.perf_counter() - t0, 3)}
    with open(root / COMPLETE_MARKER, "w") as f:       # written last: the folder is complete
        json.dump(marker, f)


def _is_scene_folder(p: Path) -> bool:
    if (p / COMPLETE_MARKER).is_file():
        return True
    try:
        return json.loads((p / "meta.json").read_text()).get("generator") == "dyngauss.data.synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def generate(out_dir: str | os.PathLike, cfg: SyntheticConfig = SyntheticConfig(), overwrite: bool = True,
             force: bool = False) -> Path:
    """Write the scene to `out_dir` atomically (built in a temporary sibling folder, then renamed).

    An existing `out_dir` that is a synthetic scene is replaced when `overwrite` (else kept and returned);
    any other existing non-empty folder is refused unless `force`. A complete scene has a `.complete` file.
    """
    out = Path(out_dir).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_scene_folder(out) and not force:
        raise FileExistsError(f"{out} exists and is not a dyngauss synthetic scene (use force=True to replace)")
    if out.is_dir() and not overwrite and (out / COMPLETE_MARKER).is_file():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        _write_scene(tmp, cfg)
        try:
            os.rename(tmp, out)                           # atomic when `out` does not exist (or is empty)
        except OSError:
            if not out.exists():
                raise
            if not overwrite and (out / COMPLETE_MARKER).is_file():   # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, trash / "old")
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_scene(cfg: SyntheticConfig = SyntheticConfig(), cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the generated scene for `cfg` under <cache>/synthetic/<config hash>/, generating it if absent."""
    path = cache_root(cache_dir) / "synthetic" / config_hash(cfg)
    if (path / COMPLETE_MARKER).is_file():
        return path
    return generate(path, cfg, overwrite=False, force=True)

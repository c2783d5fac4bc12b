"""The built-in default scene: a procedurally textured object that moves and deforms, rendered by an
independent z-buffer triangle rasterizer (numpy; not Gaussian splatting), written in D-NeRF format with the
same motion ground truth as ``../shared/data/twist`` (fixed-camera video split with exact depth, forward flow
and validity, and ``gt_tracks.npz``). With ``SyntheticConfig.n_cameras >= 2`` the same object is instead seen by
that many fixed synchronised cameras at every time step, written in the Panoptic layout
(dyngauss/data/synthetic_multiview.py).

World: z up (like Blender). ``SyntheticConfig.motion`` picks the object and its motion among the families of
dyngauss/data/motion_families.py (shape, deformation x(rest, t), texture, description); this module dispatches
:func:`rest_mesh`, :func:`deform_points` and :func:`albedo` to it:

* ``twist`` (default): the bar, a box ``size`` (default 0.5 x 0.4 x 1.6) centred at the origin with its long axis
  along z, tessellated into a grid of triangles on each face. At time t in [0,1] a rest point is moved by
      twist about z (angle proportional to z, total -90..+110 deg) -> bend in the local x-z plane (constant
      curvature, total angle +-65 deg, sinusoidal in t) -> rotation about world z (+-20 deg) -> translation
      (<= ~0.12).
  Its files are byte-identical to those of the generator before the families existed.
* ``limb``: a 3-bone capsule, piecewise rigid, hinge angles smooth in t, blended only within 0.12 of each joint;
* ``blob``: a sphere with a travelling radial wave and a tangential swirl (smooth, nowhere rigid);
* ``two_objects``: a box spinning about its own axis beside a box translating along an arc;
* ``spin``: a rigid box turning 240 deg about a tilted axis while translating.

All motions are smooth in t and scaled by ``motion_scale``. Rendering: albedo from a procedural texture evaluated
in rest (object) coordinates per sample (per-part colours, a colour ramp along the object, a checkerboard of
``checker_size`` cells and thin dark rings), Lambertian shading with two fixed world-space lights plus ambient
(view-independent), smooth normals from the deformation Jacobian, ``supersample``^2 samples per pixel (box
filter), alpha = coverage, transparent background. Depth/flow/validity are exact ray casts through pixel centres
(not anti-aliased).

Cameras (monocular mode): ``train_camera="random"`` (default) gives each training frame t_i = i/(n_train-1) its
own random camera on the sphere of radius ``camera_radius`` (the teleporting-camera protocol of D-NeRF);
``"orbit"`` films them with one smoothly moving camera (azimuth sweeping ``orbit_sweep_deg``, elevation easing
across ``orbit_elevation_deg``: a phone walked around the object; the arc is centred on the video camera). val/test are held-out
cameras at random times: anywhere on the sphere for ``random``, inside the filmed arc and elevation range for
``orbit`` (a phone capture is evaluated on views of what it filmed); the ``video`` split is one fixed camera.
``train_depth=True`` also writes ``train/depth_XXX.npz`` (key ``depth``: float32 [H,W] camera z, +inf background).
Keys added after the first generator (``OPTIONAL_DEFAULTS``) are left out of :meth:`SyntheticConfig.to_dict` at
their defaults, so the default scene's hash, cache folder and files never change.

Public API: :class:`SyntheticConfig`, :func:`generate`, :func:`ensure_scene`, :func:`config_hash`,
:func:`scene_mesh`, :func:`rest_mesh`, :func:`deform_points`, :func:`object_bbox`, :func:`render_view`,
:func:`raycast`, :func:`exact_flow`, :func:`train_cameras`.
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
from .motion_families import MOTIONS, RestMesh, family, twist_params

GENERATOR_VERSION = 1
COMPLETE_MARKER = ".complete"

__all__ = ["SyntheticConfig", "generate", "ensure_scene", "config_hash", "scene_mesh", "rest_mesh",
           "deform_points", "object_bbox", "render_view", "raycast", "exact_flow", "train_cameras", "RestMesh",
           "MOTIONS", "TRAIN_CAMERAS", "OPTIONAL_DEFAULTS", "GENERATOR_VERSION", "COMPLETE_MARKER"]

TRAIN_CAMERAS = ("random", "orbit")
# version of the orbit protocol's camera layout (in the hash of orbit scenes only, so the default scene's hash stays)
# 2: the arc is centred on the video camera and val/test views lie inside the filmed arc
ORBIT_PROTOCOL = 2   # SyntheticConfig.train_camera


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
    # the object and its motion: twist | limb | blob | two_objects | spin (dyngauss/data/motion_families.py);
    # size / segments shape the twisting bar only
    motion: str = "twist"
    # training cameras (monocular mode): random = a random camera per frame (teleporting); orbit = one smoothly
    # moving camera (azimuth sweeping orbit_sweep_deg, elevation easing across orbit_elevation_deg)
    train_camera: str = "random"
    train_depth: bool = False                    # also write train/depth_XXX.npz (exact camera z, +inf background)
    orbit_sweep_deg: float = 150.0
    orbit_elevation_deg: tuple = (15.0, 35.0)    # orbit: elevation at the first and at the last training frame

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
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {self.motion!r}")
        if self.train_camera not in TRAIN_CAMERAS:
            raise ValueError(f"train_camera must be one of {', '.join(TRAIN_CAMERAS)}, got {self.train_camera!r}")
        if self.train_camera != "random" and self.n_cameras:
            raise ValueError(f"train_camera={self.train_camera!r} is a monocular protocol; with n_cameras >= 2 the "
                             "cameras are fixed (use train_camera='random')")
        if not isinstance(self.train_depth, bool):
            raise ValueError(f"train_depth must be a bool, got {self.train_depth!r}")
        if not 0.0 < float(self.orbit_sweep_deg) <= 360.0:
            raise ValueError(f"orbit_sweep_deg must be in (0, 360], got {self.orbit_sweep_deg}")
        if len(self.orbit_elevation_deg) != 2 or not all(-89.0 <= float(e) <= 89.0 for e in self.orbit_elevation_deg):
            raise ValueError(f"orbit_elevation_deg must be two angles in [-89, 89], got {self.orbit_elevation_deg}")
        object.__setattr__(self, "elevation_deg", tuple(float(v) for v in self.elevation_deg))
        object.__setattr__(self, "size", tuple(float(v) for v in self.size))
        object.__setattr__(self, "segments", tuple(int(v) for v in self.segments))
        object.__setattr__(self, "orbit_elevation_deg", tuple(float(v) for v in self.orbit_elevation_deg))

    def to_dict(self) -> dict:
        """Every field (tuples as lists), except the keys of :data:`OPTIONAL_DEFAULTS` at their default value, so
        the default scene's dict, hash and files are those of the generator before the multi-camera mode, the
        motion families and the camera protocols existed."""
        d = {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
        for k, default in OPTIONAL_DEFAULTS.items():
            if getattr(self, k) == default:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


# Keys added after the first generator: left out of to_dict() (and so of the hash and meta.json) at these values.
OPTIONAL_DEFAULTS: dict = {"n_cameras": 0, "motion": "twist", "train_camera": "random", "train_depth": False,
                           "orbit_sweep_deg": 150.0, "orbit_elevation_deg": (15.0, 35.0)}


def config_hash(cfg: SyntheticConfig) -> str:
    extra = {"orbit_protocol": ORBIT_PROTOCOL} if cfg.train_camera == "orbit" else {}
    blob = json.dumps({"generator_version": GENERATOR_VERSION, **extra, **cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ============================================================================================= geometry

def rest_mesh(cfg: SyntheticConfig = SyntheticConfig()) -> RestMesh:
    """The rest (t-independent) mesh of ``cfg.motion``'s family (dyngauss/data/motion_families.py); for the
    twisting bar a tessellated box, each side its own grid (vertices on edges duplicated, identical positions)."""
    return family(cfg.motion).rest_mesh(cfg)


def motion_params(t: float, cfg: SyntheticConfig = SyntheticConfig()) -> dict:
    """The twisting bar's deformation parameters at time t (all smooth in t)."""
    return twist_params(t, cfg)


def deform_points(x: np.ndarray, t: float, cfg: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
    """Rest positions [N,3] -> world positions at time t [N,3] (float64), by ``cfg.motion``'s family."""
    return family(cfg.motion).deform(x, t, cfg)


def _posed_normals(mesh: RestMesh, t: float, cfg: SyntheticConfig) -> np.ndarray:
    """Deformed vertex normals: cross product of the deformed rest tangents (central differences). The tangents
    are the coordinate axis after the normal's largest component, made orthogonal to the normal (for a box side
    that axis itself, exactly), and the normal crossed with it."""
    n = mesh.normals
    a = np.abs(n).argmax(1)
    t1 = np.zeros_like(n)
    t1[np.arange(len(n)), (a + 1) % 3] = 1.0
    t1 = t1 - (t1 * n).sum(1, keepdims=True) * n
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
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

def albedo(rest: np.ndarray, label: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """Procedural albedo [N,3] in (0,1) at rest positions [N,3] with face labels [N] (box sides for the twisting
    bar), by ``cfg.motion``'s family."""
    return family(cfg.motion).albedo(rest, label, cfg)


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


def _orbit_cameras(n: int, cfg: SyntheticConfig) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The moving-video-camera protocol: frame i of n (s = i/(n-1)) is seen from azimuth a0 + dir * sweep * s and
    elevation e0 + (e1 - e0)(1 - cos(pi s))/2 on the sphere of radius camera_radius, looking at the origin (z
    up); dir = +-1 drawn from its own generator (seed, 13), a0 such that the arc is centred on the fixed video
    camera's azimuth. Returns (viewmats, azimuths deg [n], elevations deg [n])."""
    rng = np.random.default_rng([int(cfg.seed), 13])
    rng.uniform(0.0, 360.0)                      # (the arc's start used to be drawn here)
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    # the arc is centred on the fixed video camera, so the flow/track evaluation view lies inside what was filmed
    a0 = cfg.video_azimuth_deg - direction * 0.5 * cfg.orbit_sweep_deg
    s = np.arange(n) / (n - 1)
    az = a0 + direction * cfg.orbit_sweep_deg * s
    e0, e1 = cfg.orbit_elevation_deg
    el = e0 + (e1 - e0) * (0.5 - 0.5 * np.cos(np.pi * s))
    views = [look_at_viewmat(_eye(math.radians(a), math.radians(e), cfg.camera_radius), (0, 0, 0), (0, 0, 1))
             for a, e in zip(az, el)]
    return views, az, el


def _orbit_heldout_cameras(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> list[np.ndarray]:
    """Held-out (val/test) cameras of the orbit protocol: n cameras at uniform random azimuths inside the filmed
    arc and elevations inside ``orbit_elevation_deg``, looking at the origin. A phone capture is evaluated on views
    of what it filmed (as the iPhone dataset's fixed test cameras): a view of the never-filmed side would measure
    hallucination, not reconstruction."""
    _, az, el = _orbit_cameras(max(cfg.n_train, 2), cfg)
    lo_a, hi_a = float(az.min()), float(az.max())
    lo_e, hi_e = sorted(cfg.orbit_elevation_deg)
    out = []
    for _ in range(n):
        a, e = rng.uniform(lo_a, hi_a), rng.uniform(lo_e, hi_e)
        out.append(look_at_viewmat(_eye(math.radians(a), math.radians(e), cfg.camera_radius), (0, 0, 0), (0, 0, 1)))
    return out


def train_cameras(cfg: SyntheticConfig, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """OpenCV world-to-camera matrices [4,4] of the n_train training frames of the monocular scene, by
    ``cfg.train_camera``: ``random`` draws one camera per frame from `rng` (default: a fresh generator of
    cfg.seed, as the scene writer does); ``orbit`` draws the same number from `rng` (so val/test cameras and times
    are the same under both protocols) and returns the moving camera of :func:`_orbit_cameras`."""
    rng = np.random.default_rng(cfg.seed) if rng is None else rng
    views = _random_cameras(rng, cfg.n_train, cfg)
    return _orbit_cameras(cfg.n_train, cfg)[0] if cfg.train_camera == "orbit" else views


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


def _train_depth(root: Path, times: np.ndarray, viewmats: list[np.ndarray], cfg: SyntheticConfig,
                 mesh: RestMesh) -> None:
    """train/depth_XXX.npz key ``depth``: float32 [H,W] camera z of the exact ray cast through pixel centres, +inf
    on background (the video split's convention)."""
    W = H = cfg.resolution
    K = _camera_K(cfg)
    q = _pixel_centres(W, H, 1)
    for i, (t, V) in enumerate(zip(times, viewmats)):
        _, _, depth = raycast(deform_points(mesh.verts, t, cfg), mesh.faces, V, K, W, H, q)
        save_npz(root / "train" / f"depth_{i:03d}.npz", depth=depth.reshape(H, W).astype(np.float32))


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
    splits = {"train": (t_train, train_cameras(cfg, rng))}
    for name, n in (("val", cfg.n_val), ("test", cfg.n_test)):
        if n > 0:
            ts = _random_times(rng, n, t_train)
            views = _random_cameras(rng, n, cfg)         # drawn either way: the splits' times stay the same
            if cfg.train_camera == "orbit":
                views = _orbit_heldout_cameras(np.random.default_rng([int(cfg.seed), 17, len(splits)]), n, cfg)
            splits[name] = (ts, views)
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
    if cfg.train_depth:
        _train_depth(root, *splits["train"], cfg, mesh)

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
    fam = family(cfg.motion).describe(cfg)
    meta = {
        "scene": fam["scene"],
        "description": fam["description"],
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
        "motion": fam["motion"],
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
    if cfg.motion != OPTIONAL_DEFAULTS["motion"]:
        meta["family"] = cfg.motion
    if cfg.train_camera == "orbit":
        _, az, el = _orbit_cameras(n_train, cfg)
        meta["train_camera"] = {
            "protocol": "orbit",
            "description": (f"one moving camera: frame i of {n_train} at azimuth a0 + dir * {cfg.orbit_sweep_deg:g} "
                            "* s, elevation e0 + (e1 - e0)(1 - cos(pi s))/2, s = i/(n_train-1), radius "
                            "camera_radius, looking at the origin; val/test: random held-out cameras"),
            "azimuth_deg_first_last": [round(float(az[0]), 6), round(float(az[-1]), 6)],
            "elevation_deg_first_last": [round(float(el[0]), 6), round(float(el[-1]), 6)]}
    if cfg.train_depth:
        meta["conventions"]["train_depth"] = ("train/depth_XXX.npz key 'depth': float32 [H,W] camera z-depth of "
                                              "training frame XXX, +inf on background; exact ray cast of the mesh "
                                              "through pixel centres (as video/depth_XXX.npz)")
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

"""Motion families of the built-in synthetic scene (dyngauss/data/synthetic.py): for each family the rest shape,
the deformation x(rest, t), the procedural texture and the description written to ``meta.json``.

``SyntheticConfig.motion`` picks one of :data:`FAMILIES`:

* ``twist`` -- the original scene: a tessellated box that twists about its long axis, bends, rotates about world z
  and translates (smooth non-rigid). Its code is unchanged, so its files are byte-identical to the generator's
  before the families existed.
* ``limb`` -- an articulated limb: a capsule of radius 0.16 and length 1.7 along z cut into three bones of equal
  length. The middle bone is the root (rotation about z and a small tilt, plus a translation); the outer bones
  hang on hinges at z = -/+0.283 (axes x and (cos 60, sin 60, 0)) whose angles are smooth in t (<= 50 deg).
  Piecewise rigid: a point further than 0.12 (``LIMB_BAND``) from a joint moves exactly with its bone; inside
  the band the hinge angle is blended with a smoothstep of z (rotational blending, so the tube neither
  collapses nor folds: band x angle x radius is chosen so that the inner side's stretch stays positive).
* ``blob`` -- a sphere of radius 0.6 whose radius carries a travelling wave (12%, ``sin(2 pi (1.25 u - t))``
  with u the cosine to a tilted axis) and whose latitudes about a second tilted axis rotate by an angle
  proportional to their height (a tangential swirl, up to +-70 deg), plus a small translation: smooth, with no
  rigid part.
* ``two_objects`` -- two separate boxes: box A (0.34 x 0.34 x 0.6, centred at x = -0.42) spins about its own
  long axis (0 -> 200 deg, eased), box B (0.3 cube, centred at x = +0.42) translates without turning along an
  arc in the y-z plane (a pendulum path, +-75 deg of radius 0.3).
* ``spin`` -- one rigid box 0.8 x 0.48 x 0.28 that turns by 240 deg about a tilted axis through its centre
  (constant rate) while translating.

Every family's amplitudes (angles, displacements, translations) are scaled by ``cfg.motion_scale``. The rest
shape is the world at rest (object coordinates); shapes are centred near the origin and stay within a radius of
about 0.85 at all times, like the twisting bar, so the default cameras frame them.

Textures (all evaluated in rest coordinates, so they move with the surface): a colour per face label (box side,
bone, octant), blended with a hue ramp along the object's long axis, times a 3D checkerboard of
``cfg.checker_size`` cells and thin dark rings across the long axis (``_procedural_albedo``). Rest normals are
exact (box sides, capsule, sphere); posed normals come from the deformation's Jacobian (synthetic.py).

Public API: :class:`RestMesh`, :class:`MotionFamily`, :data:`FAMILIES`, :data:`MOTIONS`, :func:`family`,
:func:`box_mesh`, :func:`revolution_mesh`, :func:`rotate`, and per family ``<name>_rest_mesh``,
``<name>_deform``, ``<name>_albedo``, ``<name>_describe``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["RestMesh", "MotionFamily", "FAMILIES", "MOTIONS", "family", "box_mesh", "revolution_mesh", "rotate",
           "twist_params", "limb_params", "LIMB_RADIUS", "LIMB_HALF_LENGTH", "LIMB_JOINTS", "LIMB_BAND",
           "BLOB_RADIUS", "TWO_OBJECTS_CENTRES", "SPIN_AXIS"]


@dataclass
class RestMesh:
    verts: np.ndarray        # [V,3] float64 rest positions (object coordinates = world at rest)
    faces: np.ndarray        # [F,3] int64, counter-clockwise seen from outside
    face_label: np.ndarray   # [F] int64: the family's part id (box side 0..5 = +x,-x,+y,-y,+z,-z; bone; octant)
    vert_label: np.ndarray   # [V] int64: part id of each vertex
    normals: np.ndarray      # [V,3] rest outward unit normal per vertex


@dataclass(frozen=True)
class MotionFamily:
    """One family: `rest_mesh(cfg)` -> RestMesh, `deform(x [N,3], t, cfg)` -> [N,3] world positions (float64),
    `albedo(rest [N,3], label [N], cfg)` -> [N,3] in (0,1), `describe(cfg)` -> dict with ``scene``,
    ``description`` and ``motion`` (written to meta.json)."""

    name: str
    rest_mesh: Callable[[Any], RestMesh]
    deform: Callable[[np.ndarray, float, Any], np.ndarray]
    albedo: Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
    describe: Callable[[Any], dict]


# ============================================================================================= shared helpers

def rotate(x: np.ndarray, axis, angle, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Rotate points x [N,3] by `angle` (radians; a scalar or [N] per point) about the unit `axis` [3] through
    `centre` [3] (Rodrigues' formula, right-handed)."""
    k = np.asarray(axis, np.float64)
    c0 = np.asarray(centre, np.float64)
    p = np.asarray(x, np.float64) - c0
    ang = np.asarray(angle, np.float64).reshape(-1, 1) if np.ndim(angle) else float(angle)
    c, s = np.cos(ang), np.sin(ang)
    return c0 + p * c + np.cross(k, p) * s + np.outer(p @ k, k) * (1.0 - c)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _orient(verts: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Faces reordered counter-clockwise about their vertices' mean outward normal."""
    p0, p1, p2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = normals[faces].sum(1)
    flip = (np.cross(p1 - p0, p2 - p0) * n).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def box_mesh(size, segments, centre=(0.0, 0.0, 0.0), label_offset: int = 0) -> RestMesh:
    """Tessellated box of extents `size` (x, y, z) centred at `centre`, each side its own grid of
    `segments` (x, y, z) cells (vertices on edges duplicated, at identical positions); face labels
    ``label_offset + side`` with side 0..5 = +x,-x,+y,-y,+z,-z."""
    hx, hy, hz = (0.5 * s for s in size)
    half = np.array([hx, hy, hz])
    seg = segments
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
        flab.append(np.full(len(tri), side + label_offset))
        vlab.append(np.full(len(v), side + label_offset))
        norms.append(np.tile(n, (len(v), 1)))
        nv += len(v)
    verts = np.concatenate(verts)
    if any(float(c) != 0.0 for c in centre):
        verts = verts + np.asarray(centre, np.float64)
    return RestMesh(verts, np.concatenate(faces).astype(np.int64),
                    np.concatenate(flab).astype(np.int64), np.concatenate(vlab).astype(np.int64),
                    np.concatenate(norms))


def revolution_mesh(z: np.ndarray, rho: np.ndarray, n_rho: np.ndarray, n_z: np.ndarray, n_around: int,
                    label_of: Callable[[np.ndarray], np.ndarray]) -> RestMesh:
    """Closed surface of revolution about the z axis from a profile going from the bottom pole to the top pole:
    z [M], rho [M] (rho[0] = rho[-1] = 0), the profile's outward unit normal (n_rho, n_z) [M]; `n_around`
    vertices per ring (vertices shared across the seam, one vertex per pole). `label_of(points [N,3])` -> [N]
    labels the vertices and the faces (at their centroids)."""
    m = len(z)
    ang = 2.0 * math.pi * np.arange(n_around) / n_around
    ca, sa = np.cos(ang), np.sin(ang)
    ring_v = np.stack([rho[1:-1, None] * ca, rho[1:-1, None] * sa, np.broadcast_to(z[1:-1, None],
                                                                                      (m - 2, n_around))], -1)
    ring_n = np.stack([n_rho[1:-1, None] * ca, n_rho[1:-1, None] * sa,
                       np.broadcast_to(n_z[1:-1, None], (m - 2, n_around))], -1)
    verts = np.concatenate([[[0.0, 0.0, z[0]]], ring_v.reshape(-1, 3), [[0.0, 0.0, z[-1]]]])
    normals = np.concatenate([[[0.0, 0.0, n_z[0]]], ring_n.reshape(-1, 3), [[0.0, 0.0, n_z[-1]]]])
    top = len(verts) - 1
    idx = 1 + np.arange((m - 2) * n_around).reshape(m - 2, n_around)
    nxt = np.roll(idx, -1, axis=1)
    bottom_fan = np.stack([np.zeros(n_around, np.int64), nxt[0], idx[0]], -1)
    top_fan = np.stack([np.full(n_around, top), idx[-1], nxt[-1]], -1)
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    quads = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    faces = np.concatenate([bottom_fan, quads, top_fan]).astype(np.int64)
    faces = _orient(verts, faces, normals)
    normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    return RestMesh(verts, faces, label_of(verts[faces].mean(1)).astype(np.int64),
                    label_of(verts).astype(np.int64), normals)


def _concat(*meshes: RestMesh) -> RestMesh:
    off = np.cumsum([0] + [len(m.verts) for m in meshes[:-1]])
    return RestMesh(np.concatenate([m.verts for m in meshes]),
                    np.concatenate([m.faces + o for m, o in zip(meshes, off)]),
                    np.concatenate([m.face_label for m in meshes]), np.concatenate([m.vert_label for m in meshes]),
                    np.concatenate([m.normals for m in meshes]))


def _hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None] * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _procedural_albedo(rest: np.ndarray, label: np.ndarray, palette: np.ndarray, axis, lo: float, hi: float,
                       checker_size: float, ring_period: float = 0.4) -> np.ndarray:
    """Albedo [N,3] in (0,1): palette colour of the label blended with a hue ramp along the unit `axis` (rest
    coordinate from `lo` to `hi`), times a 3D checkerboard of `checker_size` cells, with dark rings every
    `ring_period` along the axis, half a period off `lo` (0 = none)."""
    s = rest @ _unit(axis)
    zn = np.clip((s - lo) / (hi - lo), 0.0, 1.0)
    base = 0.55 * palette[label % len(palette)] + 0.45 * _hsv_to_rgb(0.7 * zn, 0.8, 0.95)
    cell = np.floor(rest / checker_size + 1e-9).astype(np.int64)
    checker = (cell.sum(1) % 2).astype(np.float64)
    col = base * (0.55 + 0.45 * checker)[:, None]
    if ring_period > 0:
        ring = np.abs(((s - lo) / ring_period) % 1.0 - 0.5) * ring_period < 0.015   # at lo + (k + 1/2) period
        col[ring] *= 0.2
    return np.clip(col, 0.03, 0.92)


_SIDE_COLORS = np.array([[0.90, 0.30, 0.15],   # +x orange-red
                         [0.15, 0.35, 0.90],   # -x blue
                         [0.20, 0.80, 0.25],   # +y green
                         [0.65, 0.20, 0.80],   # -y purple
                         [0.95, 0.85, 0.15],   # +z yellow
                         [0.10, 0.80, 0.85]])  # -z cyan


def _fmt(v) -> list:
    return [round(float(x), 6) for x in np.ravel(v)]


# ============================================================================================= twist (the original)

def twist_rest_mesh(cfg) -> RestMesh:
    """The twisting bar's tessellated box of ``cfg.size`` / ``cfg.segments``, centred at the origin."""
    return box_mesh(cfg.size, cfg.segments)


def twist_params(t: float, cfg) -> dict:
    """The twisting bar's deformation parameters at time t (all smooth in t)."""
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


def twist_deform(x: np.ndarray, t: float, cfg) -> np.ndarray:
    """Twist about z -> constant-curvature bend in the local x-z plane -> rotation about world z -> translation."""
    x = np.asarray(x, dtype=np.float64)
    p = twist_params(t, cfg)
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


def twist_albedo(rest: np.ndarray, side: np.ndarray, cfg) -> np.ndarray:
    """Per-side colour + ramp along z, a checkerboard in each side's plane, dark rings every 0.4 along z."""
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


def twist_describe(cfg) -> dict:
    return {
        "scene": "synthetic_bar",
        "description": (f"Procedurally textured box {cfg.size[0]} x {cfg.size[1]} x {cfg.size[2]} along z; twist "
                        "about z (-90..110 deg over its length), bend in the local x-z plane (+-65 deg, "
                        "sinusoidal), rotation about world z (+-20 deg) and a small translation; rendered by "
                        "the dyngauss numpy z-buffer mesh rasterizer (not Gaussian splatting)."),
        "motion": {"twist_deg": "-90 + 200*(1-cos(pi t))/2, angle(z) = twist * z / L",
                   "bend_deg": "65*sin(2 pi t), constant curvature bend/L in the local x-z plane",
                   "rot_z_deg": "20*sin(pi(1.5t - 0.25))",
                   "translation": "(0.10 sin 2pi t, 0.08(sin(pi t + 0.5) - sin 0.5), 0.06 sin 1.5pi t)",
                   "order": "twist -> bend -> rotate z -> translate; all scaled by motion_scale"},
    }


# ============================================================================================= limb

LIMB_RADIUS = 0.16
LIMB_HALF_LENGTH = 0.85                       # tip to tip 1.7 along z, hemispherical caps included
LIMB_JOINTS = (-0.85 / 3.0, 0.85 / 3.0)       # hinge centres on the z axis: three bones of equal length
LIMB_BAND = 0.12                              # half-width of the blending band at each joint
_LIMB_AXES = (np.array([1.0, 0.0, 0.0]), np.array([math.cos(math.pi / 3), math.sin(math.pi / 3), 0.0]))
_LIMB_COLORS = np.array([[0.90, 0.35, 0.15], [0.20, 0.55, 0.90], [0.30, 0.80, 0.30]])


def _limb_label(p: np.ndarray) -> np.ndarray:
    """Bone of rest points [N,3]: 0 below the first joint, 1 between, 2 above the second."""
    return (p[:, 2] > LIMB_JOINTS[0]).astype(np.int64) + (p[:, 2] > LIMB_JOINTS[1])


def limb_rest_mesh(cfg) -> RestMesh:
    """Capsule along z: cylinder of radius LIMB_RADIUS between z = +-(LIMB_HALF_LENGTH - LIMB_RADIUS), closed by
    hemispheres; 46 rings on the cylinder (<= 0.03 apart), 8 per cap, 28 vertices per ring."""
    r, hc = LIMB_RADIUS, LIMB_HALF_LENGTH - LIMB_RADIUS
    cap = np.linspace(-0.5 * math.pi, 0.0, 9)
    zc = np.linspace(-hc, hc, 47)
    z = np.concatenate([-hc + r * np.sin(cap), zc[1:-1], hc + r * np.sin(-cap[::-1])])
    rho = np.concatenate([r * np.cos(cap), np.full(45, r), r * np.cos(-cap[::-1])])
    n_rho = np.concatenate([np.cos(cap), np.ones(45), np.cos(-cap[::-1])])
    n_z = np.concatenate([np.sin(cap), np.zeros(45), np.sin(-cap[::-1])])
    rho[0] = rho[-1] = 0.0
    return revolution_mesh(z, rho, n_rho, n_z, 28, _limb_label)


def limb_params(t: float, cfg) -> dict:
    """Limb pose at time t: hinge angles (radians), root rotation (yaw about z after a tilt about y) and
    translation."""
    s = cfg.motion_scale
    t = float(t)
    return {"hinge": (s * math.radians(50.0) * math.sin(1.5 * math.pi * t),
                      s * math.radians(50.0) * math.sin(2.0 * math.pi * t + 0.5)),
            "yaw": s * math.radians(35.0) * math.sin(math.pi * (t - 0.2)),
            "tilt": s * math.radians(15.0) * math.sin(2.0 * math.pi * t),
            "trans": s * np.array([0.08 * math.sin(2.0 * math.pi * t),
                                   0.06 * (math.sin(math.pi * t + 0.5) - math.sin(0.5)),
                                   0.05 * math.sin(1.5 * math.pi * t)])}


def limb_weights(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend weights [N] of the two hinges at rest heights z: 1 on the bone the hinge moves (bone 0 for the
    first, bone 2 for the second), 0 on the root bone, a smoothstep across the band."""
    w0 = _smoothstep((LIMB_JOINTS[0] + LIMB_BAND - z) / (2.0 * LIMB_BAND))
    w2 = _smoothstep((z - LIMB_JOINTS[1] + LIMB_BAND) / (2.0 * LIMB_BAND))
    return w0, w2


def limb_deform(x: np.ndarray, t: float, cfg) -> np.ndarray:
    """Outer bones turn about their hinges by weight x hinge angle (the weights are 0 or 1 outside the bands),
    then the whole limb follows the root: tilt about y, yaw about z, translation."""
    x = np.asarray(x, np.float64)
    p = limb_params(t, cfg)
    w0, w2 = limb_weights(x[:, 2])
    y = x
    for w, ang, axis, zj in ((w0, p["hinge"][0], _LIMB_AXES[0], LIMB_JOINTS[0]),
                             (w2, p["hinge"][1], _LIMB_AXES[1], LIMB_JOINTS[1])):
        y = rotate(y, axis, w * ang, (0.0, 0.0, zj))
    y = rotate(y, (0.0, 1.0, 0.0), p["tilt"])
    y = rotate(y, (0.0, 0.0, 1.0), p["yaw"])
    return y + p["trans"]


def limb_albedo(rest: np.ndarray, label: np.ndarray, cfg) -> np.ndarray:
    # rings across the bones at z = 0, +-0.2, +-0.4, +-0.6 (none on the caps)
    return _procedural_albedo(rest, label, _LIMB_COLORS, (0, 0, 1), -0.7, 0.7, cfg.checker_size, 0.2)


def limb_describe(cfg) -> dict:
    return {
        "scene": "synthetic_limb",
        "description": (f"Articulated limb: a capsule of radius {LIMB_RADIUS} and length {2 * LIMB_HALF_LENGTH} "
                        "along z cut into three bones of equal length; the middle bone is the root, the outer "
                        "bones turn on hinges; piecewise rigid (the hinge angle is blended by a smoothstep only "
                        f"within +-{LIMB_BAND} of each joint); rendered by the dyngauss numpy z-buffer mesh "
                        "rasterizer (not Gaussian splatting)."),
        "motion": {"joints_z": _fmt(LIMB_JOINTS), "band_half_width": LIMB_BAND,
                   "hinge_axes": [_fmt(a) for a in _LIMB_AXES],
                   "hinge_deg": ["50*sin(1.5 pi t) (bone 0, z < joint 0)",
                                 "50*sin(2 pi t + 0.5) (bone 2, z > joint 1)"],
                   "weights": "smoothstep across [joint - band, joint + band]; exactly 0 or 1 outside",
                   "root": "tilt about y 15*sin(2 pi t) deg, then yaw about z 35*sin(pi(t - 0.2)) deg",
                   "translation": "(0.08 sin 2pi t, 0.06(sin(pi t + 0.5) - sin 0.5), 0.05 sin 1.5pi t)",
                   "order": "hinges (about their joint centres) -> tilt -> yaw -> translate; all scaled by "
                            "motion_scale"},
    }


# ============================================================================================= blob

BLOB_RADIUS = 0.6
_BLOB_WAVE_AXIS = _unit([0.25, -0.3, 1.0])
_BLOB_SWIRL_AXIS = _unit([-0.2, 0.15, 1.0])
_BLOB_COLORS = np.array([[0.90, 0.30, 0.15], [0.15, 0.35, 0.90], [0.20, 0.80, 0.25], [0.65, 0.20, 0.80],
                         [0.95, 0.85, 0.15], [0.10, 0.80, 0.85], [0.95, 0.45, 0.70], [0.55, 0.40, 0.20]])


def _octant(p: np.ndarray) -> np.ndarray:
    return (p[:, 0] > 0).astype(np.int64) + 2 * (p[:, 1] > 0) + 4 * (p[:, 2] > 0)


def blob_rest_mesh(cfg) -> RestMesh:
    """UV sphere of radius BLOB_RADIUS: 28 latitude bands, 48 vertices per ring; labels = octants."""
    phi = np.linspace(-0.5 * math.pi, 0.5 * math.pi, 29)
    z, rho = BLOB_RADIUS * np.sin(phi), BLOB_RADIUS * np.cos(phi)
    rho[0] = rho[-1] = 0.0
    return revolution_mesh(z, rho, np.cos(phi), np.sin(phi), 48, _octant)


def blob_params(t: float, cfg) -> dict:
    s = cfg.motion_scale
    t = float(t)
    return {"amplitude": s * 0.12, "phase": 2.0 * math.pi * t,
            "swirl": s * math.radians(70.0) * math.sin(1.5 * math.pi * t),
            "trans": s * np.array([0.06 * math.sin(2.0 * math.pi * t), -0.05 * math.sin(math.pi * t),
                                   0.05 * math.sin(1.5 * math.pi * t)])}


def blob_deform(x: np.ndarray, t: float, cfg) -> np.ndarray:
    """Radial travelling wave x -> x (1 + A sin(2 pi (1.25 u - t))) with u = cos(angle to the wave axis), then a
    swirl: rotation about the swirl axis by swirl(t) * v (v = cos(angle to the swirl axis)), then translation.
    Both act on the direction of x, so any point but the origin may be deformed."""
    x = np.asarray(x, np.float64)
    p = blob_params(t, cfg)
    r = np.linalg.norm(x, axis=1)
    d = x / np.where(r > 0, r, 1.0)[:, None]
    u = d @ _BLOB_WAVE_AXIS
    y = x * (1.0 + p["amplitude"] * np.sin(2.0 * math.pi * 1.25 * u - p["phase"]))[:, None]
    y = rotate(y, _BLOB_SWIRL_AXIS, p["swirl"] * (d @ _BLOB_SWIRL_AXIS))
    return y + p["trans"]


def blob_albedo(rest: np.ndarray, label: np.ndarray, cfg) -> np.ndarray:
    return _procedural_albedo(rest, label, _BLOB_COLORS, _BLOB_SWIRL_AXIS, -BLOB_RADIUS, BLOB_RADIUS,
                              cfg.checker_size, 0.3)


def blob_describe(cfg) -> dict:
    return {
        "scene": "synthetic_blob",
        "description": (f"Sphere of radius {BLOB_RADIUS} with a travelling radial wave and a tangential swirl "
                        "(latitudes about a tilted axis turn in proportion to their height): smooth non-rigid "
                        "motion, most of it inside the silhouette; rendered by the dyngauss numpy z-buffer mesh "
                        "rasterizer (not Gaussian splatting)."),
        "motion": {"wave": "r -> r (1 + 0.12 sin(2 pi (1.25 u - t))), u = rest direction . wave_axis",
                   "wave_axis": _fmt(_BLOB_WAVE_AXIS),
                   "swirl_deg": "70 sin(1.5 pi t) * v about swirl_axis, v = rest direction . swirl_axis",
                   "swirl_axis": _fmt(_BLOB_SWIRL_AXIS),
                   "translation": "(0.06 sin 2pi t, -0.05 sin pi t, 0.05 sin 1.5pi t)",
                   "order": "wave -> swirl -> translate; all scaled by motion_scale"},
    }


# ============================================================================================= two objects

TWO_OBJECTS_CENTRES = (np.array([-0.42, 0.0, 0.0]), np.array([0.42, 0.0, 0.0]))
_TWO_SIZES = ((0.34, 0.34, 0.6), (0.3, 0.3, 0.3))
_TWO_COLORS = np.concatenate([_SIDE_COLORS, 0.35 + 0.6 * _SIDE_COLORS[[3, 5, 0, 4, 1, 2]]])


def two_objects_rest_mesh(cfg) -> RestMesh:
    """Box A (labels 0..5, its sides) at x < 0 and box B (labels 6..11) at x > 0."""
    return _concat(box_mesh(_TWO_SIZES[0], (6, 6, 10), TWO_OBJECTS_CENTRES[0], 0),
                   box_mesh(_TWO_SIZES[1], (5, 5, 5), TWO_OBJECTS_CENTRES[1], 6))


def two_objects_params(t: float, cfg) -> dict:
    s = cfg.motion_scale
    t = float(t)
    g = s * math.radians(75.0) * math.sin(2.0 * math.pi * t)
    return {"spin": s * math.radians(200.0) * (0.5 - 0.5 * math.cos(math.pi * t)),
            "swing": g, "offset_b": 0.3 * np.array([0.0, math.sin(g), 1.0 - math.cos(g)])}


def two_objects_deform(x: np.ndarray, t: float, cfg) -> np.ndarray:
    """Rest points with x < 0 belong to box A (spin about its own z axis through its centre), the others to box
    B (pure translation along an arc)."""
    x = np.asarray(x, np.float64)
    p = two_objects_params(t, cfg)
    a = x[:, 0] < 0.0
    y = x + p["offset_b"]
    y[a] = rotate(x[a], (0.0, 0.0, 1.0), p["spin"], TWO_OBJECTS_CENTRES[0])
    return y


def two_objects_albedo(rest: np.ndarray, label: np.ndarray, cfg) -> np.ndarray:
    return _procedural_albedo(rest, label, _TWO_COLORS, (0, 0, 1), -0.3, 0.3, cfg.checker_size, 0.2)


def two_objects_describe(cfg) -> dict:
    return {
        "scene": "synthetic_two_objects",
        "description": (f"Two separate textured boxes: A {_TWO_SIZES[0]} at {_fmt(TWO_OBJECTS_CENTRES[0])} spins "
                        f"about its own z axis; B {_TWO_SIZES[1]} at {_fmt(TWO_OBJECTS_CENTRES[1])} translates "
                        "(without turning) along an arc; rendered by the dyngauss numpy z-buffer mesh rasterizer "
                        "(not Gaussian splatting)."),
        "motion": {"a_spin_deg": "200 (1 - cos(pi t))/2 about z through A's centre",
                   "b_translation": "0.3 (0, sin g, 1 - cos g), g = 75 sin(2 pi t) deg",
                   "parts": "rest x < 0: A (face labels 0-5), x > 0: B (face labels 6-11)",
                   "scale": "angles scaled by motion_scale"},
    }


# ============================================================================================= spin

SPIN_AXIS = _unit([0.35, -0.25, 1.0])
_SPIN_SIZE = (0.8, 0.48, 0.28)


def spin_rest_mesh(cfg) -> RestMesh:
    return box_mesh(_SPIN_SIZE, (12, 8, 5))


def spin_params(t: float, cfg) -> dict:
    s = cfg.motion_scale
    t = float(t)
    return {"angle": s * math.radians(240.0) * t,
            "trans": s * np.array([0.12 * math.sin(2.0 * math.pi * t), 0.10 * math.sin(math.pi * t),
                                   -0.06 * math.sin(1.5 * math.pi * t)])}


def spin_deform(x: np.ndarray, t: float, cfg) -> np.ndarray:
    """Rigid: rotation by 240 t deg about SPIN_AXIS through the origin, then translation."""
    p = spin_params(t, cfg)
    return rotate(np.asarray(x, np.float64), SPIN_AXIS, p["angle"]) + p["trans"]


def spin_albedo(rest: np.ndarray, label: np.ndarray, cfg) -> np.ndarray:
    return _procedural_albedo(rest, label, _SIDE_COLORS, (1, 0, 0), -0.4, 0.4, cfg.checker_size, 0.2)


def spin_describe(cfg) -> dict:
    return {
        "scene": "synthetic_spin",
        "description": (f"Rigid textured box {_SPIN_SIZE[0]} x {_SPIN_SIZE[1]} x {_SPIN_SIZE[2]} turning by 240 "
                        "deg about a tilted axis while translating; rendered by the dyngauss numpy z-buffer mesh "
                        "rasterizer (not Gaussian splatting)."),
        "motion": {"rotation_deg": "240 t about axis through the origin", "axis": _fmt(SPIN_AXIS),
                   "translation": "(0.12 sin 2pi t, 0.10 sin pi t, -0.06 sin 1.5pi t)",
                   "order": "rotate -> translate; all scaled by motion_scale"},
    }


# ============================================================================================= registry

FAMILIES: dict[str, MotionFamily] = {
    name: MotionFamily(name, globals()[f"{name}_rest_mesh"], globals()[f"{name}_deform"],
                       globals()[f"{name}_albedo"], globals()[f"{name}_describe"])
    for name in ("twist", "limb", "blob", "two_objects", "spin")}
MOTIONS: tuple[str, ...] = tuple(FAMILIES)


def family(name: str) -> MotionFamily:
    """The family called `name`; ValueError listing the choices otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown motion family {name!r}; choose one of {', '.join(MOTIONS)}") from None

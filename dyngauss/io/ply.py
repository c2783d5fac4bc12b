"""PLY reading and writing: 3D Gaussian Splatting layout, coloured point clouds, line sets (node graphs).

The Gaussian layout is the one common 3DGS viewers read (DESIGN.md):

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3(K-1)-1} opacity scale_0 scale_1 scale_2
    rot_0 rot_1 rot_2 rot_3

all float32, binary little-endian; opacity is a logit, scales are logs, rot is a wxyz quaternion, and the
higher-order SH coefficients ``f_rest_*`` are channel-major: the K-1 red coefficients, then green, then blue
(``sh[:, 1:, :].transpose(1, 2).reshape(N, -1)`` for ``sh`` [N,K,3]).

This module needs only numpy (no torch, no open3d) so that the viewer can use it without importing torch;
torch tensors are accepted anywhere an array is.

Every writer is atomic: it writes a temporary file next to the target and ``os.replace``\\ s it, so a reader
never sees a half-written file. Readers raise :class:`PlyError` (a ``ValueError``) with a message that names
the file and what is wrong for anything malformed, truncated or missing a required property.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write_bytes

# SH band-0 constant (same value as dyngauss.geometry.sh.C0; repeated so this module does not import torch).
SH_C0 = 0.28209479177387814

_MAX_HEADER_BYTES = 1 << 20

# PLY scalar type names -> numpy type codes (without byte order)
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}


class PlyError(ValueError):
    """A PLY file is malformed, truncated, or lacks the properties the caller needs."""


# ---------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------
def _np(x, dtype=None) -> np.ndarray:
    """numpy view of an array-like or torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    return a.astype(dtype, copy=False) if dtype is not None else a


def gaussian_property_names(num_sh_bases: int) -> list[str]:
    """Vertex property names of the 3DGS layout for K = num_sh_bases SH coefficients per channel."""
    if num_sh_bases < 1:
        raise ValueError(f"need at least 1 SH coefficient, got {num_sh_bases}")
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * (num_sh_bases - 1))]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def sh_degree_from_bases(k: int) -> int:
    d = math.isqrt(k) - 1
    if (d + 1) ** 2 != k:
        raise ValueError(f"{k} SH coefficients per channel is not (degree+1)^2")
    return d


def dc_to_rgb(f_dc: np.ndarray) -> np.ndarray:
    """Base colour in [0,1] from the SH DC coefficients [...,3] (0.5 + C0 * dc, clamped)."""
    return np.clip(0.5 + SH_C0 * np.asarray(f_dc, dtype=np.float32), 0.0, 1.0)


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _header(elements: Sequence[tuple[str, int, Sequence[tuple[str, str]]]], comments: Sequence[str] = ()) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    for name, count, props in elements:
        lines.append(f"element {name} {int(count)}")
        lines += [f"property {t} {p}" for p, t in props]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


# ---------------------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------------------
def gaussians_to_array(means, quats, log_scales, opacity_logits, sh) -> np.ndarray:
    """The [N, P] float32 table of the 3DGS layout (columns in :func:`gaussian_property_names` order)."""
    means, quats, log_scales = _np(means, np.float32), _np(quats, np.float32), _np(log_scales, np.float32)
    opacity_logits, sh = _np(opacity_logits, np.float32), _np(sh, np.float32)
    n = means.shape[0] if means.ndim == 2 else -1
    for name, a, shp in (("means", means, (n, 3)), ("quats", quats, (n, 4)), ("log_scales", log_scales, (n, 3))):
        if a.ndim != 2 or a.shape != shp:
            raise ValueError(f"{name} must be [N,{shp[1]}] with N={n}, got {list(a.shape)}")
    opacity_logits = opacity_logits.reshape(-1) if opacity_logits.shape in ((n,), (n, 1)) else opacity_logits
    if opacity_logits.shape != (n,):
        raise ValueError(f"opacity_logits must be [N] with N={n}, got {list(opacity_logits.shape)}")
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must be [N,K,3] with N={n}, got {list(sh.shape)}")
    sh_degree_from_bases(sh.shape[1])  # validates K
    k = sh.shape[1]
    table = np.empty((n, 6 + 3 + 3 * (k - 1) + 1 + 3 + 4), np.float32)
    table[:, 0:3] = means
    table[:, 3:6] = 0.0
    table[:, 6:9] = sh[:, 0, :]
    c = 9
    if k > 1:  # channel-major: all R coefficients, then G, then B
        table[:, c:c + 3 * (k - 1)] = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)
        c += 3 * (k - 1)
    table[:, c] = opacity_logits
    table[:, c + 1:c + 4] = log_scales
    table[:, c + 4:c + 8] = quats
    return table


def write_gaussians_ply(path: str | os.PathLike, means, quats, log_scales, opacity_logits, sh, *,
                        comments: Sequence[str] = (), fsync: bool = True) -> Path:
    """Write N Gaussians in the 3DGS PLY layout (binary little-endian, atomic).

    means [N,3], quats [N,4] wxyz, log_scales [N,3], opacity_logits [N], sh [N,K,3] (K = (d+1)^2).
    """
    table = gaussians_to_array(means, quats, log_scales, opacity_logits, sh)
    props = [(p, "float") for p in gaussian_property_names(_np(sh).shape[1])]
    head = _header([("vertex", table.shape[0], props)], comments)
    return atomic_write_bytes(path, [head, np.ascontiguousarray(table, "<f4").tobytes()], fsync=fsync)


def write_points_ply(path: str | os.PathLike, xyz, rgb_uint8, normals=None, *, comments: Sequence[str] = (),
                     fsync: bool = True) -> Path:
    """Coloured point cloud: x y z (float) red green blue (uchar) [nx ny nz (float)], binary little-endian,
    atomic; readable by ``open3d.io.read_point_cloud``."""
    xyz = _np(xyz, np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be [N,3], got {list(xyz.shape)}")
    n = xyz.shape[0]
    rgb = _np(rgb_uint8)
    if rgb.shape != (n, 3):
        raise ValueError(f"rgb must be [{n},3], got {list(rgb.shape)}")
    if rgb.dtype != np.uint8:
        if np.issubdtype(rgb.dtype, np.floating):
            raise ValueError("rgb must be uint8 in 0..255 (use rgb_to_uint8 for floats in [0,1])")
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if normals is not None:
        normals = _np(normals, np.float32)
        if normals.shape != (n, 3):
            raise ValueError(f"normals must be [{n},3], got {list(normals.shape)}")
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    rec = np.empty(n, dtype=fields)
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    if normals is not None:
        rec["nx"], rec["ny"], rec["nz"] = normals[:, 0], normals[:, 1], normals[:, 2]
    ptype = {"<f4": "float", "u1": "uchar"}
    head = _header([("vertex", n, [(nm, ptype[t]) for nm, t in fields])], comments)
    return atomic_write_bytes(path, [head, rec.tobytes()], fsync=fsync)


def write_line_set_ply(path: str | os.PathLike, vertices, edges, vertex_rgb=None, edge_rgb=None, *,
                       comments: Sequence[str] = (), fsync: bool = True) -> Path:
    """Line set (e.g. a deformation node graph): element vertex (x y z [red green blue]) and element edge
    (vertex1 vertex2 [red green blue]); readable by ``open3d.io.read_line_set``. Atomic."""
    v = _np(vertices, np.float32)
    e = _np(edges)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [M,3], got {list(v.shape)}")
    e = e.reshape(-1, 2) if e.size == 0 else e
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"edges must be [E,2], got {list(e.shape)}")
    if e.size and (e.min() < 0 or e.max() >= len(v)):
        raise ValueError(f"edge indices must be in [0, {len(v)})")
    vf = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("red", "u1"), ("green", "u1"), ("blue", "u1")]
                                                       if vertex_rgb is not None else [])
    ef = [("vertex1", "<i4"), ("vertex2", "<i4")] + ([("red", "u1"), ("green", "u1"), ("blue", "u1")]
                                                     if edge_rgb is not None else [])
    vr = np.empty(len(v), dtype=vf)
    vr["x"], vr["y"], vr["z"] = v[:, 0], v[:, 1], v[:, 2]
    if vertex_rgb is not None:
        c = np.broadcast_to(_np(vertex_rgb).astype(np.uint8), (len(v), 3))
        vr["red"], vr["green"], vr["blue"] = c[:, 0], c[:, 1], c[:, 2]
    er = np.empty(len(e), dtype=ef)
    er["vertex1"], er["vertex2"] = e[:, 0], e[:, 1]
    if edge_rgb is not None:
        c = np.broadcast_to(_np(edge_rgb).astype(np.uint8), (len(e), 3))
        er["red"], er["green"], er["blue"] = c[:, 0], c[:, 1], c[:, 2]
    ptype = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    head = _header([("vertex", len(v), [(nm, ptype[t]) for nm, t in vf]),
                    ("edge", len(e), [(nm, ptype[t]) for nm, t in ef])], comments)
    return atomic_write_bytes(path, [head, vr.tobytes(), er.tobytes()], fsync=fsync)


# ---------------------------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy code) scalars
    has_list: bool = False


@dataclass
class PlyHeader:
    fmt: str                      # binary_little_endian | binary_big_endian | ascii
    elements: list[PlyElement]
    data_offset: int              # byte offset of the body
    comments: list[str] = field(default_factory=list)

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


def read_ply_header(path: str | os.PathLike) -> PlyHeader:
    """Parse the header of a PLY file (raises PlyError)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_MAX_HEADER_BYTES)
    except IsADirectoryError:
        raise PlyError(f"{path}: is a directory, not a PLY file") from None
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise PlyError(f"{path}: cannot read: {e}") from e
    if not head.startswith(b"ply"):
        raise PlyError(f"{path}: not a PLY file (does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise PlyError(f"{path}: PLY header has no 'end_header' (file truncated or not a PLY file)")
    nl = head.find(b"\n", end)
    if nl < 0:
        raise PlyError(f"{path}: PLY header is truncated after 'end_header'")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise PlyError(f"{path}: PLY header is not ASCII text") from None
    fmt = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    for ln, line in enumerate(text.replace("\r", "").split("\n")[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        kw = parts[0]
        if kw == "format":
            if len(parts) != 3 or parts[1] not in _FORMATS:
                raise PlyError(f"{path}: header line {ln}: unsupported format line {line!r}")
            fmt = parts[1]
        elif kw in ("comment", "obj_info"):
            comments.append(line[len(kw):].strip())
        elif kw == "element":
            if len(parts) != 3:
                raise PlyError(f"{path}: header line {ln}: malformed element line {line!r}")
            try:
                count = int(parts[2])
            except ValueError:
                raise PlyError(f"{path}: header line {ln}: element count is not an integer: {line!r}") from None
            if count < 0:
                raise PlyError(f"{path}: header line {ln}: negative element count")
            elements.append(PlyElement(parts[1], count))
        elif kw == "property":
            if not elements:
                raise PlyError(f"{path}: header line {ln}: property before any element")
            if len(parts) >= 2 and parts[1] == "list":
                if len(parts) != 5 or parts[2] not in _PLY_TYPES or parts[3] not in _PLY_TYPES:
                    raise PlyError(f"{path}: header line {ln}: malformed list property {line!r}")
                elements[-1].has_list = True
                elements[-1].properties.append((parts[4], "list"))
            else:
                if len(parts) != 3 or parts[1] not in _PLY_TYPES:
                    raise PlyError(f"{path}: header line {ln}: malformed property line {line!r}")
                names = [p for p, _ in elements[-1].properties]
                if parts[2] in names:
                    raise PlyError(f"{path}: header line {ln}: duplicate property {parts[2]!r}")
                elements[-1].properties.append((parts[2], _PLY_TYPES[parts[1]]))
        else:
            raise PlyError(f"{path}: header line {ln}: unknown keyword {kw!r}")
    if fmt is None:
        raise PlyError(f"{path}: PLY header has no format line")
    return PlyHeader(fmt, elements, nl + 1, comments)


def _element_dtype(el: PlyElement, order: str) -> np.dtype:
    return np.dtype([(p, order + t) for p, t in el.properties])


def read_ply_element(path: str | os.PathLike, name: str = "vertex", header: PlyHeader | None = None) -> np.ndarray:
    """One element of a PLY file as a numpy structured array (scalar properties only).

    Binary files are read with numpy directly; every element before `name` must have only scalar
    properties (true of the files written here and of 3DGS files). Raises PlyError when the element is
    missing or the body is shorter than the header promises.
    """
    path = Path(path)
    h = header or read_ply_header(path)
    idx = next((i for i, e in enumerate(h.elements) if e.name == name), None)
    if idx is None:
        raise PlyError(f"{path}: no element {name!r} (elements: {[e.name for e in h.elements]})")
    el = h.elements[idx]
    if el.has_list:
        raise PlyError(f"{path}: element {name!r} has list properties, which this reader does not support")
    if h.fmt == "ascii":
        return _read_ascii_element(path, h, idx)
    order = _FORMATS[h.fmt]
    offset = h.data_offset
    for e in h.elements[:idx]:
        if e.has_list:
            raise PlyError(f"{path}: element {e.name!r} before {name!r} has list properties; not supported")
        offset += _element_dtype(e, order).itemsize * e.count
    dt = _element_dtype(el, order)
    need = dt.itemsize * el.count
    size = path.stat().st_size
    have = max(0, size - offset)
    if have < need:
        raise PlyError(f"{path}: truncated: element {name!r} needs {need} bytes ({el.count} x {dt.itemsize}) "
                       f"at offset {offset}, but the file has only {have}")
    if el.count == 0:
        return np.empty(0, dtype=dt)
    with open(path, "rb") as f:
        f.seek(offset)
        buf = f.read(need)
    if len(buf) != need:  # file shrank while reading
        raise PlyError(f"{path}: truncated while reading element {name!r}")
    return np.frombuffer(buf, dtype=dt, count=el.count)


def _read_ascii_element(path: Path, h: PlyHeader, idx: int) -> np.ndarray:
    with open(path, "rb") as f:
        f.seek(h.data_offset)
        lines = f.read().decode("ascii", errors="replace").splitlines()
    start = 0
    for e in h.elements[:idx]:
        start += e.count
    el = h.elements[idx]
    rows = [ln.split() for ln in lines[start:start + el.count]]
    if len(rows) < el.count:
        raise PlyError(f"{path}: truncated: element {el.name!r} needs {el.count} lines, found {len(rows)}")
    dt = _element_dtype(el, "=")
    out = np.empty(el.count, dtype=dt)
    nprop = len(el.properties)
    for i, r in enumerate(rows):
        if len(r) != nprop:
            raise PlyError(f"{path}: line {start + i + 1} of the body has {len(r)} values, expected {nprop}")
        try:
            out[i] = tuple(float(v) if t.startswith("f") else int(v) for v, (_, t) in zip(r, el.properties))
        except ValueError:
            raise PlyError(f"{path}: line {start + i + 1} of the body is not numeric: {' '.join(r)!r}") from None
    return out


def _stack(rec: np.ndarray, names: Sequence[str], dtype=np.float32) -> np.ndarray:
    out = np.empty((len(rec), len(names)), dtype)
    for j, n in enumerate(names):
        out[:, j] = rec[n]
    return out


def _check_props(path, rec: np.ndarray, needed: Sequence[str], what: str) -> None:
    have = set(rec.dtype.names or ())
    missing = [n for n in needed if n not in have]
    if missing:
        raise PlyError(f"{path}: not a {what} PLY: missing vertex properties {missing}")


def read_gaussians_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a 3DGS PLY. Returns float32 arrays: means [N,3], quats [N,4] (wxyz, as stored), log_scales [N,3],
    opacity_logits [N], sh [N,K,3] (f_rest de-interleaved from channel-major), normals [N,3] (zeros when
    absent), plus sh_degree (int). Raises PlyError for malformed/truncated files or missing properties."""
    path = Path(path)
    rec = read_ply_element(path, "vertex")
    names = set(rec.dtype.names or ())
    base = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    _check_props(path, rec, base, "3D Gaussian")
    n_rest = sum(1 for p in names if p.startswith("f_rest_"))
    rest = [f"f_rest_{i}" for i in range(n_rest)]
    missing = [p for p in rest if p not in names]
    if missing or n_rest % 3:
        raise PlyError(f"{path}: f_rest_* properties are not f_rest_0..f_rest_{{3(K-1)-1}} ({n_rest} found)")
    k = n_rest // 3 + 1
    try:
        degree = sh_degree_from_bases(k)
    except ValueError as e:
        raise PlyError(f"{path}: {n_rest} f_rest_* properties: {e}") from None
    n = len(rec)
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = _stack(rec, ["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        sh[:, 1:, :] = _stack(rec, rest).reshape(n, 3, k - 1).transpose(0, 2, 1)
    normals = _stack(rec, ["nx", "ny", "nz"]) if {"nx", "ny", "nz"} <= names else np.zeros((n, 3), np.float32)
    return {
        "means": _stack(rec, ["x", "y", "z"]),
        "normals": normals,
        "quats": _stack(rec, ["rot_0", "rot_1", "rot_2", "rot_3"]),
        "log_scales": _stack(rec, ["scale_0", "scale_1", "scale_2"]),
        "opacity_logits": np.asarray(rec["opacity"], np.float32).copy(),
        "sh": sh,
        "sh_degree": degree,
    }


def read_points_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a coloured point cloud PLY: xyz [N,3] float32, rgb [N,3] uint8 (grey when absent), normals or None."""
    path = Path(path)
    rec = read_ply_element(path, "vertex")
    _check_props(path, rec, ["x", "y", "z"], "point cloud")
    names = set(rec.dtype.names or ())
    if {"red", "green", "blue"} <= names:
        rgb = _stack(rec, ["red", "green", "blue"], np.float64)
        if rec["red"].dtype.kind == "f":
            rgb = rgb * 255.0
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    else:
        rgb = np.full((len(rec), 3), 128, np.uint8)
    normals = _stack(rec, ["nx", "ny", "nz"]) if {"nx", "ny", "nz"} <= names else None
    return {"xyz": _stack(rec, ["x", "y", "z"]), "rgb": rgb, "normals": normals}


def read_line_set_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a line set written by :func:`write_line_set_ply`: vertices [M,3], edges [E,2] int64,
    edge_rgb [E,3] uint8 or None."""
    path = Path(path)
    h = read_ply_header(path)
    v = read_ply_element(path, "vertex", h)
    _check_props(path, v, ["x", "y", "z"], "line set")
    e = read_ply_element(path, "edge", h)
    enames = set(e.dtype.names or ())
    if not {"vertex1", "vertex2"} <= enames:
        raise PlyError(f"{path}: edge element lacks vertex1/vertex2")
    edges = _stack(e, ["vertex1", "vertex2"], np.int64)
    if edges.size and (edges.min() < 0 or edges.max() >= len(v)):
        raise PlyError(f"{path}: edge index out of range [0, {len(v)})")
    rgb = _stack(e, ["red", "green", "blue"], np.uint8) if {"red", "green", "blue"} <= enames else None
    return {"vertices": _stack(v, ["x", "y", "z"]), "edges": edges, "edge_rgb": rgb}


def ply_kind(path: str | os.PathLike) -> str:
    """'gaussians' (3DGS layout), 'points' (x y z [+ colours]) or 'lines' (has an edge element)."""
    h = read_ply_header(path)
    v = h.element("vertex")
    if v is None:
        raise PlyError(f"{path}: no vertex element")
    names = {p for p, _ in v.properties}
    if {"f_dc_0", "opacity", "rot_0"} <= names:
        return "gaussians"
    if h.element("edge") is not None:
        return "lines"
    if {"x", "y", "z"} <= names:
        return "points"
    raise PlyError(f"{path}: vertex element has no x/y/z")

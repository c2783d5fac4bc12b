"""PLY files (Turk's polygon file format) through ``plyfile``: 3D Gaussians, coloured points, line sets.

The Gaussian layout is the one 3DGS viewers read (Kerbl et al. 2023, "3D Gaussian Splatting"; docs/design.md)::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3(K-1)-1} opacity scale_0 scale_1 scale_2
    rot_0 rot_1 rot_2 rot_3

all float32, binary little-endian; opacity is a logit, scales are logs, rot is a wxyz quaternion, and the
higher-order SH coefficients ``f_rest_*`` are channel-major: the K-1 red coefficients, then green, then blue
(``sh[:, 1:, :].transpose(1, 2).reshape(N, -1)`` for ``sh`` [N,K,3]).

Needs numpy and plyfile only (no torch, no open3d), so the viewer can use it without torch; torch tensors are
accepted anywhere an array is. Writers are atomic (:mod:`dyngauss.io.atomic`). Readers take ASCII and binary
files of either byte order and raise :class:`PlyError` (a ``ValueError``) naming the file and the cause for
anything missing, malformed, truncated or lacking a needed property (a missing file raises
:class:`PlyFileNotFoundError`, also a ``FileNotFoundError``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from plyfile import PlyData, PlyElement, PlyHeaderParseError, PlyParseError

from .atomic import atomic_write

# SH band-0 constant (same value as dyngauss.geometry.sh.C0; repeated so this module does not import torch).
SH_C0 = 0.28209479177387814

_XYZ, _NORMALS, _RGB = ["x", "y", "z"], ["nx", "ny", "nz"], ["red", "green", "blue"]
_GAUSSIAN_BASE = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                  "rot_0", "rot_1", "rot_2", "rot_3"]


class PlyError(ValueError):
    """A PLY file is missing, malformed, truncated, or lacks the elements/properties the caller needs."""


class PlyFileNotFoundError(PlyError, FileNotFoundError):
    """The PLY file does not exist (both a PlyError and a FileNotFoundError, so either ``except`` catches it)."""


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
    return (["x", "y", "z", *_NORMALS, "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * (num_sh_bases - 1))]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def sh_degree_from_bases(k: int) -> int:
    """SH degree d from K = (d+1)^2 coefficients per channel; ValueError when K is not a square."""
    d = math.isqrt(k) - 1
    if (d + 1) ** 2 != k:
        raise ValueError(f"{k} SH coefficients per channel is not (degree+1)^2")
    return d


def dc_to_rgb(f_dc: np.ndarray) -> np.ndarray:
    """Base colour in [0,1] from the SH DC coefficients [...,3] (0.5 + C0 * dc, clamped)."""
    return np.clip(0.5 + SH_C0 * np.asarray(f_dc, dtype=np.float32), 0.0, 1.0)


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Colours in [0,1] [...,3] -> uint8 0..255 (rounded, clamped)."""
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- writers
def _records(n: int, groups: Sequence[tuple[Sequence[str], np.ndarray, str]]) -> np.ndarray:
    """Structured array of n rows from column groups (names, values [n, len(names)], numpy type code)."""
    rec = np.empty(n, dtype=[(name, code) for names, _, code in groups for name in names])
    for names, values, _ in groups:
        for j, name in enumerate(names):
            rec[name] = values[:, j]
    return rec


def _write(path: str | os.PathLike, elements: Sequence[tuple[str, np.ndarray]], comments: Sequence[str],
           fsync: bool) -> Path:
    ply = PlyData([PlyElement.describe(rec, name) for name, rec in elements], text=False, byte_order="<",
                  comments=list(comments))
    return atomic_write(path, ply.write, fsync=fsync)


def _colours(rgb, n: int, what: str) -> np.ndarray:
    """[n,3] uint8 from uint8/integer colours (one colour [3] is broadcast); floats are refused."""
    c = _np(rgb)
    if np.issubdtype(c.dtype, np.floating):
        raise ValueError(f"{what} must be uint8 in 0..255 (use rgb_to_uint8 for floats in [0,1])")
    if c.shape not in ((3,), (n, 3)):
        raise ValueError(f"{what} must be [{n},3] or [3], got {list(c.shape)}")
    return np.broadcast_to(np.clip(c, 0, 255).astype(np.uint8), (n, 3))


def gaussians_to_array(means, quats, log_scales, opacity_logits, sh) -> np.ndarray:
    """The [N, P] float32 table of the 3DGS layout (columns in :func:`gaussian_property_names` order).

    means [N,3], quats [N,4] wxyz, log_scales [N,3], opacity_logits [N] or [N,1], sh [N,K,3]; ValueError on
    any other shape or a K that is not (d+1)^2. Normals are written as zeros."""
    means, quats, log_scales = _np(means, np.float32), _np(quats, np.float32), _np(log_scales, np.float32)
    opacity_logits, sh = _np(opacity_logits, np.float32), _np(sh, np.float32)
    n = means.shape[0] if means.ndim == 2 else -1
    for name, a, shp in (("means", means, (n, 3)), ("quats", quats, (n, 4)), ("log_scales", log_scales, (n, 3))):
        if a.shape != shp:
            raise ValueError(f"{name} must be [N,{shp[1]}] with N={n}, got {list(a.shape)}")
    opacity_logits = opacity_logits.reshape(-1) if opacity_logits.shape == (n, 1) else opacity_logits
    if opacity_logits.shape != (n,):
        raise ValueError(f"opacity_logits must be [N] with N={n}, got {list(opacity_logits.shape)}")
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must be [N,K,3] with N={n}, got {list(sh.shape)}")
    sh_degree_from_bases(sh.shape[1])  # validates K
    # channel-major f_rest: all R coefficients, then G, then B
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (sh.shape[1] - 1))
    return np.concatenate([means, np.zeros((n, 3), np.float32), sh[:, 0, :], rest, opacity_logits[:, None],
                           log_scales, quats], axis=1)


def write_gaussians_ply(path: str | os.PathLike, means, quats, log_scales, opacity_logits, sh, *,
                        comments: Sequence[str] = (), fsync: bool = True) -> Path:
    """Write N Gaussians in the 3DGS PLY layout (binary little-endian, atomic); returns the path.

    Arguments as :func:`gaussians_to_array` (ValueError on bad shapes, nothing written)."""
    table = gaussians_to_array(means, quats, log_scales, opacity_logits, sh)
    rec = _records(len(table), [(gaussian_property_names(_np(sh).shape[1]), table, "<f4")])
    return _write(path, [("vertex", rec)], comments, fsync)


def write_points_ply(path: str | os.PathLike, xyz, rgb_uint8, normals=None, *, comments: Sequence[str] = (),
                     fsync: bool = True) -> Path:
    """Coloured point cloud, binary little-endian, atomic: x y z (float) red green blue (uchar) [nx ny nz
    (float)]; readable by ``open3d.io.read_point_cloud``. xyz [N,3], rgb_uint8 [N,3] integers 0..255 (floats
    are refused: use :func:`rgb_to_uint8`), normals [N,3] or None. ValueError on bad shapes."""
    xyz = _np(xyz, np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be [N,3], got {list(xyz.shape)}")
    n = xyz.shape[0]
    if _np(rgb_uint8).shape != (n, 3):
        raise ValueError(f"rgb must be [{n},3], got {list(_np(rgb_uint8).shape)}")
    groups = [(_XYZ, xyz, "<f4"), (_RGB, _colours(rgb_uint8, n, "rgb"), "u1")]
    if normals is not None:
        normals = _np(normals, np.float32)
        if normals.shape != (n, 3):
            raise ValueError(f"normals must be [{n},3], got {list(normals.shape)}")
        groups.append((_NORMALS, normals, "<f4"))
    return _write(path, [("vertex", _records(n, groups))], comments, fsync)


def write_line_set_ply(path: str | os.PathLike, vertices, edges, vertex_rgb=None, edge_rgb=None, *,
                       comments: Sequence[str] = (), fsync: bool = True) -> Path:
    """Line set (e.g. a deformation node graph), binary little-endian, atomic: element vertex (x y z
    [red green blue]) and element edge (vertex1 vertex2 (int) [red green blue]); readable by
    ``open3d.io.read_line_set``. vertices [M,3], edges [E,2] indices into vertices, colours uint8 [M|E,3] or
    one colour [3]. ValueError on bad shapes or out-of-range indices."""
    v, e = _np(vertices, np.float32), _np(edges)
    e = e.reshape(-1, 2) if e.size == 0 else e
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [M,3], got {list(v.shape)}")
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"edges must be [E,2], got {list(e.shape)}")
    if e.size and (e.min() < 0 or e.max() >= len(v)):
        raise ValueError(f"edge indices must be in [0, {len(v)})")
    vg, eg = [(_XYZ, v, "<f4")], [(["vertex1", "vertex2"], e, "<i4")]
    if vertex_rgb is not None:
        vg.append((_RGB, _colours(vertex_rgb, len(v), "vertex_rgb"), "u1"))
    if edge_rgb is not None:
        eg.append((_RGB, _colours(edge_rgb, len(e), "edge_rgb"), "u1"))
    return _write(path, [("vertex", _records(len(v), vg)), ("edge", _records(len(e), eg))], comments, fsync)


# ------------------------------------------------------------------------------------------------- readers
def _read(path: Path) -> PlyData:
    """The whole file via plyfile (binary elements memory-mapped copy-on-write); every failure becomes a
    PlyError naming the file."""
    try:
        with open(path, "rb") as f:
            return PlyData.read(f, mmap="c")
    except FileNotFoundError:
        raise PlyFileNotFoundError(f"{path}: no such PLY file") from None
    except IsADirectoryError:
        raise PlyError(f"{path}: is a directory, not a PLY file") from None
    except OSError as e:
        raise PlyError(f"{path}: cannot read: {e}") from e
    except PlyHeaderParseError as e:
        if e.line == 1:
            cause = "not a PLY file (does not start with 'ply')"
        elif e.message == "early end-of-file":
            cause = "PLY header has no 'end_header' (file truncated or not a PLY file)"
        else:
            cause = f"malformed PLY header, line {e.line} {_header_line(path, e.line)!r}: {e.message}"
        raise PlyError(f"{path}: {cause}") from None
    except PlyParseError as e:  # element data: binary too short, ASCII rows missing/short/not numbers
        raise PlyError(f"{path}: truncated or malformed PLY body: {e}") from None
    except UnicodeDecodeError:
        raise PlyError(f"{path}: not a PLY file, or a corrupt one: non-ASCII bytes in its header or text") from None
    except (ValueError, TypeError) as e:  # e.g. duplicate element/property names, negative counts
        raise PlyError(f"{path}: malformed PLY file: {e}") from None
    except MemoryError as e:  # e.g. an absurd element count in an ASCII file
        raise PlyError(f"{path}: the element counts in its header do not fit in memory ({e})") from None


def _header_line(path: Path, number: int) -> str:
    """Line `number` (1-based) of the file's start, for error messages."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16).splitlines()[number - 1].decode("ascii", "replace")
    except (OSError, IndexError):
        return "?"


def _element(ply: PlyData, path: Path, name: str) -> np.ndarray:
    for el in ply.elements:
        if el.name == name:
            return np.asarray(el.data)  # a plain ndarray over plyfile's copy-on-write memory map
    raise PlyError(f"{path}: no element {name!r} (elements: {[el.name for el in ply.elements]})")


def _columns(path: Path, rec: np.ndarray, names: Sequence[str], what: str, element: str = "vertex",
             dtype=np.float32) -> np.ndarray:
    """[len(rec), len(names)] array of the scalar properties `names` (PlyError when any is missing)."""
    have = rec.dtype.names or ()
    missing = [n for n in names if n not in have]
    if missing:
        raise PlyError(f"{path}: not a {what} PLY: missing {element} properties {missing}")
    lists = [n for n in names if rec.dtype[n].kind == "O"]
    if lists:
        raise PlyError(f"{path}: {element} properties {lists} are lists, expected scalars")
    types = {rec.dtype[i] for i in range(len(have))}
    if len(types) == 1 and rec.flags.c_contiguous and rec.dtype.itemsize == len(have) * rec.dtype[0].itemsize:
        # packed records of one scalar type (3DGS files): an [N, P] table view, columns gathered in one pass
        table = rec.view(rec.dtype[0]).reshape(len(rec), len(have))
        return table[:, [have.index(n) for n in names]].astype(dtype)
    out = np.empty((len(rec), len(names)), dtype)
    for j, n in enumerate(names):
        out[:, j] = rec[n]
    return out


def read_ply_element(path: str | os.PathLike, name: str = "vertex") -> np.ndarray:
    """One element of a PLY file as an in-memory numpy structured array (fields in the file's byte order;
    list properties are object fields). PlyError when the file is malformed/truncated or has no `name`."""
    path = Path(path)
    rec = _element(_read(path), path, name)
    if rec.dtype.hasobject or not rec.flags.c_contiguous:  # list properties
        return rec.copy()
    return rec.view(np.uint8).copy().view(rec.dtype)  # byte copy: much faster than a field-wise rec.copy()


def read_gaussians_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a 3DGS PLY. Returns float32 arrays: means [N,3], quats [N,4] (wxyz, as stored), log_scales [N,3],
    opacity_logits [N], sh [N,K,3] (f_rest de-interleaved from channel-major), normals [N,3] (zeros when
    absent), plus sh_degree (int). Raises PlyError for malformed/truncated files or missing properties."""
    path = Path(path)
    rec = _element(_read(path), path, "vertex")
    base = _columns(path, rec, _GAUSSIAN_BASE, "3D Gaussian")
    names = set(rec.dtype.names)
    n_rest = sum(1 for p in names if p.startswith("f_rest_"))
    rest = [f"f_rest_{i}" for i in range(n_rest)]
    if n_rest % 3 or not set(rest) <= names:
        raise PlyError(f"{path}: f_rest_* properties are not f_rest_0..f_rest_{{3(K-1)-1}} ({n_rest} found)")
    k = n_rest // 3 + 1
    try:
        degree = sh_degree_from_bases(k)
    except ValueError as e:
        raise PlyError(f"{path}: {n_rest} f_rest_* properties: {e}") from None
    n = len(rec)
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = base[:, 3:6]
    sh[:, 1:, :] = _columns(path, rec, rest, "3D Gaussian").reshape(n, 3, k - 1).transpose(0, 2, 1)
    has_normals = set(_NORMALS) <= names
    normals = _columns(path, rec, _NORMALS, "3D Gaussian") if has_normals else np.zeros((n, 3), np.float32)
    part = {"means": slice(0, 3), "quats": slice(10, 14), "log_scales": slice(7, 10), "opacity_logits": 6}
    out = {key: base[:, cols].copy() for key, cols in part.items()}
    return {**out, "normals": normals, "sh": sh, "sh_degree": degree}


def read_points_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a point cloud PLY: xyz [N,3] float32, rgb [N,3] uint8 (float colours in [0,1] are scaled; grey 128
    when absent), normals [N,3] float32 or None. PlyError for malformed/truncated files or no x/y/z."""
    path = Path(path)
    rec = _element(_read(path), path, "vertex")
    xyz = _columns(path, rec, _XYZ, "point cloud")
    names = set(rec.dtype.names)
    if set(_RGB) <= names:
        rgb = _columns(path, rec, _RGB, "point cloud", dtype=np.float64)
        rgb = np.clip(np.rint(rgb * 255.0 if rec["red"].dtype.kind == "f" else rgb), 0, 255).astype(np.uint8)
    else:
        rgb = np.full((len(rec), 3), 128, np.uint8)
    normals = _columns(path, rec, _NORMALS, "point cloud") if set(_NORMALS) <= names else None
    return {"xyz": xyz, "rgb": rgb, "normals": normals}


def read_line_set_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a line set (as :func:`write_line_set_ply` writes): vertices [M,3] float32, edges [E,2] int64,
    edge_rgb [E,3] uint8 or None. PlyError for malformed files, missing elements/properties or edge indices
    out of range."""
    path = Path(path)
    ply = _read(path)
    v, e = _element(ply, path, "vertex"), _element(ply, path, "edge")
    vertices = _columns(path, v, _XYZ, "line set")
    edges = _columns(path, e, ["vertex1", "vertex2"], "line set", "edge", np.int64)
    if edges.size and (edges.min() < 0 or edges.max() >= len(vertices)):
        raise PlyError(f"{path}: edge index out of range [0, {len(vertices)})")
    rgb = _columns(path, e, _RGB, "line set", "edge", np.uint8) if set(_RGB) <= set(e.dtype.names) else None
    return {"vertices": vertices, "edges": edges, "edge_rgb": rgb}


def ply_kind(path: str | os.PathLike) -> str:
    """'gaussians' (3DGS layout), 'lines' (has an edge element) or 'points' (x y z [+ colours]); PlyError for
    a malformed file, no vertex element or no x/y/z."""
    path = Path(path)
    ply = _read(path)
    names = set(_element(ply, path, "vertex").dtype.names or ())
    if {"f_dc_0", "opacity", "rot_0"} <= names:
        return "gaussians"
    if any(el.name == "edge" for el in ply.elements):
        return "lines"
    if set(_XYZ) <= names:
        return "points"
    raise PlyError(f"{path}: vertex element has no x/y/z")

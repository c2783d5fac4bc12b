"""Per-frame PLY sequences of a dynamic Gaussian model, plus the `sequence.json` manifest.

A sequence folder (docs/design.md) holds ``frame_0000.ply ...`` (one per time), ``sequence.json`` and, for a
node-graph field, ``nodes_0000.ply ...`` (line sets: node positions + graph edges at that time).
Row i of every frame is the same Gaussian, so the folder also carries 3D tracks:

* ``format="gaussians"``: the 3DGS layout; row i = canonical Gaussian i (all of them).
* ``format="points"``: x y z red green blue; the rows are the canonical Gaussians whose canonical opacity is at
  least ``opacity_threshold``, the same subset in every frame; ``indices.npy`` maps row -> canonical index.

The export is atomic at the folder level: everything is written into a hidden temporary folder next to
``out_dir`` (``.NAME.tmp-<host>-<pid>-XXXX``), ``sequence.json`` last, and only then renamed into place. A
complete earlier export at ``out_dir`` is replaced only after the new one is complete; a failure leaves it
untouched and removes the temporary folder. A file-system failure (disk full, permission denied, read-only
file system, a parent that is a file) is raised as :class:`dyngauss.io.OutputError` naming ``out_dir``.
The temporary folders a killed export left next to ``out_dir`` are removed when the next export to it starts
(only stale ones: :mod:`dyngauss.io.stale`); a previous export moved aside (``.NAME.old-*``) by an export
killed before it installed the new one is put back first.

torch (and the deformation code) is imported inside the functions that pose Gaussians, so that the manifest
helpers (:func:`load_manifest`, :func:`times_for`) stay usable from the torch-free viewer.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..io.atomic import output_error, require_free_space
from ..io.stale import remove_stale_temps, stale_reason, writer_tag
from ..io.ply import (dc_to_rgb, rgb_to_uint8, sh_degree_from_bases, write_gaussians_ply, write_line_set_ply,
                  write_points_ply)

if TYPE_CHECKING:
    from ..model.dynamic import DynamicGaussians

MANIFEST = "sequence.json"
FORMAT_VERSION = 1
FORMATS = ("gaussians", "points")
NODE_RGB = (230, 60, 40)


class SequenceError(ValueError):
    """A sequence folder is missing, incomplete or inconsistent, or an export request is invalid."""


# ---------------------------------------------------------------------------------------------------------
# times
# ---------------------------------------------------------------------------------------------------------
def times_for(frames: int | None = None, times: Sequence[float] | None = None,
              train_times: Sequence[float] | None = None, default_frames: int = 30) -> list[float]:
    """The times to export.

    * ``times=[...]``: exactly those (each must lie in [0, 1]);
    * ``frames=N``: N evenly spaced times from 0 to 1 inclusive (``[0.0]`` for N = 1);
    * neither: the sorted distinct training times when given, else ``default_frames`` evenly spaced times.
    """
    if frames is not None and times is not None:
        raise ValueError("give frames or times, not both")
    if times is not None:
        out = [float(t) for t in times]
        if not out:
            raise ValueError("times is empty")
        bad = [t for t in out if not (math.isfinite(t) and -1e-6 <= t <= 1 + 1e-6)]
        if bad:
            raise ValueError(f"times must lie in [0, 1]; got {bad[:5]}")
        return [min(1.0, max(0.0, t)) for t in out]
    if frames is not None:
        frames = int(frames)
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return [0.0] if frames == 1 else [float(t) for t in np.linspace(0.0, 1.0, frames)]
    if train_times:
        return sorted({float(t) for t in train_times})
    return times_for(frames=default_frames)


# ---------------------------------------------------------------------------------------------------------
# SH degree of the written PLYs
# ---------------------------------------------------------------------------------------------------------
MAX_SH_DEGREE = 3  # the 3DGS layout's highest degree (45 f_rest); what graphdeco's load_ply, SIBR, 3DGS.cpp read


def export_sh_degree(model_degree: int, requested: int | None) -> int:
    """The SH degree to write for a model of `model_degree`: `requested` None or -1 = the model's own; else
    `requested` itself, which must lie in model_degree..3. A lower degree is refused (SequenceError), never
    truncated: it would drop the model's view-dependent colour."""
    if requested is None or requested == -1:
        return int(model_degree)
    if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) \
            or not 0 <= requested <= MAX_SH_DEGREE:
        raise SequenceError(f"SH degree must be -1 (the model's own) or 0..{MAX_SH_DEGREE}, got {requested!r}")
    if requested < model_degree:
        raise SequenceError(f"the model has SH degree {model_degree}; exporting degree {requested} would drop its "
                            f"view-dependent colour (export pads, never truncates): use -1 or {model_degree}.."
                            f"{MAX_SH_DEGREE}")
    return int(requested)


def padded_sh(sh: np.ndarray, degree: int) -> np.ndarray:
    """SH coefficients [N,K,3] with zero coefficients appended up to (degree+1)^2 per channel (the added bands
    are 0, so the colour is the same from every direction as before). Returns `sh` itself when it already has
    that many; SequenceError when it has more."""
    k = (int(degree) + 1) ** 2
    if sh.shape[1] == k:
        return sh
    if sh.shape[1] > k:
        raise SequenceError(f"cannot pad {sh.shape[1]} SH coefficients down to {k}")
    pad = np.zeros((sh.shape[0], k - sh.shape[1], sh.shape[2]), dtype=sh.dtype)
    return np.concatenate([sh, pad], axis=1)


# ---------------------------------------------------------------------------------------------------------
# manifest helpers
# ---------------------------------------------------------------------------------------------------------
def load_manifest(seq_dir: str | os.PathLike, check_files: bool = True) -> dict:
    """Read and validate ``sequence.json`` (raises SequenceError with a clear message)."""
    seq_dir = Path(seq_dir)
    mpath = seq_dir / MANIFEST
    if not seq_dir.is_dir():
        raise SequenceError(f"{seq_dir}: no such sequence folder")
    if not mpath.is_file():
        raise SequenceError(f"{seq_dir}: no {MANIFEST} (not a sequence folder, or an incomplete export)")
    try:
        m = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SequenceError(f"{mpath}: unreadable manifest: {e}") from None
    for key in ("times", "fps", "count", "frames", "format"):
        if key not in m:
            raise SequenceError(f"{mpath}: manifest lacks {key!r}")
    if len(m["frames"]) != m["count"] or len(m["times"]) != m["count"]:
        raise SequenceError(f"{mpath}: count={m['count']} but {len(m['frames'])} frames / {len(m['times'])} times")
    if check_files:
        missing = [f for f in list(m["frames"]) + list(m.get("nodes") or []) if not (seq_dir / f).is_file()]
        if missing:
            raise SequenceError(f"{seq_dir}: incomplete sequence, missing {missing[:3]}"
                                f"{' ...' if len(missing) > 3 else ''}")
    return m


def is_complete_sequence(seq_dir: str | os.PathLike) -> bool:
    try:
        load_manifest(seq_dir)
        return True
    except SequenceError:
        return False


def _looks_like_export(d: Path) -> bool:
    """True if `d` is empty or holds only files an export writes (so replacing it loses nothing else)."""
    for p in d.iterdir():
        n = p.name
        if p.is_dir() or not (n == MANIFEST or n == "indices.npy"
                              or (n.endswith(".ply") and (n.startswith("frame_") or n.startswith("nodes_")))):
            return False
    return True


def _install_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished temporary folder to out_dir, replacing an earlier export there."""
    if not out_dir.exists() and not out_dir.is_symlink():
        os.rename(tmp, out_dir)
        return
    if not out_dir.is_dir():
        raise SequenceError(f"{out_dir} exists and is not a folder; not replacing it")
    if not _looks_like_export(out_dir):
        raise SequenceError(f"{out_dir} exists and holds files other than a sequence export; "
                            f"not replacing it (choose another --out or empty it)")
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-{writer_tag()}-", dir=out_dir.parent))
    old.rmdir()
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)  # put the previous export back
        raise
    shutil.rmtree(old, ignore_errors=True)


def clean_export_leftovers(out_dir: str | os.PathLike, log=None) -> list:
    """Before exporting to `out_dir`: put back a previous export that a killed export had moved aside
    (``.NAME.old-*``, when `out_dir` is missing and it is complete), then remove the stale temporary folders
    of killed exports next to `out_dir` (``.NAME.tmp-*``, ``.NAME.old-*``). Folders of a live export are kept.
    Returns the :class:`dyngauss.io.stale.Leftover` list; each action is reported through `log`."""
    out_dir = Path(out_dir).absolute()
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    prefix_old = f".{out_dir.name}.old-"
    if not out_dir.exists() and not out_dir.is_symlink():
        olds = sorted((p for p in parent.iterdir()
                       if p.name.startswith(prefix_old) and p.is_dir() and stale_reason(p) is not None
                       and is_complete_sequence(p)), key=lambda p: p.stat().st_mtime)
        try:
            if olds:
                os.rename(olds[-1], out_dir)
        except OSError:
            olds = []  # best effort: the new export goes ahead
        if olds:
            if log is not None:
                log(f"note: put back the previous export {out_dir} (moved aside to {olds[-1].name} by an export "
                    "that did not finish)")
    names = (f".{out_dir.name}.tmp-", prefix_old)
    return remove_stale_temps(parent, names=lambda n: n.startswith(names), log=log)


# ---------------------------------------------------------------------------------------------------------
# node graph (duck-typed: dyngauss.deform.nodes is optional)
# ---------------------------------------------------------------------------------------------------------
def field_has_node_graph(deform) -> bool:
    return deform is not None and callable(getattr(deform, "node_motion", None)) \
        and callable(getattr(deform, "node_graph", None))


def _edges_from(conn, m: int, is_knn: bool) -> np.ndarray:
    c = np.asarray(conn.detach().cpu().numpy() if hasattr(conn, "detach") else conn).astype(np.int64)
    if c.size == 0:
        return np.zeros((0, 2), np.int64)
    if is_knn:  # [M,K] neighbour table -> undirected edges
        i = np.repeat(np.arange(c.shape[0]), c.shape[1])
        c = np.stack([i, c.reshape(-1)], 1)
    c = c[(c[:, 0] != c[:, 1]) & (c >= 0).all(1) & (c < m).all(1)]
    c = np.sort(c, 1)
    return np.unique(c, axis=0)


_NODE_POS_ATTRS = ("node_pos", "node_positions", "nodes_pos", "node_means", "node_centers")


def _canonical_nodes(deform):
    """(canonical node positions [M,3] float tensor, edges [E,2] int64 numpy) of a node-graph field.

    ``deform.node_graph()`` may return (in the order tried): a dict with positions under
    'positions'/'nodes'/'means'/'centers' and connectivity under 'edges' ([E,2]) or 'knn'/'neighbors' ([M,K]);
    or a tuple whose members are recognised by shape/dtype: float [M,3] = positions, integer [E,2] = edges,
    integer [M,K] (K != 2) = neighbour table, 1-D = edge weights (ignored). Positions not in the graph come
    from the attribute ``node_pos`` (dyngauss.deform.nodes) or a similarly named one.
    """
    import torch

    g = deform.node_graph()
    pos, conn, is_knn = None, None, False
    if isinstance(g, dict):
        for k in ("positions", "nodes", "means", "centers", "node_positions", "node_pos"):
            if g.get(k) is not None:
                pos = g[k]
                break
        if g.get("edges") is not None:
            conn = g["edges"]
        else:
            for k in ("knn", "neighbors", "neighbours", "node_knn"):
                if g.get(k) is not None:
                    conn, is_knn = g[k], True
                    break
    else:
        items = list(g) if isinstance(g, (tuple, list)) else [g]
        for it in items:
            if it is None:
                continue
            it = torch.as_tensor(it)
            if it.dim() != 2:
                continue
            if it.is_floating_point() and it.shape[1] == 3 and pos is None:
                pos = it
            elif not it.is_floating_point() and conn is None:
                conn, is_knn = it, it.shape[1] != 2
    if pos is None:
        for name in _NODE_POS_ATTRS:
            if getattr(deform, name, None) is not None:
                pos = getattr(deform, name)
                break
    if pos is None:
        raise SequenceError("cannot find the node positions of the deformation field (node_graph() has none and "
                            f"the field has none of the attributes {_NODE_POS_ATTRS})")
    pos = torch.as_tensor(pos).detach().float()
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise SequenceError(f"node positions must be [M,3], got {list(pos.shape)}")
    edges = np.zeros((0, 2), np.int64) if conn is None else _edges_from(conn, pos.shape[0], is_knn)
    return pos, edges


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _posed_nodes(deform, canon, t: float, frame: int | None) -> np.ndarray:
    """Node positions at time t from ``deform.node_motion(t[, frame])``, which may return a Motion, a tuple
    (rot [M,4] wxyz, trans [M,3]) with x' = R x + T, or the posed positions [M,3]."""
    import torch

    from ..geometry.quaternion import quat_normalize, quat_rotate

    mo = deform.node_motion(t, frame=frame) if _accepts(deform.node_motion, "frame") else deform.node_motion(t)
    rot = trans = None
    if hasattr(mo, "rot") and hasattr(mo, "trans"):
        rot, trans = mo.rot, mo.trans
    elif isinstance(mo, (tuple, list)) and len(mo) >= 2 and tuple(torch.as_tensor(mo[0]).shape[-1:]) == (4,):
        rot, trans = mo[0], mo[1]
    if rot is not None:
        rot = quat_normalize(torch.as_tensor(rot).detach().float())
        p = quat_rotate(rot, canon.to(rot.device)) + torch.as_tensor(trans).detach().float().to(rot.device)
    else:
        p = torch.as_tensor(mo).detach().float()
    if tuple(p.shape) != tuple(canon.shape):
        raise SequenceError(f"node_motion gave {list(p.shape)} for {list(canon.shape)} nodes")
    return p.cpu().numpy()


# ---------------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------------
def _bbox(lo: np.ndarray, hi: np.ndarray) -> dict:
    return {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}


def _default_source(source) -> str | None:
    return None if source is None else str(source)


def export_sequence(model: "DynamicGaussians", times: Sequence[float], out_dir: str | os.PathLike,
                    fmt: str = "gaussians", fps: float = 30.0, opacity_threshold: float = 0.05,
                    source: str | os.PathLike | None = None, node_graph: bool | None = None,
                    extra: dict[str, Any] | None = None, progress=None, log=None,
                    sh_degree: int | None = None) -> Path:
    """Pose the canonical Gaussians at each time and write a sequence folder. Returns the folder (read the
    manifest back with :func:`load_manifest`).

    Args:
        model: a :class:`dyngauss.model.DynamicGaussians`; frame i is ``model.pose(times[i])`` (a training time
            uses its frame's latent code, see ``model.frame_index``).
        times: times in [0, 1] (see :func:`times_for`).
        fmt: "gaussians" (3DGS PLY, every Gaussian) or "points" (coloured points, the Gaussians whose canonical
            opacity >= opacity_threshold; colour from SH degree 0).
        fps: playback rate stored in the manifest.
        source: recorded in the manifest (default: the checkpoint the model was loaded from, if any).
        node_graph: write ``nodes_XXXX.ply`` line sets: None = when the field has node_motion/node_graph,
            True = required (error otherwise), False = never.
        extra: more keys for the manifest.
        progress: optional callable(i, count).
        log: callable(str) for notes (stale temporary folders of killed exports removed); default stderr.
        sh_degree: SH degree of the "gaussians" PLYs: None or -1 = the model's own; a higher one pads ``f_rest``
            with zeros (:func:`padded_sh`; strict 3DGS loaders need 3). Ignored by "points" (no SH there).
            SequenceError for a degree below the model's (never truncated) or outside 0..3.

    Raises SequenceError (bad request, non-finite positions, `out_dir` holds other files) and
    :class:`dyngauss.io.OutputError` (disk full, permission denied, read-only file system, a parent that is a
    file); the previous export at `out_dir`, if any, is then left as it was.
    """
    import torch

    if source is None and model.info.path is not None:
        source = model.info.path
    with torch.no_grad():
        return _export(model, times, out_dir, fmt, fps, opacity_threshold, source, node_graph, extra, progress,
                       log or _stderr, sh_degree=sh_degree)


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _export(model, times, out_dir, fmt, fps, opacity_threshold, source, node_graph, extra, progress, log,
            sh_degree=None) -> Path:
    import torch

    from ..geometry.quaternion import quat_normalize

    gaussians, deform = model.gaussians, model.deform

    if fmt not in FORMATS:
        raise SequenceError(f"unknown format {fmt!r}; use one of {FORMATS}")
    times = times_for(times=times)
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise SequenceError(f"fps must be positive, got {fps}")
    want_nodes = field_has_node_graph(deform) if node_graph is None else bool(node_graph)
    if want_nodes and not field_has_node_graph(deform):
        raise SequenceError("node_graph=True but the deformation field has no node_motion()/node_graph()")
    out_dir = Path(out_dir).absolute()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(out_dir, e) from None
    clean_export_leftovers(out_dir, log=log)
    if out_dir.exists() and (not out_dir.is_dir() or not _looks_like_export(out_dir)):
        raise SequenceError(f"{out_dir} exists and holds files other than a sequence export; not replacing it")

    n_total = len(gaussians)
    sh = gaussians.sh.detach()
    k = sh.shape[1]
    model_degree = sh_degree_from_bases(k)
    out_degree = export_sh_degree(model_degree, sh_degree) if fmt == "gaussians" else model_degree
    opac_logits = gaussians.opacity_logits.detach()
    if fmt == "points":
        keep = torch.sigmoid(opac_logits) >= float(opacity_threshold)
        idx = torch.nonzero(keep).reshape(-1).cpu().numpy().astype(np.int64)
        rgb = rgb_to_uint8(dc_to_rgb(sh[torch.from_numpy(idx).to(sh.device), 0, :].cpu().numpy()))
        rows = len(idx)
    else:
        idx = None
        sh_np, opac_np = padded_sh(sh.cpu().numpy(), out_degree), opac_logits.cpu().numpy()
        rows = n_total
    visible = (torch.sigmoid(opac_logits) >= float(opacity_threshold)).cpu().numpy()

    digits = max(4, len(str(len(times) - 1)))
    frame_names = [f"frame_{i:0{digits}d}.ply" for i in range(len(times))]
    node_names = [f"nodes_{i:0{digits}d}.ply" for i in range(len(times))] if want_nodes else None
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    rlo, rhi = np.full(3, np.inf), np.full(3, -np.inf)
    comment = f"dyngauss sequence frame; source {source}" if source else "dyngauss sequence frame"

    # cheap check first: the frames alone need this much (a lower bound; an earlier export stays until the end)
    per_row = 15 if fmt == "points" else 4 * (14 + 3 * k)  # x y z r g b | 3DGS floats with K SH bases
    require_free_space(out_dir, per_row * rows * len(times))  # OutputError naming out_dir

    was_training = model.training
    model.eval()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{writer_tag()}-", dir=out_dir.parent))
    except OSError as e:
        model.train(was_training)
        raise output_error(out_dir, e) from None
    try:
        canon_nodes, node_edges = _canonical_nodes(deform) if want_nodes else (None, None)
        if want_nodes and node_graph is None and canon_nodes.shape[0] == 0:
            want_nodes, node_names = False, None  # field not initialised yet: nothing to show
        for i, t in enumerate(times):
            frame = model.frame_index(t)
            posed = model.pose(t, frame)
            pm, pq, ps = posed.means.detach(), quat_normalize(posed.quats.detach()), posed.log_scales.detach()
            pm_np = pm.detach().float().cpu().numpy()
            if not np.isfinite(pm_np).all():
                raise SequenceError(f"non-finite positions at t={t}")
            if fmt == "points":
                xyz = pm_np[idx]
                write_points_ply(tmp / frame_names[i], xyz, rgb, comments=[comment, f"time {t!r}"], fsync=False)
                vis_xyz = xyz
            else:
                write_gaussians_ply(tmp / frame_names[i], pm_np, pq.cpu().numpy(), ps.cpu().numpy(), opac_np, sh_np,
                                    comments=[comment, f"time {t!r}"], fsync=False)
                vis_xyz = pm_np[visible]
                xyz = pm_np
            if len(xyz):
                lo, hi = np.minimum(lo, xyz.min(0)), np.maximum(hi, xyz.max(0))
            if len(vis_xyz):
                q = np.quantile(vis_xyz, [0.005, 0.995], axis=0) if len(vis_xyz) > 200 else \
                    np.stack([vis_xyz.min(0), vis_xyz.max(0)])
                rlo, rhi = np.minimum(rlo, q[0]), np.maximum(rhi, q[1])
            if want_nodes:
                p = _posed_nodes(deform, canon_nodes, t, frame)
                write_line_set_ply(tmp / node_names[i], p, node_edges, vertex_rgb=NODE_RGB, edge_rgb=NODE_RGB,
                                   comments=[f"dyngauss node graph; time {t!r}"], fsync=False)
            if progress is not None:
                progress(i + 1, len(times))
        if fmt == "points":
            np.save(tmp / "indices.npy", idx)
        if not np.isfinite(lo).all():  # no rows at all
            lo, hi = np.zeros(3), np.zeros(3)
        if not np.isfinite(rlo).all():
            rlo, rhi = lo, hi
        manifest = {
            "version": FORMAT_VERSION,
            "format": fmt,
            "count": len(times),
            "fps": fps,
            "times": [float(t) for t in times],
            "frames": frame_names,
            "sh_degree": out_degree if fmt == "gaussians" else 0,
            "model_sh_degree": int(getattr(gaussians, "max_sh_degree", model_degree)),
            "num_gaussians": rows,
            "num_canonical": n_total,
            "source": _default_source(source),
            "bbox": _bbox(lo, hi),
            "bbox_robust": _bbox(rlo, rhi),
            "deform": getattr(deform, "kind", None) if deform is not None else "none",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": "dyngauss.export.sequence",
        }
        if fmt == "points":
            manifest["opacity_threshold"] = float(opacity_threshold)
            manifest["indices"] = "indices.npy"
        if want_nodes:
            manifest["nodes"] = node_names
            manifest["num_nodes"] = int(canon_nodes.shape[0])
            manifest["num_node_edges"] = int(len(node_edges))
        if extra:
            manifest.update(extra)
        # manifest last: a folder without it is never mistaken for a complete export
        data = (json.dumps(manifest, indent=1) + "\n").encode()
        with open(tmp / MANIFEST, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        _install_dir(tmp, out_dir)
    except OSError as e:  # OutputError of a frame included: name the export, keep the cause
        err = output_error(out_dir, e)  # before the temporary folder goes: the free space as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise err from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    return out_dir

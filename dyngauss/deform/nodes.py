"""Sparse control-node deformation (DynamicFusion embedded deformation / SC-GS), `deform.kind=nodes`.

* `init_nodes(means)` farthest-point samples `num_nodes` node positions from the canonical means (the trainer
  calls it after the static warm-up; until then the field is the identity) and sets each node's radius to its
  mean distance to its nearest nodes (learnable, as log-radius). With `node_spacing` > 0 the sampling stops
  once every Gaussian is within node_spacing x (scene radius) of a node, so the node count follows the extent
  of the Gaussians relative to the scene (num_nodes is then a cap). Every length here is relative to the scene
  radius or to the node spacing, never in world units: a world scaled x20 gives the same layout x20.
* Node positions are a parameter (`node_pos`); with `node_pos_lr` > 0 they are optimised (SC-GS, Huang et al.
  2024, "SC-GS: Sparse-Controlled Gaussian Splatting for Editable Dynamic Scenes"), at an Adam rate of
  node_pos_lr x scene radius; 0 keeps them fixed (DynamicFusion).
* Every Gaussian is bound to its K (`knn`) nearest nodes; weights w_ij = exp(-d_ij^2 / (2 r_j^2)), normalised
  over the K (a softmax of the log-weights, so far-away points never divide by zero). Indices are cached
  (buffer `bind_idx`); distances and weights are recomputed every call, so they are differentiable w.r.t.
  means, node positions and radii. The indices are recomputed when the Gaussians change, every `rebind_every`
  steps, and once a node moved more than `rebind_move` x its radius since the last binding (checked in
  :meth:`set_step`).
* Node motion at time t: a small MLP on (PE(node position), time code) outputs a screw axis per node acting
  about the node (x' = R_j (x - n_j) + n_j + t_j; positions, R_j and t_j in the scene's frame, deform/shared.py;
  `node_pivot="center"`: about the scene's centre c instead, x' = R_j (x - c) + c + t_j),
  zero-initialised (identity); optionally plus a per-frame
  table of screws (`node_table`, interpolated in t between frames). The encodings, time code, MLP, heads and
  coarse-to-fine schedule are the ones of the dense field (:class:`~dyngauss.deform.shared.NetworkField`);
  settings: :class:`~dyngauss.deform.config.NodeFieldConfig`.
* Blending: dual-quaternion skinning (`blend="dqb"`, default) or linear blend skinning (`"lbs"`).
* `node_graph()` -> (edges [E,2], weights [E]) among nodes (ARAP regulariser), `node_motion(t)` -> world-frame
  per-node (rot [M,4], trans [M,3]) with x' = R x + T.
* `on_gaussians_changed(means)` re-binds; `resample_nodes(...)` adds nodes where the error is high and drops
  nodes with no bound Gaussian (this replaces the position/radius/table Parameter objects: then call
  :meth:`remap_optimizer_state` or rebuild the optimizer from :meth:`param_groups`). SC-GS's adaptive control
  runs it every `node_densify_every` deformation steps in [node_densify_start, node_densify_stop)
  (:meth:`node_densify_due`, :meth:`densify_nodes`; the trainer feeds the Gaussians' accumulated 2D gradient).
* ARAP: :meth:`arap_scale` gives the per-edge Geman-McClure scale of the robust ARAP term
  (losses/rigidity.py :func:`~dyngauss.losses.rigidity.arap_node_loss`), `arap_robust_scale` x the radius of the
  edge's first node, or None (plain L2).
* Node state (positions, radii, bindings, table) lives in buffers/parameters that are resized on
  `load_state_dict`, so a checkpoint loads into a freshly constructed field.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from ..geometry.dualquat import dq_blend, dq_from_quat_trans, dq_to_quat_trans
from ..geometry.knn import farthest_point_sample, knn, knn_self
from ..geometry.quaternion import quat_normalize, quat_rotate, quat_to_matrix
from ..geometry.se3 import se3_exp
from .base import Motion
from .config import NodeFieldConfig
from .encoding import as_time_tensor, frame_interp, frame_times_tensor
from .shared import NetworkField


class NodeMotion(NamedTuple):
    """World-frame per-node transforms x' = R x + T: rot [M,4] (wxyz), trans [M,3]."""

    rot: torch.Tensor
    trans: torch.Tensor


class NodeGraph(NamedTuple):
    """Directed node-neighbour edges [E,2] (i, j) and weights [E] (summing to 1 over each node's edges)."""

    edges: torch.Tensor
    weights: torch.Tensor


def skin(means: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, node_rot: torch.Tensor,
         node_trans: torch.Tensor, blend: str = "dqb") -> tuple[torch.Tensor, torch.Tensor]:
    """Blend per-node world transforms (x' = R_j x + T_j; node_rot [M,4], node_trans [M,3]) onto points
    means [N,3] bound to nodes idx [N,K] with weights [N,K] (summing to 1). Returns per-point (rot [N,4],
    trans [N,3]) such that R mu + t is the blended position.

    dqb: blend dual quaternions (sign-aligned to the heaviest node), normalise -> a rigid motion per point.
    lbs: position = sum_j w_j (R_j mu + T_j); rot = normalised hemisphere-aligned quaternion blend;
    trans = position - R mu."""
    q, t = node_rot[idx], node_trans[idx]  # [N,K,4], [N,K,3]
    if blend == "dqb":
        dq = dq_blend(dq_from_quat_trans(q, t), weights)
        return dq_to_quat_trans(dq, normalize=False)
    if blend == "lbs":
        pos = (weights.unsqueeze(-1) * (quat_rotate(q, means.unsqueeze(1).expand_as(t)) + t)).sum(1)
        ref = torch.gather(q, 1, weights.argmax(-1)[:, None, None].expand(-1, 1, 4))
        q = torch.where((q * ref).sum(-1, keepdim=True) < 0, -q, q)
        rot = quat_normalize((weights.unsqueeze(-1) * q).sum(1))
        return rot, pos - quat_rotate(rot, means)
    raise ValueError(f"blend must be 'dqb' or 'lbs', got {blend!r}")


def lbs_blend_matrices(node_rot: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_j w_j R_j [...,3,3] (node_rot [...,K,4], weights [...,K]): the (generally non-rigid) linear part of
    LBS, e.g. to show its determinant shrinking (candy-wrapper artefact)."""
    return (weights[..., None, None] * quat_to_matrix(node_rot)).sum(-3)


class NodeDeformField(NetworkField):
    """Control-node field (module docstring). `cfg`: its settings; num_frames / frame_times: the training frames
    (per-frame latent codes and node table; frame i at frame_times[i], default evenly spaced in [0, 1]).
    Raises ValueError for an unknown blend or time_mode, or latent codes / a node table without a frame count."""

    kind = "nodes"
    _RESIZABLE = ("node_pos", "bind_idx", "log_radii", "node_table")
    # resample_nodes: a candidate Gaussian must be farther than this x its nearest node's radius from every node
    MIN_DIST_MULT = 0.5

    def __init__(self, cfg: NodeFieldConfig | None = None, num_frames: int | None = None,
                 frame_times: Sequence[float] | None = None):
        cfg = NodeFieldConfig() if cfg is None else cfg
        super().__init__(cfg, num_frames, frame_times)
        if cfg.blend not in ("dqb", "lbs"):
            raise ValueError(f"blend must be 'dqb' or 'lbs', got {cfg.blend!r}")
        if cfg.node_table and not self._num_frames:
            raise ValueError("deform.node_table needs the number of frames (deform.num_frames or the data)")
        self.num_nodes_target, self.k, self.blend = int(cfg.num_nodes), int(cfg.knn), cfg.blend
        self.node_pivot = cfg.node_pivot
        self.graph_knn, self.radius_mult = int(cfg.graph_knn), float(cfg.radius_mult)
        self.rebind_every = int(cfg.rebind_every)
        self.node_lr_mult = cfg.lr_mult(cfg.node_lr)
        learn_pos = cfg.node_pos_lr > 0
        self.pos_lr_mult = cfg.lr_mult(cfg.node_pos_lr) if learn_pos else 0.0
        self.rebind_move = float(cfg.rebind_move)
        self.node_spacing = float(cfg.node_spacing)
        self.densify_every, self.densify_start = int(cfg.node_densify_every), int(cfg.node_densify_start)
        self.densify_stop, self.densify_quantile = int(cfg.node_densify_stop), float(cfg.node_densify_quantile)
        self.max_nodes = int(cfg.max_nodes) or 2 * self.num_nodes_target
        self.arap_robust_scale = float(cfg.arap_robust_scale)
        self.node_pos = nn.Parameter(torch.zeros(0, 3), requires_grad=learn_pos)
        self.register_buffer("bind_idx", torch.zeros(0, self.k, dtype=torch.long))
        # node positions when bind_idx was computed (not saved: a loaded binding counts as made at the loaded nodes)
        self.register_buffer("bind_pos", torch.zeros(0, 3), persistent=False)
        self.log_radii = nn.Parameter(torch.zeros(0))
        self._build_inputs(cfg)
        self._build_trunk(cfg, self.pos_pe.out_dim)
        if cfg.node_table:
            self.table_lr_mult = cfg.lr_mult(cfg.table_lr)
            self.node_table = nn.Parameter(torch.zeros(int(self._num_frames), 0, 6))
            self.register_buffer("table_times", frame_times_tensor(self._num_frames, self._frame_times))
        else:
            self.node_table = None
        self._graph_cache: tuple | None = None
        self._bind_dirty = False
        self._bound_key: tuple | None = None  # (data_ptr, N) of the points bind_idx was computed for

    # ---- state ---------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return self.node_pos.shape[0]

    @property
    def initialized(self) -> bool:
        return self.num_nodes > 0

    def _set_param(self, name: str, value: torch.Tensor, replaced: list | None = None, axis: int = 0) -> None:
        """Give parameter `name` a new value of possibly another size.

        A parameter that is still empty (never used in a graph) keeps its object, so an optimizer built
        before :meth:`init_nodes` keeps working. Otherwise a new Parameter replaces it (changing the size of
        a parameter that autograd has seen breaks its cached gradient accumulator); (old, new, node axis) is
        appended to `replaced` for :meth:`remap_optimizer_state`."""
        old = getattr(self, name)
        value = value.detach().to(device=old.device, dtype=old.dtype)
        if old.numel() == 0:
            old.data = value
            return
        setattr(self, name, nn.Parameter(value.clone(), requires_grad=old.requires_grad))
        if replaced is not None:
            replaced.append((old, getattr(self, name), axis))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # node count and binding count differ between checkpoints: adopt the stored shapes first
        for name in self._RESIZABLE:
            key = prefix + name
            if key not in state_dict:
                continue
            src = state_dict[key]
            if name in self._buffers and self._buffers[name] is not None:
                cur = self._buffers[name]
                if cur.shape != src.shape:
                    self._buffers[name] = torch.zeros(src.shape, dtype=cur.dtype, device=cur.device)
            elif name in self._parameters and self._parameters[name] is not None:
                cur = self._parameters[name]
                if cur.shape != src.shape:
                    cur.data = torch.zeros(src.shape, dtype=cur.dtype, device=cur.device)
        self._graph_cache = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self.bind_pos = self.node_pos.detach().clone()

    def set_step(self, step: int) -> None:
        """The deformation step (annealing); marks the binding stale every `rebind_every` steps and, with
        learnable nodes, when a node moved more than `rebind_move` x its radius since the last binding (one
        host sync; not called inside CUDA-graph capture)."""
        super().set_step(step)
        if self.rebind_every > 0 and step % self.rebind_every == 0:
            self._bind_dirty = True
        if self.node_pos.requires_grad and self.initialized and self.bind_pos.shape == self.node_pos.shape:
            if float(self.node_moves().max()) > self.rebind_move:
                self._bind_dirty = True

    @torch.no_grad()
    def node_moves(self) -> torch.Tensor:
        """How far each node moved since the last binding, in units of its radius [M]."""
        return (self.node_pos - self.bind_pos).norm(dim=-1) / torch.exp(self.log_radii)

    def set_frame_times(self, times) -> None:
        super().set_frame_times(times)
        if self.node_table is not None:
            self.table_times.copy_(torch.as_tensor(times, dtype=self.table_times.dtype).reshape(-1))

    # ---- nodes and bindings --------------------------------------------------------------------
    def _init_radii(self, pos: torch.Tensor) -> torch.Tensor:
        """Log-radii [M]: radius_mult x the mean distance to the K nearest other nodes (the node spacing); a lone
        node gets the scene radius. Floored at 1e-6 scene radii."""
        m = pos.shape[0]
        unit = float(self.world_radius)
        if m < 2:
            return torch.full((m,), math.log(unit * self.radius_mult), device=pos.device)
        d2, _ = knn_self(pos, min(self.k, m - 1))
        r = (d2.mean(-1).sqrt() * self.radius_mult).clamp_min(1e-6 * unit)
        return torch.log(r)

    def _spaced_count(self, p: torch.Tensor, idx: torch.Tensor) -> int:
        """How many of the farthest-point samples idx [m] of p are kept for `node_spacing`: FPS sample i is
        kept while the first i samples leave some point farther than node_spacing x scene radius (the covering
        radius of a farthest-point sample falls monotonically, so this is a prefix)."""
        if self.node_spacing <= 0 or len(idx) < 2:
            return len(idx)
        q = p[idx].double()
        d = torch.cdist(q, q)
        d = d.masked_fill(torch.ones_like(d, dtype=torch.bool).triu(), float("inf"))
        cover = d.min(-1).values  # [m]: distance of sample i to the earlier ones (inf for the first)
        return max(1, int((cover >= self.node_spacing * float(self.world_radius)).sum()))

    @torch.no_grad()
    def init_nodes(self, means: torch.Tensor, num_nodes: int | None = None) -> None:
        """Farthest-point sample nodes from `means` [N,3] (at most `num_nodes`, fewer with `node_spacing`), set
        radii, bind `means`."""
        m = num_nodes or self.num_nodes_target
        p = means.detach()
        idx = farthest_point_sample(p, m)
        idx = idx[: self._spaced_count(p, idx)]
        pos = p[idx].to(self.node_pos.dtype).clone()
        self._set_param("node_pos", pos)
        self._set_param("log_radii", self._init_radii(pos))
        if self.node_table is not None:
            self._set_param("node_table", torch.zeros(self.node_table.shape[0], pos.shape[0], 6,
                                                      device=pos.device), axis=1)
        self._graph_cache = None
        self.bind(p)

    @torch.no_grad()
    def bind(self, means: torch.Tensor) -> None:
        """(Re)compute the K nearest nodes of every Gaussian."""
        if not self.initialized:
            return
        k = min(self.k, self.num_nodes)
        pos = self.node_pos.detach()
        _, idx = knn(means.detach().to(pos.dtype), pos, k)
        self.bind_idx = idx
        self.bind_pos = pos.clone()
        self._bind_dirty = False
        self._bound_key = None

    def on_gaussians_changed(self, means: torch.Tensor) -> None:
        self.bind(means)

    def binding_weights(self, means: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised RBF weights [N,K] of the bound nodes, softmax_k(-|x - n_k|^2 / (2 r_k^2)) (differentiable
        w.r.t. means, node positions and radii)."""
        idx = self.bind_idx if idx is None else idx
        d2 = ((means.unsqueeze(1) - self.node_pos.to(means.dtype)[idx]) ** 2).sum(-1)
        r2 = torch.exp(2 * self.log_radii.to(means.dtype))[idx]
        return torch.softmax(-d2 / (2 * r2), dim=-1)

    def _ensure_bound(self, means: torch.Tensor) -> None:
        """Bind `means` unless bind_idx already belongs to them. The binding is kept for the tensor it was made
        for (the canonical Gaussians: same storage across optimizer steps); any other point set (a sample of
        the Gaussians, query points of the cycle losses) is bound afresh, even when it has the same size."""
        key = (means.data_ptr(), means.shape[0])
        stale = self._bind_dirty or self.bind_idx.shape[0] != means.shape[0] or \
            self.bind_idx.shape[1] != min(self.k, self.num_nodes)
        if self._bound_key is None and not stale:
            self._bound_key = key  # a binding restored from a checkpoint belongs to the first points asked for
        if stale or self._bound_key != key:
            self.bind(means)
            self._bound_key = key

    # ---- motion --------------------------------------------------------------------------------
    def node_screws(self, t, frame=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-node screw axes [M,6] (about the node) and optional dscale [M,3] at time t."""
        pos = self.node_pos
        dtype = self.screw_head.weight.dtype
        pos = pos.to(dtype)
        c = self.time(as_time_tensor(t, 1, pos.device, dtype)[:1], frame)
        s, ds = self.trunk(self.pos_pe(self.to_unit(pos), self.alpha), c)
        if self.node_table is not None:
            if frame is not None:
                s = s + self.node_table[int(frame)]
            else:
                tt = torch.as_tensor(t, dtype=self.table_times.dtype, device=pos.device).reshape(1)
                lo, hi, a = frame_interp(self.table_times, tt)
                a = a.to(dtype)
                # index_select, not [lo[0]]: a 0-d CUDA index would sync (and break CUDA-graph capture)
                tab = self.node_table
                s = s + (1 - a) * tab.index_select(0, lo)[0] + a * tab.index_select(0, hi)[0]
        return s, ds

    def node_motion(self, t, frame=None) -> NodeMotion:
        """World-frame node transforms at time t: rot [M,4], trans [M,3] with x' = R x + T (so the node
        itself goes to n_j + t_j)."""
        s, _ = self.node_screws(t, frame)
        q, p = se3_exp(s)
        q = self.rotation_from_unit(q)
        pos = self._pivots(s.dtype)
        return NodeMotion(q, pos + self.vector_from_unit(p) - quat_rotate(q, pos))

    def _pivots(self, dtype) -> torch.Tensor:
        """The point each node's screw turns about [M,3] (world units): the node itself (node_pivot="node",
        DynamicFusion / SC-GS) or the scene's centre (node_pivot="center", as the dense field's Nerfies screw: a
        rigid motion of the whole scene is then the same screw at every node)."""
        pos = self.node_pos.to(dtype)
        if self.node_pivot == "center":
            return self.world_center.to(device=pos.device, dtype=dtype).expand_as(pos)
        return pos

    def forward(self, means: torch.Tensor, t, frame=None) -> Motion:
        if not self.initialized or means.shape[0] == 0:
            return Motion.identity(means.shape[0], means.device, means.dtype)
        if torch.as_tensor(t).numel() != 1:
            raise ValueError("NodeDeformField takes one time per call")
        self._ensure_bound(means)
        s, ds = self.node_screws(t, frame)
        q, p = se3_exp(s.to(means.dtype))  # in the scene's frame (shared.py)
        q = self.rotation_from_unit(q)
        pos = self._pivots(means.dtype)
        node_t = pos + self.vector_from_unit(p) - quat_rotate(q, pos)
        w = self.binding_weights(means)
        rot, trans = skin(means, self.bind_idx, w, q, node_t, self.blend)
        dscale = None if ds is None else (w.unsqueeze(-1) * ds.to(means.dtype)[self.bind_idx]).sum(1)
        return Motion(rot, trans, dscale)

    # ---- graph ---------------------------------------------------------------------------------
    @torch.no_grad()
    def node_graph(self, k: int | None = None) -> NodeGraph:
        """Edges [E,2] (i, j): j among the k nearest other nodes of i; weights [E] = exp(-d^2 / (2 r_i^2))
        normalised over each node's edges (ARAP: sum_e w_e |R_i (n_j - n_i) + n_i + t_i - (n_j + t_j)|^2)."""
        k = min(k or self.graph_knn, max(self.num_nodes - 1, 0))
        if k <= 0:
            return NodeGraph(torch.zeros(0, 2, dtype=torch.long, device=self.node_pos.device),
                             torch.zeros(0, device=self.node_pos.device))
        key = (k, self.num_nodes, self.node_pos.data_ptr(), self.node_pos._version, self.log_radii._version)
        if self._graph_cache is not None and self._graph_cache[0] == key:
            return self._graph_cache[1]
        d2, idx = knn_self(self.node_pos.detach(), k)
        r2 = torch.exp(2 * self.log_radii.detach())[:, None]
        w = torch.softmax(-d2 / (2 * r2), dim=-1)
        src = torch.arange(self.num_nodes, device=idx.device)[:, None].expand_as(idx)
        out = NodeGraph(torch.stack([src.reshape(-1), idx.reshape(-1)], -1), w.reshape(-1))
        self._graph_cache = (key, out)
        return out

    # ---- adaptive nodes ------------------------------------------------------------------------
    @torch.no_grad()
    def resample_nodes(self, means: torch.Tensor, error_per_gaussian: torch.Tensor | None = None,
                       max_new: int | None = None, error_quantile: float = 0.9,
                       min_dist_mult: float | None = None, max_total: int | None = None,
                       separate_new: bool = False) -> dict:
        """Drop nodes that no Gaussian is bound to; add up to `max_new` (default num_nodes // 8) nodes at
        farthest-point samples of the Gaussians whose error is positive and at or above its `error_quantile`
        and that are farther than `min_dist_mult` (default :attr:`MIN_DIST_MULT`) x (their nearest node's
        radius) from every old node (`separate_new`: and from the nodes added before them in this call, so a
        small high-error region gets one node per node spacing, not max_new); at most `max_total` nodes in all
        (default unbounded). New nodes copy the radius (and table rows) of their nearest old node. Re-binds
        `means`.

        means [N,3]; error_per_gaussian [N] (any non-negative per-Gaussian score, e.g. the accumulated 2D
        mean gradient) or None (only prune).
        Returns {"keep": old indices kept [M'] (long), "added": n, "removed": n, "replaced": [(old, new,
        axis)]}; the position/radius/table parameters are new objects, so call :meth:`remap_optimizer_state`
        (or rebuild the optimizer). Raises ValueError when the error has another length than `means`."""
        if not self.initialized:
            self.init_nodes(means)
            return {"keep": torch.zeros(0, dtype=torch.long), "added": self.num_nodes, "removed": 0,
                    "replaced": []}
        p = means.detach().to(self.node_pos.dtype)
        if error_per_gaussian is not None and error_per_gaussian.numel() != len(p):
            raise ValueError(f"error_per_gaussian has {error_per_gaussian.numel()} values for {len(p)} Gaussians")
        mult = self.MIN_DIST_MULT if min_dist_mult is None else float(min_dist_mult)
        self.bind(p)
        used = torch.zeros(self.num_nodes, dtype=torch.bool, device=p.device)
        used[self.bind_idx.reshape(-1)] = True
        keep = torch.nonzero(used).squeeze(-1)
        pos, logr = self.node_pos.detach()[keep], self.log_radii.detach()[keep]
        table = self.node_table.detach()[:, keep] if self.node_table is not None else None
        added = 0
        limit = self.num_nodes_target // 8 if max_new is None else int(max_new)
        if max_total is not None:
            limit = min(limit, int(max_total) - len(keep))
        if error_per_gaussian is not None and len(p) > 0 and limit > 0:
            err = error_per_gaussian.detach().reshape(-1).to(device=p.device, dtype=p.dtype)
            thr = torch.quantile(err, error_quantile) if err.numel() > 1 else err.min()
            cand = p[(err >= thr) & (err > 0)]
            near_r = None
            if len(cand) > 0 and len(pos) > 0:
                d2, nn_idx = knn(cand, pos, 1)
                near_r = torch.exp(logr[nn_idx[:, 0]])
                far = d2[:, 0].sqrt() > mult * near_r
                cand, near_r = cand[far], near_r[far]
            if len(cand) > 0:
                pick = farthest_point_sample(cand, limit)
                new = cand[pick]
                if separate_new and near_r is not None and len(new) > 1:  # nor close to a node added before it
                    d = torch.cdist(new, new).masked_fill(
                        torch.ones(len(new), len(new), dtype=torch.bool, device=new.device).triu(), float("inf"))
                    new = new[d.min(-1).values > mult * near_r[pick]]
                _, near = knn(new, pos, 1) if len(pos) else (None, None)
                pos = torch.cat([pos, new], 0)
                logr = torch.cat([logr, logr[near[:, 0]] if near is not None else self._init_radii(new)])
                if table is not None:
                    table = torch.cat([table, table[:, near[:, 0]] if near is not None else
                                       table.new_zeros(table.shape[0], len(new), table.shape[2])], 1)
                added = len(new)
        removed = self.num_nodes - len(keep)
        replaced: list = []
        self._set_param("node_pos", pos.contiguous(), replaced, 0)
        self._set_param("log_radii", logr, replaced, 0)
        if table is not None:
            self._set_param("node_table", table, replaced, 1)
        self._graph_cache = None
        self.bind(p)
        return {"keep": keep, "added": added, "removed": removed, "replaced": replaced}

    def node_densify_due(self, step: int) -> bool:
        """Whether SC-GS adaptive control runs at deformation step `step` (steps since the warm-up): every
        `node_densify_every` steps in [node_densify_start, node_densify_stop), once nodes exist."""
        return (self.densify_every > 0 and self.initialized and self.densify_start <= step < self.densify_stop
                and (step - self.densify_start) % self.densify_every == 0)

    @torch.no_grad()
    def densify_nodes(self, means: torch.Tensor, error_per_gaussian: torch.Tensor | None) -> dict:
        """SC-GS adaptive node control with this field's settings: :meth:`resample_nodes` with the error quantile
        `node_densify_quantile`, at most num_nodes // 8 (at least 1) new nodes per call, each at least
        MIN_DIST_MULT node radii from every other node, and `max_nodes` in all. Returns its info (pass it to
        :meth:`remap_optimizer_state`)."""
        return self.resample_nodes(means, error_per_gaussian, max_new=max(1, self.num_nodes // 8),
                                   error_quantile=self.densify_quantile, max_total=self.max_nodes,
                                   separate_new=True)

    def arap_scale(self, edges: torch.Tensor) -> torch.Tensor | None:
        """Per-edge Geman-McClure scale [E] (world units) of the robust ARAP term for edges [E,2] (i, j):
        `arap_robust_scale` x r_i (node i's radius, no gradient), so the kernel's knee sits at a fixed fraction of
        the local node spacing whatever the world's units; None when arap_robust_scale = 0 (plain L2)."""
        if self.arap_robust_scale <= 0:
            return None
        return self.arap_robust_scale * torch.exp(self.log_radii.detach())[edges[:, 0].long()]

    @staticmethod
    def remap_optimizer_state(optimizer: torch.optim.Optimizer, info: dict) -> None:
        """After :meth:`resample_nodes`: put the new position / radius / table parameters into `optimizer` in
        place of the old ones, with their per-node state (e.g. Adam moments) indexed by info["keep"] and zeros
        for the added nodes; scalar state (Adam's step count) is kept. (Alternatively rebuild the optimizer from
        :meth:`param_groups`.)"""
        keep, added = info["keep"], info["added"]
        for old, new, axis in info.get("replaced", []):
            for group in optimizer.param_groups:
                group["params"] = [new if p is old else p for p in group["params"]]
            if old not in optimizer.state:
                continue
            st = optimizer.state.pop(old)
            for name, v in list(st.items()):
                if torch.is_tensor(v) and v.dim() == new.dim():  # per-element moments, not the step count
                    v = v.index_select(axis, keep.to(v.device))
                    pad = list(v.shape)
                    pad[axis] = added
                    st[name] = torch.cat([v, v.new_zeros(pad)], axis)
            optimizer.state[new] = st

    def param_groups(self, lr: float) -> list[dict]:
        """The network at `lr`, radii (node_lr), latent codes, node table and, when learnable, the node positions
        ("deform.nodes.pos": node_pos_lr x the scene radius, so the rate is in scene radii)."""
        net = [p for n, p in self.named_parameters()
               if not n.startswith(("time.", "log_radii", "node_table", "node_pos"))]
        groups = [{"name": "deform.nodes", "params": net, "lr": lr},
                  {"name": "deform.nodes.radii", "params": [self.log_radii], "lr": lr * self.node_lr_mult}]
        if self.node_pos.requires_grad:
            groups.append({"name": "deform.nodes.pos", "params": [self.node_pos],
                           "lr": lr * self.pos_lr_mult * float(self.world_radius)})
        groups += self._time_param_group("deform.nodes", lr)
        if self.node_table is not None:
            groups.append({"name": "deform.nodes.table", "params": [self.node_table],
                           "lr": lr * self.table_lr_mult})
        return groups

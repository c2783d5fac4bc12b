"""`DeformConfig` (the `deform.*` config section) and `build_deform` / `build_backward`."""
from __future__ import annotations

from dataclasses import dataclass

from .base import DeformField, IdentityField


@dataclass
class DeformConfig:
    """Deformation field settings. Learning rates given as 0 mean "the same as `lr`"; the trainer decays
    every group by the same factor from `lr` to `lr_final`."""

    kind: str = "mlp"                 # none | mlp | nodes
    lr: float = 1e-3                  # deformation network learning rate (Adam)
    lr_final: float = 1e-5            # exponential decay target at the end of training
    # ---- shared by mlp and nodes (nodes: the per-node motion MLP) ----
    pos_freqs: int = 8                # PE frequencies of the position (2^0 .. 2^(F-1))
    pos_scale: float = 1.0            # positions are multiplied by this before the PE
    time_freqs: int = 6               # PE frequencies of t (time_mode=pe)
    width: int = 128
    depth: int = 6
    skip: int = -1                    # layer that re-injects the inputs; -1 = depth // 2, 0 = none
    anneal_steps: int = 0             # coarse-to-fine PE window 0 -> pos_freqs over this many steps; 0 = off
    time_mode: str = "pe"             # pe | latent (per-frame GLO codes, interpolated for unseen t)
    num_frames: int = 0               # latent codes / node table; 0 = from the data (build_deform argument)
    latent_dim: int = 8
    latent_init: str = "smooth"       # smooth (codes start as a smooth function of the frame time) | random
    latent_lr: float = 0.0            # 0 = lr
    dscale: bool = False              # also predict a per-Gaussian log-scale change
    # ---- mlp only ----
    screw_frame: str = "world"        # world (Nerfies: x' = R x + t) | local (rotation about the point)
    ambient_dims: int = 0             # HyperNeRF ambient (slicing) coordinates; 0 = off
    ambient_width: int = 64
    ambient_depth: int = 3
    ambient_freqs: int = 2
    ambient_lr: float = 0.0           # 0 = lr
    # ---- nodes only ----
    num_nodes: int = 512
    knn: int = 4                      # nodes per Gaussian
    blend: str = "dqb"                # dqb (dual-quaternion skinning) | lbs
    graph_knn: int = 8                # node neighbours in node_graph() (ARAP)
    radius_mult: float = 1.0          # initial node radius = this x mean distance to the knn nearest nodes
    node_lr: float = 1e-3             # learning rate of the node log-radii
    node_table: bool = False          # add a per-frame table of node screws to the MLP output
    table_lr: float = 0.0             # 0 = lr
    rebind_every: int = 0             # also re-bind Gaussians to nodes every this many steps; 0 = only on change
    # ---- backward (inverse) field ----
    backward: bool = False            # build a posed -> canonical field too (cycle consistency)
    backward_width: int = 0           # 0 = width
    backward_depth: int = 0           # 0 = depth


def _mult(value: float, lr: float) -> float:
    return 1.0 if value <= 0 or lr <= 0 else value / lr


def _common(cfg: DeformConfig, num_frames: int | None, frame_times) -> dict:
    nf = cfg.num_frames or num_frames or None
    if cfg.time_mode == "latent" and not nf:
        raise ValueError("deform.time_mode=latent needs the number of frames (deform.num_frames or the data)")
    if frame_times is not None and nf is not None and len(frame_times) != nf:
        frame_times = None  # a different frame count was forced in the config: fall back to linspace
    return dict(pos_freqs=cfg.pos_freqs, time_freqs=cfg.time_freqs, width=cfg.width, depth=cfg.depth,
                skip=(None if cfg.skip == 0 else cfg.skip), anneal_steps=cfg.anneal_steps,
                time_mode=cfg.time_mode, num_frames=nf, latent_dim=cfg.latent_dim, frame_times=frame_times,
                latent_init=cfg.latent_init,
                pos_scale=cfg.pos_scale, latent_lr_mult=_mult(cfg.latent_lr, cfg.lr))


def build_deform(cfg: DeformConfig, num_frames: int | None = None, frame_times=None) -> DeformField:
    """The field `cfg.kind` names. num_frames / frame_times (the distinct training times, frame i at
    frame_times[i]; default evenly spaced in [0,1]) come from the data and are used by latent codes and the
    node table."""
    if cfg.kind == "none":
        return IdentityField()
    if cfg.kind == "mlp":
        from .mlp import MLPDeformField

        return MLPDeformField(**_common(cfg, num_frames, frame_times), dscale=cfg.dscale,
                              screw_frame=cfg.screw_frame, ambient_dims=cfg.ambient_dims,
                              ambient_width=cfg.ambient_width, ambient_depth=cfg.ambient_depth,
                              ambient_freqs=cfg.ambient_freqs, ambient_lr_mult=_mult(cfg.ambient_lr, cfg.lr))
    if cfg.kind == "nodes":
        from .nodes import NodeDeformField

        kw = _common(cfg, num_frames, frame_times)
        if cfg.node_table and not kw["num_frames"]:
            raise ValueError("deform.node_table needs the number of frames")
        return NodeDeformField(**kw, num_nodes=cfg.num_nodes, knn=cfg.knn, blend=cfg.blend,
                               node_table=cfg.node_table, graph_knn=cfg.graph_knn, radius_mult=cfg.radius_mult,
                               dscale=cfg.dscale, node_lr_mult=_mult(cfg.node_lr, cfg.lr),
                               table_lr_mult=_mult(cfg.table_lr, cfg.lr), rebind_every=cfg.rebind_every)
    raise ValueError(f"unknown deform.kind {cfg.kind!r}; use none, mlp or nodes")


def build_backward(cfg: DeformConfig, num_frames: int | None = None, frame_times=None):
    """The inverse field (posed -> canonical) when `cfg.backward`, else None."""
    if not cfg.backward:
        return None
    from .backward import BackwardField

    kw = _common(cfg, num_frames, frame_times)
    kw["width"] = cfg.backward_width or cfg.width
    kw["depth"] = cfg.backward_depth or cfg.depth
    return BackwardField(**kw)

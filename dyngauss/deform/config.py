"""The `deform.*` config section: one dataclass per field kind, each building its field.

`deform` is a tagged union: its `kind` key picks the dataclass (:data:`FIELD_CONFIGS`), and only that
kind's keys are valid next to it (dyngauss/config.py enforces this when loading YAML and overrides).

* :class:`StaticFieldConfig` (`kind: none`): no motion, a static scene.
* :class:`NetworkFieldConfig`: the keys shared by the fields built on a conditioned MLP (position encoding
  with a coarse-to-fine window, a time code, an MLP, a screw-axis head; see deform/shared.py) and by their
  backward (posed -> canonical) field.
* :class:`MLPFieldConfig` (`kind: mlp`): a dense SE(3) field (Nerfies / HyperNeRF).
* :class:`NodeFieldConfig` (`kind: nodes`): sparse control nodes with skinning (DynamicFusion / SC-GS).
* :class:`TrackingFieldConfig` (`kind: tracking`): a rigid motion per Gaussian per training frame
  (Dynamic3DGaussians), for multi-view captures.
* :class:`BasesFieldConfig` (`kind: bases`): K shared rigid trajectories blended per Gaussian (Shape of Motion).

Every config has `build(num_frames, frame_times) -> DeformField` and `build_backward(...)` (the inverse field,
or None). The defaults are the main job's (configs/default.yaml is the default Config). Every key carries its
allowed range or choices (``Annotated[..., Range(...)]``, dyngauss/schema.py) and NetworkFieldConfig.RULES the
relation between keys; dyngauss.config checks them when a config is loaded.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, ClassVar, Sequence

from ..schema import OneOf, Range, Rule
from .base import DeformField, IdentityField

# constraints of the keys (dyngauss/schema.py; checked by dyngauss.config.validate_config)
LR = Range(ge=0, hint="a negative rate would ascend the loss")
LR_OR_SAME = Range(ge=0, hint="0 = the same as lr")
FREQS = Range(ge=0, le=20, hint="2^20 x has no float32 precision left")
SIZE = Range(ge=1)
SIZE_OR_SAME = Range(ge=0, hint="0 = the same as the forward field")


@dataclass
class FieldConfig:
    """Base of the field configs: the `kind` tag (a key of :data:`FIELD_CONFIGS`)."""

    kind: str = ""

    KIND: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.kind != self.KIND:
            raise ValueError(f"{type(self).__name__} has kind {self.KIND!r}, got kind={self.kind!r}")

    def build(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None) -> DeformField:
        """The forward field (canonical -> time t). num_frames / frame_times: the training frames (frame i at
        frame_times[i] in [0, 1]; default evenly spaced), used by per-frame latent codes and node tables."""
        raise NotImplementedError

    def build_backward(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None, *,
                       required: bool = False) -> DeformField | None:
        """The backward field (posed -> canonical) when this config asks for one (`backward`) or `required`
        (e.g. the cycle loss needs it); None otherwise, and always None for a static scene."""
        return None


@dataclass
class StaticFieldConfig(FieldConfig):
    """`deform.kind=none`: a static scene (:class:`IdentityField`). Nothing to learn: lr is 0."""

    kind: Annotated[str, OneOf("none")] = "none"

    KIND: ClassVar[str] = "none"
    lr: ClassVar[float] = 0.0          # no parameters (read by the trainer's deformation optimizer)
    lr_final: ClassVar[float] = 0.0

    def build(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None) -> DeformField:
        return IdentityField()


@dataclass
class NetworkFieldConfig(FieldConfig):
    """Keys shared by the MLP-based fields and their backward field. Learning rates given as 0 mean "the same
    as `lr`"; the trainer decays every group by the same factor from `lr` to `lr_final`."""

    lr: Annotated[float, LR] = 1e-3                 # deformation network learning rate (Adam)
    lr_final: Annotated[float, LR] = 1e-5           # exponential decay target at the end of training
    pos_freqs: Annotated[int, FREQS] = 8            # PE frequencies of the position (2^0 .. 2^(F-1))
    # positions in the scene's unit (radius 1, deform/shared.py) are multiplied by this before the PE; 1.2 keeps
    # the frequencies the defaults were tuned with in the built-in scene's world, whose radius is 1.2
    pos_scale: Annotated[float, Range(gt=0)] = 1.2
    time_freqs: Annotated[int, FREQS] = 4           # PE frequencies of t (time_mode=pe); low: one camera per time
    width: Annotated[int, SIZE] = 64                # MLP width (64 x 4: ~0.06 s/iteration on 2 CPU cores)
    depth: Annotated[int, SIZE] = 4
    # layer that re-injects the inputs; -1 = depth // 2, 0 = none, else 1 .. depth-1
    skip: Annotated[int, Range(ge=-1, hint="-1 = depth // 2, 0 = none")] = -1
    anneal_steps: Annotated[int, Range(ge=0)] = 0   # coarse-to-fine PE window 0 -> pos_freqs over this; 0 = off
    time_mode: Annotated[str, OneOf("pe", "latent")] = "pe"  # latent: per-frame GLO codes, interpolated
    num_frames: Annotated[int, Range(ge=0, hint="0 = from the data")] = 0  # latent codes / node table
    latent_dim: Annotated[int, SIZE] = 8
    # smooth (codes start as a smooth function of the frame time) | random
    latent_init: Annotated[str, OneOf("smooth", "random")] = "smooth"
    latent_lr: Annotated[float, LR_OR_SAME] = 0.0   # 0 = lr
    dscale: bool = False              # also predict a per-Gaussian log-scale change
    backward: bool = False            # build a posed -> canonical field too (cycle consistency)
    backward_width: Annotated[int, SIZE_OR_SAME] = 0  # 0 = width
    backward_depth: Annotated[int, SIZE_OR_SAME] = 0  # 0 = depth

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("skip", "<", "depth", when=("skip", ">", 0), why="a skip layer at or past the last layer is no skip"),)

    def frames(self, num_frames: int | None, frame_times: Sequence[float] | None
               ) -> tuple[int | None, Sequence[float] | None]:
        """(frame count, frame times) for latent codes / node tables: `num_frames` of this config wins over the
        data's; times whose count differs from a count forced here fall back to evenly spaced. Raises
        ValueError when time_mode=latent has no frame count."""
        nf = self.num_frames or num_frames or None
        if self.time_mode == "latent" and not nf:
            raise ValueError("deform.time_mode=latent needs the number of frames (deform.num_frames or the data)")
        if frame_times is not None and nf is not None and len(frame_times) != nf:
            frame_times = None
        return nf, frame_times

    def lr_mult(self, lr: float) -> float:
        """A group learning rate as a multiple of `lr` (0 = the same as `lr`)."""
        return 1.0 if lr <= 0 or self.lr <= 0 else lr / self.lr

    def backward_config(self) -> "MLPFieldConfig":
        """The backward field's settings: this config's shared keys, backward_width/backward_depth, no
        dscale head (an inverse field moves points, not Gaussians)."""
        shared = {f.name for f in dataclasses.fields(NetworkFieldConfig)} - {"kind"}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in shared}
        values.update(width=self.backward_width or self.width, depth=self.backward_depth or self.depth,
                      dscale=False, backward=False)
        return MLPFieldConfig(**values)

    def build_backward(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None, *,
                       required: bool = False) -> DeformField | None:
        if not (self.backward or required):
            return None
        from .backward import BackwardField

        return BackwardField(self.backward_config(), num_frames, frame_times)


@dataclass
class MLPFieldConfig(NetworkFieldConfig):
    """`deform.kind=mlp`: dense SE(3) field (:class:`~dyngauss.deform.mlp.MLPDeformField`)."""

    kind: Annotated[str, OneOf("mlp")] = "mlp"
    # world (Nerfies: x' = R x + t) | local (rotation about the point)
    screw_frame: Annotated[str, OneOf("world", "local")] = "world"
    ambient_dims: Annotated[int, Range(ge=0, hint="0 = off")] = 0  # HyperNeRF ambient (slicing) coordinates
    ambient_width: Annotated[int, SIZE] = 64
    ambient_depth: Annotated[int, SIZE] = 3
    ambient_freqs: Annotated[int, FREQS] = 2
    ambient_lr: Annotated[float, LR_OR_SAME] = 0.0  # 0 = lr

    KIND: ClassVar[str] = "mlp"

    def build(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None) -> DeformField:
        from .mlp import MLPDeformField

        return MLPDeformField(self, num_frames, frame_times)


@dataclass
class NodeFieldConfig(NetworkFieldConfig):
    """`deform.kind=nodes`: control nodes with skinning (:class:`~dyngauss.deform.nodes.NodeDeformField`)."""

    kind: Annotated[str, OneOf("nodes")] = "nodes"
    num_nodes: Annotated[int, SIZE] = 512
    knn: Annotated[int, SIZE] = 4                   # nodes per Gaussian (at most the node count)
    blend: Annotated[str, OneOf("dqb", "lbs")] = "dqb"  # dqb (dual-quaternion skinning) | lbs
    graph_knn: Annotated[int, SIZE] = 8             # node neighbours in node_graph() (ARAP)
    radius_mult: Annotated[float, Range(gt=0)] = 1.0  # initial node radius = this x mean distance to knn nodes
    node_lr: Annotated[float, LR] = 1e-3            # learning rate of the node log-radii
    # the point a node's screw turns about: the scene's centre (as the dense field's Nerfies screw,
    # screw_frame=world: a large rotation of a whole object is then one screw at every node) or the node itself
    # (DynamicFusion / SC-GS). center: strided track error 8.55 -> 5.25%, +1.2 dB on the motion benchmark's ten
    # scenes (docs/benchmark.md); configs/nodes.yaml sets it. The default stays "node": what checkpoints written
    # before the key existed were trained with
    node_pivot: Annotated[str, OneOf("node", "center")] = "node"
    node_table: bool = False          # add a per-frame table of node screws to the MLP output
    table_lr: Annotated[float, LR_OR_SAME] = 0.0    # 0 = lr
    # also re-bind Gaussians to nodes every this many steps; 0 = only when they change
    rebind_every: Annotated[int, Range(ge=0, hint="0 = only when the Gaussians change")] = 0
    # --- SC-GS extensions (deform/nodes.py); lengths are in scene radii or node radii, never world units
    # learning rate of the node positions in scene radii (Adam group lr = this x scene radius); 0 = fixed nodes
    node_pos_lr: Annotated[float, LR] = 0.0
    # re-bind Gaussians to their nearest nodes once a node moved more than this fraction of its radius
    rebind_move: Annotated[float, Range(gt=0, hint="a fraction of the node radius")] = 0.25
    # nodes at least this far apart (scene radii): fewer than num_nodes when the Gaussians' extent is small
    node_spacing: Annotated[float, Range(ge=0, hint="0 = exactly num_nodes")] = 0.0
    # SC-GS adaptive node control every this many deformation steps in [start, stop): add nodes at high-error
    # Gaussians far from any node, drop nodes no Gaussian is bound to
    node_densify_every: Annotated[int, Range(ge=0, hint="0 = off")] = 0
    node_densify_start: Annotated[int, Range(ge=0)] = 500   # deformation steps (after the warm-up)
    node_densify_stop: Annotated[int, Range(ge=0)] = 3000
    # Gaussians whose error is above this quantile are candidates for new nodes
    node_densify_quantile: Annotated[float, Range(ge=0, lt=1)] = 0.9
    max_nodes: Annotated[int, Range(ge=0, hint="0 = 2 x num_nodes")] = 0
    # ARAP with a Geman-McClure kernel of this scale (x the edge's node radius); 0 = plain L2 (DynamicFusion)
    arap_robust_scale: Annotated[float, Range(ge=0, hint="0 = plain L2")] = 0.0

    KIND: ClassVar[str] = "nodes"
    RULES: ClassVar[tuple[Rule, ...]] = NetworkFieldConfig.RULES + (
        Rule("node_densify_start", "<", "node_densify_stop", when=("node_densify_every", ">", 0),
             why="an empty adaptive-control window"),)

    def build(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None) -> DeformField:
        from .nodes import NodeDeformField

        return NodeDeformField(self, num_frames, frame_times)


@dataclass
class TrackingFieldConfig(FieldConfig):
    """`deform.kind=tracking`: per-Gaussian, per-frame rotation and offset tables
    (:class:`~dyngauss.deform.tracking.TrackingField`; Dynamic3DGaussians, trained on all frames jointly). For
    captures where every time is seen by several cameras: a monocular frame constrains its table rows from one
    view only. The trainer decays both groups by the same factor from `lr` to `lr_final`. No backward field:
    motion.cycle_weight, elastic_weight and background_weight must be 0 with it (Config.RULES)."""

    kind: Annotated[str, OneOf("tracking")] = "tracking"
    # Adam rate of the centre offsets, in scene radii (the scene's radius is 1, whatever the world's units). A
    # frame's rows are updated only on the steps that render it: rates 10x a network's (configs/tracking.yaml)
    lr: Annotated[float, LR] = 1e-2
    lr_final: Annotated[float, LR] = 1e-4           # exponential decay target at the end of training
    rot_lr: Annotated[float, LR_OR_SAME] = 0.0      # Adam rate of the rotation vectors (radians); 0 = lr

    KIND: ClassVar[str] = "tracking"

    def build(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None) -> DeformField:
        """The field for `num_frames` training frames at `frame_times`. Raises ValueError without a frame
        count."""
        from .tracking import TrackingField

        if not num_frames:
            raise ValueError("deform.kind=tracking needs the number of training frames (from the data)")
        if frame_times is not None and len(frame_times) != num_frames:
            frame_times = None
        mult = 1.0 if self.rot_lr <= 0 or self.lr <= 0 else self.rot_lr / self.lr
        return TrackingField(int(num_frames), frame_times, rot_lr_mult=mult)


@dataclass
class BasesFieldConfig(FieldConfig):
    """`deform.kind=bases`: K rigid trajectories shared by all Gaussians, blended per Gaussian by learned weights
    (:class:`~dyngauss.deform.bases.BasesField`; Shape of Motion). Each trajectory is a cosine series in t of a
    rotation vector and a translation (scene radii). The trainer decays both groups by the same factor from `lr`
    to `lr_final`. No backward field: motion.cycle_weight, elastic_weight and background_weight must be 0 with it
    (Config.RULES)."""

    kind: Annotated[str, OneOf("bases")] = "bases"
    num_bases: Annotated[int, Range(ge=1, le=256)] = 16  # K (Shape of Motion: 10-20)
    # cosine terms cos(pi j t), j < time_freqs, per trajectory coordinate; more = faster motion representable
    time_freqs: Annotated[int, Range(ge=1, le=64)] = 8
    lr: Annotated[float, LR] = 3e-3                 # Adam rate of the series coefficients (radians / scene radii)
    lr_final: Annotated[float, LR] = 3e-5           # exponential decay target at the end of training
    weight_lr: Annotated[float, LR_OR_SAME] = 1e-2  # Adam rate of the per-Gaussian blend logits; 0 = lr

    KIND: ClassVar[str] = "bases"

    def build(self, num_frames: int | None = None, frame_times: Sequence[float] | None = None) -> DeformField:
        """The field (continuous in t: the training frames play no role)."""
        from .bases import BasesField

        mult = 1.0 if self.weight_lr <= 0 or self.lr <= 0 else self.weight_lr / self.lr
        return BasesField(self.num_bases, self.time_freqs, weight_lr_mult=mult)


FIELD_CONFIGS: dict[str, type[FieldConfig]] = {
    StaticFieldConfig.KIND: StaticFieldConfig,
    MLPFieldConfig.KIND: MLPFieldConfig,
    NodeFieldConfig.KIND: NodeFieldConfig,
    TrackingFieldConfig.KIND: TrackingFieldConfig,
    BasesFieldConfig.KIND: BasesFieldConfig,
}


def field_config(kind: str, **values) -> FieldConfig:
    """The config of field `kind` with `values` set, e.g. ``field_config("nodes", num_nodes=64).build()``.
    Raises ValueError for an unknown kind (naming the valid ones) and TypeError for a key of another kind."""
    if kind not in FIELD_CONFIGS:
        raise ValueError(f"unknown deform.kind {kind!r}; use {', '.join(FIELD_CONFIGS)}")
    return FIELD_CONFIGS[kind](**values)

"""Weights and schedules of the motion losses (flow, depth, photometric warp, 2D tracks, cycle, rigidity,
elastic, background, smoothness).

Every weight 0 turns its loss off (the trainer should then skip computing it). Steps given to
:func:`weight_at` are counted from the start of the deformation (after the static warm-up), so a decay
schedule is not used up during the warm-up. Field types are the ones the YAML/CLI config loader supports
(int, float, bool, str) so this can be a section of the run config (e.g. ``motion.flow_weight=0.5``); each
carries its allowed range or choices (dyngauss/schema.py), checked when a config is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..schema import OneOf, Range

# constraints of the keys (dyngauss/schema.py; checked by dyngauss.config.validate_config)
WEIGHT = Range(ge=0, hint="0 = off")
SAMPLES = Range(ge=0, hint="0 = all")
STEPS = Range(ge=0)
EVERY = Range(ge=1, hint="1 = every step")
SIZE = Range(ge=1)
NON_NEGATIVE = Range(ge=0)
FRACTION = Range(ge=0, le=1)
DECAY = Range(ge=0, hint="0 = constant")
THRESHOLD = Range(ge=0, lt=1, hint="rendered alpha never exceeds 1")
UPSAMPLE = Range(ge=0, le=8, hint="0 = auto, 1 = off")
ANGLE = Range(gt=0, le=180)
TIME_SPAN = Range(gt=0, le=1, hint="times lie in [0, 1]")
HALF_DT = Range(ge=0, le=0.5, hint="t + dt or t - dt must lie in [0, 1]; 0 = off")
SMOOTH_DT = Range(gt=0, le=0.5, hint="the times t - dt, t, t + dt must fit in [0, 1]")


def weight_at(base: float, step: int, decay_steps: int, final_fraction: float = 0.0) -> float:
    """Weight of a data-driven prior at `step` (NSFF / SC-GS style decay).

    decay_steps <= 0: constant ``base``. Otherwise exponential decay by 10x every ``decay_steps`` steps,
    ``base * 0.1 ** (step / decay_steps)``, never below ``base * final_fraction``. Negative steps count as 0.
    """
    if base == 0.0:
        return 0.0
    if decay_steps <= 0:
        return float(base)
    w = base * 0.1 ** (max(0, step) / float(decay_steps))
    return float(max(w, base * final_fraction))


def ramp_at(base: float, step: int, start: int, ramp_steps: int) -> float:
    """Weight of a regulariser that starts late: 0 before `start`, then rising linearly to ``base`` over
    `ramp_steps` steps (ramp_steps <= 0: full weight at `start`). Regularisers that compare the posed
    Gaussians with the canonical ones (isometry, rigidity) fight the field while it first moves the static
    warm-up's Gaussians into place; starting them later keeps that phase free."""
    if base == 0.0 or step < start:
        return 0.0
    if ramp_steps <= 0:
        return float(base)
    return float(base * min(1.0, (step - start + 1) / float(ramp_steps)))


@dataclass
class MotionLossConfig:
    """Motion-loss weights (0 = off) and their settings. Values are starting points, not tuned optima."""

    # --- 2D optical-flow prior (DIS) vs rendered Gaussian flow (losses/flow.py, data/flow.py)
    flow_weight: Annotated[float, WEIGHT] = 0.0           # on: ~0.5 with normalize=True (error in image units)
    flow_decay_steps: Annotated[int, DECAY] = 2000        # weight drops 10x every this many steps (0 = constant)
    flow_final_fraction: Annotated[float, FRACTION] = 0.0  # floor of the decayed weight, fraction of flow_weight
    flow_kind: Annotated[str, OneOf("charbonnier", "l1", "epe")] = "charbonnier"
    flow_alpha_threshold: Annotated[float, THRESHOLD] = 0.5  # only pixels with rendered alpha above this
    flow_every: Annotated[int, EVERY] = 1                 # flow loss on every n-th deformation step (same weight)
    flow_preset: Annotated[str, OneOf("ultrafast", "fast", "medium")] = "medium"  # DIS preset
    # DIS on images enlarged by this factor (0 = auto: shorter side >= 512 px, at most 4x; 1 = off).
    # built-in 128^2 with tau 0.5: error 2.6 -> 1.0 px
    flow_upsample: Annotated[int, UPSAMPLE] = 0
    flow_fb_tau: Annotated[float, NON_NEGATIVE] = 0.5     # forward-backward check |f + b| < tau + rel (|f| + |b|), px
    flow_fb_rel: Annotated[float, NON_NEGATIVE] = 0.02
    # pair selection: camera change at most this (twist: 30 deg gives 80 pairs instead of 10 and 6% lower 3D
    # track error than 15 deg)
    flow_max_angle_deg: Annotated[float, ANGLE] = 30.0
    flow_max_dt: Annotated[float, TIME_SPAN] = 0.1        # pair selection: time difference at most this
    flow_pairs_per_frame: Annotated[int, SIZE] = 2
    # (flow_max_angle_deg, flow_max_dt and flow_pairs_per_frame also choose the photometric-warp neighbours and
    # the frame chains of the 2D tracks)

    # --- depth supervision (losses/depth.py): rendered expected depth vs the training frames' depth maps
    #     (data/depth.py: <split>/depth_XXX.npz or depth/<frame>.npz); a weight > 0 on data without depth is an
    #     error at the start of training unless depth_missing=skip. Error in units of the scene radius
    # on by default where the data has depth maps (RGB-D, the built-in scene with data.synthetic_depth=true):
    # +1.9 dB and -13% strided track error on the motion benchmark's mean, most on the moving camera
    # (docs/benchmark.md)
    depth_weight: Annotated[float, WEIGHT] = 0.5
    # a depth weight > 0 on training data without depth maps: "skip" trains without the depth term (one log
    # line), "error" stops before any work (set it when the depth maps must be there)
    depth_missing: Annotated[str, OneOf("error", "skip")] = "skip"
    depth_kind: Annotated[str, OneOf("l1", "charbonnier")] = "l1"
    depth_alpha_threshold: Annotated[float, THRESHOLD] = 0.5  # only pixels with rendered alpha above this

    # --- temporal photometric consistency (losses/photo_warp.py, NSFF's L_pho): the rendered Gaussian flow from
    #     a training frame to a neighbour frame (chosen like the flow prior's pairs) warps the neighbour's image
    #     into the frame; L1 against the frame's image. Needs no optical flow
    photo_warp_weight: Annotated[float, WEIGHT] = 0.0
    photo_warp_every: Annotated[int, EVERY] = 1           # on every n-th deformation step (same weight)
    photo_warp_alpha_threshold: Annotated[float, THRESHOLD] = 0.5  # only pixels with rendered alpha above this
    # occlusion test: "depth" drops pixels whose surface is hidden in the neighbour frame (its depth rendered
    # there is nearer by more than photo_warp_depth_tol; one more forward render per step), "none" keeps all
    photo_warp_occlusion: Annotated[str, OneOf("depth", "none")] = "depth"
    photo_warp_depth_tol: Annotated[float, Range(gt=0, hint="units of the scene radius")] = 0.1

    # --- long-range 2D tracks (data/tracks2d.py, losses/tracks.py): DIS flow (the flow_* settings above) chained
    #     along time-consecutive frames that qualify as flow pairs (a video-like sequence), forward-backward
    #     checked; the rendered Gaussian flow from a frame to another frame of its chain, read at the tracked
    #     points, against the tracks (error like the flow prior's: flow_kind, flow_alpha_threshold, image units)
    track_weight: Annotated[float, WEIGHT] = 0.0
    track_every: Annotated[int, EVERY] = 1                # on every n-th deformation step (same weight)
    track_max_span: Annotated[int, SIZE] = 8              # the other frame at most this many chain steps away
    track_stride: Annotated[int, SIZE] = 4                # seed grid spacing, pixels
    track_seed_every: Annotated[int, SIZE] = 8            # new seeds every this many frames of a chain

    # --- cycle consistency (losses/cycle.py); needs a backward field for the canonical cycle
    cycle_weight: Annotated[float, WEIGHT] = 0.0          # on: ~1 with cycle_kind=l2sq (scene units, squared)
    cycle_samples: Annotated[int, SAMPLES] = 4096         # Gaussians sampled per step (0 = all)
    # l1/l2 pull with a constant force even for tiny errors, which freezes a freshly started forward field at
    # the identity
    cycle_kind: Annotated[str, OneOf("l2sq", "l2", "l1")] = "l2sq"
    cycle_train_forward: bool = False   # True: the cycles also pull the forward field towards invertibility
    #                                     (NSFF). Measured on the built-in scene: -2.8 dB and worse 3D tracks
    #                                     at weight 1, so by default only the backward field learns from them
    # also the scene-flow cycle t -> t +- dt -> t on half the samples (0 = off)
    cycle_sceneflow_dt: Annotated[float, HALF_DT] = 0.05

    # --- node graph ARAP, DynamicFusion E_reg (losses/rigidity.py arap_node_loss)
    arap_weight: Annotated[float, WEIGHT] = 0.0           # on: ~1.0 for node fields

    # --- Dynamic3DGaussians regularisers between neighbouring Gaussians (losses/rigidity.py)
    rigidity_weight: Annotated[float, WEIGHT] = 0.0       # local rigidity (offsets rotate with the Gaussian)
    rotation_weight: Annotated[float, WEIGHT] = 0.0       # rotation similarity
    isometry_weight: Annotated[float, WEIGHT] = 0.0       # neighbour distances preserved from canonical
    knn_k: Annotated[int, SIZE] = 8
    knn_every: Annotated[int, EVERY] = 500                # recompute neighbours every n steps / after densify
    rigidity_samples: Annotated[int, SAMPLES] = 8192      # anchor Gaussians sampled per step (0 = all)
    # compare poses at t and t +- dt (Dynamic3DGaussians' consecutive frames; t +- dt evaluated for the sampled
    # anchors + neighbours only); 0 = compare the poses at t with the canonical Gaussians (cheaper, pulls harder)
    rigidity_dt: Annotated[float, HALF_DT] = 0.05
    rigidity_start: Annotated[int, STEPS] = 0             # rigidity/rotation/isometry off for this many steps,
    rigidity_ramp: Annotated[int, STEPS] = 0              # then rising linearly to full weight over this many

    # --- Nerfies elastic regulariser (losses/elastic.py)
    elastic_weight: Annotated[float, WEIGHT] = 0.0        # on: ~1e-3 .. 1e-2
    elastic_samples: Annotated[int, SAMPLES] = 1024
    elastic_c: Annotated[float, Range(gt=0)] = 0.03       # Geman-McClure scale
    elastic_every: Annotated[int, EVERY] = 1

    # --- Nerfies static background (losses/background.py): static points must not move. The points come from
    #     the data (points3d.ply or Nerfies points.npy, outside masks/ when present: data/points.py); a weight
    #     > 0 without such points is an error at the start of training
    background_weight: Annotated[float, WEIGHT] = 0.0     # on: ~0.1 (Nerfies: 0.1 with the L2 norm)
    background_samples: Annotated[int, SAMPLES] = 1024    # static points sampled per step (0 = all)

    # --- temporal smoothness of trajectories (losses/smoothness.py)
    smooth_weight: Annotated[float, WEIGHT] = 0.0
    smooth_dt: Annotated[float, SMOOTH_DT] = 0.02
    smooth_samples: Annotated[int, SAMPLES] = 4096

    def any_enabled(self, depth_available: bool = True) -> bool:
        """Whether any motion term has a weight; the depth term counts unless the data has no depth maps
        (`depth_available` False) and depth_missing is "skip"."""
        depth = self.depth_weight != 0.0 and (depth_available or self.depth_missing == "error")
        return depth or any(getattr(self, k) != 0.0 for k in
                            ("flow_weight", "cycle_weight", "arap_weight", "rigidity_weight", "rotation_weight",
                             "isometry_weight", "elastic_weight", "background_weight", "smooth_weight",
                             "photo_warp_weight", "track_weight"))

    def rigidity_scale_at(self, step: int) -> float:
        """Factor in [0,1] on the rigidity/rotation/isometry weights at `step` (deformation steps)."""
        return ramp_at(1.0, step, self.rigidity_start, self.rigidity_ramp)

    def flow_weight_at(self, step: int) -> float:
        """The scheduled flow weight at `step` (counted from the start of the deformation)."""
        return weight_at(self.flow_weight, step, self.flow_decay_steps, self.flow_final_fraction)

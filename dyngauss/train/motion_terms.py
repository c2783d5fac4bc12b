"""The motion losses of one training step, wired to the trainer's state (priors, neighbours, static points).

Each term is a pure function in losses/; this class only prepares their inputs (DIS flow priors once,
canonical neighbours after densification, the data's static points once) and adds the weighted terms.

Length-based terms are divided by the scene radius to the power of their length dimension (rigidity, isometry,
background, l1/l2 cycles: 1; l2sq cycles, ARAP, acceleration: 2), so a world scaled x20 gives the same loss
values and the weights need no retuning; the flow term is in image units and the rotation and elastic terms
are dimensionless already.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from ..deform.base import Motion
from ..geometry.quaternion import quat_identity, quat_normalize, quat_rotate
from ..losses.motion_config import MotionLossConfig
from .streams import RandomStreams


def _no_frame(t: float) -> None:
    return None


def _scene_unit(scene) -> float:
    """The scene radius (world units) that the length-based losses divide by, so that their values and the
    weights tuned for them do not depend on the world's units; 1.0 for a scene object without one."""
    try:
        r = float(scene.world_radius)
    except (AttributeError, TypeError, ValueError):
        return 1.0
    return r if r > 0 and r == r and r != float("inf") else 1.0


def _length_power(kind: str) -> int:
    """Power of length of a point-error kind (l2sq: squared lengths; l1, l2: lengths)."""
    return 2 if kind == "l2sq" else 1


def _nearby_time(t: float, dt: float) -> float:
    """The second time of a two-time term: t + dt, or t - dt where that would leave [0, 1]."""
    return t + dt if t + dt <= 1.0 else t - dt


@contextmanager
def _frozen(module: torch.nn.Module, on: bool = True):
    """Evaluate `module` without gradients for its parameters (gradients still flow through its inputs)."""
    params = [p for p in module.parameters() if p.requires_grad] if on else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class MotionTerms:
    """Motion losses for the trainer. Call `flow_target` before rendering (it adds flow feature channels),
    then `losses` after rendering. Raises ConfigError at construction when a term's data is missing (the
    background loss without static points)."""

    def __init__(self, cfg: MotionLossConfig, scene, cache_dir: Path, log=print,
                 streams: RandomStreams | None = None, frame_index: Callable[[float], int | None] | None = None):
        """`frame_index`: the model's time -> training frame rule (:meth:`DynamicGaussians.frame_index`) for
        the second times the terms pose at; None poses them with ``frame=None``."""
        self.cfg = cfg
        self.frame_index = frame_index if frame_index is not None else _no_frame
        self.streams = streams if streams is not None else RandomStreams(0)
        self.scene = scene
        self.priors_by_src: dict[int, list] = {}
        self.nbr_idx = self.nbr_w = None
        self._nbr_step = -10 ** 9
        self.static_points: torch.Tensor | None = None  # [M,3] CPU; moved to the device on first use
        self.unit = _scene_unit(scene)  # lengths in the losses are in units of the scene radius
        if cfg.flow_weight > 0:
            self._setup_flow(cache_dir, log)
        if cfg.background_weight > 0:
            self._setup_background(log)
        self.correspondence = None  # depth maps and the photometric warp (train/correspondence.py)
        if cfg.depth_weight > 0 or cfg.photo_warp_weight > 0 or cfg.track_weight > 0:
            from .correspondence import CorrespondenceTerms

            self.correspondence = CorrespondenceTerms(cfg, scene, self.streams, self.frame_index, self.unit, log,
                                                      cache_dir=cache_dir)
            if not self.correspondence.active:  # only a depth term, and no depth maps (motion.depth_missing=skip)
                self.correspondence = None

    # ---- setup -------------------------------------------------------------------------------
    def _setup_flow(self, cache_dir: Path, log) -> None:
        from ..data.flow import FlowParams, FlowPriorCache, select_flow_pairs

        c, tr = self.cfg, self.scene.train
        pairs = select_flow_pairs(tr.cameras, [float(cm.time) for cm in tr.cameras], c.flow_max_angle_deg,
                                  c.flow_max_dt, c.flow_pairs_per_frame)
        params = FlowParams(preset=c.flow_preset, upsample=c.flow_upsample, fb_tau=c.flow_fb_tau,
                             fb_rel=c.flow_fb_rel)
        cache = FlowPriorCache(cache_dir, self.scene.path, params)
        priors = cache.priors(tr.images, pairs, masks=tr.alphas, names=[cm.name for cm in tr.cameras]) if pairs else []
        for p in priors:
            self.priors_by_src.setdefault(p.src, []).append(p)
        log(f"flow priors: {len(pairs)} pairs ({cache.hits} cached, {cache.misses} computed) in {cache_dir}")

    def _setup_background(self, log) -> None:
        """The data's static points (data/points.py); ConfigError when it has none."""
        from ..config import ConfigError
        from ..data.points import StaticPointsError, static_points

        tr = self.scene.train
        try:
            pts, what = static_points(self.scene.path, tr.cameras, (tr.meta or {}).get("points"))
        except StaticPointsError as e:
            raise ConfigError(f"motion.background_weight={self.cfg.background_weight:g} needs points known to be "
                              f"static: {e}. Prepare the video with tools/prepare_video.py (writes points3d.ply) or "
                              "set motion.background_weight=0") from None
        self.static_points = torch.from_numpy(pts)
        log(f"background loss: {what}")

    @property
    def flow_frames(self) -> list[int]:
        return sorted(self.priors_by_src)

    def refresh_neighbors(self, means: torch.Tensor, step: int, force: bool = False) -> None:
        """Canonical K nearest neighbours for the Dynamic3DGaussians terms (after densification too)."""
        c = self.cfg
        if not (c.rigidity_weight or c.rotation_weight or c.isometry_weight):
            return
        if force or self.nbr_idx is None or self.nbr_idx.shape[0] != means.shape[0] or \
                step - self._nbr_step >= c.knn_every:
            from ..losses.rigidity import knn_neighbors

            self.nbr_idx, self.nbr_w = knn_neighbors(means.detach(), c.knn_k)
            self._nbr_step = step

    # ---- per step ----------------------------------------------------------------------------
    def pick_prior(self, idx: int, step: int = 0):
        """One of frame `idx`'s flow priors at random (its own random stream), or None: no prior for the frame,
        or deformation step `step` is not a multiple of motion.flow_every (no flow loss on that step)."""
        if step % max(1, self.cfg.flow_every) != 0:
            return None
        lst = self.priors_by_src.get(idx)
        return None if not lst else lst[self.streams.integer("priors", len(lst))]

    def flow_target(self, prior, model, posed_means_src: torch.Tensor) -> torch.Tensor:
        """Per-Gaussian screen displacement src -> dst [N,2] (rendered as feature channels): `model` (the
        DynamicGaussians being trained) posed at the prior's destination time, against `posed_means_src` [N,3]."""
        from ..render.flow import gaussian_flow_2d

        cams = self.scene.train.cameras
        dst = cams[prior.dst]
        t_dst = float(dst.time)
        m_dst = model.pose(t_dst, self.frame_index(t_dst)).means
        return gaussian_flow_2d(posed_means_src, cams[prior.src], m_dst, dst)

    def prepare(self, idx: int, step: int, model, posed_means: torch.Tensor,
                features: torch.Tensor | None) -> tuple[torch.Tensor | None, str]:
        """Before rendering training frame `idx` at deformation step `step`: (the render's feature channels —
        `features` (the flow prior's, from :meth:`flow_target`, or None) followed by the photometric warp's —,
        its render mode: "RGB+ED" when the depth loss needs the expected depth). See train/correspondence.py."""
        if self.correspondence is None:
            return features, "RGB"
        return self.correspondence.prepare(idx, step, model, posed_means, features)

    def _neighbour_terms(self, gaussians, deform, t: float, motion: Motion, posed_means: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        """Dynamic3DGaussians' rigidity / rotation / isometry (weighted) for sampled anchor Gaussians.

        rigidity_dt > 0: between the poses at t and at t' = t +- dt (the paper's consecutive frames); t' is
        evaluated only for the anchors and their neighbours. rigidity_dt = 0: between the canonical Gaussians
        and their poses at t (no second evaluation, but it also pulls every pose towards the canonical shape)."""
        from ..deform.base import apply_motion
        from ..losses import rigidity as R

        c, means = self.cfg, gaussians.means
        n, dev = means.shape[0], means.device
        anchors = self._anchors(n, c.rigidity_samples, dev)
        idx, w = self.nbr_idx, self.nbr_w
        if c.rigidity_dt > 0:
            t2 = _nearby_time(t, c.rigidity_dt)
            rows = torch.arange(n, device=dev) if anchors is None else anchors
            sub = torch.unique(torch.cat([rows, idx[rows].reshape(-1)]))          # anchors + neighbours
            local = torch.full((n,), -1, dtype=torch.long, device=dev)
            local[sub] = torch.arange(sub.numel(), device=dev)
            idx_l = torch.zeros(sub.numel(), idx.shape[1], dtype=torch.long, device=dev)
            idx_l[local[rows]] = local[idx[rows]]
            w_l = None
            if w is not None:
                w_l = torch.zeros(sub.numel(), w.shape[1], dtype=w.dtype, device=dev)
                w_l[local[rows]] = w[rows]
            m2 = deform.motion_of(means, t2, self.frame_index(t2), rows=sub)  # a tracking field looks rows up
            means_b = apply_motion(means[sub], gaussians.quats[sub], gaussians.log_scales[sub], m2)[0]
            means_a, rot_a, rot_b = posed_means[sub], quat_normalize(motion.rot[sub]), quat_normalize(m2.rot)
            anchors, idx, w = local[rows], idx_l, w_l
        else:
            rot_a = quat_identity((n,), dev, motion.rot.dtype)
            means_a, means_b, rot_b = means, posed_means, quat_normalize(motion.rot)
        out, u = {}, self.unit
        if c.rigidity_weight:
            out["rigidity"] = c.rigidity_weight * R.local_rigidity_loss(means_a, rot_a, means_b, rot_b, idx, w,
                                                                        anchors) / u
        if c.rotation_weight:
            out["rotation"] = c.rotation_weight * R.rotation_similarity_loss(rot_a, rot_b, idx, w, anchors)
        if c.isometry_weight:
            out["isometry"] = c.isometry_weight * R.isometry_loss(means_a, means_b, idx, w, anchors) / u
        return out

    def _background_term(self, deform, t: float, frame: int | None, device) -> torch.Tensor:
        """Nerfies' background loss on a random subset of the static points moved by the field to time t."""
        from ..losses.background import background_loss

        pts = self.static_points = self.static_points.to(device)
        a = self._anchors(pts.shape[0], self.cfg.background_samples, device)
        x = pts if a is None else pts[a]
        m = deform(x, t, frame)
        moved = quat_rotate(quat_normalize(m.rot), x) + m.trans
        return background_loss(x, moved) / self.unit  # the L2 norm: a length

    def _anchors(self, n: int, k: int, device) -> torch.Tensor | None:
        return None if k <= 0 or k >= n else self.streams.randint("anchors", n, k, device)

    def losses(self, s: int, gaussians, deform, backward, t: float, frame: int | None, motion: Motion,
               posed_means: torch.Tensor, out, prior) -> dict[str, torch.Tensor]:
        """Weighted motion losses at deformation step s (steps since the warm-up ended)."""
        c, terms = self.cfg, {}
        means = gaussians.means
        n, dev = means.shape[0], means.device
        if prior is not None and out.features is not None:
            from ..losses.flow import flow_loss
            from ..render.flow import normalize_flow

            w = c.flow_weight_at(s)
            if w > 0:
                flow = normalize_flow(out.features[0][..., :2], out.alpha[0])  # the prior's channels come first
                terms["flow"] = w * flow_loss(flow, prior.flow.to(dev), prior.valid.to(dev), out.alpha[0],
                                              c.flow_alpha_threshold, c.flow_kind)
        if c.cycle_weight and backward is not None:
            from ..losses.cycle import canonical_cycle_loss

            a = self._anchors(n, c.cycle_samples, dev)
            sel = slice(None) if a is None else a
            posed = posed_means[sel]
            target = means[sel] if c.cycle_train_forward else means[sel].detach()  # the Gaussians too
            cyc = canonical_cycle_loss(backward, target, posed, t, frame, kind=c.cycle_kind,
                                       detach_posed=not c.cycle_train_forward)
            if c.cycle_sceneflow_dt > 0:  # NSFF's t -> t' -> t through both fields, from the posed centres
                from ..losses.cycle import scene_flow_cycle, scene_flow_cycle_loss

                t2 = _nearby_time(t, c.cycle_sceneflow_dt)
                x = posed[: max(1, posed.shape[0] // 2)].detach()
                with _frozen(deform, not c.cycle_train_forward):
                    _, back = scene_flow_cycle(deform, backward, x, t, t2, frame, self.frame_index(t2))
                cyc = cyc + scene_flow_cycle_loss(x, back, kind=c.cycle_kind)
            terms["cycle"] = c.cycle_weight * cyc / self.unit ** _length_power(c.cycle_kind)
        if c.arap_weight and hasattr(deform, "node_graph") and getattr(deform, "initialized", False):
            from ..losses.rigidity import arap_node_loss

            nm = deform.node_motion(t, frame)
            g = deform.node_graph()
            scale = deform.arap_scale(g.edges) if hasattr(deform, "arap_scale") else None  # robust ARAP
            terms["arap"] = c.arap_weight * arap_node_loss(deform.node_pos, nm.rot, nm.trans, g.edges,
                                                           g.weights, robust_scale=scale) / self.unit ** 2
        ramp = c.rigidity_scale_at(s)
        if (c.rigidity_weight or c.rotation_weight or c.isometry_weight) and self.nbr_idx is not None \
                and self.nbr_idx.shape[0] == n and ramp > 0:
            terms.update({k: ramp * v for k, v in self._neighbour_terms(gaussians, deform, t, motion,
                                                                         posed_means).items()})
        if c.elastic_weight and s % max(1, c.elastic_every) == 0:
            from ..losses.elastic import elastic_loss

            a = self._anchors(n, c.elastic_samples, dev)
            pts = (means if a is None else means[a]).detach()
            terms["elastic"] = c.elastic_weight * elastic_loss(deform, pts, t, frame, c=c.elastic_c)
        if c.smooth_weight:
            from ..losses.smoothness import acceleration_loss, field_trajectory_points

            a = self._anchors(n, c.smooth_samples, dev)
            terms["smooth"] = c.smooth_weight * acceleration_loss(
                *field_trajectory_points(deform, means, t, c.smooth_dt, rows=a)) / self.unit ** 2
        if c.background_weight and self.static_points is not None:
            terms["background"] = c.background_weight * self._background_term(deform, t, frame, dev)
        if self.correspondence is not None:
            terms.update(self.correspondence.losses(s, out))
        return terms

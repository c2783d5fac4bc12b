"""Supervision that carries correspondence, wired to the trainer: depth maps (losses/depth.py), temporal
photometric consistency through the rendered motion (losses/photo_warp.py) and long-range 2D tracks chained from
optical flow (data/tracks2d.py, losses/tracks.py).

All ride on the frame's one training render: :meth:`CorrespondenceTerms.prepare` (before it) asks for the
expected depth (``render_mode="RGB+ED"``) on frames with a depth map and appends feature channels: the
per-Gaussian flow to the warp's neighbour frame with its camera-j depth, and the flow to the tracks' other frame;
:meth:`CorrespondenceTerms.losses` (after it) turns them into weighted losses. The photometric warp also renders
the neighbour frame once without gradients for its occlusion test (``motion.photo_warp_occlusion=depth``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..losses.motion_config import MotionLossConfig
from .streams import RandomStreams


@dataclass
class _Pending:
    """What :meth:`CorrespondenceTerms.prepare` set up for the step's render."""

    idx: int
    model: object
    depth: bool = False          # the render has expected depth, the frame a depth map
    nbr: int | None = None       # the photometric-warp neighbour frame
    posed_nbr: object = None     # PosedGaussians at the neighbour's time (with gradients)
    offset: int = 0              # first feature channel of the warp's [flow x, flow y, depth in j]
    track_pts: tuple | None = None  # the tracks' positions (in frame idx, in the other frame) [M,2] each
    track_offset: int = 0        # first feature channel of the tracks' [flow x, flow y]


class CorrespondenceTerms:
    """Depth, photometric-warp and 2D-track losses of one run. Raises ConfigError at construction when
    ``motion.depth_weight > 0`` and no training frame has a depth map, unless ``motion.depth_missing=skip`` (then
    the depth term is off and `active` tells whether any term is left)."""

    def __init__(self, cfg: MotionLossConfig, scene, streams: RandomStreams,
                 frame_index: Callable[[float], int | None], unit: float, log=print, cache_dir=None):
        """`cache_dir`: folder of the DIS flow cache (the tracks; data/flow.py FlowPriorCache)."""
        self.cfg, self.scene, self.streams, self.frame_index, self.unit = cfg, scene, streams, frame_index, unit
        self.depths = None
        self.neighbours: dict[int, list[int]] = {}
        self.track_sets: list = []                          # data/tracks2d.py TrackSet per chain
        self.track_at: dict[int, tuple[int, int]] = {}      # frame -> (its chain, its position in the chain)
        self._pending: _Pending | None = None
        if cfg.depth_weight > 0:
            self._setup_depth(log)
        self.active = self.depths is not None or cfg.photo_warp_weight > 0 or cfg.track_weight > 0
        if cfg.photo_warp_weight > 0:
            self._setup_warp(log)
        if cfg.track_weight > 0:
            self._setup_tracks(cache_dir, log)

    # ---- setup -------------------------------------------------------------------------------
    def _setup_depth(self, log) -> None:
        from ..config import ConfigError

        depths = getattr(self.scene, "train_depth", None)
        if (depths is None or depths.count == 0) and self.cfg.depth_missing == "skip":
            log("depth loss off: the training frames have no depth maps (motion.depth_missing=skip)")
            return
        if depths is None or depths.count == 0:
            raise ConfigError(f"motion.depth_weight={self.cfg.depth_weight:g} needs depth maps of the training "
                              f"frames, and the dataset {self.scene.path} has none (expected train/depth_<n>.npz "
                              "beside train/r_<n>.png, or depth/<frame>.npz, key 'depth': camera z-depth, +inf "
                              "on the background; dyngauss/data/depth.py). Set motion.depth_weight=0 (or "
                              "motion.depth_missing=skip) or add them")
        self.depths = depths
        n = len(self.scene.train.cameras)
        log(f"depth loss: {depths.count} of {n} training frames have a depth map")

    def _setup_warp(self, log) -> None:
        from ..data.flow import select_flow_pairs

        c, cams = self.cfg, self.scene.train.cameras
        pairs = select_flow_pairs(cams, [float(cm.time) for cm in cams], c.flow_max_angle_deg, c.flow_max_dt,
                                  c.flow_pairs_per_frame)
        for i, j in pairs:
            self.neighbours.setdefault(i, []).append(j)
            self.neighbours.setdefault(j, []).append(i)
        log(f"photometric warp: {len(pairs)} frame pairs (camera change <= {c.flow_max_angle_deg:g} deg, "
            f"time <= {c.flow_max_dt:g}); {len(self.neighbours)} of {len(cams)} frames have a neighbour")

    def _setup_tracks(self, cache_dir, log) -> None:
        """Chains of time-consecutive flow pairs, DIS flow along them (cached), tracks chained from it."""
        from pathlib import Path

        from ..data.flow import FlowParams, FlowPriorCache, default_flow_cache_dir, select_flow_pairs
        from ..data.tracks2d import TrackSet, chain_tracks, link_chains

        c, tr = self.cfg, self.scene.train
        times = [float(cm.time) for cm in tr.cameras]
        chains = link_chains(select_flow_pairs(tr.cameras, times, c.flow_max_angle_deg, c.flow_max_dt,
                                               c.flow_pairs_per_frame), times)
        params = FlowParams(preset=c.flow_preset, upsample=c.flow_upsample, fb_tau=c.flow_fb_tau,
                            fb_rel=c.flow_fb_rel)
        folder = Path(cache_dir) if cache_dir is not None else default_flow_cache_dir(self.scene.path)
        cache = FlowPriorCache(folder, self.scene.path, params)
        names = [cm.name for cm in tr.cameras]
        masks = tr.alphas
        n_tracks = 0
        for chain in chains:
            flows, valid = [], []
            for a, b in zip(chain[:-1], chain[1:]):
                r = cache.pair(tr.images[a], tr.images[b], None if masks is None else masks[a],
                               None if masks is None else masks[b], tag=f"{names[a]}-{names[b]}")
                flows.append(r["fwd"])
                valid.append(r["valid_fwd"])
            xy = chain_tracks(flows, valid, c.track_stride, c.track_seed_every)
            if len(xy) == 0:
                continue
            for k, f in enumerate(chain):
                self.track_at[f] = (len(self.track_sets), k)
            self.track_sets.append(TrackSet(chain, xy))
            n_tracks += len(xy)
        longest = max((len(ts.frames) for ts in self.track_sets), default=0)
        log(f"2D tracks: {n_tracks} along {len(self.track_sets)} chains of frames (longest {longest} frames; "
            f"{cache.hits} flows cached, {cache.misses} computed)")

    # ---- per step ----------------------------------------------------------------------------
    def pick_neighbour(self, idx: int, step: int) -> int | None:
        """A neighbour frame of `idx` at random ("warp" stream), or None: none, or deformation step `step` is
        not a multiple of motion.photo_warp_every."""
        if self.cfg.photo_warp_weight <= 0 or step % max(1, self.cfg.photo_warp_every) != 0:
            return None
        nb = self.neighbours.get(idx)
        return None if not nb else nb[int(self.streams.randint("warp", len(nb), 1)[0])]

    def pick_track_pair(self, idx: int, step: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(the other frame, the tracks' positions in frame `idx` [M,2], in the other frame [M,2]) for frame
        `idx` at deformation step `step`: another frame of its chain at most motion.track_max_span steps away, at
        random ("tracks" stream), with at least one track through both; None when there is none or the step is
        not a multiple of motion.track_every."""
        c = self.cfg
        if c.track_weight <= 0 or step % max(1, c.track_every) != 0 or idx not in self.track_at:
            return None
        ci, k = self.track_at[idx]
        ts = self.track_sets[ci]
        span = [j for j in range(max(0, k - c.track_max_span), min(len(ts.frames), k + c.track_max_span + 1))
                if j != k]
        if not span:
            return None
        kb = span[int(self.streams.randint("tracks", len(span), 1)[0])]
        pa, pb = ts.pairs(k, kb)
        return (ts.frames[kb], pa, pb) if len(pa) else None

    def prepare(self, idx: int, step: int, model, posed_means: torch.Tensor,
                features: torch.Tensor | None) -> tuple[torch.Tensor | None, str]:
        """Before rendering training frame `idx` at deformation step `step`: (features [N,F'] for the render —
        the given ones followed by this step's warp channels —, the render mode). `model` is the
        DynamicGaussians being trained, `posed_means` [N,3] its Gaussians at the frame's time."""
        p = _Pending(idx, model)
        if self.depths is not None and bool(self.depths.has[idx]):
            p.depth = True
        j = self.pick_neighbour(idx, step)
        if j is not None:
            from ..render.flow import gaussian_flow_2d, project_points

            cams = self.scene.train.cameras
            t_j = float(cams[j].time)
            p.nbr, p.posed_nbr = j, model.pose(t_j, self.frame_index(t_j))
            flow = gaussian_flow_2d(posed_means, cams[idx], p.posed_nbr.means, cams[j])
            z_j = project_points(p.posed_nbr.means.detach(), cams[j])[1]
            extra = torch.cat([flow, z_j[:, None].to(flow)], -1)
            p.offset = 0 if features is None else features.shape[-1]
            features = extra if features is None else torch.cat([features, extra.to(features)], -1)
        pair = self.pick_track_pair(idx, step)
        if pair is not None:
            from ..render.flow import gaussian_flow_2d

            b, pa, pb = pair
            cams = self.scene.train.cameras
            t_b = float(cams[b].time)
            flow = gaussian_flow_2d(posed_means, cams[idx], model.pose(t_b, self.frame_index(t_b)).means, cams[b])
            p.track_pts = (torch.from_numpy(pa), torch.from_numpy(pb))
            p.track_offset = 0 if features is None else features.shape[-1]
            features = flow if features is None else torch.cat([features, flow.to(features)], -1)
        self._pending = p
        return features, ("RGB+ED" if p.depth else "RGB")

    def losses(self, s: int, out) -> dict[str, torch.Tensor]:
        """The weighted depth / photometric-warp losses of the render `out` prepared by :meth:`prepare`."""
        p, self._pending = self._pending, None
        terms: dict[str, torch.Tensor] = {}
        if p is None:
            return terms
        c = self.cfg
        dev = out.alpha.device
        if p.depth and out.depth is not None:
            from ..losses.depth import depth_loss

            target = self.depths.depth[p.idx].to(dev)
            terms["depth"] = c.depth_weight * depth_loss(out.depth[0], target, out.alpha[0], c.depth_alpha_threshold,
                                                         self.unit, c.depth_kind)
        if p.nbr is not None and out.features is not None:
            terms["photo_warp"] = c.photo_warp_weight * self._warp_term(p, out)
        if p.track_pts is not None and out.features is not None:
            from ..losses.tracks import track_loss
            from ..render.flow import normalize_flow

            flow = normalize_flow(out.features[0][..., p.track_offset:p.track_offset + 2], out.alpha[0])
            pa, pb = (x.to(dev) for x in p.track_pts)
            terms["tracks"] = c.track_weight * track_loss(flow, out.alpha[0], pa, pb, c.flow_alpha_threshold,
                                                          c.flow_kind)
        return terms

    def _warp_term(self, p: _Pending, out) -> torch.Tensor:
        from ..losses.photo_warp import depth_visible, photo_warp_loss
        from ..render.flow import normalize_flow

        c = self.cfg
        alpha = out.alpha[0]                                                   # [H,W,1]
        feats = out.features[0][..., p.offset:p.offset + 3]
        flow = normalize_flow(feats[..., :2], alpha)
        mask = alpha.detach()[..., 0] > c.photo_warp_alpha_threshold
        if c.photo_warp_occlusion == "depth":
            z_in_j = normalize_flow(feats[..., 2:3].detach(), alpha.detach())[..., 0]
            zj, aj = self._render_depth(p)
            mask = mask & depth_visible(z_in_j, zj, aj, flow.detach(), c.photo_warp_depth_tol * self.unit,
                                        c.photo_warp_alpha_threshold)
        images = self.scene.train.images
        return photo_warp_loss(images[p.idx].to(flow), images[p.nbr].to(flow), flow, mask)

    def _render_depth(self, p: _Pending) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulated z-depth [H,W] and alpha [H,W] of the neighbour frame (no gradients)."""
        from ..render.api import resolve_backend

        model, cam = p.model, self.scene.train.cameras[p.nbr]
        render_cfg = getattr(getattr(model, "config", None), "render", None)
        backend = resolve_backend(getattr(render_cfg, "backend", "auto"), p.posed_nbr.means.device)
        with torch.no_grad():  # the posed tensors keep their history, but nothing here records any
            o = model.render(cam, float(cam.time), posed=p.posed_nbr, render_mode="RGB+D", sh_degree=0,
                             backend=backend)
        return o.depth[0][..., 0], o.alpha[0][..., 0]

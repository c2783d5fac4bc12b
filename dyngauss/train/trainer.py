"""The training loop: sample a frame (or a batch of train.batch_size cameras, split over torchrun ranks), pose the
Gaussians at its time, render, photometric loss, densify.

Thin by design: densification is gsplat's DefaultStrategy (pre/post-backward hooks), motion models live in
deform/, losses in losses/. Checkpoints hold everything needed to continue exactly (params, optimizer,
scheduler, strategy and RNG states).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from ..config import DENSIFY_EXTRAS, Config, ConfigError, resolve_device, save_config, validate_config
from ..losses.photometric import photometric_loss, psnr
from ..render.api import resolve_backend
from ..model.checkpoint import model_from_payload, read_checkpoint, save_checkpoint
from ..model.dynamic import CheckpointInfo, DynamicGaussians
from .guard import LAST_GOOD, StepGuard, read_last_good, set_aside, write_last_good
from .init import initial_gaussians
from .logging import Logger
from .motion_terms import MotionTerms
from .streams import RandomStreams
from .distributed import Dist, shard
from .optim import build_deform_optimizer, build_gaussian_optimizers, decay_gamma
from .resume import dataset_identity, restore_schedule
from .scene import SceneData, load_scene, set_world_frame
from .time_window import frames_in_window, window_half_width
from .signals import Interrupted, StopSignals, TrainingInterrupted, resume_command, signal_name


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. repeated non-finite losses)."""


def _ckpt_step(path: Path) -> int:
    """The step in a ``ckpt_<step>.pt`` name (-1 when the name has none)."""
    digits = path.stem.rpartition("_")[2]
    return int(digits) if digits.isdigit() else -1


def _make_strategy(cfg: Config, scene_scale: float):
    """gsplat's DefaultStrategy with every densify.* key except DENSIFY_EXTRAS passed by its own name (the
    scene scale goes to its initialize_state). Raises ConfigError for a key this gsplat does not take."""
    import dataclasses
    import inspect

    from gsplat.strategy import DefaultStrategy

    accepted = inspect.signature(DefaultStrategy).parameters
    kwargs = {}
    for f in dataclasses.fields(cfg.densify):
        if f.name in DENSIFY_EXTRAS:
            continue
        if f.name not in accepted:
            raise ConfigError(f"densify.{f.name} is not an argument of this gsplat's DefaultStrategy "
                              f"(it takes {', '.join(accepted)})")
        kwargs[f.name] = getattr(cfg.densify, f.name)
    return _batched_strategy_class()(**kwargs, verbose=False)


def _batched_strategy_class():
    """gsplat's DefaultStrategy fed a batch of rasterizer calls, optionally over several ranks."""
    from gsplat.strategy import DefaultStrategy

    class BatchedStrategy(DefaultStrategy):
        """DefaultStrategy whose `info` may be ``{"groups": [info, ...]}``: one render info per rasterizer call
        of a step, each with ``n_cameras`` = the global batch size B (the loss is averaged over B images, so each
        camera's 2D-mean gradient is 1/B of its own; gsplat multiplies by n_cameras to undo that). The running
        statistics (grad2d, count, radii) are accumulated over the groups, then over the ranks of `dist`."""

        dist: Dist | None = None  # set by the trainer (a plain attribute, not a dataclass field)

        def step_pre_backward(self, params, optimizers, state, step, info):
            for g in info.get("groups", [info]):
                super().step_pre_backward(params, optimizers, state, step, g)

        def _update_state(self, params, state, info, packed=False):
            groups = info.get("groups")
            if groups is None:
                return super()._update_state(params, state, info, packed=packed)
            # this step's sums start from zero and are added to the running ones at the end, so that one process
            # and several ranks (each summing its share) add the same numbers in the same order
            before = {k: state.get(k) for k in ("grad2d", "count")}
            for k, v in before.items():
                if v is not None:
                    state[k] = torch.zeros_like(v)
            for g in groups:
                super()._update_state(params, state, g, packed=g.get("gaussian_ids") is not None)
            if self.dist is not None:
                self.dist.reduce_strategy_sums(state)
            for k, v in before.items():
                if v is not None and state.get(k) is not None:
                    state[k] = v + state[k]

    return BatchedStrategy


class Trainer:
    """Owns the model, optimizers and data of one run folder (`cfg.out`).

    `dist` (train/distributed.py): this rank of a torchrun launch (default: one process); `device` overrides
    train.device (a rank's own GPU). With train.batch_size B > 1 or several ranks a step renders B cameras (this
    rank's share), averages their losses, sums gradients and densification statistics over ranks."""

    def __init__(self, cfg: Config, scene: SceneData | None = None, resume: bool = False, dist: Dist | None = None,
                 device: torch.device | None = None):
        self.cfg = validate_config(cfg)  # a Config built in Python skipped load_config's checks
        self.run_dir = Path(cfg.out)
        self.device = device or resolve_device(cfg.train.device)
        self.dist = dist or Dist()  # torch.distributed ranks (train/distributed.py); one process by default
        self.batch_size = cfg.train.batch_size
        self.check_every = cfg.train.dist_check_every
        self.batch_sampling = cfg.train.batch_sampling
        if self.batch_size < self.dist.world:
            raise ConfigError(f"train.batch_size={self.batch_size} is smaller than the number of processes "
                              f"({self.dist.world}): each rank needs at least one camera per step")
        self.scene = scene or load_scene(cfg)
        self.dataset_id = dataset_identity(self.scene.path)  # stored in checkpoints, checked on --resume
        self.last_checkpoint: Path | None = None  # the file the last save() wrote
        self.backend = resolve_backend(cfg.render.backend, self.device)
        self.step = 0
        self._pool_key: tuple | None = None   # the time window's frame pool, cached per half-width
        self._pool: list[int] | None = None
        self.train_seconds = 0.0
        self.nan_skips_total = 0
        self._nan_streak = 0
        self.streams = RandomStreams(cfg.train.seed)  # frames, priors, backgrounds, loss samples: one each
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        tr = self.scene.train
        self.images = tr.images.to(self.device)
        self.alphas = tr.alphas.to(self.device) if tr.alphas is not None else None
        self.cameras = [c.to(self.device) for c in tr.cameras]
        self.background = torch.tensor(cfg.data.background, dtype=torch.float32, device=self.device)
        if resume:
            self._resume(self.run_dir)  # its newest checkpoint that reads cleanly (newer broken ones: warning)
        else:
            self._fresh()
        self._init_guard(resumed=resume)
        if self.dist.enabled:  # every rank starts from rank 0's parameters (as DDP does)
            self.dist.broadcast_params(self._trained_tensors())
        self.logger: Logger | None = None
        self.step_hooks: list = []  # hook(trainer) after every step (the live web viewer: viewer/web_live.py)

    # ---- setup -----------------------------------------------------------------------------------
    def _fresh(self) -> None:
        cfg = self.cfg
        tr = self.scene.train
        gaussians = initial_gaussians(cfg.model, tr.cameras, tr.images, tr.alphas,
                                      seed=cfg.train.seed, dataset=self.scene.path,
                                      points=(tr.meta or {}).get("points"), center=self.scene.world_center,
                                      colors=(tr.meta or {}).get("point_colors"),
                                      radius=self.scene.world_radius,
                                      axes=self.scene.world_rotation.numpy()).to(self.device)
        field = set_world_frame(cfg.deform.build(num_frames=len(self.scene.train_times),
                                                 frame_times=list(self.scene.train_times)), self.scene).to(self.device)
        self.model = DynamicGaussians(gaussians, field, None, self.scene.train_times, config=cfg,
                                      info=self._info())
        self.model.backward = self._make_backward()
        self._build_optim()

    def _info(self) -> CheckpointInfo:
        return CheckpointInfo(step=self.step, train_seconds=self.train_seconds, scene_scale=self.scene.scene_scale,
                              dataset=str(self.scene.path))

    # the model's parts, as the training code names them
    @property
    def gaussians(self):
        return self.model.gaussians

    @property
    def deform(self):
        return self.model.deform

    @property
    def backward(self):
        return self.model.backward

    def _make_backward(self):
        """The inverse (posed -> canonical) field when deform.backward asks for it or the cycle loss needs it
        (None otherwise, and for a static scene). Its initial weights come from the "init" stream: they must
        not shift the global one."""
        cfg, times = self.cfg, list(self.scene.train_times)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=self.streams.torch["init"])))
            field = cfg.deform.build_backward(num_frames=len(times), frame_times=times,
                                              required=cfg.motion.cycle_weight > 0)
        return None if field is None else set_world_frame(field, self.scene).to(self.device)

    def _build_optim(self) -> None:
        cfg = self.cfg
        scale = self.scene.scene_scale
        self.optimizers = build_gaussian_optimizers(self.gaussians, cfg.optim, scale)
        self.means_gamma = decay_gamma(cfg.optim.means_lr, cfg.optim.means_lr_final, cfg.train.iters)
        self.deform_optimizer = build_deform_optimizer(self.deform, cfg.deform.lr)
        self.backward_optimizer = build_deform_optimizer(self.backward, cfg.deform.lr) if self.backward else None
        lr_final = getattr(cfg.deform, "lr_final", cfg.deform.lr)
        self.deform_gamma = decay_gamma(cfg.deform.lr, lr_final, max(1, cfg.train.iters - cfg.train.warmup_iters))
        self.strategy = _make_strategy(cfg, scale) if cfg.densify.enabled else None
        self.strategy_state = self.strategy.initialize_state(scene_scale=scale) if self.strategy else {}
        if self.strategy:
            self.strategy.dist = self.dist
        factor = self._batch_lr_factor(cfg.optim.batch_lr_scaling)
        if factor != 1.0:
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] *= factor
        if self.strategy:
            self.strategy.check_sanity(self.gaussians.params, self.optimizers)
        self._grow_grad2d = cfg.densify.grow_grad2d
        self.terms = MotionTerms(cfg.motion, self.scene, self.run_dir / "flow_cache", streams=self.streams,
                                 frame_index=self.model.frame_index) \
            if cfg.motion.any_enabled(depth_available=cfg.motion.depth_weight == 0 or self.scene.has_train_depth) \
            else None

    def _batch_lr_factor(self, scaling: str) -> float:
        """The Gaussians' learning-rate factor for train.batch_size B: sqrt(B) for "sqrt" (gsplat's simple_trainer
        scales by sqrt(batch size)), 1 for "none"."""
        return self.batch_size ** 0.5 if scaling == "sqrt" and self.batch_size > 1 else 1.0

    def _resume(self, path: Path) -> None:
        payload = read_checkpoint(path)
        loaded = model_from_payload(payload).to(self.device)
        self.model = DynamicGaussians(loaded.gaussians, loaded.deform, None, self.scene.train_times, config=self.cfg,
                                      info=self._info())
        self.model.backward = self._make_backward()
        if self.backward is not None and loaded.backward is not None:
            self.backward.load_state_dict(loaded.backward.state_dict())
        self._build_optim()
        for name, opt in self.optimizers.items():
            opt.load_state_dict(payload["optimizers"][name])
        if self.deform_optimizer is not None and payload.get("deform_optimizer"):
            self.deform_optimizer.load_state_dict(payload["deform_optimizer"])
        if self.backward_optimizer is not None and payload.get("backward_optimizer"):
            self.backward_optimizer.load_state_dict(payload["backward_optimizer"])
        self.strategy_state = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v)
                               for k, v in payload.get("strategy_state", {}).items()} or self.strategy_state
        self.step = int(payload["step"])
        self.train_seconds = float(payload.get("train_seconds", 0.0))
        self.nan_skips_total = int(payload.get("nan_skips", 0))
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        if "streams" in rng:
            self.streams.load_state_dict(rng["streams"])
        random.setstate(rng["python"])
        restore_schedule(self, payload)  # learning rates changed on --resume; stored decay factors
        saved = ((payload.get("cfg") or {}).get("optim") or {}).get("batch_lr_scaling", "none")
        ratio = self._batch_lr_factor(self.cfg.optim.batch_lr_scaling) / self._batch_lr_factor(saved)
        if ratio != 1.0:  # optim.batch_lr_scaling changed on --resume: the restored rates follow
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] *= ratio

    def _init_guard(self, resumed: bool) -> None:
        """The step guard (train/guard.py) and the record of which checkpoints were followed by a healthy step."""
        self.guard = StepGuard(scene_scale=self.scene.scene_scale)
        self.last_step_healthy = True
        self._unconfirmed: tuple[Path, int] | None = None  # written; no step has run from it yet
        self._rejected: list[Path] = []                    # written; the step run from it was unhealthy
        self._saved_step: int | None = None
        if resumed:  # the checkpoint resumed from is confirmed (or rejected) by the first step, as if just written
            path = self.run_dir / "checkpoints" / f"ckpt_{self.step:06d}.pt"
            good = read_last_good(path.parent)
            if path.is_file() and (good is None or good[0] != path):
                self._unconfirmed = (path, self.step)

    # ---- checkpoints -------------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict:
        self.model.info = self._info()
        return {
            **self.model.state_payload(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "deform_optimizer": self.deform_optimizer.state_dict() if self.deform_optimizer else None,
            "backward_optimizer": self.backward_optimizer.state_dict() if self.backward_optimizer else None,
            "strategy_state": {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                               for k, v in self.strategy_state.items()},
            "rng": {"torch": torch.get_rng_state(), "streams": self.streams.state_dict(),
                    "python": random.getstate()},
            "nan_skips": self.nan_skips_total,
            "lr_gammas": {"means": self.means_gamma, "deform": self.deform_gamma},
            "dataset_id": self.dataset_id,
        }

    def save(self) -> Path:
        path = self.run_dir / "checkpoints" / f"ckpt_{self.step:06d}.pt"
        if not self.dist.is_main:  # rank 0 writes; the others only keep the bookkeeping in step
            self.last_checkpoint, self._saved_step = path, self.step
            self.dist.barrier()
            return path
        self.last_checkpoint = save_checkpoint(self.checkpoint_payload(), path)
        self.dist.barrier()
        self._saved_step, self._unconfirmed = self.step, (self.last_checkpoint, self.step)  # good once a step ran
        return self.last_checkpoint

    # ---- one iteration -----------------------------------------------------------------------------
    def deform_active(self, step: int) -> bool:
        return self.cfg.deform.kind != "none" and step >= self.cfg.train.warmup_iters

    def sample_frame(self) -> int:
        """A training frame drawn uniformly ("frames" stream) among those the time window allows at this step
        (train/time_window.py; every frame when train.time_window is 1)."""
        pool = self._window_pool(self.step)
        if pool is None:
            return self.streams.integer("frames", len(self.cameras))
        return pool[self.streams.integer("frames", len(pool))]

    def _window_pool(self, step: int) -> list[int] | None:
        tc = self.cfg.train
        w = window_half_width(step, tc.warmup_iters, tc.time_window, tc.time_window_steps)
        if w >= 1.0:
            return None
        key = (round(w, 9),)
        if self._pool_key != key:
            self._pool_key = key
            self._pool = frames_in_window([float(c.time) for c in self.cameras], tc.canonical_time, w)
        return self._pool

    def sample_batch(self) -> tuple[list[int], list[torch.Tensor | None]]:
        """The global batch of a step: train.batch_size frames (train.batch_sampling=frames: drawn with replacement,
        one "frames" draw each, so batch B sees the frames of B single steps; =time: cameras of one time) and their
        random backgrounds (None when not random). Every rank draws the same."""
        if self.batch_sampling == "time":
            idxs = self._sample_one_time()
        else:
            idxs = [self.sample_frame() for _ in range(self.batch_size)]
        if self.cfg.train.random_background and self.alphas is not None:
            return idxs, [self.streams.uniform("background", (3,), self.device) for _ in idxs]
        return idxs, [None] * len(idxs)

    def _sample_one_time(self) -> list[int]:
        """train.batch_sampling=time: a frame drawn as usual, then B-1 of the other cameras of its time in a random
        order ("frames" stream; cycling through them, or repeating the frame, when its time has fewer)."""
        first = self.sample_frame()
        t = float(self.cameras[first].time)
        pool = [i for i, c in enumerate(self.cameras) if float(c.time) == t and i != first] or [first]
        order = self.streams.np["frames"].permutation(len(pool))
        return [first] + [pool[int(order[k % len(pool)])] for k in range(self.batch_size - 1)]

    def compute_loss(self, idx: int, step: int, bg: torch.Tensor | None = None) -> tuple[torch.Tensor, dict, dict]:
        """Render training frame `idx` at its time and return (loss, render info, log values). `bg`: its random
        background colour [3] when drawn already (batches), else drawn here when train.random_background."""
        cfg = self.cfg
        cam = self.cameras[idx]
        t = float(cam.time)
        gt = self.images[idx]
        drawn, bg = bg, self.background
        if cfg.train.random_background and self.alphas is not None:
            bg = drawn if drawn is not None else self.streams.uniform("background", (3,), self.device)
            a = self.alphas[idx]
            gt = gt - (1 - a) * self.background + (1 - a) * bg  # re-composite onto the new background
        active = self.deform_active(step)
        frame = self.model.frame_index(t)
        posed = self.model.pose(t, frame, deformed=active)
        means, motion = posed.means, posed.motion
        prior = self.terms.pick_prior(idx, step - cfg.train.warmup_iters) if (self.terms is not None and active) \
            else None
        features = self.terms.flow_target(prior, self.model, means) if prior is not None else None
        mode = "RGB"  # the depth loss asks for expected depth, the photometric warp adds feature channels
        if self.terms is not None and active:
            features, mode = self.terms.prepare(idx, step - cfg.train.warmup_iters, self.model, means, features)
        out = self.model.render(cam, t, posed=posed, background=bg, features=features, backend=self.backend,
                                render_mode=mode,
                                sh_degree=self.gaussians.sh_degree_at(step, cfg.model.sh_degree_interval))
        img = out.rgb[0]
        loss = photometric_loss(img, gt, cfg.loss.l1_weight, cfg.loss.ssim_weight)
        logs = {"loss": loss.detach(), "psnr": psnr(img.detach(), gt)}
        if self.terms is not None and active:
            s = step - cfg.train.warmup_iters
            self.terms.refresh_neighbors(self.gaussians.means, s)
            terms = self.terms.losses(s, self.gaussians, self.deform, self.backward, t, frame, motion, means, out, prior)
            for k, v in terms.items():
                loss = loss + v
                logs[k] = v.detach()
        self._last_images = (gt, img)
        return loss, out.info, logs

    def _group_loss(self, idxs: list[int], bgs: list, step: int) -> tuple[torch.Tensor, dict, dict]:
        """Cameras of one time (and size) rendered by one rasterizer call: (sum of their photometric losses,
        render info, log values with the mean PSNR). No motion terms (a step with motion terms renders each
        camera alone)."""
        cfg = self.cfg
        cams = [self.cameras[i] for i in idxs]
        t = float(cams[0].time)
        gt = self.images[idxs]                                     # [C,H,W,3]
        bg = self.background
        if bgs[0] is not None:
            bg = torch.stack(bgs)                                  # [C,3]
            a = self.alphas[idxs]                                  # [C,H,W,1]
            gt = gt - (1 - a) * self.background + (1 - a) * bg[:, None, None, :]
        posed = self.model.pose(t, self.model.frame_index(t), deformed=self.deform_active(step))
        out = self.model.render(cams, t, posed=posed, background=bg, backend=self.backend,
                                sh_degree=self.gaussians.sh_degree_at(step, cfg.model.sh_degree_interval))
        losses = [photometric_loss(out.rgb[k], gt[k], cfg.loss.l1_weight, cfg.loss.ssim_weight)
                  for k in range(len(cams))]
        loss = torch.stack(losses).sum()
        p = torch.stack([psnr(out.rgb[k].detach(), gt[k]) for k in range(len(cams))]).mean()
        self._last_images = (gt[0], out.rgb[0])
        return loss, out.info, {"loss": loss.detach() / len(cams), "psnr": p}

    def compute_batch_loss(self, step: int) -> tuple[torch.Tensor, dict, dict]:
        """This rank's share of a global batch of train.batch_size (B) cameras: (sum of its per-camera losses / B,
        {"groups": render infos with n_cameras = B}, logs). Cameras of one time and size share a rasterizer call;
        with motion terms each camera is rendered alone. Summed over ranks, loss and gradients are those of one
        process with batch B; logs["loss"] / ["psnr"] are this rank's means (the trainer averages them over
        ranks)."""
        B = self.batch_size
        idxs, bgs = self.sample_batch()
        mine = shard(list(zip(idxs, bgs)), self.dist.rank, self.dist.world)
        groups: dict = {}
        for k, (i, bg) in enumerate(mine):
            cam = self.cameras[i]
            key = k if self.terms is not None else (float(cam.time), int(cam.width), int(cam.height))
            groups.setdefault(key, []).append((i, bg))
        total, infos, logs_all = None, [], []
        for members in groups.values():
            ids, gbs = [m[0] for m in members], [m[1] for m in members]
            if len(members) == 1:
                loss, info, logs = self.compute_loss(ids[0], step, bg=gbs[0])
            else:
                loss, info, logs = self._group_loss(ids, gbs, step)
            info["n_cameras"] = B
            infos.append(info)
            logs_all.append((len(members), logs))
            total = loss / B if total is None else total + loss / B
        n = len(mine)
        logs = {k: sum(c * lg[k] for c, lg in logs_all if k in lg) / n for k in logs_all[0][1]}
        return total, {"groups": infos}, logs

    def _trained_tensors(self) -> list[torch.Tensor]:
        """Every tensor the optimizers step (Gaussians, deformation field, inverse field), in a fixed order."""
        extra = list(self.backward.parameters()) if self.backward is not None else []
        return list(self.gaussians.parameters()) + list(self.deform.parameters()) + extra

    def _grads_finite(self) -> bool:
        extra = list(self.backward.parameters()) if self.backward is not None else []
        for p in list(self.gaussians.parameters()) + list(self.deform.parameters()) + extra:
            if p.grad is not None and not torch.isfinite(p.grad).all():
                return False
        return True

    def _zero_grad(self) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        for o in (self.deform_optimizer, self.backward_optimizer):
            if o is not None:
                o.zero_grad(set_to_none=True)

    def train_step(self) -> dict:
        """One optimisation step (self.step -> self.step + 1), judged by the step guard (train/guard.py).

        Unhealthy steps change nothing but the step counter and the random streams: a non-finite loss or gradient
        skips the update; an update beyond the guard's bounds (or non-finite) is undone from the copy kept before
        it (parameters and optimizer states); densification and learning-rate decay run only after healthy
        updates. More than train.max_nan_skips unhealthy steps in a row raise TrainingError naming the last good
        checkpoint (checkpoints followed by an unhealthy step move to RUN/checkpoints/rejected/). The logs of an
        unhealthy step have "skipped": 1 and "unhealthy": the reason."""
        cfg, step = self.cfg, self.step
        if step == cfg.train.warmup_iters and hasattr(self.deform, "init_nodes"):
            self.deform.init_nodes(self.gaussians.means.detach())
            self.deform_optimizer = build_deform_optimizer(self.deform, self._deform_lr())
        self.deform.set_step(max(0, step - cfg.train.warmup_iters))
        batched = self.batch_size > 1 or self.dist.enabled
        if batched:
            loss, info, logs = self.compute_batch_loss(step)
        else:
            idx = self.sample_frame()
            loss, info, logs = self.compute_loss(idx, step)
        if self.strategy:
            self.strategy.step_pre_backward(self.gaussians.params, self.optimizers, self.strategy_state, step, info)
        finite = bool(torch.isfinite(loss))
        if self.dist.enabled:  # every rank decides alike; logs become global means
            finite = not self.dist.any(not finite, loss.device)
            logs = self.dist.mean_logs(logs)
        reason = None if finite else "non-finite loss, update skipped"
        if reason is None:
            loss.backward()
            self.dist.all_reduce_grads(self._trained_tensors())
            if not self._grads_finite():
                reason = "non-finite gradient, update skipped"
        if reason is None:
            stepping = list(self.optimizers.values())
            if self.deform_active(step):
                stepping += [o for o in (self.deform_optimizer, self.backward_optimizer) if o is not None]
            self.guard.keep(stepping)
            for o in stepping:
                o.step()
            reason = self.guard.judge()
            if reason is not None:
                self.guard.undo()
                reason += ", update undone"
        if reason is not None:
            return self._unhealthy_step(step, reason, logs)
        self._nan_streak = 0
        self._adapt_nodes(step)  # before _zero_grad: may read this step's gradient of the means
        self._zero_grad()
        self._decay_lrs(step)
        if self.strategy:
            self._densify(step, info)
        self.step += 1
        self.last_step_healthy = True
        if self.dist.enabled and self.check_every and self.step % self.check_every == 0:
            self.dist.check_same(self._trained_tensors(), self.step)
        if self._unconfirmed is not None:  # a healthy step ran from the checkpoint written before it
            path, at = self._unconfirmed
            self._unconfirmed = None
            if path.is_file() and self.dist.is_main:
                write_last_good(path.parent, path, at)
        return logs

    def _unhealthy_step(self, step: int, reason: str, logs: dict) -> dict:
        self._zero_grad()
        self._nan_streak += 1
        self.nan_skips_total += 1
        self.last_step_healthy = False
        if self._unconfirmed is not None:
            self._rejected.append(self._unconfirmed[0])
            self._unconfirmed = None
        logs["skipped"] = 1
        logs["unhealthy"] = reason
        if self._nan_streak > self.cfg.train.max_nan_skips:
            raise TrainingError(f"stopping at step {step}: {self._nan_streak} consecutive non-finite or blown-up steps "
                                f"(last: {reason}); lower the learning rates or check the data. "
                                + self._set_aside_unconfirmed())
        self.step += 1
        return logs

    def _set_aside_unconfirmed(self) -> str:
        """Move the checkpoints newer than the last good one (or, without a record, those followed by an unhealthy
        step here) to RUN/checkpoints/rejected/, so that --resume and loading pick the good one; say so."""
        cdir = self.run_dir / "checkpoints"
        good = read_last_good(cdir)
        if good is not None:
            from ..model.checkpoint import list_checkpoints

            newer = [c for c in list_checkpoints(cdir) if c != good[0] and _ckpt_step(c) > good[1]]
        else:
            newer = self._rejected
        moved = set_aside(cdir, newer) if cdir.is_dir() and self.dist.is_main else []
        text = (f"The last good checkpoint (a healthy step ran from it) is {good[0]} (step {good[1]}); continue "
                f"from it with lower learning rates: {resume_command(self.run_dir)} optim.<name>_lr=...") \
            if good is not None else "No checkpoint of this run was followed by a healthy step: start again with " \
                                     "lower learning rates."
        if moved:
            text += f" Checkpoints not followed by a healthy step were moved to {moved[0].parent}: " + \
                ", ".join(m.name for m in moved) + "."
        return text

    def _adapt_nodes(self, step: int) -> None:
        """SC-GS adaptive control of a node field's nodes when due (deform.node_densify_*; deform/nodes.py): new
        nodes where the Gaussians' error is high and no node is close, nodes with no bound Gaussian dropped; the
        deformation optimizer's state follows (remap_optimizer_state). The error per Gaussian is gsplat's
        accumulated 2D mean gradient (grad2d / count since its last refinement) when densification keeps one,
        else the norm of this step's gradient of the canonical means."""
        d = self.deform
        if not (hasattr(d, "node_densify_due") and d.node_densify_due(step - self.cfg.train.warmup_iters)):
            return
        means = self.gaussians.means
        n, err = means.shape[0], None
        grad2d, count = self.strategy_state.get("grad2d"), self.strategy_state.get("count")
        if grad2d is not None and count is not None and grad2d.shape[0] == n and bool((count > 0).any()):
            err = grad2d / count.clamp_min(1)
        elif means.grad is not None:
            err = means.grad.detach().norm(dim=-1)
        info = d.densify_nodes(means.detach(), err)
        if self.deform_optimizer is not None:
            d.remap_optimizer_state(self.deform_optimizer, info)

    def _deform_lr(self) -> float:
        k = max(0, self.step - self.cfg.train.warmup_iters)
        return self.cfg.deform.lr * self.deform_gamma ** k

    def _decay_lrs(self, step: int) -> None:
        for group in self.optimizers["means"].param_groups:
            group["lr"] *= self.means_gamma
        if self.deform_active(step):
            for o in (self.deform_optimizer, self.backward_optimizer):
                for group in (o.param_groups if o is not None else []):
                    group["lr"] *= self.deform_gamma

    def _densify(self, step: int, info: dict) -> None:
        n0 = len(self.gaussians)
        cap = self.cfg.densify.max_gaussians
        self.strategy.grow_grad2d = float("inf") if cap and n0 >= cap else self._grow_grad2d
        remaps = hasattr(self.deform, "remap_gaussians")  # per-Gaussian field state (deform.kind=tracking)
        if remaps:  # gsplat clones / splits / prunes every tensor of its state with the Gaussians: a column of
            self.strategy_state["parents"] = torch.arange(n0, device=self.gaussians.means.device)  # indices
        with self.streams.global_cpu("densify"):  # its random split samples: a stream of their own
            self.strategy.step_post_backward(self.gaussians.params, self.optimizers, self.strategy_state, step,
                                             info, packed=info.get("gaussian_ids") is not None)
        parents = self.strategy_state.pop("parents", None)  # new Gaussian i came from old Gaussian parents[i]
        if remaps and not torch.equal(parents, torch.arange(n0, device=parents.device)):
            self.deform.remap_gaussians(parents, self.deform_optimizer)
        if len(self.gaussians) != n0 or (step + 1) % self.cfg.densify.refine_every == 0:
            self.deform.on_gaussians_changed(self.gaussians.means.detach())
            if self.terms is not None:
                self.terms.refresh_neighbors(self.gaussians.means, step, force=True)

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self) -> None:
        """Train to cfg.train.iters (or the time limit), saving every cfg.train.save_every steps and at the end.

        Checkpoints are written only after healthy steps (train/guard.py): a save due after an unhealthy step waits
        for the next healthy one, and training does not end on an unhealthy step. Raises TrainingError when the
        guard gives up. SIGINT / SIGTERM (handlers installed for the loop only, main thread only): the step in
        progress finishes, a checkpoint is written, and :class:`~dyngauss.train.signals.TrainingInterrupted`
        (a KeyboardInterrupt; `.checkpoint`, `.exit_code` 130 / 143) is raised; a second signal raises it at once,
        leaving the checkpoints on disk as they were."""
        cfg = self.cfg
        main = self.dist.is_main  # distributed: rank 0 alone writes the run folder and shows progress
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "checkpoints").mkdir(exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        self.logger = Logger(self.run_dir / "tb", enabled=main)
        from tqdm import tqdm

        if self.step == 0 and main:  # a fresh run: a record left by an older run in this folder names none of ours
            (self.run_dir / "checkpoints" / LAST_GOOD).unlink(missing_ok=True)
        self.dist.barrier()
        bar = tqdm(total=cfg.train.iters, initial=self.step, disable=not (cfg.train.progress and main),
                   dynamic_ncols=True, desc="train")
        ema_loss = ema_psnr = None
        save_due = False
        # SIGINT/SIGTERM (train/signals.py): finish the step, save, raise TrainingInterrupted; a second one aborts
        with StopSignals() as stop:
            try:
                while not self.dist.any(stop.signum is not None):  # distributed: every rank stops at one step
                    if self.last_step_healthy:  # never end on an unhealthy step: nothing may be saved after it
                        if self.step >= cfg.train.iters:
                            break
                        if cfg.train.time_limit_s and self.dist.any(self.train_seconds >= cfg.train.time_limit_s):
                            bar.write(f"time limit of {cfg.train.time_limit_s:.0f} s reached at step {self.step}")
                            break
                    t0 = time.perf_counter()
                    logs = self.train_step()
                    self.train_seconds += time.perf_counter() - t0
                    if "skipped" in logs:
                        bar.write(f"step {self.step - 1}: {logs['unhealthy']}")
                    else:
                        l, p = float(logs["loss"]), float(logs["psnr"])
                        ema_loss = l if ema_loss is None else 0.9 * ema_loss + 0.1 * l
                        ema_psnr = p if ema_psnr is None else 0.9 * ema_psnr + 0.1 * p
                    bar.update(1)
                    for hook in self.step_hooks:
                        hook(self)
                    if self.step % cfg.train.log_every == 0 and ema_loss is not None:
                        bar.set_postfix(loss=f"{ema_loss:.4f}", psnr=f"{ema_psnr:.2f}", n=len(self.gaussians))
                        self.logger.scalars({"loss": ema_loss, "psnr": ema_psnr, "num_gaussians": len(self.gaussians),
                                             "lr_means": self.optimizers["means"].param_groups[0]["lr"]}, self.step)
                    if cfg.train.image_log_every and self.step % cfg.train.image_log_every == 0:
                        self.logger.images("train/gt_render", list(self._last_images), self.step)
                    if cfg.train.save_every and self.step % cfg.train.save_every == 0 and self.step < cfg.train.iters:
                        save_due = True
                    if save_due and self.last_step_healthy:  # due during unhealthy steps: at the next healthy one
                        self.save()
                        save_due = False
                if stop.signum is not None:
                    bar.write(f"{signal_name(stop.signum)}: stopping at step {self.step}"
                              + (", saving a checkpoint (again to stop at once)" if self.last_step_healthy else ""))
                if self.last_step_healthy and self._saved_step != self.step:
                    self.save()
            except Interrupted as e:  # a second signal: stop now (an unfinished checkpoint file is removed)
                raise self._interrupted(e.signum, saved=False, why="stopped at once by a second signal") from None
            finally:
                bar.close()
                self.logger.close()
        if stop.signum is not None:
            raise self._interrupted(stop.signum, saved=self.last_step_healthy,
                                    why="no checkpoint written: the last step was unhealthy")

    def _interrupted(self, signum: int, saved: bool, why: str) -> TrainingInterrupted:
        """The exception for a stop by `signum`: names the checkpoint written for it, else the newest one."""
        if saved:
            ckpt = self.last_checkpoint
        else:
            from ..model.checkpoint import list_checkpoints

            ckpts = list_checkpoints(self.run_dir) if (self.run_dir / "checkpoints").is_dir() else []
            ckpt = ckpts[-1] if ckpts else None
        return TrainingInterrupted(signum, self.step, self.run_dir, ckpt, saved=saved, why_not_saved=why)

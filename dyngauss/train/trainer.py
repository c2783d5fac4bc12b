"""The training loop: sample a frame, pose the Gaussians at its time, render, photometric loss, densify.

Thin by design: densification is gsplat's DefaultStrategy (pre/post-backward hooks), motion models live in
deform/, losses in losses/. Checkpoints hold everything needed to continue exactly (params, optimizer,
scheduler, strategy and RNG states).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from ..config import DENSIFY_EXTRAS, Config, ConfigError, save_config
from ..losses.photometric import photometric_loss, psnr
from ..render.api import resolve_backend
from ..model.checkpoint import find_checkpoint, model_from_payload, read_checkpoint, save_checkpoint
from ..model.dynamic import CheckpointInfo, DynamicGaussians
from .init import initial_gaussians
from .logging import Logger
from .motion_terms import MotionTerms
from .streams import RandomStreams
from .optim import build_deform_optimizer, build_gaussian_optimizers, decay_gamma
from .scene import SceneData, load_scene


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. repeated non-finite losses)."""


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
    return DefaultStrategy(**kwargs, verbose=False)


class Trainer:
    """Owns the model, optimizers and data of one run folder (`cfg.out`)."""

    def __init__(self, cfg: Config, scene: SceneData | None = None, resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.device = torch.device("cuda" if cfg.train.device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if cfg.train.device == "auto" else cfg.train.device))
        self.scene = scene or load_scene(cfg)
        self.backend = resolve_backend(cfg.render.backend, self.device)
        self.step = 0
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
            self._resume(find_checkpoint(self.run_dir))
        else:
            self._fresh()
        self.logger: Logger | None = None

    # ---- setup -----------------------------------------------------------------------------------
    def _fresh(self) -> None:
        cfg = self.cfg
        tr = self.scene.train
        gaussians = initial_gaussians(cfg.model, tr.cameras, tr.images, tr.alphas,
                                      seed=cfg.train.seed, dataset=self.scene.path,
                                      points=(tr.meta or {}).get("points")).to(self.device)
        field = cfg.deform.build(num_frames=len(self.scene.train_times),
                                 frame_times=list(self.scene.train_times)).to(self.device)
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
        return None if field is None else field.to(self.device)

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
            self.strategy.check_sanity(self.gaussians.params, self.optimizers)
        self._grow_grad2d = cfg.densify.grow_grad2d
        self.terms = MotionTerms(cfg.motion, self.scene, self.run_dir / "flow_cache", streams=self.streams,
                                 frame_index=self.model.frame_index) \
            if cfg.motion.any_enabled() else None

    def _resume(self, path: Path) -> None:
        payload = read_checkpoint(path)
        loaded = model_from_payload(payload).to(self.device)
        self.model = DynamicGaussians(loaded.gaussians, loaded.deform, None, self.scene.train_times, config=self.cfg)
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
        }

    def save(self) -> Path:
        path = self.run_dir / "checkpoints" / f"ckpt_{self.step:06d}.pt"
        return save_checkpoint(self.checkpoint_payload(), path)

    # ---- one iteration -----------------------------------------------------------------------------
    def deform_active(self, step: int) -> bool:
        return self.cfg.deform.kind != "none" and step >= self.cfg.train.warmup_iters

    def sample_frame(self) -> int:
        return self.streams.integer("frames", len(self.cameras))

    def compute_loss(self, idx: int, step: int) -> tuple[torch.Tensor, dict, dict]:
        """Render training frame `idx` at its time and return (loss, render info, log values)."""
        cfg = self.cfg
        cam = self.cameras[idx]
        t = float(cam.time)
        gt = self.images[idx]
        bg = self.background
        if cfg.train.random_background and self.alphas is not None:
            bg = self.streams.uniform("background", (3,), self.device)
            a = self.alphas[idx]
            gt = gt - (1 - a) * self.background + (1 - a) * bg  # re-composite onto the new background
        active = self.deform_active(step)
        frame = self.model.frame_index(t)
        posed = self.model.pose(t, frame, deformed=active)
        means, motion = posed.means, posed.motion
        prior = self.terms.pick_prior(idx, step - cfg.train.warmup_iters) if (self.terms is not None and active) \
            else None
        features = self.terms.flow_target(prior, self.model, means) if prior is not None else None
        out = self.model.render(cam, t, posed=posed, background=bg, features=features, backend=self.backend,
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
        """One optimisation step (self.step -> self.step + 1). Non-finite loss/gradients skip the update."""
        cfg, step = self.cfg, self.step
        if step == cfg.train.warmup_iters and hasattr(self.deform, "init_nodes"):
            self.deform.init_nodes(self.gaussians.means.detach())
            self.deform_optimizer = build_deform_optimizer(self.deform, self._deform_lr())
        self.deform.set_step(max(0, step - cfg.train.warmup_iters))
        idx = self.sample_frame()
        loss, info, logs = self.compute_loss(idx, step)
        if self.strategy:
            self.strategy.step_pre_backward(self.gaussians.params, self.optimizers, self.strategy_state, step, info)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            finite = self._grads_finite()
        if not finite:
            self._zero_grad()
            self._nan_streak += 1
            self.nan_skips_total += 1
            logs["skipped"] = 1
            if self._nan_streak > cfg.train.max_nan_skips:
                raise TrainingError(f"stopping at step {step}: {self._nan_streak} consecutive non-finite losses or "
                                    "gradients (lower the learning rates or check the data); the last good "
                                    "checkpoint is in " + str(self.run_dir / "checkpoints"))
            self.step += 1
            return logs
        self._nan_streak = 0
        for o in self.optimizers.values():
            o.step()
        if self.deform_active(step):
            for o in (self.deform_optimizer, self.backward_optimizer):
                if o is not None:
                    o.step()
        self._zero_grad()
        self._decay_lrs(step)
        if self.strategy:
            self._densify(step, info)
        self.step += 1
        return logs

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
        with self.streams.global_cpu("densify"):  # its random split samples: a stream of their own
            self.strategy.step_post_backward(self.gaussians.params, self.optimizers, self.strategy_state, step,
                                             info, packed=info.get("gaussian_ids") is not None)
        if len(self.gaussians) != n0 or (step + 1) % self.cfg.densify.refine_every == 0:
            self.deform.on_gaussians_changed(self.gaussians.means.detach())
            if self.terms is not None:
                self.terms.refresh_neighbors(self.gaussians.means, step, force=True)

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self) -> None:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "checkpoints").mkdir(exist_ok=True)
        save_config(cfg, self.run_dir / "config.yaml")
        self.logger = Logger(self.run_dir / "tb")
        from tqdm import tqdm

        bar = tqdm(total=cfg.train.iters, initial=self.step, disable=not cfg.train.progress, dynamic_ncols=True,
                   desc="train")
        ema_loss = ema_psnr = None
        try:
            while self.step < cfg.train.iters:
                if cfg.train.time_limit_s and self.train_seconds >= cfg.train.time_limit_s:
                    bar.write(f"time limit of {cfg.train.time_limit_s:.0f} s reached at step {self.step}")
                    break
                t0 = time.perf_counter()
                logs = self.train_step()
                self.train_seconds += time.perf_counter() - t0
                if "skipped" in logs:
                    bar.write(f"step {self.step - 1}: non-finite loss or gradient, update skipped")
                else:
                    l, p = float(logs["loss"]), float(logs["psnr"])
                    ema_loss = l if ema_loss is None else 0.9 * ema_loss + 0.1 * l
                    ema_psnr = p if ema_psnr is None else 0.9 * ema_psnr + 0.1 * p
                bar.update(1)
                if self.step % cfg.train.log_every == 0 and ema_loss is not None:
                    bar.set_postfix(loss=f"{ema_loss:.4f}", psnr=f"{ema_psnr:.2f}", n=len(self.gaussians))
                    self.logger.scalars({"loss": ema_loss, "psnr": ema_psnr, "num_gaussians": len(self.gaussians),
                                         "lr_means": self.optimizers["means"].param_groups[0]["lr"]}, self.step)
                if cfg.train.image_log_every and self.step % cfg.train.image_log_every == 0:
                    self.logger.images("train/gt_render", list(self._last_images), self.step)
                if cfg.train.save_every and self.step % cfg.train.save_every == 0 and self.step < cfg.train.iters:
                    self.save()
        finally:
            bar.close()
        self.save()
        self.logger.close()

"""Every config key acts: a key that no code reads fails this test.

Each section of a Config is instrumented (its class swapped for a subclass that records attribute reads of its
fields), then the code paths that consume a config run on a tiny built-in scene: a full job (train, evaluate,
export) with a dense field and every optional feature on, and a node-field training run. Reads by the config
machinery itself (dyngauss/config.py, dataclasses: loading, saving, copying) do not count. A key counts when some
run whose section has the class that declares the key read it (shared deform keys may be read by either field
kind). Keys only read in a branch are covered by a run that takes the branch.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dyngauss.config as config_module
from dyngauss.config import UNIONS, Config, load_config

# Keys that no cheap run can exercise, with the reason. Keep this tiny.
NOT_EXERCISED: dict[str, str] = {}

# reads that do not count: the config machinery, dataclass-generated methods ("<string>") and __post_init__ checks
_MACHINERY = {dataclasses.__file__, config_module.__file__, "<string>", __file__}


def _tracked_class(cls: type, path: str, reads: set) -> type:
    names = frozenset(f.name for f in dataclasses.fields(cls))

    def __getattribute__(self, name):
        if name in names:
            code = sys._getframe(1).f_code
            if code.co_filename not in _MACHINERY and code.co_name != "__post_init__":
                reads.add((path, name))
        return object.__getattribute__(self, name)

    return type(cls.__name__, (cls,), {"__getattribute__": __getattribute__, "__module__": cls.__module__})


def track(cfg: Config) -> set:
    """Instrument `cfg` in place; returns the set of (section, key) reads it will record."""
    reads: set = set()
    for f in dataclasses.fields(cfg):
        sec = getattr(cfg, f.name)
        if dataclasses.is_dataclass(sec):
            sec.__class__ = _tracked_class(type(sec), f.name, reads)
    cfg.__class__ = _tracked_class(Config, "", reads)
    return reads


def _declaring_class(cls: type, name: str) -> type:
    """The base-most class of `cls` that declares field `name`."""
    for base in reversed(cls.__mro__):
        if name in getattr(base, "__annotations__", {}) and dataclasses.is_dataclass(base):
            return base
    return cls


def _all_keys() -> list[tuple[str, str, type]]:
    """(section, key, declaring class) of every leaf key, the union sections over every kind."""
    out = []
    cfg = Config()
    for f in dataclasses.fields(cfg):
        sec = getattr(cfg, f.name)
        if f.name in UNIONS:
            for cls in UNIONS[f.name].values():
                out += [(f.name, g.name, _declaring_class(cls, g.name)) for g in dataclasses.fields(cls)]
        elif dataclasses.is_dataclass(sec):
            out += [(f.name, g.name, type(sec)) for g in dataclasses.fields(sec)]
        else:
            out.append(("", f.name, Config))
    return sorted(set(out), key=lambda k: (k[0], k[1]))



def _tiny(tmp: Path, cache: Path, name: str, overrides: list[str]) -> Config:
    return load_config(None, [
        f"out={tmp / name}", f"data.cache_dir={cache}", "data.synthetic_resolution=24",
        "data.synthetic_train_frames=6", "model.num_points=200", "render.backend=torch", "train.iters=6",
        "train.warmup_iters=2", "train.progress=false", "train.log_every=1", "train.image_log_every=3",
        "train.save_every=3", "train.time_limit_s=600", "densify.refine_start_iter=1", "densify.refine_every=2",
        "densify.max_gaussians=100000",
    ] + overrides)


def _add_static_points(cfg: Config) -> None:
    """Give the generated built-in scene a points3d.ply (the static points of the background loss)."""
    from dyngauss.io.ply import write_points_ply
    from dyngauss.data.loaders import resolve_dataset

    folder = resolve_dataset(cfg.data)
    pts = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    write_points_ply(folder / "points3d.ply", pts, np.full((64, 3), 128, np.uint8))


EVERYTHING_MLP = [
    "deform.kind=mlp", "deform.time_mode=latent", "deform.ambient_dims=2", "deform.ambient_width=8",
    "deform.ambient_depth=2", "deform.dscale=true", "deform.screw_frame=local", "deform.backward=true",
    "deform.backward_width=16", "deform.backward_depth=2", "deform.width=16", "deform.depth=2",
    "deform.anneal_steps=3", "deform.latent_lr=2e-3", "deform.ambient_lr=2e-3",
    "motion.flow_weight=0.5", "motion.flow_every=2", "motion.flow_max_dt=1.0", "motion.flow_max_angle_deg=180",
    "motion.flow_upsample=1", "motion.flow_decay_steps=10", "motion.cycle_weight=1.0", "motion.cycle_samples=64",
    "motion.rigidity_weight=0.1", "motion.rotation_weight=0.1", "motion.isometry_weight=0.1",
    "motion.rigidity_samples=64", "motion.rigidity_ramp=2", "motion.elastic_weight=0.01",
    "motion.elastic_samples=32", "motion.smooth_weight=0.1", "motion.smooth_samples=64",
    "motion.background_weight=0.1", "motion.background_samples=32",
    "data.synthetic_depth=true", "motion.depth_weight=0.1", "motion.photo_warp_weight=0.5",
    "motion.photo_warp_every=2", "motion.track_weight=0.5",
    "eval.lpips=false", "export.frames=2", "export.format=points",
]

EVERYTHING_NODES = [
    "deform.kind=nodes", "deform.num_nodes=16", "deform.width=16", "deform.depth=2", "deform.node_table=true",
    "deform.table_lr=2e-3", "deform.rebind_every=2", "deform.blend=lbs", "motion.arap_weight=1.0",
    "motion.rigidity_weight=0.1", "motion.rigidity_dt=0", "train.iters=5",
    "deform.node_pos_lr=1e-3", "deform.rebind_move=0.1", "deform.node_spacing=0.05", "deform.node_densify_every=1",
    "deform.node_densify_start=1", "deform.node_densify_stop=10", "deform.node_densify_quantile=0.8",
    "deform.max_nodes=24", "deform.arap_robust_scale=0.5", "deform.node_pivot=center",
]

EVERYTHING_TRACKING = ["deform.kind=tracking", "deform.rot_lr=2e-3", "motion.rigidity_weight=0.1", "train.iters=4"]
EVERYTHING_BASES = ["deform.kind=bases", "deform.num_bases=4", "deform.time_freqs=3", "deform.lr=2e-3",
                    "deform.lr_final=1e-4", "deform.weight_lr=5e-3", "motion.rigidity_weight=0.1", "train.iters=4",
                    "train.time_window=0.3", "train.time_window_steps=2", "train.canonical_time=0.4",
                    "motion.depth_weight=0.1", "motion.depth_missing=skip"]


def _nan_once(trainer_cls, monkeypatch, at_step: int) -> None:
    """Make one training step non-finite (the skipped-step branch reads train.max_nan_skips)."""
    original = trainer_cls.compute_loss

    def compute_loss(self, idx, step):
        loss, info, logs = original(self, idx, step)
        return (loss * float("nan") if step == at_step else loss), info, logs

    monkeypatch.setattr(trainer_cls, "compute_loss", compute_loss)


def unread_keys(runs: list[tuple[Config, set]]) -> list[str]:
    """Dotted keys (outside NOT_EXERCISED) that no run read while its section had the key's declaring class."""
    unread = []
    for sec, key, owner in _all_keys():
        dotted = f"{sec}.{key}" if sec else key
        if dotted in NOT_EXERCISED:
            continue
        if not any((sec, key) in r and isinstance(getattr(c, sec) if sec else c, owner) for c, r in runs):
            unread.append(dotted)
    return unread


def test_every_config_key_is_read(tmp_path, cache, monkeypatch):
    from dyngauss.train.run import run_job
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    read_in: list[tuple[Config, set]] = []

    cfg = _tiny(tmp_path, cache, "mlp", EVERYTHING_MLP)
    _add_static_points(cfg)
    reads = track(cfg)
    _nan_once(Trainer, monkeypatch, at_step=4)
    run_job(cfg, log=lambda *a: None)  # train, evaluate, export
    read_in.append((cfg, reads))
    monkeypatch.undo()

    cfg = _tiny(tmp_path, cache, "nodes", EVERYTHING_NODES)
    reads = track(cfg)
    trainer = Trainer(cfg)
    for _ in range(5):  # past the warm-up: nodes are sampled, bound, re-bound
        logs = trainer.train_step()
    assert "arap" in logs and trainer.deform.initialized
    read_in.append((cfg, reads))

    cfg = _tiny(tmp_path, cache, "tracking", EVERYTHING_TRACKING)
    reads = track(cfg)
    trainer = Trainer(cfg)
    for _ in range(4):  # past the warm-up: the per-Gaussian tables are made and follow densification
        logs = trainer.train_step()
    assert "rigidity" in logs and trainer.deform.num_gaussians == len(trainer.gaussians)
    read_in.append((cfg, reads))

    cfg = _tiny(tmp_path, cache, "bases", EVERYTHING_BASES)
    reads = track(cfg)
    trainer = Trainer(cfg)
    for _ in range(4):  # past the warm-up: the blend weights are made and follow densification
        logs = trainer.train_step()
    assert "rigidity" in logs and trainer.deform.num_gaussians == len(trainer.gaussians)
    read_in.append((cfg, reads))

    unread = unread_keys(read_in)
    assert not unread, f"config keys that nothing read: {unread}"


def test_the_walk_sees_an_unread_key():
    """The tracker itself: a read is recorded, a key that is only loaded and saved is not."""
    cfg = load_config(None, ["train.iters=3"])
    reads = track(cfg)
    config_module.config_to_dict(cfg)  # machinery: does not count
    dataclasses.replace(cfg.deform, width=3)
    assert cfg.train.iters == 3  # this file's own reads do not count either
    assert reads == set()
    from dyngauss.train.optim import gaussian_lrs

    gaussian_lrs(cfg.optim, 1.0)
    assert ("optim", "means_lr") in reads and ("optim", "means_lr_final") not in reads
    # the coverage check: a key read only in a run of another kind does not count for this kind
    unread = unread_keys([(cfg, reads | {("deform", "num_nodes")})])
    assert "optim.means_lr_final" in unread and "optim.means_lr" not in unread and "deform.num_nodes" in unread


@pytest.mark.parametrize("kind", ["mlp", "nodes"])
def test_background_loss_without_static_points_is_a_config_error(tmp_path, cache, kind):
    from dyngauss.config import ConfigError
    from dyngauss.train.trainer import Trainer

    # another scene (seed) than the walk's, which has a points3d.ply
    cfg = _tiny(tmp_path, cache, kind, [f"deform.kind={kind}", "motion.background_weight=0.1", "data.synthetic_seed=1"])
    with pytest.raises(ConfigError, match="motion.background_weight"):
        Trainer(cfg)

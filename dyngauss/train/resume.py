"""`--resume`: continue a run with its own config, changing only what may change mid-run.

The config of a resumed run is the run's ``RUN/config.yaml`` (cross-checked with the newest checkpoint's
``cfg``: every key that may not change mid-run must agree) with only the command-line overrides applied. An
override is judged by its effect: one that leaves the config as it was is accepted whatever its key; one that
changes a key outside :data:`MUTABLE_KEYS` is refused (:class:`ResumeError`, naming the override, the key, the
old and new value and why) before any data is loaded.

What may change (:data:`MUTABLE_KEYS`): the length of training and its learning rates (the optimizers'
restored rates are rescaled by new/old, and the exponential decays re-aimed at the new end, see
:func:`restore_schedule`), logging, saving, the time limit, the NaN-guard patience, evaluation and export
settings, and where the same computation runs (``train.device``, ``render.backend``: the kernels compute the
same model, so a CPU run may continue on a GPU; only a resume with the same backend and device is bit-exact).
Everything that defines the model or the images it learns from may not: ``model.*`` (the Gaussians were built
with it), ``deform.*`` but ``deform.lr``/``deform.lr_final`` (field kind and shape are in the checkpoint's
weights), ``densify.*`` and ``train.seed``/``warmup_iters``/``random_background`` (the restored strategy and
random-stream states belong to them), ``loss.*`` and ``motion.*`` (the objective), ``render.*`` but the backend
(the image model), ``data.*`` but the evaluated split (the training images).

Dataset identity: the trainer stores :func:`dataset_identity` (resolved folder and a SHA-256 over its camera
JSON files) in every checkpoint, and a resume recomputes it: a dataset whose camera files changed is refused.
``data.path=NEW`` (or ``data.cache_dir`` for the built-in scene) is accepted on resume when the folder it names
has the same fingerprint — a dataset that was moved or copied elsewhere — and refused otherwise. Image files
are not hashed (too slow for large captures); the JSON files hold every camera, time and file name.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config import Config, ConfigError, apply_override, config_from_dict, config_to_dict, load_config, \
    upgrade_config_dict

# Keys a resume may change (fnmatch patterns over dotted keys).
MUTABLE_KEYS: tuple[str, ...] = (
    "out",
    "train.iters", "train.log_every", "train.image_log_every", "train.save_every", "train.progress",
    "train.time_limit_s", "train.max_nan_skips", "train.device", "train.dist_check_every",
    "optim.*", "deform.lr", "deform.lr_final",
    "render.backend",
    "data.eval_split",
    "eval.*", "export.*",
)
# Keys that name where the dataset is: accepted when the folder they lead to has the run's fingerprint.
DATASET_KEYS: tuple[str, ...] = ("data.path", "data.cache_dir")

_WHY = (  # first matching prefix -> why the key is fixed for the run
    ("deform.", "the deformation field's kind and shape are fixed by the checkpoint's weights"),
    ("model.", "the Gaussians were created with it"),
    ("data.", "it changes the training images"),
    ("densify.", "the restored densification state belongs to it"),
    ("loss.", "it changes the training objective"),
    ("motion.", "it changes the training objective (and which fields exist)"),
    ("render.", "it changes the image model the Gaussians were fitted with"),
    ("train.", "the restored schedule and random streams belong to it"),
    ("", "it cannot change mid-run"),
)
# camera/time files of every supported format (D-NeRF transforms*.json are globbed): Nerfies, Panoptic, N3V
_FINGERPRINT_FILES = ("dataset.json", "metadata.json", "scene.json", "train_meta.json", "test_meta.json",
                      "poses_bounds.npy")


class ResumeError(ValueError):
    """A run cannot be resumed as asked (no run there, a refused override, its dataset changed)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def is_mutable(key: str) -> bool:
    """True when dotted config `key` may change on --resume."""
    return any(fnmatch.fnmatchcase(key, p) for p in MUTABLE_KEYS)


def flat_config(cfg: Config) -> dict[str, Any]:
    """{dotted key: value} of every leaf of `cfg`."""
    out: dict[str, Any] = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + k] = v
    walk(config_to_dict(cfg), "")
    return out


def changed_keys(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs (a changed ``deform.kind`` is reported alone)."""
    fa, fb = flat_config(a), flat_config(b)
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k, "<unset>") != fb.get(k, "<unset>"))
    if "deform.kind" in keys:
        keys = [k for k in keys if not k.startswith("deform.")] + ["deform.kind"]
    return keys


def _why(key: str) -> str:
    return next(reason for prefix, reason in _WHY if key.startswith(prefix))


# ---- dataset identity ------------------------------------------------------------------------------
def dataset_identity(path: str | os.PathLike) -> dict:
    """``{"path", "fingerprint", "files"}`` of a dataset folder: its resolved path, and the SHA-256 over the
    names, sizes and bytes of its camera/metadata JSON files (D-NeRF ``transforms*.json``; Nerfies
    ``dataset.json``, ``metadata.json``, ``scene.json``, ``camera/*.json``) in sorted order. Images are not read.
    """
    folder = Path(path).expanduser()
    files = sorted(folder.glob("transforms*.json")) + [folder / n for n in _FINGERPRINT_FILES
                                                      if (folder / n).is_file()]
    files += sorted((folder / "camera").glob("*.json")) if (folder / "camera").is_dir() else []
    h = hashlib.sha256()
    for f in files:
        data = f.read_bytes()
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return {"path": str(folder.resolve()), "fingerprint": h.hexdigest(), "files": len(files)}


def check_dataset(cfg: Config, stored: dict | None, stored_path: str, moved: bool) -> list[str]:
    """Check that `cfg.data` leads to the dataset the run trained on; may set ``cfg.data.path`` to the stored
    absolute folder (a relative data.path given from another working directory). Returns notes; raises
    ResumeError for a missing, changed or unverifiable dataset. `moved`: data.path/cache_dir was overridden."""
    from ..data.loaders import resolve_dataset

    notes: list[str] = []
    path = resolve_dataset(cfg.data)
    stored_abs = Path((stored or {}).get("path") or stored_path or "")
    if not path.is_dir() and not moved and cfg.data.path and stored_abs.is_dir():
        notes.append(f"data.path {cfg.data.path!r} does not exist from here; using the run's dataset {stored_abs}")
        cfg.data.path = str(stored_abs)
        path = stored_abs
    if not path.is_dir():
        raise ResumeError(f"the run's dataset folder {path} does not exist; if it moved, give its new place with "
                          "data.path=NEW (its camera files must be unchanged)")
    if not stored:
        if moved or (stored_path and Path(stored_path).resolve() != path.resolve()):
            raise ResumeError(f"the run's checkpoint has no dataset fingerprint (written by an older dyngauss), so "
                              f"{path} cannot be verified to be the dataset it trained on ({stored_path})")
        return notes + ["note: the checkpoint has no dataset fingerprint (older dyngauss); only the path was "
                        "checked"]
    now = dataset_identity(path)
    if now["fingerprint"] != stored.get("fingerprint"):
        raise ResumeError(
            f"the dataset at {now['path']} is not the one this run trained on ({stored.get('path')}): its camera "
            f"files differ (fingerprint {now['fingerprint'][:12]} != {str(stored.get('fingerprint'))[:12]}); "
            "resuming would train on other images. Start a new run (another out=, or --overwrite)")
    if now["path"] != stored.get("path"):
        notes.append(f"dataset moved: {stored.get('path')} -> {now['path']} (same fingerprint)")
    return notes


# ---- the config of a resumed run -------------------------------------------------------------------
def run_dir_of(overrides: list[str]) -> Path:
    """The run folder the overrides name (their last ``out=``; the default config's otherwise)."""
    outs = [o for o in overrides if o.split("=", 1)[0].strip() == "out"]
    return Path(load_config(None, outs).out)


def check_resumable(run_dir: str | os.PathLike) -> None:
    """ResumeError unless `run_dir` is a folder holding at least one checkpoint (cheap: no file is read)."""
    from .run_folder import run_checkpoints

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"nothing to resume: {run_dir} does not exist (give the run folder with out=RUN)")
    if not run_checkpoints(run_dir):
        raise ResumeError(f"nothing to resume: no checkpoint (ckpt_*.pt) in {run_dir / 'checkpoints'}; "
                          "train without --resume to start this run")


def _saved_yaml_config(path: Path) -> Config:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ResumeError(f"cannot read {path}: {e}; remove it to resume with the checkpoint's config") from None
    try:
        return config_from_dict(data)
    except ConfigError as first:
        try:  # written by an older dyngauss (checkpoint version 1 layout)
            return config_from_dict(upgrade_config_dict(data, from_version=1))
        except ConfigError:
            raise ResumeError(f"{path} is not a valid config ({first}); remove it to resume with the checkpoint's "
                              "config") from None


def resume_config(run_dir: str | os.PathLike, overrides: list[str],
                  log: Callable[[str], None] = _stderr) -> Config:
    """The config to continue `run_dir` with: RUN/config.yaml (the newest checkpoint's config when it is
    missing) plus `overrides`, with ``out`` = `run_dir`.

    Raises ResumeError when there is nothing to resume, when config.yaml and the checkpoint disagree on a key
    that cannot change mid-run, when an override changes such a key, or when the dataset changed; ConfigError
    for an invalid override; CheckpointError for an unreadable checkpoint. Nothing is written."""
    from ..model.checkpoint import read_checkpoint

    run_dir = Path(run_dir)
    check_resumable(run_dir)
    payload = read_checkpoint(run_dir, warn=None)  # the trainer reads it again and warns about skipped files
    ckpt_path = payload["_path"]
    try:
        ckpt_cfg = config_from_dict(payload.get("cfg") or {})
    except ConfigError as e:
        raise ResumeError(f"{ckpt_path}: its config is not valid here: {e}") from None
    yaml_path = run_dir / "config.yaml"
    if yaml_path.is_file():
        base = _saved_yaml_config(yaml_path)
        differ = [k for k in changed_keys(base, ckpt_cfg) if not is_mutable(k) and k not in DATASET_KEYS]
        if differ:
            fb, fc = flat_config(base), flat_config(ckpt_cfg)
            diffs = "; ".join(f"{k}: {fb.get(k)!r} in config.yaml, {fc.get(k)!r} in the checkpoint" for k in differ)
            raise ResumeError(f"{yaml_path} does not belong to {ckpt_path} ({diffs}); restore the run's config.yaml "
                              "or remove it to resume with the checkpoint's config")
    else:
        log(f"note: {yaml_path} is missing; resuming with the config stored in {ckpt_path.name}")
        base = copy.deepcopy(ckpt_cfg)
    base.out = str(run_dir)

    cfg, applied, refused, moved = copy.deepcopy(base), [], [], False
    for o in overrides:
        before = copy.deepcopy(cfg)
        apply_override(cfg, o)
        for key in changed_keys(before, cfg):
            old, new = flat_config(before).get(key), flat_config(cfg).get(key)
            if key == "out":
                continue
            if is_mutable(key) or key in DATASET_KEYS:
                moved |= key in DATASET_KEYS
                applied.append(f"{key}: {old!r} -> {new!r}")
            else:
                refused.append(f"{o} ({key}: {old!r} -> {new!r}; {_why(key)})")
    if refused:
        raise ResumeError(
            f"cannot resume {run_dir} with " + "; ".join(refused) + ". A resumed run keeps its config; these can "
            f"change: {', '.join(MUTABLE_KEYS[1:])} (and data.path for a moved copy of the same dataset). To "
            "train with other settings start a new run: another out=, or --overwrite")
    notes = check_dataset(cfg, payload.get("dataset_id"), str(payload.get("dataset") or ""), moved)
    for n in notes:
        log(n)
    log(f"resuming {run_dir} from {ckpt_path.name} (step {payload.get('step')}) with the run's config"
        + (f"; changed: {', '.join(applied)}" if applied else ""))
    return cfg


# ---- learning-rate schedule after a resume ---------------------------------------------------------
def restore_schedule(trainer, payload: dict) -> None:
    """Called by the trainer after it restored the optimizers from checkpoint `payload`.

    Unchanged learning-rate settings: the per-step decay factors stored in the checkpoint are restored (exact
    resume, also after an earlier resume that changed them). Changed ones: each restored rate is multiplied by
    new/old base rate (``optim.<group>_lr``, ``deform.lr`` for every deformation group), and a changed length of
    training or final rate re-aims the exponential decay from the current rate to the final rate at the new
    ``train.iters``."""
    from .optim import decay_gamma, gaussian_lrs

    cfg = trainer.cfg
    try:
        saved = config_from_dict(payload.get("cfg") or {})
    except ConfigError:
        return
    gammas = payload.get("lr_gammas") or {}
    scale = trainer.scene.scene_scale
    old, new = gaussian_lrs(saved.optim, scale), gaussian_lrs(cfg.optim, scale)
    for name, opt in trainer.optimizers.items():
        if name in new and new[name] != old.get(name):
            for g in opt.param_groups:
                g["lr"] = g["lr"] * new[name] / old[name] if old.get(name) else new[name]
    left = cfg.train.iters - trainer.step
    if (saved.optim.means_lr, saved.optim.means_lr_final, saved.train.iters) == \
            (cfg.optim.means_lr, cfg.optim.means_lr_final, cfg.train.iters):
        trainer.means_gamma = gammas.get("means", trainer.means_gamma)
    elif "means" in trainer.optimizers:
        cur = trainer.optimizers["means"].param_groups[0]["lr"]
        trainer.means_gamma = decay_gamma(cur, cfg.optim.means_lr_final * scale, left)

    d_old = (getattr(saved.deform, "lr", 0.0), getattr(saved.deform, "lr_final", 0.0), saved.train.iters)
    d_new = (getattr(cfg.deform, "lr", 0.0), getattr(cfg.deform, "lr_final", 0.0), cfg.train.iters)
    opts = [o for o in (trainer.deform_optimizer, trainer.backward_optimizer) if o is not None]
    if d_new[0] != d_old[0] and d_old[0] > 0:
        for o in opts:
            for g in o.param_groups:
                g["lr"] *= d_new[0] / d_old[0]
    if d_new == d_old:
        trainer.deform_gamma = gammas.get("deform", trainer.deform_gamma)
    elif opts and trainer.step > cfg.train.warmup_iters:
        cur = opts[0].param_groups[0]["lr"]
        trainer.deform_gamma = decay_gamma(cur, d_new[1], left)

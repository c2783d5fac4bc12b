"""Dataclass configs: YAML loading, dotted command-line overrides, unknown-key errors, saving.

A config is a tree of dataclasses. `load_config(path, overrides)` starts from the defaults, applies the
YAML file, then `a.b=value` overrides (values parsed as YAML scalars/lists). Any key that is not a field
raises ConfigError naming the full dotted key, so typos never pass silently.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .deform.factory import DeformConfig
from .losses.motion_config import MotionLossConfig


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, unreadable YAML)."""


@dataclass
class DataConfig:
    """Where the images come from."""

    path: str = ""                       # D-NeRF-format folder; "" = the built-in synthetic scene
    downscale: int = 1                   # integer image downscale factor
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # RGBA composited on this
    eval_split: str = "test"
    synthetic_resolution: int = 128      # built-in scene: image size
    synthetic_seed: int = 0
    synthetic_train_frames: int = 100    # built-in scene: training frames (one random camera each)
    cache_dir: str = ""                  # "" = $DYNGAUSS_CACHE or ~/.cache/dyngauss


@dataclass
class ModelConfig:
    """Canonical Gaussians and their initialisation."""

    init: str = "auto"                   # auto (points3d.ply > alpha masks > random) | points | masks | random
    num_points: int = 20000              # candidate points for random / mask-carved init
    init_extent: float = 1.5             # half-size of the init cube around the origin
    init_opacity: float = 0.1
    init_scale_mult: float = 1.0
    sh_degree: int = 3
    sh_degree_interval: int = 1000       # one more SH degree every this many steps


@dataclass
class RenderConfig:
    backend: str = "auto"                # auto | cpu | torch | gsplat
    near: float = 0.01
    far: float = 1e10
    eps2d: float = 0.3
    tile_size: int = 16


@dataclass
class OptimConfig:
    """Adam learning rates per parameter group; means decay exponentially to means_lr_final."""

    means_lr: float = 1.6e-4             # times the scene scale
    means_lr_final: float = 1.6e-6
    quats_lr: float = 1e-3
    scales_lr: float = 5e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 1.25e-4


@dataclass
class DensifyConfig:
    """gsplat DefaultStrategy parameters (clone/split/prune/opacity reset)."""

    enabled: bool = True
    refine_start: int = 500
    refine_stop: int = 15000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    max_gaussians: int = 0               # 0 = unlimited; else stop growing above this count


@dataclass
class LossConfig:
    l1_weight: float = 0.8
    ssim_weight: float = 0.2


@dataclass
class TrainConfig:
    iters: int = 3000
    warmup_iters: int = 500              # static (no deformation) warm-up
    seed: int = 0
    random_background: bool = False
    device: str = "auto"                 # auto | cpu | cuda
    log_every: int = 50
    image_log_every: int = 500
    save_every: int = 1000
    max_nan_skips: int = 20              # consecutive non-finite steps before stopping
    time_limit_s: float = 0.0            # stop training (then evaluate/export) after this many seconds; 0 = off
    progress: bool = True


@dataclass
class EvalConfig:
    splits: list[str] = field(default_factory=lambda: ["test"])
    save_renders: bool = True
    lpips: bool = True                   # computed only when weights are available locally


@dataclass
class ExportConfig:
    enabled: bool = True
    frames: int = 30
    fps: float = 15.0
    format: str = "gaussians"            # gaussians | points


@dataclass
class Config:
    out: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    deform: DeformConfig = field(default_factory=DeformConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    motion: MotionLossConfig = field(default_factory=MotionLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# ---------------------------------------------------------------------------------------------------
def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check/convert `value` to the annotated type `typ` (int, float, bool, str, list[...], dataclass)."""
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _from_dict(typ(), value, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(typ)[:1] or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        typ = next(a for a in args if a is not type(None))
        return _coerce(value, typ, key)
    if typ is Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _from_dict(obj: Any, data: dict, prefix: str = "") -> Any:
    """Apply a nested dict onto dataclass instance `obj` (in place), rejecting unknown keys."""
    types = _field_types(obj)
    for k, v in data.items():
        if k not in types:
            raise ConfigError(f"unknown config key '{prefix}{k}' (valid keys here: {', '.join(sorted(types))})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"{prefix}{k}: expected a mapping, got {v!r}")
            _from_dict(cur, v, f"{prefix}{k}.")
        else:
            setattr(obj, k, _coerce(v, types[k], prefix + k))
    return obj


def apply_override(cfg: Config, override: str) -> None:
    """Apply one `dotted.key=value` override; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {override!r}: cannot parse value: {e}") from None
    nested: Any = value
    for part in reversed(key.split(".")):
        if not part:
            raise ConfigError(f"override {override!r}: empty key component")
        nested = {part: nested}
    _from_dict(cfg, nested)


def _read_yaml(p: Path, seen: tuple[Path, ...] = ()) -> list[dict]:
    """The mappings of a YAML file and its `base:` chain, base first (a config may extend another)."""
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    if p.resolve() in seen:
        raise ConfigError(f"{p}: circular 'base:' chain")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    base = data.pop("base", None)
    chain = _read_yaml(p.parent / str(base), seen + (p.resolve(),)) if base else []
    return chain + [data]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file (optional; `base: other.yaml` inside it is applied first) <- dotted overrides."""
    cfg = Config()
    if path:
        for data in _read_yaml(Path(path)):
            _from_dict(cfg, data)
    for o in overrides or []:
        apply_override(cfg, o)
    return cfg


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> Config:
    return _from_dict(Config(), data)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

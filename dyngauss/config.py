"""Dataclass configs: YAML loading, dotted command-line overrides, unknown-key errors, saving.

A config is a tree of dataclasses whose defaults are the main job (configs/default.yaml adds nothing:
``load_config("configs/default.yaml") == Config()``). `load_config(path, overrides)` starts from the
defaults, applies the YAML file (after its `base:` chain), then `a.b=value` overrides (values parsed as YAML
scalars/lists). Any key that is not a field raises ConfigError naming the full dotted key, so typos never pass
silently.

`deform` is a tagged union (dyngauss/deform/config.py): the last `deform.kind` given anywhere (YAML chain or
overrides) picks the field's dataclass; keys shared by the kinds carry over, and a key of another kind is an
error naming the key and the kind — except keys written next to a `kind` that a later layer replaced, which
go with it (``--config configs/mlp.yaml deform.kind=nodes`` works).
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .deform.config import FIELD_CONFIGS, FieldConfig, MLPFieldConfig
from .losses.motion_config import MotionLossConfig


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, unreadable YAML)."""


@dataclass
class DataConfig:
    """Where the images come from."""

    path: str = ""                       # D-NeRF / Nerfies folder; "" = the built-in synthetic scene
    downscale: int = 1                   # integer image downscale factor
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # RGBA composited on this
    eval_split: str = "test"             # the split evaluated after training
    synthetic_resolution: int = 128      # built-in scene: image size
    synthetic_seed: int = 0
    synthetic_train_frames: int = 150    # built-in scene: training frames (one random camera each)
    cache_dir: str = ""                  # "" = $DYNGAUSS_CACHE or ~/.cache/dyngauss


@dataclass
class ModelConfig:
    """Canonical Gaussians and their initialisation (the names Gaussians.from_points / random take)."""

    init: str = "auto"                   # auto (points3d.ply > alpha masks > random) | points | masks | random
    num_points: int = 6000               # candidate points for random / mask-carved init
    init_extent: float = 1.2             # half-size of the init cube around the origin
    init_opacity: float = 0.1
    init_scale_mult: float = 1.0         # initial scale = this x mean distance to the 3 nearest neighbours
    sh_degree: int = 0                   # the built-in scene is Lambertian: view-dependent colour only overfits
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


# Keys of DensifyConfig that are ours; every other key is a gsplat DefaultStrategy argument of the same name.
DENSIFY_EXTRAS = ("enabled", "max_gaussians")


@dataclass
class DensifyConfig:
    """Densification: gsplat's DefaultStrategy (clone/split/prune/opacity reset), its arguments under its names
    (passed through by name; the scene scale comes from the cameras), plus our extras."""

    # ---- ours ----
    enabled: bool = True
    max_gaussians: int = 40000           # 0 = unlimited; else stop growing above this count
    # ---- gsplat DefaultStrategy ----
    prune_opa: float = 0.005
    grow_grad2d: float = 0.0003
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 300
    refine_stop_iter: int = 2000
    refine_every: int = 100
    reset_every: int = 100000            # no opacity reset in short runs


@dataclass
class LossConfig:
    l1_weight: float = 0.8
    ssim_weight: float = 0.2


@dataclass
class TrainConfig:
    iters: int = 5000
    warmup_iters: int = 300              # static (no deformation) warm-up
    seed: int = 0
    random_background: bool = True      # keeps the object's alpha honest (no floaters in the background colour)
    device: str = "auto"                 # auto | cpu | cuda
    log_every: int = 50
    image_log_every: int = 500
    save_every: int = 1000
    max_nan_skips: int = 20              # consecutive non-finite steps before stopping
    time_limit_s: float = 0.0            # stop training (then evaluate/export) after this many seconds; 0 = off
    progress: bool = True


@dataclass
class EvalConfig:
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
    """The run config; the defaults are the main job (built-in scene, mlp field, CPU-sized)."""

    out: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    deform: FieldConfig = field(default_factory=MLPFieldConfig)  # a tagged union on deform.kind
    render: RenderConfig = field(default_factory=RenderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    motion: MotionLossConfig = field(default_factory=MotionLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# Tagged-union sections: dotted key -> {kind: dataclass}.
UNIONS: dict[str, dict[str, type]] = {"deform": FIELD_CONFIGS}

# Keys renamed or removed since checkpoint version 1 (their errors say so; upgrade_config_dict converts).
RENAMED = {"densify.refine_start": "densify.refine_start_iter", "densify.refine_stop": "densify.refine_stop_iter"}
REMOVED = {"eval.splits": "it was never read; the evaluated split is data.eval_split"}


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


def _unknown_key(key: str, valid) -> ConfigError:
    hint = f"; it was renamed {RENAMED[key]}" if key in RENAMED else \
        (f"; it was removed: {REMOVED[key]}" if key in REMOVED else "")
    return ConfigError(f"unknown config key '{key}'{hint} (valid keys here: {', '.join(sorted(valid))})")


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _switch_kind(obj: Any, kinds: dict[str, type], kind: str) -> Any:
    """A `kind` instance of a union section carrying over the values of the keys it shares with `obj`."""
    new = kinds[kind]()
    if type(new) is type(obj):
        return obj
    values = dataclasses.asdict(obj)
    for name in _field_names(type(new)) - {"kind"}:
        if name in values:
            setattr(new, name, copy.deepcopy(values[name]))
    return new


def _layer_kind(data: Any, key: str, kinds: dict[str, type]) -> str | None:
    """The kind a layer's mapping for union section `key` sets (None: it sets none); ConfigError if unknown."""
    if not isinstance(data, dict) or "kind" not in data:
        return None
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in kinds:
        raise ConfigError(f"{key}.kind: unknown kind {kind!r}; valid: {', '.join(kinds)}")
    return kind


def _apply_union(obj: Any, data: Any, key: str, kinds: dict[str, type]) -> None:
    """Apply one layer's mapping onto union section `obj`, whose kind is already the final one."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping, got {data!r}")
    layer_kind = _layer_kind(data, key, kinds) or obj.kind
    types = _field_types(obj)
    for k, v in data.items():
        if k == "kind":
            continue
        if k in types:
            setattr(obj, k, _coerce(v, types[k], f"{key}.{k}"))
        elif layer_kind != obj.kind and k in _field_names(kinds[layer_kind]):
            continue  # written for a kind a later layer replaced: it goes with that kind
        else:
            owners = [kd for kd, cls in kinds.items() if k in _field_names(cls)]
            where = f" (a key of {key}.kind={'|'.join(owners)})" if owners else ""
            raise ConfigError(f"{key}.{k} is not a key of {key}.kind={obj.kind}{where}; "
                              f"valid: {', '.join(sorted(types))}")


def _from_dict(obj: Any, data: dict, prefix: str = "") -> Any:
    """Apply a nested dict onto dataclass instance `obj` (in place), rejecting unknown keys."""
    types = _field_types(obj)
    for k, v in data.items():
        if k not in types:
            raise _unknown_key(prefix + k, types)
        cur = getattr(obj, k)
        if prefix + k in UNIONS:
            _apply_union(cur, v, prefix + k, UNIONS[prefix + k])
        elif dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"{prefix}{k}: expected a mapping, got {v!r}")
            _from_dict(cur, v, f"{prefix}{k}.")
        else:
            setattr(obj, k, _coerce(v, types[k], prefix + k))
    return obj


def _apply_layers(cfg: Config, layers: list[dict]) -> Config:
    """Apply mappings in order onto `cfg`; each union section first takes the last kind any layer sets."""
    for key, kinds in UNIONS.items():
        kind = None
        for data in layers:
            kind = _layer_kind(data.get(key), key, kinds) or kind
        if kind is not None:
            setattr(cfg, key, _switch_kind(getattr(cfg, key), kinds, kind))
    for data in layers:
        _from_dict(cfg, data)
    return cfg


def _override_layer(override: str) -> dict:
    """`dotted.key=value` -> a nested mapping; the value is parsed as YAML (numbers, bools, lists)."""
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
    return nested


def apply_override(cfg: Config, override: str) -> None:
    """Apply one `dotted.key=value` override to `cfg` in place (a new `deform.kind` keeps the shared keys)."""
    _apply_layers(cfg, [_override_layer(override)])


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
    """Defaults <- YAML file (optional; `base: other.yaml` inside it is applied first) <- dotted overrides.
    Raises ConfigError naming the file or key for anything invalid."""
    layers = _read_yaml(Path(path)) if path else []
    return _apply_layers(Config(), layers + [_override_layer(o) for o in overrides or []])


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (the union sections include their `kind`); config_from_dict inverts it."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> Config:
    """The Config of a dict written by config_to_dict (e.g. a run's config.yaml or a checkpoint's `cfg`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    return _apply_layers(Config(), [data])


def upgrade_config_dict(data: dict, from_version: int) -> dict:
    """A config dict written by checkpoint version `from_version` in the current layout (a new dict).

    Version 1 -> 2: densify.refine_start/refine_stop -> refine_start_iter/refine_stop_iter (gsplat's names);
    eval.splits dropped (never read); the flat `deform` section keeps its `kind` and that kind's keys (the
    other kinds' keys were unused). Version 2 is returned as a copy. Raises ConfigError for other versions or
    an unknown deform kind."""
    out = copy.deepcopy(data)
    if from_version == 2:
        return out
    if from_version != 1:
        raise ConfigError(f"config version {from_version} is not supported (reads 1 and 2)")
    for old, new in RENAMED.items():
        sec, key = old.split(".")
        nsec, nkey = new.split(".")
        if isinstance(out.get(sec), dict) and key in out[sec]:
            out.setdefault(nsec, {})[nkey] = out[sec].pop(key)
    for old in REMOVED:
        sec, key = old.split(".")
        if isinstance(out.get(sec), dict):
            out[sec].pop(key, None)
    for key, kinds in UNIONS.items():
        sec = out.get(key)
        if isinstance(sec, dict):
            kind = _layer_kind(sec, key, kinds) or type(getattr(Config(), key)).KIND
            keep = _field_names(kinds[kind])
            out[key] = {k: v for k, v in sec.items() if k in keep}
            out[key]["kind"] = kind
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

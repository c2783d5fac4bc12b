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

Every value is then checked before any work (:func:`validate_config`): each field carries its allowed values
next to it as ``Annotated[type, Range(...) | OneOf(...) | Pattern(...) | Length(...) | FreeText(...)]``
(dyngauss/schema.py) and a section may list cross-field ``RULES``; a value outside them is a ConfigError naming
the key, the value and the allowed range.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml

from .deform.config import FIELD_CONFIGS, FieldConfig, MLPFieldConfig
from .losses.motion_config import MotionLossConfig
from .schema import FreeText, Length, OneOf, Pattern, Range, Rule


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, unreadable YAML, a value outside its range
    or choices, a broken cross-field rule)."""


# ---- value constraints (dyngauss/schema.py): a Range / OneOf / Pattern / FreeText next to every field ----
DEVICE = Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto | cpu | cuda | cuda:N")
SH_DEGREE = Range(ge=0, le=3, hint="real spherical harmonics up to degree 3, the 3DGS convention")
LR = Range(ge=0, hint="0 freezes the group; a negative rate would ascend the loss")
POSITIVE_INT = Range(ge=1)
POSITIVE = Range(gt=0)
NON_NEGATIVE = Range(ge=0)
EVERY = Range(ge=0, hint="0 = off")  # "every this many steps" keys that 0 turns off


@dataclass
class DataConfig:
    """Where the images come from."""

    # D-NeRF / Nerfies / Panoptic / Neural 3D Video folder (dyngauss/data/loaders.py); "" = the built-in scene
    path: Annotated[str, FreeText("a dataset folder")] = ""
    downscale: Annotated[int, Range(ge=1)] = 1                # integer image downscale factor
    background: Annotated[list[float], Length(3), Range(ge=0, le=1, hint="RGB fractions, not 0-255")] = \
        field(default_factory=lambda: [1.0, 1.0, 1.0])       # RGBA composited on this
    # the split evaluated after training; a missing "test" falls back to val, else evaluation is skipped (with a
    # warning before training; dyngauss/train/scene.py); "none" skips it
    eval_split: Annotated[str, FreeText("a split name of the dataset (test, val, ...) or none")] = "test"
    # a folder with only a plain transforms.json (nerfstudio): every this-many-th frame (time order) is a test
    # frame, the others train; 0 = all frames train, no test split (dyngauss/data/dnerf.py auto_split_rows)
    test_every: Annotated[int, Range(ge=0, hint="0 = no test split; 1 would leave no training frame")] = 10
    synthetic_resolution: Annotated[int, Range(ge=4)] = 128   # built-in scene: image size
    synthetic_seed: Annotated[int, NON_NEGATIVE] = 0
    synthetic_train_frames: Annotated[int, Range(ge=2)] = 150  # built-in scene: training frames (one camera each)
    # built-in scene: 0 = monocular (one random camera per training frame); N >= 2 = N fixed synchronised cameras
    # seeing each of the synthetic_train_frames time steps, camera 0 held out as the test split (Panoptic layout,
    # dyngauss/data/synthetic_multiview.py)
    synthetic_cameras: Annotated[int, Range(ge=0, hint="0 = monocular; >= 2 cameras, one is held out")] = 0
    # built-in scene: the object and its motion (dyngauss/data/motion_families.py), the training-camera protocol
    # (random = one random camera per frame; orbit = one smoothly moving camera, monocular only) and exact depth
    # per training frame (train/depth_XXX.npz)
    synthetic_motion: Annotated[str, OneOf("twist", "limb", "blob", "two_objects", "spin")] = "twist"
    synthetic_train_camera: Annotated[str, OneOf("random", "orbit")] = "random"
    synthetic_depth: bool = False
    cache_dir: Annotated[str, FreeText("a folder")] = ""       # "" = $DYNGAUSS_CACHE or ~/.cache/dyngauss
    # ---- multi-camera captures (Neural 3D Video, Panoptic, the multi-camera built-in scene; data/multiview.py) ----
    time_stride: Annotated[int, POSITIVE_INT] = 1             # keep every this-many-th time step (video frame)
    max_frames: Annotated[int, Range(ge=0, hint="0 = all time steps")] = 0  # at most this many time steps
    # Neural 3D Video: the held-out camera(s) of the test split, video names without extension, comma-separated;
    # "" = no test split (dyngauss/data/n3v.py)
    test_camera: Annotated[str, Pattern(r"[A-Za-z0-9_.-]*(,[A-Za-z0-9_.-]+)*",
                                        "video names without extension, comma-separated (cam00), or empty")] = \
        "cam00"
    seg_as_alpha: bool = True  # Panoptic seg/ masks are the alpha of images without one (foreground-only training)
    # decoded frames of a multi-camera split kept in memory (uint8), per split (dyngauss/data/frames.py)
    frame_cache_gb: Annotated[float, Range(gt=0, hint="GiB of decoded 8-bit frames")] = 4.0

    RULES: ClassVar[tuple[Rule, ...]] = (Rule("test_every", "!=", 1, why="every frame would be a test frame"),
                                         Rule("synthetic_cameras", "!=", 1,
                                              why="one camera is held out for testing: use 0 or >= 2"),
                                         Rule("synthetic_cameras", "==", 0, when=("synthetic_train_camera", "==",
                                                                                  "orbit"),
                                              why="the orbit protocol is monocular; multi-camera scenes have "
                                                  "fixed cameras"))


@dataclass
class ModelConfig:
    """Canonical Gaussians and their initialisation (the names Gaussians.from_points / random take)."""

    # auto (points3d.ply > alpha masks > random) | points | masks | random
    init: Annotated[str, OneOf("auto", "points", "masks", "random")] = "auto"
    num_points: Annotated[int, POSITIVE_INT] = 6000          # candidate points for random / mask-carved init
    # half-size of the init cube (random / mask-carved / extra points) in units of the scene radius, around the
    # scene centre (the loader's object bounds; dyngauss/train/init.py): it follows the world's coordinates
    init_extent: Annotated[float, POSITIVE] = 1.0
    init_opacity: Annotated[float, Range(gt=0, lt=1)] = 0.1
    init_scale_mult: Annotated[float, POSITIVE] = 1.0        # initial scale = this x mean distance to 3 neighbours
    sh_degree: Annotated[int, SH_DEGREE] = 0                 # built-in scene is Lambertian: view-dependence overfits
    sh_degree_interval: Annotated[int, POSITIVE_INT] = 1000  # one more SH degree every this many steps


@dataclass
class RenderConfig:
    backend: Annotated[str, OneOf("auto", "cpu", "torch", "gsplat")] = "auto"
    near: Annotated[float, POSITIVE] = 0.01  # near / far clipping in units of the scene scale (model/dynamic.py)
    far: Annotated[float, POSITIVE] = 1e10
    eps2d: Annotated[float, NON_NEGATIVE] = 0.3
    tile_size: Annotated[int, Range(ge=1, le=32, hint="gsplat runs tile_size^2 threads per CUDA block")] = 16

    RULES: ClassVar[tuple[Rule, ...]] = (Rule("near", "<", "far", why="everything outside (near, far) is culled"),)


@dataclass
class OptimConfig:
    """Adam learning rates per parameter group; means decay exponentially to means_lr_final."""

    means_lr: Annotated[float, LR] = 1.6e-4             # times the scene scale
    means_lr_final: Annotated[float, LR] = 1.6e-6
    quats_lr: Annotated[float, LR] = 1e-3
    scales_lr: Annotated[float, LR] = 5e-3
    opacities_lr: Annotated[float, LR] = 5e-2
    sh0_lr: Annotated[float, LR] = 2.5e-3
    shN_lr: Annotated[float, LR] = 1.25e-4
    # learning rates of the Gaussians for train.batch_size B > 1: none = as set; sqrt = times sqrt(B) (gsplat's
    # simple_trainer; the deformation field's rates stay as set)
    batch_lr_scaling: Annotated[str, OneOf("none", "sqrt")] = "none"


# Keys of DensifyConfig that are ours; every other key is a gsplat DefaultStrategy argument of the same name.
DENSIFY_EXTRAS = ("enabled", "max_gaussians")


@dataclass
class DensifyConfig:
    """Densification: gsplat's DefaultStrategy (clone/split/prune/opacity reset), its arguments under its names
    (passed through by name; the scene scale comes from the cameras), plus our extras."""

    # ---- ours ----
    enabled: bool = True
    max_gaussians: Annotated[int, Range(ge=0, hint="0 = unlimited")] = 40000  # else stop growing above this count
    # ---- gsplat DefaultStrategy ----
    # an opacity reset sets every opacity to 2 x prune_opa: below 0.5 so that it stays an opacity
    prune_opa: Annotated[float, Range(ge=0, lt=0.5)] = 0.005
    grow_grad2d: Annotated[float, POSITIVE] = 0.0003
    grow_scale3d: Annotated[float, POSITIVE] = 0.01
    prune_scale3d: Annotated[float, POSITIVE] = 0.1
    refine_start_iter: Annotated[int, NON_NEGATIVE] = 300
    refine_stop_iter: Annotated[int, NON_NEGATIVE] = 2000
    refine_every: Annotated[int, POSITIVE_INT] = 100
    reset_every: Annotated[int, POSITIVE_INT] = 100000  # no opacity reset in short runs

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("refine_start_iter", "<", "refine_stop_iter", when=("enabled", "==", True),
             why="an empty window never densifies; set densify.enabled=false to turn densification off"),)


@dataclass
class LossConfig:
    l1_weight: Annotated[float, NON_NEGATIVE] = 0.8
    ssim_weight: Annotated[float, NON_NEGATIVE] = 0.2


@dataclass
class TrainConfig:
    iters: Annotated[int, POSITIVE_INT] = 5000
    warmup_iters: Annotated[int, NON_NEGATIVE] = 300   # static (no deformation) warm-up
    # temporal curriculum (train/time_window.py): during the warm-up only frames with |t - canonical_time| <=
    # time_window train (half-width, t in [0, 1]; 1 = every frame, off), so the canonical Gaussians are the scene
    # near that time instead of a blur of all times; the window then widens linearly to every frame over
    # time_window_steps steps after the warm-up (0 = at once). Chosen on the motion benchmark's ten scenes
    # (docs/benchmark.md): strided track error -20% at -0.04 dB; with depth -37% at +2.5 dB
    time_window: Annotated[float, Range(gt=0, le=1, hint="1 = every frame (off)")] = 0.1
    time_window_steps: Annotated[int, NON_NEGATIVE] = 1000
    canonical_time: Annotated[float, Range(ge=0, le=1)] = 0.5
    # cameras per step (the global batch, split over the ranks of a torchrun launch); losses are averaged over it,
    # so gradients keep their scale and Adam's steps their size: train.iters counts steps (B images each) and the
    # learning-rate decays run per step; optim.batch_lr_scaling=sqrt takes bigger steps to cover B x fewer of them
    batch_size: Annotated[int, POSITIVE_INT] = 1
    # frames: the B frames of a step are drawn independently; time: one frame, then B-1 other cameras of its time
    # (multi-view captures: one pose of the field and one rasterizer call per step; repeats when fewer cameras)
    batch_sampling: Annotated[str, OneOf("frames", "time")] = "frames"
    # distributed runs: check every N steps that the ranks' parameters are identical (0 = never)
    dist_check_every: Annotated[int, Range(ge=0, hint="0 = off")] = 100
    seed: Annotated[int, Range(ge=0, le=2 ** 64 - 1)] = 0  # numpy SeedSequence / torch.manual_seed range
    random_background: bool = True      # keeps the object's alpha honest (no floaters in the background colour)
    device: Annotated[str, DEVICE] = "auto"  # auto | cpu | cuda | cuda:N
    log_every: Annotated[int, POSITIVE_INT] = 50
    image_log_every: Annotated[int, EVERY] = 500
    save_every: Annotated[int, Range(ge=0, hint="0 = only the final checkpoint")] = 1000
    max_nan_skips: Annotated[int, NON_NEGATIVE] = 20   # consecutive unhealthy steps before stopping (train/guard.py)
    time_limit_s: Annotated[float, Range(ge=0, hint="0 = off")] = 0.0  # stop (then evaluate/export) after this
    progress: bool = True
    # live web viewer in the training process (dyngauss/viewer/web_live.py): http://127.0.0.1:<viewer_port>,
    # showing a CPU snapshot of the model taken every viewer_every steps while a browser is connected
    viewer: bool = False
    viewer_port: Annotated[int, Range(ge=1024, le=65535, hint="a TCP port above the privileged ones; a busy port: "
                                      "the next free one")] = 8080
    viewer_every: Annotated[int, POSITIVE_INT] = 100


@dataclass
class EvalConfig:
    save_renders: bool = True
    lpips: bool = True                   # computed only when weights are available locally


@dataclass
class ExportConfig:
    enabled: bool = True
    frames: Annotated[int, POSITIVE_INT] = 30
    fps: Annotated[float, POSITIVE] = 15.0
    format: Annotated[str, OneOf("gaussians", "points")] = "gaussians"
    # SH degree of the written 3DGS PLYs: -1 = the model's own; d >= the model's = f_rest padded with zeros up
    # to degree d (graphdeco's load_ply, SIBR and 3DGS.cpp need 3: 45 f_rest). Lower than the model's: an error
    # (no silent truncation). Not used by format=points (no SH there).
    sh_degree: Annotated[int, Range(ge=-1, le=3, hint="-1 = the model's own")] = -1


@dataclass
class Config:
    """The run config; the defaults are the main job (built-in scene, mlp field, CPU-sized)."""

    out: Annotated[str, FreeText("the run folder")] = "runs/default"
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

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("export.sh_degree", ">=", "model.sh_degree", when=("export.sh_degree", "!=", -1),
             why="export pads SH with zeros and never truncates; -1 = the model's own degree"),
    ) + tuple(Rule(f"motion.{k}_weight", "==", 0, when=("deform.kind", "==", kind),
                   why=f"deform.kind={kind} moves only its own Gaussians, one {row} each: {what}")
              for kind, row in (("tracking", "table row"), ("bases", "row of blend weights"))
              for k, what in (("cycle", "it has no backward field"),
                              ("elastic", "its motion does not depend on position (no Jacobian to regularise)"),
                              ("background", "static points are no Gaussians of its tables")))


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
    """A `kind` instance of a union section carrying over the values of the keys it shares with `obj` that were
    set away from `obj`'s kind's defaults (a key left at the old kind's default takes the new kind's: the mlp's
    lr 1e-3 does not become the tracking field's)."""
    new = kinds[kind]()
    if type(new) is type(obj):
        return obj
    values, defaults = dataclasses.asdict(obj), dataclasses.asdict(type(obj)())
    for name in _field_names(type(new)) - {"kind"}:
        if name in values and values[name] != defaults.get(name, object()):
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


# ---------------------------------------------------------------------------------------------------
# validation: every value against the constraints next to its field (dyngauss/schema.py), then the RULES
@functools.lru_cache(maxsize=None)
def field_constraints(cls: type) -> dict[str, tuple[Any, tuple]]:
    """Field name -> (type without the Annotated layer, constraint markers) of config dataclass `cls`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if typing.get_origin(typ) is Annotated:
            base, *marks = typing.get_args(typ)
            out[f.name] = (base, tuple(marks))
        else:
            out[f.name] = (typ, ())
    return out


def _value_problems(key: str, value: Any, typ: Any, marks: tuple) -> list[str]:
    """Messages for `value` of field `key` breaking its markers (Range/OneOf apply to each item of a list)."""
    problems = []
    is_list = typing.get_origin(typ) in (list, tuple)
    for mark in marks:
        if isinstance(mark, Length) or not is_list:
            why = mark.problem(value)
            if why:
                problems.append(f"{key}={value!r} {why}")
        elif isinstance(value, (list, tuple)):
            bad = [(i, v, mark.problem(v)) for i, v in enumerate(value) if mark.problem(v)]
            if bad:
                i, v, why = bad[0]
                problems.append(f"{key}={list(value)!r}: each value {why} (got {v!r} at [{i}])")
        else:
            problems.append(f"{key}={value!r} must be a list")
    return problems


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _problems(obj: Any, prefix: str = "") -> list[str]:
    """Every constraint violation of dataclass `obj` and its sub-sections, then its RULES (a rule involving a
    value that is already wrong is skipped: it would only repeat the problem)."""
    problems: list[str] = []
    bad: set[str] = set()
    for name, (typ, marks) in field_constraints(type(obj)).items():
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            sub = _problems(value, f"{prefix}{name}.")
            problems += sub
            if sub:
                bad.add(name)
            continue
        mine = _value_problems(prefix + name, value, typ, marks)
        if mine:
            problems += mine
            bad.add(name)
    for rule in getattr(type(obj), "RULES", ()):
        if any(k.split(".")[0] in bad for k in rule.keys):
            continue
        why = rule.problem(lambda k: _lookup(obj, k), prefix)
        if why:
            problems.append(why)
    return problems


def validate_config(cfg: Config) -> Config:
    """Check every value of `cfg` against the range / choices / pattern / length written next to its field and
    the cross-field RULES. Returns `cfg`; raises ConfigError naming each bad key, its value and what is allowed
    (load_config, config_from_dict and apply_override call this before any work is done)."""
    problems = _problems(cfg)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} invalid values: " + "; ".join(problems))
    return cfg


def resolve_device(spec: str):
    """The torch.device of a `train.device` value: auto = cuda when available, else cpu. Raises ConfigError
    when it names a CUDA device this machine does not have (before any work, instead of a torch traceback)."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    why = DEVICE.problem(spec)
    if why:
        raise ConfigError(f"train.device={spec!r} {why}")
    dev = torch.device(spec)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev.type == "cuda" and (dev.index or 0) >= count:
        raise ConfigError(f"train.device={spec!r}: this machine has {count} usable CUDA device(s); "
                          "use train.device=cpu or auto")
    return dev


def apply_override(cfg: Config, override: str) -> None:
    """Apply one `dotted.key=value` override to `cfg` in place (a new `deform.kind` keeps the shared keys that were
    set).
    Raises ConfigError (leaving `cfg` as it was) when the key is unknown or the resulting config is invalid."""
    before = copy.deepcopy(cfg)
    try:
        validate_config(_apply_layers(cfg, [_override_layer(override)]))
    except ConfigError:
        for f in dataclasses.fields(cfg):
            setattr(cfg, f.name, getattr(before, f.name))
        raise


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
    """Defaults <- YAML file (optional; `base: other.yaml` inside it is applied first) <- dotted overrides, then
    :func:`validate_config`. Raises ConfigError naming the file or key for anything invalid (unknown key, wrong
    type, a value out of its range or choices, a broken cross-field rule)."""
    layers = _read_yaml(Path(path)) if path else []
    return validate_config(_apply_layers(Config(), layers + [_override_layer(o) for o in overrides or []]))


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (the union sections include their `kind`); config_from_dict inverts it."""
    return dataclasses.asdict(cfg)


# Keys added after run folders were first written whose default changes what a run does: a saved config (a run's
# config.yaml, a checkpoint's `cfg`) that lacks one was trained with the value here, not with today's default.
# (deform.node_pivot needs no entry: its default is the old behaviour.)
SAVED_BEFORE_KEY: dict[str, Any] = {
    "train.time_window": 1.0,       # the temporal curriculum (2026-11-30): every frame from the start
    "motion.depth_weight": 0.0,     # depth supervision by default where the data has depth (2026-11-30)
}


def config_from_dict(data: dict) -> Config:
    """The Config of a dict written by config_to_dict (e.g. a run's config.yaml or a checkpoint's `cfg`). A key
    of :data:`SAVED_BEFORE_KEY` missing from a section the dict has takes the value the run was trained with
    (its behaviour before the key existed), so resuming or evaluating an older run does not change it."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    filled = None
    for dotted, value in SAVED_BEFORE_KEY.items():
        sec, key = dotted.split(".")
        if isinstance(data.get(sec), dict) and key not in data[sec]:
            filled = filled if filled is not None else copy.deepcopy(data)
            filled[sec][key] = value
    return validate_config(_apply_layers(Config(), [filled if filled is not None else data]))


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

"""Config values are checked when a config is loaded: every numeric field has a range, every closed-set string its
choices; bad values (the issue's list and variants) are ConfigErrors naming the key, the value and what is
allowed, through load_config, YAML files, config_from_dict, apply_override, the Trainer and the CLI."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from dyngauss.config import (UNIONS, Config, ConfigError, apply_override, config_from_dict, config_to_dict,
                             field_constraints, load_config, resolve_device, validate_config)
from dyngauss.schema import FreeText, Length, OneOf, Pattern, Range, Rule

ROOT = Path(__file__).resolve().parents[1]

# str fields whose values form an open set on purpose (paths, split names); every other str has its choices
FREE_TEXT = {"out", "data.path", "data.cache_dir", "data.eval_split"}


def _sections() -> list[tuple[str, type]]:
    """(dotted prefix, dataclass) of every config section, the union sections once per kind."""
    out = [("", Config)]
    for f in dataclasses.fields(Config):
        if f.name in UNIONS:
            out += [(f.name + ".", cls) for cls in UNIONS[f.name].values()]
        elif dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            out.append((f.name + ".", f.default_factory))
    return out


def _leaves() -> list[tuple[str, typing.Any, tuple]]:
    """(dotted key, type, constraint markers) of every leaf field of every section and kind."""
    out = []
    for prefix, cls in _sections():
        for name, (typ, marks) in field_constraints(cls).items():
            if not dataclasses.is_dataclass(typ) and not (prefix == "" and name in UNIONS):
                out.append((prefix + name, typ, marks))
    return out


def test_every_numeric_field_has_a_range_and_every_closed_str_its_choices():
    leaves = _leaves()
    assert len(leaves) > 100  # the walk sees the sections, the deform kinds and motion
    keys = {k for k, _, _ in leaves}
    assert {"train.iters", "deform.num_nodes", "deform.screw_frame", "motion.smooth_dt", "export.sh_degree"} <= keys
    missing, free = [], set()
    for key, typ, marks in leaves:
        kinds = {type(m) for m in marks}
        item = typing.get_args(typ)[0] if typing.get_origin(typ) in (list, tuple) else typ
        if item in (int, float):
            if Range not in kinds:
                missing.append(f"{key}: {typ} without a Range")
        elif item is str:
            if not kinds & {OneOf, Pattern, FreeText}:
                missing.append(f"{key}: str without OneOf / Pattern / FreeText")
            if FreeText in kinds:
                free.add(key)
        elif item is not bool:
            missing.append(f"{key}: type {typ} the schema test does not know")
        if typing.get_origin(typ) in (list, tuple) and Length not in kinds:
            missing.append(f"{key}: list without a Length")
    assert not missing, missing
    assert free == FREE_TEXT, "a str field was declared free text; if its values form a closed set, give OneOf"


def test_the_schema_walk_sees_a_field_without_constraints():
    """The walk itself: a section with an unconstrained number is reported."""

    @dataclasses.dataclass
    class Bare:
        n: int = 1
        m: typing.Annotated[int, Range(ge=0)] = 1

    cons = field_constraints(Bare)
    assert cons["n"] == (int, ()) and cons["m"][0] is int and isinstance(cons["m"][1][0], Range)


def test_defaults_and_every_kind_are_valid():
    validate_config(Config())
    for kind in UNIONS["deform"]:
        validate_config(load_config(None, [f"deform.kind={kind}"]))


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_pass_validation(path):
    cfg = load_config(path)
    assert validate_config(cfg) is cfg


def test_packaged_configs_pass_validation():
    from dyngauss.resources import config_dir, config_names, find_config

    names = config_names()
    assert names and config_dir().is_dir()
    for name in names:
        validate_config(load_config(find_config(name)))


# ---- the values of the issue (each was accepted silently or gave a traceback) and variants ----------------
BAD = [
    # override, the key, what the message must say is allowed
    ("data.background=[255,255,255]", "data.background", "[0, 1]"),
    ("data.background=[0.5, 0.5]", "data.background", "3 values"),
    ("data.background=[0, 0, -0.1]", "data.background", "[0, 1]"),
    ("train.save_every=-1", "train.save_every", "[0, inf)"),
    ("optim.opacities_lr=-1", "optim.opacities_lr", "[0, inf)"),
    ("optim.means_lr=-1e-4", "optim.means_lr", "[0, inf)"),
    ("train.iters=-5", "train.iters", "[1, inf)"),
    ("train.iters=0", "train.iters", "[1, inf)"),
    ("deform.width=0", "deform.width", "[1, inf)"),
    ("model.sh_degree=7", "model.sh_degree", "[0, 3]"),
    ("model.sh_degree=-1", "model.sh_degree", "[0, 3]"),
    ("deform.kind=bogus", "deform.kind", "none, mlp, nodes"),
    ("model.num_points=0", "model.num_points", "[1, inf)"),
    ("data.downscale=0", "data.downscale", "[1, inf)"),
    ("render.backend=bogus", "render.backend", "auto | cpu | torch | gsplat"),
    ("train.device=bogus", "train.device", "auto | cpu | cuda | cuda:N"),
    ("train.device=cuda:x", "train.device", "cuda:N"),
    ("train.device=gpu", "train.device", "cuda:N"),
    # variants: open bounds, non-finite numbers, enumerations of a kind, motion, export
    ("model.init_opacity=1", "model.init_opacity", "(0, 1)"),
    ("model.init_opacity=0", "model.init_opacity", "(0, 1)"),
    ("render.near=0", "render.near", "(0, inf)"),
    ("render.far=.nan", "render.far", "finite"),
    ("train.time_limit_s=.inf", "train.time_limit_s", "finite"),
    ("render.tile_size=64", "render.tile_size", "[1, 32]"),
    ("model.init=bogus", "model.init", "auto | points | masks | random"),
    ("train.log_every=0", "train.log_every", "[1, inf)"),
    ("train.seed=-1", "train.seed", "[0,"),
    ("densify.refine_every=0", "densify.refine_every", "[1, inf)"),
    ("densify.prune_opa=0.5", "densify.prune_opa", "[0, 0.5)"),
    ("loss.ssim_weight=-0.2", "loss.ssim_weight", "[0, inf)"),
    ("deform.time_mode=frames", "deform.time_mode", "pe | latent"),
    ("deform.latent_init=zeros", "deform.latent_init", "smooth | random"),
    ("deform.pos_freqs=40", "deform.pos_freqs", "[0, 20]"),
    ("deform.skip=-2", "deform.skip", "[-1, inf)"),
    ("deform.screw_frame=camera", "deform.screw_frame", "world | local"),
    ("motion.flow_kind=l2", "motion.flow_kind", "charbonnier | l1 | epe"),
    ("motion.flow_weight=-0.5", "motion.flow_weight", "[0, inf)"),
    ("motion.smooth_dt=0", "motion.smooth_dt", "(0, 0.5]"),
    ("motion.rigidity_dt=0.7", "motion.rigidity_dt", "[0, 0.5]"),
    ("motion.flow_max_angle_deg=270", "motion.flow_max_angle_deg", "(0, 180]"),
    ("export.frames=0", "export.frames", "[1, inf)"),
    ("export.fps=0", "export.fps", "(0, inf)"),
    ("export.format=splat", "export.format", "gaussians | points"),
    ("export.sh_degree=4", "export.sh_degree", "[-1, 3]"),
]


@pytest.mark.parametrize("override,key,allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_config_errors_naming_key_value_and_range(override, key, allowed):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert key in msg and allowed in msg, msg
    # the value given, as `key=value` (the tagged union's error: "deform.kind: unknown kind 'bogus'")
    assert (f"{key}=" in msg) if key != "deform.kind" else "'bogus'" in msg, msg


@pytest.mark.parametrize("overrides", [
    ["deform.kind=nodes", "deform.blend=slerp"], ["deform.kind=nodes", "deform.num_nodes=0"],
    ["deform.kind=nodes", "deform.radius_mult=0"], ["deform.kind=mlp", "deform.ambient_width=0"],
])
def test_keys_of_a_kind_are_checked(overrides):
    with pytest.raises(ConfigError, match=overrides[1].split("=")[0]):
        load_config(None, overrides)


@pytest.mark.parametrize("overrides", [
    ["model.init_opacity=0.999", "render.near=1e-6", "densify.prune_opa=0", "train.save_every=0",
     "train.image_log_every=0", "densify.max_gaussians=0", "motion.rigidity_dt=0.5", "motion.smooth_dt=0.5",
     "data.background=[0, 0.5, 1]", "train.device=cuda:0", "train.device=cpu", "model.sh_degree=3",
     "export.sh_degree=3", "deform.skip=0", "deform.pos_freqs=0", "render.tile_size=32"],
    ["deform.kind=nodes", "deform.knn=1", "deform.rebind_every=0", "deform.blend=lbs"],
    ["densify.enabled=false", "densify.refine_start_iter=500", "densify.refine_stop_iter=100"],
    ["export.format=points", "export.sh_degree=-1", "model.sh_degree=2"],
])
def test_boundary_values_are_accepted(overrides):
    validate_config(load_config(None, overrides))


@pytest.mark.parametrize("overrides,needle", [
    (["render.near=2", "render.far=1"], "render.near=2.0 must be < render.far=1.0"),
    (["deform.depth=4", "deform.skip=4"], "deform.skip=4 must be < deform.depth=4"),
    (["densify.refine_start_iter=300", "densify.refine_stop_iter=100"], "densify.enabled=false"),
    (["model.sh_degree=3", "export.sh_degree=1"], "export.sh_degree=1 must be >= model.sh_degree=3"),
    (["data.test_every=1"], "data.test_every=1 must be != 1"),
])
def test_cross_field_rules(overrides, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert needle in str(e.value)


def test_a_rule_over_a_bad_value_is_not_reported_twice():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["render.near=-1"])
    assert "render.near=-1.0 must be in (0, inf)" in str(e.value) and "render.far" not in str(e.value)


def test_all_problems_are_listed_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.iters=-5", "render.backend=bogus", "optim.opacities_lr=-1"])
    msg = str(e.value)
    assert msg.startswith("3 invalid values") and "train.iters" in msg and "render.backend" in msg \
        and "optim.opacities_lr" in msg


def test_yaml_files_are_checked(tmp_path):
    (tmp_path / "a.yaml").write_text("data:\n  background: [255, 255, 255]\n")
    with pytest.raises(ConfigError, match=r"data\.background.*\[0, 1\]"):
        load_config(tmp_path / "a.yaml")
    # a file may be fixed by a later layer: only the resolved config is judged
    assert load_config(tmp_path / "a.yaml", ["data.background=[1, 1, 1]"]).data.background == [1.0, 1.0, 1.0]


def test_config_from_dict_is_checked():
    data = config_to_dict(Config())
    data["train"]["save_every"] = -1
    with pytest.raises(ConfigError, match="train.save_every"):
        config_from_dict(data)


def test_apply_override_is_checked_and_leaves_the_config_as_it_was():
    cfg = load_config(None, ["train.iters=50"])
    before = config_to_dict(cfg)
    with pytest.raises(ConfigError, match="train.iters"):
        apply_override(cfg, "train.iters=-5")
    with pytest.raises(ConfigError, match="deform.width"):
        apply_override(cfg, "deform.width=0")
    assert config_to_dict(cfg) == before
    apply_override(cfg, "train.iters=60")
    assert cfg.train.iters == 60


def test_configs_built_in_python_are_checked_before_any_work(tmp_path):
    """The Trainer validates too: a Config built and changed in Python never reached load_config."""
    from dyngauss.train.trainer import Trainer

    cfg = Config()
    cfg.out = str(tmp_path / "run")
    cfg.data.path = str(tmp_path / "no_such_dataset")  # checked later: the config error must come first
    cfg.optim.opacities_lr = -1.0
    with pytest.raises(ConfigError, match="optim.opacities_lr"):
        Trainer(cfg)
    assert not (tmp_path / "run").exists()


def test_missing_cuda_device_is_a_config_error():
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=r"train\.device='cuda:99'.*cpu or auto"):
        resolve_device("cuda:99")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if count else "cpu")


def test_schema_markers_describe_and_judge():
    assert Range(ge=0, lt=0.5).describe() == "[0, 0.5)" and Range(gt=0).describe() == "(0, inf)"
    assert Range(le=3).describe() == "(-inf, 3]"
    assert Range(gt=0, lt=1).problem(1.0) and Range(gt=0, lt=1).problem(0.5) is None
    assert Range(ge=0).problem(True) and Range(ge=0).problem("1")  # bools and strings are not numbers
    assert OneOf("a", "b").problem("c") == "must be one of a | b" and OneOf("a").problem("a") is None
    assert Pattern(r"x[0-9]", "xN").problem("x12") and Pattern(r"x[0-9]", "xN").problem("x1") is None
    assert Length(3).problem([1, 2]) and Length(3).problem((1, 2, 3)) is None
    with pytest.raises(TypeError):
        Range(ge=0, gt=0)
    with pytest.raises(TypeError):
        Range()
    rule = Rule("a", "<", "b", when=("on", "==", True), why="because")
    vals = {"a": 2, "b": 1, "on": True}
    assert rule.problem(vals.__getitem__, "s.") == "s.a=2 must be < s.b=1 (because)"
    assert rule.problem({**vals, "on": False}.__getitem__) is None
    assert rule.problem({**vals, "a": 0}.__getitem__) is None


def test_cli_prints_config_error_and_exits_2_without_traceback(tmp_path):
    """`python -m dyngauss train` with a bad value: one `config error:` line naming the key, exit 2, nothing
    trained or written."""
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "dyngauss", "train", f"out={out}", "data.background=[255,255,255]"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("config error:") and "data.background" in p.stderr and "[0, 1]" in p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("override", ["train.device=bogus", "model.sh_degree=7", "render.backend=bogus",
                                      "model.num_points=0", "data.downscale=0", "deform.kind=bogus"])
def test_cli_in_process_exit_2(override, tmp_path, capsys):
    from dyngauss.cli.main import main

    assert main(["train", f"out={tmp_path / 'run'}", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error:") and override.split("=")[0] in err
    assert not (tmp_path / "run").exists()

"""Config: defaults, YAML, dotted overrides, unknown keys, type errors, save/load round trip."""
from __future__ import annotations

import pytest
import yaml

from dyngauss.config import ConfigError, config_from_dict, config_to_dict, load_config, save_config


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(None, ["train.iters=123", "out=runs/x", "data.background=[0, 0, 0]", "densify.enabled=false",
                             "optim.means_lr=1e-3", "deform.kind=none"])
    assert cfg.train.iters == 123 and cfg.out == "runs/x"
    assert cfg.data.background == [0.0, 0.0, 0.0]
    assert cfg.densify.enabled is False
    assert cfg.optim.means_lr == pytest.approx(1e-3)
    assert cfg.deform.kind == "none"


def test_yaml_then_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  iters: 50\n  seed: 3\nout: a\n")
    cfg = load_config(p, ["train.iters=70"])
    assert cfg.train.iters == 70 and cfg.train.seed == 3 and cfg.out == "a"


@pytest.mark.parametrize("override,needle", [
    ("train.iterz=5", "train.iterz"),
    ("nosuch=1", "nosuch"),
    ("data.path.x=1", "data.path"),
    ("train.iters=abc", "train.iters"),
    ("train.iters=1.5", "train.iters"),
    ("densify.enabled=maybe", "densify.enabled"),
    ("train.iters", "key.sub=value"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_unknown_key_in_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  sh_degre: 2\n")
    with pytest.raises(ConfigError, match="model.sh_degre"):
        load_config(p)


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_save_roundtrip(tmp_path):
    cfg = load_config(None, ["train.iters=77", "deform.kind=mlp"])
    save_config(cfg, tmp_path / "config.yaml")
    data = yaml.safe_load((tmp_path / "config.yaml").read_text())
    again = config_from_dict(data)
    assert config_to_dict(again) == config_to_dict(cfg)


def test_repo_configs_load():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        load_config(p)


def test_base_chain(tmp_path):
    (tmp_path / "a.yaml").write_text("train:\n  iters: 10\n  seed: 5\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrain:\n  iters: 20\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert cfg.train.iters == 20 and cfg.train.seed == 5
    (tmp_path / "c.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "c.yaml")

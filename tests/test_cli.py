"""The `dyngauss` console command, the tools/ wrappers, and finding configs and kernel sources (dyngauss.resources)."""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dyngauss import resources
from dyngauss.cli.main import COMMANDS, main
from dyngauss.config import ConfigError, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
WRAPPERS = {"train": "train", "eval": "eval", "export_ply": "export", "prepare_video": "prepare_video",
            "make_synthetic": "make_synthetic", "compare_poses": "compare_poses"}


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          **kw)


# ------------------------------------------------------------------------------------------------- dyngauss
def test_help_lists_every_command_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, cmd in COMMANDS.items():
        assert [ln for ln in lines if ln.split()[:1] == [name] and cmd.summary in ln], (name, out)
    assert {"train", "eval", "export", "play", "render", "prepare-video", "make-synthetic",
            "compare-poses"} <= set(COMMANDS)


def test_no_command_and_unknown_command_exit_2(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "did you mean 'train'" in err


def test_help_does_not_import_torch():
    code = ("import sys; from dyngauss.cli.main import main; rc = main(['--help']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    p = _run(["-c", code], cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "prepare-video" in p.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help_names_the_command(name, capsys):
    try:
        importlib.import_module(COMMANDS[name].module)
    except ModuleNotFoundError as e:
        if e.name == COMMANDS[name].module:
            pytest.skip(f"{COMMANDS[name].module} not written yet")
        raise
    argv0 = sys.argv[0]
    with pytest.raises(SystemExit) as ex:
        main([name, "--help"])
    assert ex.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: dyngauss {name} ")
    assert sys.argv[0] == argv0  # restored


def test_python_m_dyngauss():
    from dyngauss import __version__

    p = _run(["-m", "dyngauss", "--version"], cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == f"dyngauss {__version__}", (p.stdout, p.stderr)


def test_train_config_errors_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "no_such_config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error:") and "no_such_config" in err and "default" in err
    (tmp_path / "my.yaml").write_text("train:\n  iters: 3\n")
    assert main(["train", "--config", "my.yaml", "train.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- tools/
@pytest.mark.parametrize("tool,module", list(WRAPPERS.items()))
def test_tool_wrapper_is_the_command(tool, module):
    spec = importlib.util.spec_from_file_location(f"_wrapper_{tool}", ROOT / "tools" / f"{tool}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main is importlib.import_module(f"dyngauss.cli.{module}").main


@pytest.mark.parametrize("tool", ["train", "export_ply"])
def test_tool_wrapper_runs_as_a_script(tool, tmp_path):
    p = _run([str(ROOT / "tools" / f"{tool}.py"), "--help"], cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(f"usage: {tool}.py"), (p.stdout, p.stderr)


# ------------------------------------------------------------------------------------------------- configs
def test_find_config_by_name_and_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = resources.config_dir() / "nodes.yaml"
    assert shipped.is_file()
    for spec in ("nodes", "nodes.yaml", "configs/nodes.yaml"):  # no such file here: the shipped one
        assert resources.find_config(spec) == shipped, spec
    own = tmp_path / "nodes.yaml"
    own.write_text("train:\n  iters: 7\n")
    assert resources.find_config("nodes.yaml") == Path("nodes.yaml")  # an existing file wins
    assert load_config(resources.find_config("nodes.yaml")).train.iters == 7
    with pytest.raises(ConfigError, match="shipped: default, .*nodes"):
        resources.find_config("nodez")
    with pytest.raises(ConfigError, match="no such file"):
        resources.find_config(tmp_path / "sub" / "default.yaml")  # a real path is never replaced


def test_repo_config_path_from_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert resources.find_config("configs/mlp.yaml") == Path("configs/mlp.yaml")
    assert resources.config_names() == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


def _fake_installed_package(tmp_path: Path) -> Path:
    """A package folder laid out as a wheel installs it: dyngauss/_kernels/cpu and dyngauss/configs."""
    pkg = tmp_path / "site-packages" / "dyngauss"
    (pkg / "_kernels" / "cpu").mkdir(parents=True)
    (pkg / "configs").mkdir()
    for p in (ROOT / "kernels" / "cpu").iterdir():
        (pkg / "_kernels" / "cpu" / p.name).write_bytes(p.read_bytes())
    for p in (ROOT / "configs").glob("*.yaml"):
        (pkg / "configs" / p.name).write_bytes(p.read_bytes())
    return pkg


def test_packaged_files_are_found_first_and_base_resolves_next_to_them(tmp_path, monkeypatch):
    pkg = _fake_installed_package(tmp_path)
    monkeypatch.setattr(resources, "_PACKAGE", pkg)
    assert resources.kernel_source_dir() == pkg / "_kernels" / "cpu"
    assert resources.config_dir() == pkg / "configs"
    monkeypatch.chdir(tmp_path)
    mlp = resources.find_config("mlp")
    assert mlp == pkg / "configs" / "mlp.yaml" and "base:" in mlp.read_text()
    # `base: default.yaml` is read from the packaged folder: same result as the repository's files
    assert config_to_dict(load_config(mlp)) == config_to_dict(load_config(ROOT / "configs" / "mlp.yaml"))
    (pkg / "configs" / "default.yaml").unlink()
    with pytest.raises(ConfigError, match="default.yaml"):
        load_config(mlp)


def test_missing_resources_name_the_places_searched(tmp_path, monkeypatch):
    pkg = tmp_path / "site-packages" / "dyngauss"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(resources, "_PACKAGE", pkg)
    with pytest.raises(FileNotFoundError, match="_kernels/cpu.*kernels/cpu"):
        resources.kernel_source_dir()
    with pytest.raises(FileNotFoundError, match="configs"):
        resources.config_dir()
    assert resources.config_names() == []
    with pytest.raises(ConfigError, match="no such file"):
        resources.find_config("default")

"""Files the package needs at run time: the C++ kernel sources, the YAML configs, and the cache folder.

In the repository they live at the root (``kernels/cpu/``, ``configs/``), which stays their only copy. A wheel
or a non-editable ``pip install .`` gets them copied into the package at build time (``setup.py``'s build_py:
``dyngauss/_kernels/cpu/``, ``dyngauss/configs/``). The functions here look in the package first, then in the
source tree around it (a clone, an editable install), so the same code works in all three.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CONFIG_SUFFIXES = (".yaml", ".yml")


def _first_dir(candidates: tuple[Path, ...], pattern: str, what: str) -> Path:
    for d in candidates:
        if d.is_dir() and any(d.glob(pattern)):
            return d
    raise FileNotFoundError(f"dyngauss {what} not found; looked in " + ", ".join(str(d) for d in candidates) +
                            ". Reinstall the package (`pip install dyngauss` / `pip install .` from a clone).")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder (built-in scenes, compiled kernels, flow priors): `cache_dir` when given (non-empty),
    else ``$DYNGAUSS_CACHE``, else ``~/.cache/dyngauss``. Not created here."""
    if cache_dir is not None and str(cache_dir):
        return Path(cache_dir).expanduser()
    env = os.environ.get("DYNGAUSS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dyngauss"


def kernel_source_dir() -> Path:
    """Folder of the C++ CPU kernel sources (*.cpp, *.h): the packaged copy, else the repository's kernels/cpu.

    Raises FileNotFoundError naming the folders searched when neither holds a .cpp file."""
    return _first_dir((_PACKAGE / "_kernels" / "cpu", _PACKAGE.parent / "kernels" / "cpu"), "*.cpp",
                      "C++ kernel sources")


def config_dir() -> Path:
    """Folder of the shipped YAML configs: the packaged copy, else the repository's configs/.

    Raises FileNotFoundError naming the folders searched when neither holds a .yaml file."""
    return _first_dir((_PACKAGE / "configs", _PACKAGE.parent / "configs"), "*.yaml", "configs")


def config_names() -> list[str]:
    """Names of the shipped configs (file stems, e.g. ["default", "mlp", ...]); [] when none are found."""
    try:
        d = config_dir()
    except FileNotFoundError:
        return []
    return sorted(p.stem for p in d.iterdir() if p.suffix in CONFIG_SUFFIXES)


def find_config(name_or_path: str | Path) -> Path:
    """The config file meant by `name_or_path`.

    1. An existing file is returned as it is (``configs/nodes.yaml`` from the repository root, ``my.yaml``).
    2. Otherwise a bare name (``nodes`` or ``nodes.yaml``), or a missing ``configs/<name>.yaml`` as the
       README writes it, is the shipped config of that name (so the README's commands work outside a clone).
    A ``base: other.yaml`` inside a config resolves next to that config, so shipped configs extend shipped ones.

    Raises:
        dyngauss.config.ConfigError: neither an existing file nor a shipped config; the message lists the
            shipped names.
    """
    from .config import ConfigError

    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise ConfigError(f"{p} is a folder, not a config file")
    parts = p.parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "configs"):
        stem = p.stem if p.suffix in CONFIG_SUFFIXES else p.name
        try:
            d = config_dir()
        except FileNotFoundError as e:
            raise ConfigError(f"config {str(name_or_path)!r}: no such file, and {e}") from None
        for suffix in CONFIG_SUFFIXES:
            q = d / f"{stem}{suffix}"
            if q.is_file():
                return q
    names = ", ".join(config_names()) or "none found"
    raise ConfigError(f"config {str(name_or_path)!r}: no such file, and not a shipped config name "
                      f"(shipped: {names})")

"""Shared fixtures: paths of the shared datasets (tests skip when absent) and a temporary cache dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def twist_path() -> Path:
    p = SHARED_DATA / "twist"
    if not (p / "transforms_train.json").is_file():
        pytest.skip(f"shared twist scene not found at {p}")
    return p


@pytest.fixture(scope="session", autouse=True)
def _default_cache(tmp_path_factory):
    """Keep generated scenes and caches of the test session out of the user's home unless set."""
    if "DYNGAUSS_CACHE" not in os.environ:
        os.environ["DYNGAUSS_CACHE"] = str(tmp_path_factory.mktemp("dyngauss_cache"))
    yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache of generated built-in scenes per test module (data.cache_dir=...)."""
    return tmp_path_factory.mktemp("cache")

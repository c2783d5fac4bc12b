"""Bad inputs of this session's new keys end in a one-line config error (exit 2) before any work."""
from __future__ import annotations

from dyngauss.cli.train import main as train_main

TINY = ["train.iters=5", "data.synthetic_resolution=32", "train.progress=false", "export.enabled=false"]


def test_depth_weight_on_builtin_scene_without_depth_names_the_fix(tmp_path, capsys, monkeypatch):
    """The built-in scene has training depth only with data.synthetic_depth=true; the error says so and comes
    before the scene is generated (the cache folder stays empty)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DYNGAUSS_CACHE", str(cache))
    rc = train_main(["motion.depth_weight=0.5", "motion.depth_missing=error", f"data.cache_dir={cache}", f"out={tmp_path / 'run'}", *TINY])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("config error: motion.depth_weight=0.5")
    assert "data.synthetic_depth=true" in err
    assert "Traceback" not in err
    assert not cache.exists() or not any(cache.rglob("*.png"))

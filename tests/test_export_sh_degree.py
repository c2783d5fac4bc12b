"""`--sh-degree` / export.sh_degree: SH padded with zeros for strict 3DGS loaders (graphdeco's load_ply, SIBR,
3DGS.cpp read exactly 45 f_rest), the rest of each PLY unchanged, lower degrees refused (never truncated)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from dyngauss.deform.base import DeformField, Motion
from dyngauss.export.sequence import SequenceError, export_sequence, load_manifest, padded_sh
from dyngauss.io.ply import read_gaussians_ply
from dyngauss.model import CheckpointInfo, DynamicGaussians, Gaussians


class Slide(DeformField):
    """Translation by (t, 0, 0): frames differ, so every frame is checked."""

    kind = "slide"

    def forward(self, means, t, frame=None):
        n = means.shape[0]
        q = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).clone()
        return Motion(q, torch.tensor([float(t), 0.0, 0.0]).expand(n, 3).clone())


def model_of_degree(degree: int, n: int = 50, seed: int = 0, config=None, path=None) -> DynamicGaussians:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    q = torch.randn(n, 4, generator=g)
    sh = torch.randn(n, k, 3, generator=g)
    gs = Gaussians(torch.randn(n, 3, generator=g), q / q.norm(dim=1, keepdim=True),
                   torch.rand(n, 3, generator=g) * -3 - 1, torch.randn(n, generator=g),
                   sh[:, :1].contiguous(), sh[:, 1:].contiguous(), degree)
    return DynamicGaussians(gs, Slide(), train_times=[0.0, 0.5, 1.0], config=config,
                            info=CheckpointInfo(path=path, step=3))


def vertices(path: Path) -> np.ndarray:
    return PlyData.read(str(path))["vertex"].data


@pytest.mark.parametrize("degree", [0, 1])
def test_padded_export_has_45_zero_f_rest_and_everything_else_unchanged(tmp_path, degree):
    model = model_of_degree(degree)
    times = [0.0, 0.5, 1.0]
    plain = export_sequence(model, times, tmp_path / "plain", log=lambda m: None)
    padded = export_sequence(model, times, tmp_path / "padded", sh_degree=3, log=lambda m: None)
    m = load_manifest(padded)
    assert m["sh_degree"] == 3 and m["model_sh_degree"] == degree and load_manifest(plain)["sh_degree"] == degree
    k_model = (degree + 1) ** 2 - 1  # f_rest per channel in the model
    for name in m["frames"]:
        a, b = vertices(plain / name), vertices(padded / name)
        rest_a = [p for p in a.dtype.names if p.startswith("f_rest_")]
        rest_b = [p for p in b.dtype.names if p.startswith("f_rest_")]
        assert len(rest_a) == 3 * k_model and rest_b == [f"f_rest_{i}" for i in range(45)]
        # the 3DGS order: f_dc, f_rest, then opacity (what graphdeco's load_ply indexes by name and count)
        names = list(b.dtype.names)
        assert names.index("f_dc_2") + 1 == names.index("f_rest_0") and names.index("f_rest_44") + 1 == \
            names.index("opacity")
        for p in a.dtype.names:  # every property of the plain export (f_dc, x, scales, ...) is unchanged
            if not p.startswith("f_rest_"):
                np.testing.assert_array_equal(a[p], b[p], err_msg=p)
        # channel-major f_rest: the model's coefficients of each channel first, zeros after
        rest = np.stack([b[p] for p in rest_b], 1).reshape(len(b), 3, 15)
        orig = np.stack([a[p] for p in rest_a], 1).reshape(len(a), 3, k_model) if k_model else np.zeros((len(a), 3, 0))
        np.testing.assert_array_equal(rest[:, :, :k_model], orig)
        assert np.all(rest[:, :, k_model:] == 0)
    # the repo's own reader sees the model's coefficients, then zeros
    sh = read_gaussians_ply(padded / m["frames"][1])["sh"]
    want = model.gaussians.sh.detach().numpy()
    assert sh.shape == (50, 16, 3)
    np.testing.assert_allclose(sh[:, :want.shape[1]], want, rtol=0, atol=0)
    assert np.all(sh[:, want.shape[1]:] == 0)


def test_padding_renders_the_same_colour():
    """Zero bands add nothing: degree-3 evaluation of the padded coefficients = the model's own colour."""
    from dyngauss.geometry.sh import sh_to_rgb

    sh = torch.randn(20, 4, 3)
    dirs = torch.nn.functional.normalize(torch.randn(20, 3), dim=-1)
    pad = torch.from_numpy(padded_sh(sh.numpy(), 3))
    torch.testing.assert_close(sh_to_rgb(pad, dirs, 3), sh_to_rgb(sh, dirs, 1))


def test_lower_degree_is_refused_and_nothing_is_written(tmp_path):
    model = model_of_degree(2)
    with pytest.raises(SequenceError, match="SH degree 2.*degree 1.*never truncates"):
        export_sequence(model, [0.0], tmp_path / "out", sh_degree=1, log=lambda m: None)
    with pytest.raises(SequenceError, match="0..3"):
        export_sequence(model, [0.0], tmp_path / "out", sh_degree=4, log=lambda m: None)
    assert not (tmp_path / "out").exists()
    # -1 and the model's own degree write the model as it is
    out = export_sequence(model, [0.0], tmp_path / "same", sh_degree=-1, log=lambda m: None)
    assert load_manifest(out)["sh_degree"] == 2


def test_points_format_has_no_sh_to_pad(tmp_path):
    out = export_sequence(model_of_degree(0), [0.0, 1.0], tmp_path / "pts", fmt="points", sh_degree=3,
                          opacity_threshold=0.0, log=lambda m: None)
    assert load_manifest(out)["format"] == "points"
    assert not any(p.startswith("f_") for p in vertices(out / "frame_0000.ply").dtype.names)


def _fake_run(tmp_path, monkeypatch, degree: int, overrides=()):
    from dyngauss.config import load_config

    cfg = load_config(None, [f"model.sh_degree={degree}", *overrides])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = model_of_degree(degree, config=cfg, path=run / "checkpoints" / "ckpt_000003.pt")
    monkeypatch.setattr(DynamicGaussians, "load", classmethod(lambda cls, path, device="cpu": model))
    return run


def test_cli_sh_degree(tmp_path, monkeypatch, capsys):
    from dyngauss.cli.main import main

    run = _fake_run(tmp_path, monkeypatch, degree=0)
    assert main(["export", "--run", str(run), "--sh-degree", "3", "--frames", "2", "-q"]) == 0
    v = vertices(run / "ply" / "frame_0000.ply")
    rest = [p for p in v.dtype.names if p.startswith("f_rest_")]
    assert len(rest) == 45 and all(np.all(v[p] == 0) for p in rest)
    assert load_manifest(run / "ply")["sh_degree"] == 3
    # default: the model's own degree (export.sh_degree = -1)
    assert main(["export", "--run", str(run), "--frames", "2", "--out", str(tmp_path / "own"), "-q"]) == 0
    assert not any(p.startswith("f_rest_") for p in vertices(tmp_path / "own" / "frame_0000.ply").dtype.names)
    # an SH degree with --format points is a contradiction; a degree outside -1..3 is argparse's error
    assert main(["export", "--run", str(run), "--format", "points", "--sh-degree", "3", "-q"]) == 2
    assert "--sh-degree" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", "--run", str(run), "--sh-degree", "5"])
    assert e.value.code == 2


def test_cli_follows_the_runs_export_sh_degree_and_refuses_truncation(tmp_path, monkeypatch, capsys):
    from dyngauss.cli.main import main

    run = _fake_run(tmp_path, monkeypatch, degree=1, overrides=["export.sh_degree=3"])
    assert main(["export", "--run", str(run), "--frames", "2", "-q"]) == 0
    assert load_manifest(run / "ply")["sh_degree"] == 3
    assert main(["export", "--run", str(run), "--sh-degree", "0", "--out", str(tmp_path / "low"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "SH degree 1" in err and "Traceback" not in err
    assert not (tmp_path / "low").exists()


def test_config_key_reaches_the_export_of_a_job():
    """export.sh_degree is a config key with its range and the rule against truncation (the job passes it to
    export_sequence; tests/test_config_keys.py checks that it is read)."""
    from dyngauss.config import ConfigError, load_config

    assert load_config(None, ["export.sh_degree=3"]).export.sh_degree == 3
    assert load_config(None, []).export.sh_degree == -1
    with pytest.raises(ConfigError, match="export.sh_degree=2 must be >= model.sh_degree=3"):
        load_config(None, ["model.sh_degree=3", "export.sh_degree=2"])
    assert load_config(None, ["model.sh_degree=3", "export.sh_degree=3"]).export.sh_degree == 3

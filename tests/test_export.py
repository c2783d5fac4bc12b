"""PLY read/write (3DGS layout, points, line sets), sequence export (analytic motion, points subset, node graph,
atomicity) and tools/export_ply.py error handling. No trained checkpoint needed."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dyngauss.deform.base import DeformField, IdentityField, Motion  # noqa: E402
from dyngauss.io.ply import (PlyError, gaussian_property_names, read_gaussians_ply, read_line_set_ply,  # noqa: E402
                                 read_points_ply, write_gaussians_ply, write_line_set_ply, write_points_ply)
from dyngauss.export.sequence import (SequenceError, export_sequence, is_complete_sequence,  # noqa: E402
                                      load_manifest, times_for)
from dyngauss.model import DynamicGaussians, Gaussians  # noqa: E402
from dyngauss.geometry.quaternion import quat_multiply, quat_normalize  # noqa: E402

C0 = 0.28209479177387814


# ---------------------------------------------------------------------------------------------- fixtures
def random_gaussian_arrays(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return dict(means=rng.normal(size=(n, 3)).astype(np.float32), quats=q,
                log_scales=rng.uniform(-5, -1, (n, 3)).astype(np.float32),
                opacity_logits=rng.normal(size=n).astype(np.float32),
                sh=rng.normal(size=(n, k, 3)).astype(np.float32))


def make_gaussians(n: int = 200, sh_degree: int = 2, seed: int = 0, opacity=None) -> Gaussians:
    a = random_gaussian_arrays(n, (sh_degree + 1) ** 2, seed)
    op = torch.from_numpy(a["opacity_logits"]) if opacity is None else torch.as_tensor(opacity, dtype=torch.float32)
    sh = torch.from_numpy(a["sh"])
    return Gaussians(torch.from_numpy(a["means"]), torch.from_numpy(a["quats"]), torch.from_numpy(a["log_scales"]),
                     op, sh[:, :1].contiguous(), sh[:, 1:].contiguous(), sh_degree)


def z_rotation_quat(angle: float) -> torch.Tensor:
    return torch.tensor([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def analytic_translation(t: float) -> torch.Tensor:
    return torch.tensor([0.7 * t, -0.3 * t, 0.2 * math.sin(math.pi * t)])


class SpinField(DeformField):
    """Rigid motion: rotation about z by 2*pi*t, then translation analytic_translation(t)."""

    kind = "spin"

    def __init__(self, fail_at: float | None = None):
        super().__init__()
        self.fail_at = fail_at
        self.frames_seen: list = []

    def forward(self, means, t, frame=None):
        t = float(t)
        self.frames_seen.append(frame)
        if self.fail_at is not None and t >= self.fail_at:
            raise RuntimeError("simulated failure mid-export")
        n = means.shape[0]
        return Motion(z_rotation_quat(2 * math.pi * t).expand(n, 4).clone(),
                      analytic_translation(t).expand(n, 3).clone())


class NodeSpinField(SpinField):
    """SpinField plus a 4-node graph in the dyngauss.deform.nodes API: node_pos attribute, node_graph() ->
    (edges [E,2], weights [E]), node_motion(t, frame=None) -> (rot [M,4], trans [M,3])."""

    kind = "nodes"

    def __init__(self):
        super().__init__()
        self.register_buffer("node_pos", torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 1]]))

    def node_graph(self, k=None):
        e = torch.tensor([[0, 1], [1, 0], [1, 2], [2, 3], [3, 0]])
        return e, torch.ones(len(e))

    def node_motion(self, t, frame=None):
        m = self.forward(self.node_pos, t, frame)
        return m.rot, m.trans


def analytic_pose(g: Gaussians, t: float):
    R = torch.tensor([[math.cos(2 * math.pi * t), -math.sin(2 * math.pi * t), 0.0],
                      [math.sin(2 * math.pi * t), math.cos(2 * math.pi * t), 0.0], [0.0, 0.0, 1.0]])
    means = g.means.detach() @ R.T + analytic_translation(t)
    quats = quat_multiply(z_rotation_quat(2 * math.pi * t).expand(len(g), 4), quat_normalize(g.quats.detach()))
    return means.numpy(), quats.numpy()


def assert_same_rotation(q1: np.ndarray, q2: np.ndarray, atol=1e-5):
    """Quaternions equal up to sign."""
    d = np.minimum(np.abs(q1 - q2).max(1), np.abs(q1 + q2).max(1))
    assert d.max() < atol, d.max()


# ---------------------------------------------------------------------------------------------- PLY files
@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_gaussian_ply_roundtrip_plyfile_and_reader(tmp_path, sh_degree):
    plyfile = pytest.importorskip("plyfile")
    k = (sh_degree + 1) ** 2
    a = random_gaussian_arrays(37, k, seed=sh_degree)
    p = write_gaussians_ply(tmp_path / "g.ply", **a)
    assert not [f for f in os.listdir(tmp_path) if f != "g.ply"], "temporary file left behind"

    ply = plyfile.PlyData.read(str(p))
    assert ply.header.count("binary_little_endian") == 1
    v = ply["vertex"]
    names = [pp.name for pp in v.properties]
    assert names == gaussian_property_names(k)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(pp.val_dtype in ("f4", "<f4", "float32") or np.dtype(pp.val_dtype) == np.float32 for pp in v.properties)
    col = lambda *ns: np.stack([np.asarray(v[n]) for n in ns], 1)  # noqa: E731
    np.testing.assert_array_equal(col("x", "y", "z"), a["means"])
    np.testing.assert_array_equal(col("nx", "ny", "nz"), 0)
    np.testing.assert_array_equal(col("f_dc_0", "f_dc_1", "f_dc_2"), a["sh"][:, 0])
    np.testing.assert_array_equal(np.asarray(v["opacity"]), a["opacity_logits"])
    np.testing.assert_array_equal(col("scale_0", "scale_1", "scale_2"), a["log_scales"])
    np.testing.assert_array_equal(col("rot_0", "rot_1", "rot_2", "rot_3"), a["quats"])
    # f_rest channel-major (reference 3DGS): all R coefficients, then G, then B
    for c in range(3):
        for j in range(k - 1):
            np.testing.assert_array_equal(np.asarray(v[f"f_rest_{c * (k - 1) + j}"]), a["sh"][:, 1 + j, c])

    d = read_gaussians_ply(p)
    assert d["sh_degree"] == sh_degree
    for key in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(d[key], a[key])


def test_write_accepts_torch_and_validates_shapes(tmp_path):
    a = random_gaussian_arrays(5, 4)
    t = {k: torch.from_numpy(v).requires_grad_(k == "means") for k, v in a.items()}
    d = read_gaussians_ply(write_gaussians_ply(tmp_path / "t.ply", **t))
    np.testing.assert_array_equal(d["means"], a["means"])
    bad = dict(a, sh=a["sh"][:, :3])  # K=3 is not (d+1)^2
    with pytest.raises(ValueError, match="SH"):
        write_gaussians_ply(tmp_path / "bad.ply", **bad)
    with pytest.raises(ValueError, match="quats"):
        write_gaussians_ply(tmp_path / "bad.ply", **dict(a, quats=a["quats"][:4]))
    assert not (tmp_path / "bad.ply").exists()


def test_points_ply_read_by_open3d(tmp_path):
    o3d = pytest.importorskip("open3d", exc_type=ImportError)  # ImportError: e.g. libusb-1.0-0 missing
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(123, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (123, 3)).astype(np.uint8)
    nrm = rng.normal(size=(123, 3)).astype(np.float32)
    for normals in (None, nrm):
        p = write_points_ply(tmp_path / "p.ply", xyz, rgb, normals=normals)
        pc = o3d.io.read_point_cloud(str(p))
        assert len(pc.points) == 123
        np.testing.assert_allclose(np.asarray(pc.points), xyz, atol=1e-6)
        np.testing.assert_array_equal(np.rint(np.asarray(pc.colors) * 255).astype(np.uint8), rgb)
        assert pc.has_normals() == (normals is not None)
        d = read_points_ply(p)
        np.testing.assert_array_equal(d["xyz"], xyz)
        np.testing.assert_array_equal(d["rgb"], rgb)


def test_line_set_ply_read_by_open3d(tmp_path):
    o3d = pytest.importorskip("open3d", exc_type=ImportError)  # ImportError: e.g. libusb-1.0-0 missing
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    e = np.array([[0, 1], [1, 2]])
    p = write_line_set_ply(tmp_path / "l.ply", v, e, vertex_rgb=(255, 0, 0), edge_rgb=(0, 0, 255))
    ls = o3d.io.read_line_set(str(p))
    np.testing.assert_allclose(np.asarray(ls.points), v)
    np.testing.assert_array_equal(np.asarray(ls.lines), e)
    d = read_line_set_ply(p)
    np.testing.assert_array_equal(d["edges"], e)
    np.testing.assert_array_equal(d["edge_rgb"], [[0, 0, 255]] * 2)


def _valid_bytes(tmp_path) -> bytes:
    return write_gaussians_ply(tmp_path / "ok.ply", **random_gaussian_arrays(10, 4)).read_bytes()


@pytest.mark.parametrize("case, pattern", [
    ("not_ply", "not a PLY file"),
    ("no_end_header", "end_header"),
    ("truncated_body", "truncated"),
    ("truncated_header", "end_header"),
    ("bad_format", "format"),
    ("bad_count", "line 3 'element vertex ten': expected integer count"),
    ("bad_type", "malformed PLY header, line [0-9]+ 'property float16 opacity'"),
    ("empty", "not a PLY file"),
])
def test_malformed_and_truncated_ply_raise_plyerror(tmp_path, case, pattern):
    good = _valid_bytes(tmp_path)
    head_end = good.index(b"end_header\n") + len(b"end_header\n")
    data = {
        "not_ply": b"hello world\n" + good[head_end:],
        "no_end_header": good[:head_end - len(b"end_header\n")],
        "truncated_body": good[:head_end + (len(good) - head_end) // 2],
        "truncated_header": good[:40],
        "bad_format": good.replace(b"binary_little_endian 1.0", b"binary_middle_endian 1.0"),
        "bad_count": good.replace(b"element vertex 10", b"element vertex ten"),
        "bad_type": good.replace(b"property float opacity", b"property float16 opacity"),
        "empty": b"",
    }[case]
    p = tmp_path / f"{case}.ply"
    p.write_bytes(data)
    with pytest.raises(PlyError, match=pattern) as ei:
        read_gaussians_ply(p)
    assert str(p) in str(ei.value)  # the message names the file
    assert isinstance(ei.value, ValueError)


def test_missing_properties_raise_plyerror(tmp_path):
    p = write_points_ply(tmp_path / "pts.ply", np.zeros((4, 3)), np.zeros((4, 3), np.uint8))
    with pytest.raises(PlyError, match=r"missing vertex properties \[.*f_dc_0"):
        read_gaussians_ply(p)
    # an f_rest count that is not 3((d+1)^2 - 1)
    good = _valid_bytes(tmp_path)
    bad = good.replace(b"property float f_rest_8\n", b"")
    bad = bad.replace(b"element vertex 10", b"element vertex 9")  # keep the body length consistent-ish
    (tmp_path / "rest.ply").write_bytes(bad)
    with pytest.raises(PlyError, match="f_rest"):
        read_gaussians_ply(tmp_path / "rest.ply")
    with pytest.raises(FileNotFoundError):
        read_gaussians_ply(tmp_path / "nope.ply")


# ---------------------------------------------------------------------------------------------- sequences
def test_times_for():
    assert times_for(frames=1) == [0.0]
    assert times_for(frames=5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert times_for(times=[0.3, 0.1]) == [0.3, 0.1]
    assert times_for(train_times=[0.5, 0.0, 0.5, 1.0]) == [0.0, 0.5, 1.0]
    assert len(times_for()) == 30
    for bad in (dict(frames=0), dict(times=[1.5]), dict(times=[]), dict(frames=2, times=[0.1])):
        with pytest.raises(ValueError):
            times_for(**bad)


def test_export_gaussians_matches_analytic_motion(tmp_path):
    g = make_gaussians(150, sh_degree=2)
    field = SpinField()
    times = [0.0, 0.1, 0.25, 0.5, 0.9]
    train_times = [0.0, 0.5, 1.0]
    model = DynamicGaussians(g, field, train_times=train_times)
    out = export_sequence(model, times, tmp_path / "seq", fps=12.0, source="ckpt_000100.pt")
    m = load_manifest(out)
    assert m["format"] == "gaussians" and m["count"] == 5 and m["fps"] == 12.0 and m["times"] == times
    assert m["sh_degree"] == 2 and m["num_gaussians"] == 150 and m["source"] == "ckpt_000100.pt"
    assert m["frames"] == [f"frame_{i:04d}.ply" for i in range(5)] and "nodes" not in m
    assert field.frames_seen == [0, None, None, 1, None]  # training times pose with their frame index
    lo, hi = np.array(m["bbox"]["min"]), np.array(m["bbox"]["max"])
    for i, t in enumerate(times):
        d = read_gaussians_ply(out / f"frame_{i:04d}.ply")
        want_means, want_quats = analytic_pose(g, t)
        np.testing.assert_allclose(d["means"], want_means, atol=1e-5)
        assert_same_rotation(d["quats"], want_quats)
        np.testing.assert_allclose(np.linalg.norm(d["quats"], axis=1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(d["log_scales"], g.log_scales.detach().numpy())
        np.testing.assert_array_equal(d["opacity_logits"], g.opacity_logits.detach().numpy())
        np.testing.assert_array_equal(d["sh"], g.sh.detach().numpy())
        assert (d["means"] >= lo - 1e-5).all() and (d["means"] <= hi + 1e-5).all()
    assert field.training and model.training  # mode restored


def test_export_points_same_subset_every_frame(tmp_path):
    op = torch.full((100,), 3.0)
    op[::3] = -6.0  # opacity ~0.0025 < 0.05: dropped
    g = make_gaussians(100, sh_degree=1, opacity=op)
    out = export_sequence(DynamicGaussians(g, SpinField()), times_for(frames=4), tmp_path / "pts", fmt="points",
                          fps=5)
    m = load_manifest(out)
    keep = np.nonzero(torch.sigmoid(op).numpy() >= 0.05)[0]
    assert m["format"] == "points" and m["num_gaussians"] == len(keep) == 66 and m["num_canonical"] == 100
    np.testing.assert_array_equal(np.load(out / m["indices"]), keep)
    want_rgb = np.clip(np.rint(np.clip(0.5 + C0 * g.sh.detach().numpy()[keep, 0], 0, 1) * 255), 0, 255)
    for i, t in enumerate(m["times"]):
        d = read_points_ply(out / m["frames"][i])
        np.testing.assert_allclose(d["xyz"], analytic_pose(g, t)[0][keep], atol=1e-5)
        np.testing.assert_array_equal(d["rgb"], want_rgb.astype(np.uint8))


def test_export_node_graph(tmp_path):
    g = make_gaussians(30, sh_degree=0)
    f = NodeSpinField()
    out = export_sequence(DynamicGaussians(g, f), [0.0, 0.25], tmp_path / "n")
    m = load_manifest(out)
    assert m["nodes"] == ["nodes_0000.ply", "nodes_0001.ply"] and m["num_nodes"] == 4
    assert m["num_node_edges"] == 4  # (0,1),(1,0) deduplicated
    d = read_line_set_ply(out / "nodes_0001.ply")
    R = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z at t = 0.25
    np.testing.assert_allclose(d["vertices"], f.node_pos.numpy() @ R.T + analytic_translation(0.25).numpy(),
                               atol=1e-5)
    np.testing.assert_array_equal(d["edges"], [[0, 1], [0, 3], [1, 2], [2, 3]])
    out2 = export_sequence(DynamicGaussians(g, f), [0.0], tmp_path / "n2", node_graph=False)
    assert "nodes" not in load_manifest(out2) and not list(out2.glob("nodes_*"))
    with pytest.raises(SequenceError, match="node_motion"):
        export_sequence(DynamicGaussians(g, SpinField()), [0.0], tmp_path / "n3", node_graph=True)


def test_export_with_real_node_field(tmp_path):
    nodes = pytest.importorskip("dyngauss.deform.nodes")
    g = make_gaussians(300, sh_degree=0)
    from dyngauss.deform.config import NodeFieldConfig

    f = nodes.NodeDeformField(NodeFieldConfig(num_nodes=16, width=16, depth=2))
    out = export_sequence(DynamicGaussians(g, f), [0.0, 1.0], tmp_path / "uninit")  # not initialised: identity
    assert "nodes" not in load_manifest(out)
    f.init_nodes(g.means.detach())
    out = export_sequence(DynamicGaussians(g, f), [0.0, 1.0], tmp_path / "init")
    m = load_manifest(out)
    assert m["num_nodes"] == 16 and m["num_node_edges"] > 0 and len(m["nodes"]) == 2


def test_export_is_atomic(tmp_path):
    g = make_gaussians(50)
    out = tmp_path / "seq"
    export_sequence(DynamicGaussians(g, SpinField()), times_for(frames=3), out, fps=3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # a failure at the 3rd of 5 frames: the old complete export stays as it was, nothing else is left behind
    with pytest.raises(RuntimeError, match="simulated"):
        export_sequence(DynamicGaussians(g, SpinField(fail_at=0.5)), times_for(frames=5), out, fps=5)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert load_manifest(out)["count"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]

    # a failing first export creates no folder at all
    with pytest.raises(RuntimeError):
        export_sequence(DynamicGaussians(g, SpinField(fail_at=0.0)), [0.0], tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["seq"]

    # a successful export replaces the old one completely (no stale frames)
    export_sequence(DynamicGaussians(g, SpinField()), [0.0, 1.0], out, fps=2)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.ply", "frame_0001.ply", "sequence.json"]
    assert load_manifest(out)["count"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["seq"]

    # a half-written folder (no manifest, or a missing frame) never passes as complete
    (out / "frame_0001.ply").unlink()
    assert not is_complete_sequence(out)
    with pytest.raises(SequenceError, match="missing"):
        load_manifest(out)


def test_export_refuses_to_replace_foreign_folder(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(SequenceError, match="other than a sequence export"):
        export_sequence(DynamicGaussians(make_gaussians(5), IdentityField()), [0.0], d)
    assert (d / "notes.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(SequenceError, match="format"):
        export_sequence(DynamicGaussians(make_gaussians(5), IdentityField()), [0.0], tmp_path / "x", fmt="mesh")


# ---------------------------------------------------------------------------------------------- tools/export_ply.py
def _load_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_export_tool_with_fake_model(tmp_path, monkeypatch, capsys):
    from dyngauss.config import load_config
    from dyngauss.model import CheckpointInfo

    g = make_gaussians(40, sh_degree=1)
    cfg = load_config(None, ["data.background=[0, 0, 0]", "export.fps=15"])
    fake = DynamicGaussians(g, SpinField(), train_times=[0.0, 0.5, 1.0], config=cfg,
                            info=CheckpointInfo(path=tmp_path / "run" / "checkpoints" / "c.pt", step=7))
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(DynamicGaussians, "load", classmethod(lambda cls, path, device="cpu": fake))
    tool = _load_tool("export_ply")
    assert tool.main(["--run", str(tmp_path / "run"), "-q"]) == 0
    m = load_manifest(tmp_path / "run" / "ply")
    assert m["times"] == [0.0, 0.5, 1.0] and m["fps"] == 15.0 and m["background"] == [0.0, 0.0, 0.0]
    assert m["step"] == 7
    assert tool.main(["--run", str(tmp_path / "run"), "--frames", "4", "--fps", "8", "--format", "points",
                      "--out", str(tmp_path / "o"), "-q"]) == 0
    m = load_manifest(tmp_path / "o")
    assert m["count"] == 4 and m["fps"] == 8.0 and m["format"] == "points"
    assert tool.main(["--run", str(tmp_path / "run"), "--times", "2.0", "-q"]) == 2
    assert "[0, 1]" in capsys.readouterr().err


def test_export_tool_bad_checkpoints_exit_2_without_traceback(tmp_path, capsys):
    corrupt = tmp_path / "ckpt_000001.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "export_ply.py"), "--ckpt", str(corrupt)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "error" in p.stderr and "Traceback" not in p.stderr, p.stderr
    # the same checks in-process (faster): a missing path and a run folder without checkpoints
    empty_run = tmp_path / "run"
    (empty_run / "checkpoints").mkdir(parents=True)
    tool = _load_tool("export_ply")
    for args in (["--run", str(tmp_path / "missing")], ["--run", str(empty_run)], ["--ckpt", str(corrupt)]):
        assert tool.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err, err


def test_render_tool_with_fake_model(tmp_path, monkeypatch):
    """tools/render.py end to end on an analytic model (no dataset: the camera frames the Gaussians)."""
    import imageio.v3 as iio

    from dyngauss.config import load_config
    from dyngauss.model import CheckpointInfo

    g = make_gaussians(150, sh_degree=1, opacity=torch.full((150,), 2.0))
    with torch.no_grad():
        g.means.mul_(torch.tensor([1.0, 0.2, 0.3]))  # an elongated blob, so rotation changes the image
        g.log_scales.fill_(math.log(0.06))
    cfg = load_config(None, ["data.background=[1, 1, 1]", "export.fps=10"])
    fake = DynamicGaussians(g, SpinField(), config=cfg, info=CheckpointInfo(path=tmp_path / "c.pt", step=1))
    (tmp_path / "c.pt").write_bytes(b"")
    monkeypatch.setattr(DynamicGaussians, "load", classmethod(lambda cls, path, device="cpu": fake))
    tool = _load_tool("render")
    for path, out in (("fixed", "f.gif"), ("orbit", "o.mp4")):
        assert tool.main(["--run", str(tmp_path / "c.pt"), "--path", path, "--frames", "3", "--size", "40", "30",
                          "--backend", "torch", "--out", str(tmp_path / out)]) == 0
        frames = iio.imread(tmp_path / out, index=None)
        assert frames.shape[:3] == (3, 30, 40)
        assert (frames[0] < 200).any(axis=-1).mean() > 0.02          # the object is visible
        assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 40  # and moves
    assert tool.main(["--run", str(tmp_path / "c.pt"), "--path", "split:test"]) == 2  # no dataset known

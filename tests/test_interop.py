"""Exported frames in third-party tools. PlayCanvas's `splat-transform` (the reader SuperSplat uses; npm
@playcanvas/splat-transform, pinned in tools/interop/package.json, installed by `npm ci --prefix tools/interop`,
which .ci/run does) reads an exported frame of an analytic model: the right count and SH degree, the values
after a known transform, and a glTF .glb with KHR_gaussian_splatting. Node-graph files are line sets, read
as such by Open3D; splat-transform sees their vertices as a non-Gaussian table and cannot make splats of
them. SuperSplat's sequence-naming rule is checked against the export's folder. The splat-transform tests skip
with the reason when node or the package is absent.

Coordinates: splat-transform applies its actions in PlayCanvas's frame, in which PLY data appears rotated by
180 degrees about z (its Transform.PLY); an action A therefore acts on PLY coordinates as F A F with
F = diag(-1, -1, 1), and .glb positions are F times the PLY's.
"""
from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dyngauss.deform.base import DeformField, Motion  # noqa: E402
from dyngauss.export.sequence import export_sequence, load_manifest  # noqa: E402
from dyngauss.export.supersplat import is_supersplat_sequence, supersplat_folder  # noqa: E402
from dyngauss.geometry.quaternion import matrix_to_quat, quat_multiply  # noqa: E402
from dyngauss.geometry.sh import sh_to_rgb  # noqa: E402
from dyngauss.io.ply import read_gaussians_ply, read_line_set_ply  # noqa: E402
from dyngauss.model import DynamicGaussians, Gaussians  # noqa: E402

INTEROP = ROOT / "tools" / "interop"
F = np.diag([-1.0, -1.0, 1.0])  # PLY <-> PlayCanvas frame: 180 degrees about z
GLB_MAGIC, GLB_JSON, GLB_BIN = b"glTF", b"JSON", b"BIN\x00"


# ---------------------------------------------------------------------------------------------- fixtures
class Spin(DeformField):
    """Rigid motion: rotation about z by pi*t, translation (0.5t, -0.2t, 0.1t); a 3-node graph riding along."""

    kind = "spin"

    def __init__(self):
        super().__init__()
        self.register_buffer("node_pos", torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]]))

    def forward(self, means, t, frame=None):
        n, a = means.shape[0], math.pi * float(t)
        q = torch.tensor([math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)])
        return Motion(q.expand(n, 4).clone(), torch.tensor([0.5, -0.2, 0.1]).mul(float(t)).expand(n, 3).clone())

    def node_graph(self, k=None):
        e = torch.tensor([[0, 1], [1, 2], [2, 0]])
        return e, torch.ones(len(e))

    def node_motion(self, t, frame=None):
        m = self.forward(self.node_pos, t, frame)
        return m.rot, m.trans


def model_of_degree(degree: int, n: int = 64, seed: int = 0) -> DynamicGaussians:
    g = torch.Generator().manual_seed(seed)
    sh = torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.5
    gs = Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g),
                   torch.rand(n, 3, generator=g) * 3 - 5, torch.randn(n, generator=g),
                   sh[:, :1].contiguous(), sh[:, 1:].contiguous(), degree)
    return DynamicGaussians(gs, Spin())


@pytest.fixture(scope="module")
def sequences(tmp_path_factory) -> dict[int, Path]:
    """Exported 3-frame gaussians sequences (with node graphs) of SH degree 0 and 3."""
    root = tmp_path_factory.mktemp("interop")
    return {d: export_sequence(model_of_degree(d, seed=d), [0.0, 0.5, 1.0], root / f"sh{d}", log=lambda m: None)
            for d in (0, 3)}


@pytest.fixture(scope="module")
def splat_transform() -> list[str]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (Node.js >= 20 runs PlayCanvas's splat-transform)")
    exe = INTEROP / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists():
        pytest.skip(f"splat-transform is not installed: run `npm ci --prefix {INTEROP.relative_to(ROOT)}` "
                    "(the pinned version in tools/interop/package-lock.json)")
    return [str(exe)]


def run_st(cmd: list[str], *args, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd + ["-q", "-w", *map(str, args)], capture_output=True, text=True, timeout=180,
                       cwd=INTEROP)
    if ok:
        assert p.returncode == 0, (p.stdout, p.stderr)
    return p


def info_of(p: subprocess.CompletedProcess) -> dict:
    """The JSON `--info json` printed to stdout."""
    out = p.stdout
    return json.JSONDecoder().raw_decode(out[out.index("{"):])[0]


def read_glb(path: Path) -> tuple[dict, bytes]:
    """(the JSON chunk, the BIN chunk) of a binary glTF file, checking its 12-byte header and chunk headers."""
    b = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", b, 0)
    assert magic == GLB_MAGIC and version == 2 and length == len(b)
    jlen, jtype = struct.unpack_from("<I4s", b, 12)
    assert jtype == GLB_JSON and jlen % 4 == 0
    doc = json.loads(b[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", b, 20 + jlen)
    assert btype == GLB_BIN and 28 + jlen + blen == len(b)
    return doc, b[28 + jlen:28 + jlen + blen]


def accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    a = doc["accessors"][index]
    view = doc["bufferViews"][a["bufferView"]]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[a["type"]]
    dtype = {5126: np.float32, 5121: np.uint8, 5123: np.uint16}[a["componentType"]]
    arr = np.frombuffer(binary, dtype, a["count"] * width, view.get("byteOffset", 0) + a.get("byteOffset", 0))
    return arr.reshape(a["count"], width)


def rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def same_rotation(q1: np.ndarray, q2: np.ndarray) -> float:
    """Largest difference between unit quaternions up to sign."""
    q1 = q1 / np.linalg.norm(q1, axis=1, keepdims=True)
    q2 = q2 / np.linalg.norm(q2, axis=1, keepdims=True)
    return float(np.minimum(np.abs(q1 - q2).max(1), np.abs(q1 + q2).max(1)).max())


def sh_colours(sh: np.ndarray, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    return sh_to_rgb(torch.from_numpy(np.ascontiguousarray(sh)), dirs, degree)


# ---------------------------------------------------------------------------------------------- splat-transform
@pytest.mark.parametrize("degree", [0, 3])
def test_splat_transform_reads_a_frame_and_transforms_it_as_documented(sequences, splat_transform, tmp_path,
                                                                       degree):
    """Read back what splat-transform writes after `-s 2 -r 90,0,0 -r 0,0,90 -t 1,2,3`: positions, scales,
    rotations and SH follow that similarity (in PlayCanvas's frame), opacities are unchanged; with no action,
    every value comes back bit for bit."""
    src = sequences[degree] / "frame_0001.ply"
    ours = read_gaussians_ply(src)
    n = len(ours["means"])

    same = tmp_path / "same.ply"
    info = info_of(run_st(splat_transform, src, "--info", "json", same))
    assert info["gaussian"] is True and info["numGaussians"] == n and info["shBands"] == degree
    back = read_gaussians_ply(same)
    for key in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(back[key], ours[key], err_msg=key)

    out = tmp_path / "moved.ply"
    run_st(splat_transform, src, "-s", "2", "-r", "90,0,0", "-r", "0,0,90", "-t", "1,2,3", out)
    got = read_gaussians_ply(out)
    assert got["sh_degree"] == degree and len(got["means"]) == n
    A = rot("z", 90) @ rot("x", 90)  # the two rotations, in PlayCanvas's frame, in the order given
    M = F @ A @ F  # the same rotation acting on PLY coordinates
    want = 2.0 * ours["means"].astype(np.float64) @ M.T + F @ np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(got["means"], want, atol=2e-5)
    np.testing.assert_allclose(got["log_scales"], ours["log_scales"] + math.log(2.0), atol=1e-5)
    np.testing.assert_array_equal(got["opacity_logits"], ours["opacity_logits"])
    qM = matrix_to_quat(torch.tensor(M, dtype=torch.float32)).expand(n, 4)
    want_q = quat_multiply(qM, torch.nn.functional.normalize(torch.from_numpy(ours["quats"]), dim=1)).numpy()
    assert same_rotation(got["quats"], want_q) < 1e-5
    np.testing.assert_allclose(got["sh"][:, 0], ours["sh"][:, 0], atol=1e-6)  # DC: view independent
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    # the rotated SH seen along the rotated direction give the colour the original gives along the original one
    before = sh_colours(ours["sh"], dirs, degree)
    after = sh_colours(got["sh"], dirs @ torch.tensor(M, dtype=torch.float32).T, degree)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)
    if degree:
        assert not np.allclose(got["sh"][:, 1:], ours["sh"][:, 1:], atol=1e-3)  # the bands were rotated


@pytest.mark.parametrize("degree", [0, 3])
def test_splat_transform_writes_khr_gaussian_splatting_glb(sequences, splat_transform, tmp_path, degree):
    src = sequences[degree] / "frame_0002.ply"
    ours = read_gaussians_ply(src)
    n = len(ours["means"])
    glb = tmp_path / "frame.glb"
    run_st(splat_transform, src, glb)
    doc, binary = read_glb(glb)
    assert doc["asset"]["version"] == "2.0"
    assert "KHR_gaussian_splatting" in doc["extensionsUsed"]
    prims = [p for m in doc["meshes"] for p in m["primitives"]]
    assert len(prims) == 1 and "KHR_gaussian_splatting" in prims[0]["extensions"]
    attr = prims[0]["attributes"]
    ext = "KHR_gaussian_splatting:"
    coefs = sorted(k for k in attr if k.startswith(ext + "SH_DEGREE_"))
    assert len(coefs) == (degree + 1) ** 2
    assert all(doc["accessors"][i]["count"] == n for i in attr.values())
    pos = accessor(doc, binary, attr["POSITION"])
    np.testing.assert_allclose(pos, ours["means"] @ F.T, atol=1e-6)  # glTF/PlayCanvas frame
    np.testing.assert_allclose(accessor(doc, binary, attr[ext + "SCALE"]), np.exp(ours["log_scales"]), rtol=1e-5)
    np.testing.assert_allclose(accessor(doc, binary, attr[ext + "OPACITY"])[:, 0],
                               1.0 / (1.0 + np.exp(-ours["opacity_logits"])), atol=1e-6)
    q_xyzw = accessor(doc, binary, attr[ext + "ROTATION"])
    qF = matrix_to_quat(torch.tensor(F, dtype=torch.float32)).expand(n, 4)
    want_q = quat_multiply(qF, torch.nn.functional.normalize(torch.from_numpy(ours["quats"]), dim=1)).numpy()
    assert same_rotation(q_xyzw[:, [3, 0, 1, 2]], want_q) < 1e-5
    np.testing.assert_allclose(accessor(doc, binary, attr[ext + "SH_DEGREE_0_COEF_0"]), ours["sh"][:, 0], atol=1e-6)


def test_node_graph_files_are_line_sets_not_splats(sequences, splat_transform, tmp_path):
    """nodes_XXXX.ply: a PLY line set (vertex element = node positions, edge element = graph edges), the
    format Open3D's read_line_set reads. splat-transform reads only its vertices, as a non-Gaussian table, and
    cannot convert it to a splat format."""
    seq = sequences[3]
    m = load_manifest(seq)
    node_file = seq / m["nodes"][1]
    ours = read_line_set_ply(node_file)
    assert len(ours["vertices"]) == m["num_nodes"] == 3 and len(ours["edges"]) == m["num_node_edges"] == 3
    info = info_of(run_st(splat_transform, node_file, "--info", "json", "null"))
    assert info["gaussian"] is False and info["numGaussians"] == 3
    p = run_st(splat_transform, node_file, tmp_path / "nodes.glb", ok=False)
    assert p.returncode != 0


def test_node_graph_files_open_in_open3d_as_line_sets(sequences):
    o3d = pytest.importorskip("open3d", exc_type=ImportError)
    seq = sequences[0]
    m = load_manifest(seq)
    for name in m["nodes"]:
        ours = read_line_set_ply(seq / name)
        ls = o3d.io.read_line_set(str(seq / name))
        np.testing.assert_allclose(np.asarray(ls.points), ours["vertices"], atol=1e-6)
        np.testing.assert_array_equal(np.asarray(ls.lines), ours["edges"])


# ---------------------------------------------------------------------------------------------- SuperSplat
def test_supersplat_sequence_naming(sequences, tmp_path):
    """SuperSplat plays files as one animation when all share a prefix + frame number + .ply: our frame names
    do, a whole export folder does not (sequence.json, nodes_*.ply), the --supersplat folder does."""
    seq = sequences[3]
    m = load_manifest(seq)
    assert is_supersplat_sequence(m["frames"])
    assert not is_supersplat_sequence(p.name for p in seq.iterdir())
    assert not is_supersplat_sequence(m["frames"][:1])  # one file is a scene, not an animation
    assert not is_supersplat_sequence(["a_0001.ply", "b_0002.ply"])
    assert is_supersplat_sequence(["Scan7.PLY", "scan12.ply", "scan8.compressed.ply"])

    out = supersplat_folder(seq)
    assert out == seq.parent / "sh3_supersplat"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(m["frames"]) and is_supersplat_sequence(names)
    for name in names:
        assert (out / name).read_bytes() == (seq / name).read_bytes()
    assert supersplat_folder(seq) == out  # replaces its own earlier folder

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    from dyngauss.export.sequence import SequenceError

    with pytest.raises(SequenceError, match="other files"):
        supersplat_folder(seq, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_export_command_writes_the_supersplat_folder(tmp_path, capsys):
    """`dyngauss export --ckpt C --supersplat`: next to the export, a folder of its frames only."""
    from dyngauss.cli.export import main
    from dyngauss.config import load_config

    cfg = load_config(None, ["deform.kind=mlp", "deform.width=8", "deform.depth=2", "model.sh_degree=0"])
    model = DynamicGaussians(model_of_degree(0, n=16).gaussians,
                             cfg.deform.build(num_frames=2, frame_times=[0.0, 1.0]), train_times=[0.0, 1.0], config=cfg)
    ckpt = model.save(tmp_path / "model.pt")
    out = tmp_path / "seq"
    assert main(["--ckpt", str(ckpt), "--frames", "3", "--out", str(out), "--supersplat", "-q"]) == 0
    assert f"-> {tmp_path / 'seq_supersplat'}" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "seq_supersplat").iterdir())
    assert names == ["frame_0000.ply", "frame_0001.ply", "frame_0002.ply"] and is_supersplat_sequence(names)
    assert main(["--ckpt", str(ckpt), "--frames", "2", "--out", str(tmp_path / "pts"), "--format", "points",
                 "--supersplat", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--supersplat" in err and "no Gaussians" in err and "Traceback" not in err

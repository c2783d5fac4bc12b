"""dyngauss.io.ply against plyfile itself: our files read by plyfile with the exact 3DGS layout, files written
by plyfile (ASCII, big-endian, doubles, extra elements) read by our readers, and PlyError for bad input.
The round trips and open3d checks are in tests/test_export.py."""
from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from dyngauss.io.ply import (PlyError, gaussian_property_names, ply_kind, read_gaussians_ply, read_line_set_ply,
                             read_ply_element, read_points_ply, write_gaussians_ply, write_line_set_ply,
                             write_points_ply)


def gaussian_arrays(n: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(means=rng.normal(size=(n, 3)).astype(np.float32), quats=rng.normal(size=(n, 4)).astype(np.float32),
                log_scales=rng.normal(size=(n, 3)).astype(np.float32),
                opacity_logits=rng.normal(size=n).astype(np.float32), sh=rng.normal(size=(n, k, 3)).astype(np.float32))


def gaussian_record(a: dict[str, np.ndarray], dtype: str) -> np.ndarray:
    """Structured array of the 3DGS layout built here by hand (independent of gaussians_to_array)."""
    n, k = a["sh"].shape[:2]
    names = gaussian_property_names(k)
    rec = np.zeros(n, [(p, dtype) for p in names])
    for j, p in enumerate("xyz"):
        rec[p] = a["means"][:, j]
    for c in range(3):
        rec[f"f_dc_{c}"] = a["sh"][:, 0, c]
        rec[f"scale_{c}"] = a["log_scales"][:, c]
        for j in range(k - 1):
            rec[f"f_rest_{c * (k - 1) + j}"] = a["sh"][:, 1 + j, c]
    for j in range(4):
        rec[f"rot_{j}"] = a["quats"][:, j]
    rec["opacity"] = a["opacity_logits"]
    return rec


def write_with_plyfile(path, elements: dict[str, np.ndarray], text: bool = False, byte_order: str = "<"):
    PlyData([PlyElement.describe(r, n) for n, r in elements.items()], text=text, byte_order=byte_order).write(
        str(path))
    return path


# ------------------------------------------------------------------------------ (a) our files, read by plyfile
@pytest.mark.parametrize("k", [1, 4, 16])
def test_gaussians_written_have_exact_3dgs_layout(tmp_path, k):
    a = gaussian_arrays(7, k)
    p = write_gaussians_ply(tmp_path / "g.ply", **a, comments=["made by a test"])
    ply = PlyData.read(str(p))
    assert [e.name for e in ply.elements] == ["vertex"] and not ply.text and ply.byte_order == "<"
    assert ply.comments == ["made by a test"]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(3 * (k - 1))]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    v = ply["vertex"]
    assert [pp.name for pp in v.properties] == expected
    assert all(pp.val_dtype == "f4" for pp in v.properties)
    assert v.data.dtype == np.dtype([(name, "<f4") for name in expected])
    header = p.read_bytes().split(b"end_header\n")[0].decode()
    assert header.splitlines()[1] == "format binary_little_endian 1.0"
    assert [ln.split()[1] for ln in header.splitlines() if ln.startswith("property")] == ["float"] * len(expected)
    # body: exactly N rows of float32, nothing after
    assert len(p.read_bytes()) == len(header) + len("end_header\n") + 7 * 4 * len(expected)
    np.testing.assert_array_equal(v.data, gaussian_record(a, "<f4"))


def test_points_and_line_sets_written_have_expected_layout(tmp_path):
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    rgb = np.array([[0, 1, 2], [3, 4, 5], [250, 251, 252], [7, 8, 9]], np.uint8)
    pts = PlyData.read(str(write_points_ply(tmp_path / "p.ply", xyz, rgb, normals=-xyz)))["vertex"].data
    assert pts.dtype == np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                  ("blue", "u1"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")])
    np.testing.assert_array_equal(pts["red"], rgb[:, 0])
    np.testing.assert_array_equal(pts["nz"], -xyz[:, 2])

    ls = PlyData.read(str(write_line_set_ply(tmp_path / "l.ply", xyz, [[0, 1], [2, 3], [3, 0]], edge_rgb=(9, 8, 7))))
    assert [e.name for e in ls.elements] == ["vertex", "edge"]
    assert ls["vertex"].data.dtype.names == ("x", "y", "z")
    assert ls["edge"].data.dtype == np.dtype([("vertex1", "<i4"), ("vertex2", "<i4"), ("red", "u1"),
                                              ("green", "u1"), ("blue", "u1")])
    np.testing.assert_array_equal(ls["edge"].data["vertex2"], [1, 3, 0])
    np.testing.assert_array_equal(ls["edge"].data["blue"], [7, 7, 7])


def test_writer_refuses_float_colours_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="rgb_to_uint8"):
        write_points_ply(tmp_path / "p.ply", np.zeros((2, 3)), np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"edges must be \[E,2\]"):
        write_line_set_ply(tmp_path / "l.ply", np.zeros((2, 3)), [0, 1, 1])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ (b) plyfile's files, read by us
@pytest.mark.parametrize("text, byte_order", [(True, "="), (False, ">"), (False, "<")])
def test_gaussians_from_plyfile_any_encoding(tmp_path, text, byte_order):
    a = gaussian_arrays(6, 9, seed=1)
    p = write_with_plyfile(tmp_path / "g.ply", {"vertex": gaussian_record(a, "f8")}, text, byte_order)
    fmt = "ascii" if text else {"<": "binary_little_endian", ">": "binary_big_endian"}[byte_order]
    assert f"format {fmt} 1.0".encode() in p.read_bytes()[:40]
    d = read_gaussians_ply(p)
    assert d["sh_degree"] == 2 and ply_kind(p) == "gaussians"
    for key in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert d[key].dtype == np.float32
        np.testing.assert_allclose(d[key], a[key], rtol=1e-6)
    np.testing.assert_array_equal(d["normals"], 0)


@pytest.mark.parametrize("text, byte_order", [(True, "="), (False, ">")])
def test_points_and_line_sets_from_plyfile(tmp_path, text, byte_order):
    rng = np.random.default_rng(2)
    v = np.zeros(5, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "f4"), ("green", "f4"), ("blue", "f4")])
    xyz = rng.normal(size=(5, 3)).astype(np.float32)
    col = rng.uniform(0, 1, (5, 3)).astype(np.float32)
    for j, name in enumerate(["x", "y", "z"]):
        v[name] = xyz[:, j]
    for j, name in enumerate(["red", "green", "blue"]):
        v[name] = col[:, j]
    # a mesh face element with a list property before nothing else: must not disturb the vertex reader
    faces = np.array([([0, 1, 2],), ([2, 3, 4],)], dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([2, 3, 4], "i4")]
    p = write_with_plyfile(tmp_path / "p.ply", {"vertex": v, "face": faces}, text, byte_order)
    d = read_points_ply(p)
    np.testing.assert_allclose(d["xyz"], xyz, rtol=1e-6)
    np.testing.assert_array_equal(d["rgb"], np.rint(col * 255).astype(np.uint8))  # float colours scaled
    assert d["normals"] is None and ply_kind(p) == "points"
    assert read_ply_element(p, "face")["vertex_indices"][1].tolist() == [2, 3, 4]

    e = np.array([(0, 1), (1, 4)], dtype=[("vertex1", "i4"), ("vertex2", "i4")])
    xyz_only = np.zeros(5, [("x", "f4"), ("y", "f4"), ("z", "f4")])
    for name in ("x", "y", "z"):
        xyz_only[name] = v[name]
    q = write_with_plyfile(tmp_path / "l.ply", {"vertex": xyz_only, "edge": e}, text, byte_order)
    ls = read_line_set_ply(q)
    np.testing.assert_array_equal(ls["edges"], [[0, 1], [1, 4]])
    assert ls["edges"].dtype == np.int64 and ls["edge_rgb"] is None and ply_kind(q) == "lines"


def test_read_element_is_an_in_memory_copy(tmp_path):
    p = write_points_ply(tmp_path / "p.ply", np.ones((3, 3)), np.zeros((3, 3), np.uint8))
    rec = read_ply_element(p)
    assert type(rec) is np.ndarray and rec.flags.writeable
    write_points_ply(p, np.full((3, 3), 5.0), np.zeros((3, 3), np.uint8))  # replace the file underneath
    np.testing.assert_array_equal(rec["x"], 1.0)


def test_non_finite_values_are_data_not_errors(tmp_path):
    xyz = np.array([[np.nan, 0, 0], [np.inf, 1, 2]], np.float32)
    d = read_points_ply(write_points_ply(tmp_path / "p.ply", xyz, np.zeros((2, 3), np.uint8)))
    assert np.isnan(d["xyz"][0, 0]) and np.isposinf(d["xyz"][1, 0])


# ------------------------------------------------------------------------------ (c) bad input -> PlyError
def _ascii_points(rows: str, count: int = 2) -> bytes:
    return (f"ply\nformat ascii 1.0\nelement vertex {count}\nproperty float x\nproperty float y\n"
            f"property float z\nend_header\n{rows}").encode()


BAD_FILES = {
    "garbage.ply": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not a PLY file"),
    "text.ply": (b"solid cube\nfacet normal 0 0 1\n", "not a PLY file"),
    "binary_header.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float \xff\xfe\n",
                          "non-ASCII"),
    "no_end.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "no 'end_header'"),
    "bad_keyword.ply": (b"ply\nformat ascii 1.0\nelemnt vertex 1\nend_header\n", "line 3 'elemnt vertex 1'"),
    "dup_property.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float x\n"
                         b"end_header\n1 1\n", "malformed PLY file: two properties with same name"),
    "ascii_short_file.ply": (_ascii_points("0 0 0\n"), "truncated or malformed PLY body.*early end-of-file"),
    "ascii_short_row.ply": (_ascii_points("0 0 0\n1 2\n"), "truncated or malformed PLY body.*row 1"),
    "ascii_not_numbers.ply": (_ascii_points("0 0 0\n1 two 3\n"), "malformed input"),
    "binary_short.ply": (b"ply\nformat binary_big_endian 1.0\nelement vertex 3\nproperty double x\n"
                         b"property double y\nproperty double z\nend_header\n" + bytes(50), "truncated"),
    "huge_count.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nproperty float x\n"
                       b"property float y\nproperty float z\nend_header\n" + bytes(12), "truncated"),
    "huge_ascii_count.ply": (_ascii_points("1 2 3\n", 10 ** 14), "do not fit in memory"),
    "negative_count.ply": (_ascii_points("", -1), "malformed PLY file: negative"),
    "no_xyz.ply": (_ascii_points("", 0).replace(b"property float x\n", b""), r"missing vertex properties \['x'\]"),
    "no_vertex.ply": (b"ply\nformat ascii 1.0\nelement point 1\nproperty float x\nend_header\n1\n",
                      "no element 'vertex'"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("reader", [read_points_ply, read_gaussians_ply, read_line_set_ply, ply_kind])
def test_bad_files_raise_plyerror_naming_the_file(tmp_path, name, reader):
    data, pattern = BAD_FILES[name]
    p = tmp_path / name
    p.write_bytes(data)
    if name == "no_xyz.ply" and reader is read_gaussians_ply:
        pattern = r"not a 3D Gaussian PLY: missing vertex properties \['x', 'f_dc_0', 'f_dc_1'"
    elif name == "no_xyz.ply" and reader is read_line_set_ply:
        pattern = "no element 'edge'"
    elif name == "no_xyz.ply" and reader is ply_kind:
        pattern = "no x/y/z"
    with pytest.raises(PlyError, match=pattern) as ei:
        reader(p)
    assert str(ei.value).startswith(f"{p}: ")


def test_missing_elements_properties_and_paths(tmp_path):
    pts = write_points_ply(tmp_path / "pts.ply", np.zeros((4, 3)), np.zeros((4, 3), np.uint8))
    with pytest.raises(PlyError, match=rf"^{tmp_path}/pts.ply: no element 'edge' \(elements: \['vertex'\]\)"):
        read_line_set_ply(pts)
    with pytest.raises(PlyError, match=r"missing vertex properties \['f_dc_0'"):
        read_gaussians_ply(pts)
    bad_edges = write_with_plyfile(tmp_path / "e.ply", {
        "vertex": np.zeros(2, [("x", "f4"), ("y", "f4"), ("z", "f4")]),
        "edge": np.array([(0, 1), (1, 2)], [("vertex1", "i4"), ("vertex2", "i4")])})
    with pytest.raises(PlyError, match=r"e.ply: edge index out of range \[0, 2\)"):
        read_line_set_ply(bad_edges)
    no_v2 = write_with_plyfile(tmp_path / "v2.ply", {
        "vertex": np.zeros(2, [("x", "f4"), ("y", "f4"), ("z", "f4")]),
        "edge": np.array([(0,)], [("vertex1", "i4")])})
    with pytest.raises(PlyError, match=r"missing edge properties \['vertex2'\]"):
        read_line_set_ply(no_v2)
    with pytest.raises(PlyError, match="is a directory"):
        read_points_ply(tmp_path)
    for error in (FileNotFoundError, PlyError):  # both, so callers catching either keep working
        with pytest.raises(error, match=rf"^{tmp_path}/nope.ply: no such PLY file"):
            read_points_ply(tmp_path / "nope.ply")

"""Atomic writes: a failed write leaves the previous file untouched and no temporary file behind."""
from __future__ import annotations

import pytest

from dyngauss.io import atomic_write, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "old")
    assert p.read_text() == "old"

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(p, boom)
    assert p.read_text() == "old"
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.txt"]
    atomic_write_bytes(p, [b"ne", memoryview(b"w")])
    assert p.read_bytes() == b"new" and oct(p.stat().st_mode & 0o777) == "0o644"

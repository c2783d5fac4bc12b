"""OS errors of the writers (disk full, read-only file system, permission denied, an out path that is a file or
under a file) end every command with one `error:` line naming the path and the cause, exit code 2, no
traceback, and the previous outputs intact.

Disk full and read-only file systems are real where the test may mount a small tmpfs (root); elsewhere those
variants skip with the reason, and the monkeypatched variants (the writer raises ENOSPC / EACCES) still run.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dyngauss.config import load_config
from dyngauss.io import OutputError, atomic_write, atomic_write_text
from dyngauss.model import DynamicGaussians

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------
# fixtures: a tiny scene and run, tmpfs mounts
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _overrides(scene, out, *extra) -> list[str]:
    return [f"data.path={scene}", f"out={out}", "train.iters=8", "train.warmup_iters=4", "model.num_points=300",
            "densify.refine_start_iter=2", "densify.refine_every=3", "densify.refine_stop_iter=100",
            "train.progress=false", "train.save_every=4", "deform.kind=mlp", "deform.width=32", "deform.depth=2",
            "model.sh_degree=1", "model.sh_degree_interval=5", "eval.lpips=false", "export.frames=3", *extra]


@pytest.fixture(scope="module")
def run_dir(tiny_scene, tmp_path_factory):
    """A trained run folder (checkpoints at steps 4 and 8, config.yaml), no eval/export."""
    from dyngauss.train.trainer import Trainer

    run = tmp_path_factory.mktemp("runs") / "base"
    t = Trainer(load_config(None, _overrides(tiny_scene, run)))
    t.train()
    assert (run / "checkpoints" / "ckpt_000008.pt").is_file()
    return run


def _mount_tmpfs(path: Path, size: str, ro: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a fresh tmpfs folder; unmounted at the end."""
    mounted: list[Path] = []

    def mount(size: str = "4m", ro: bool = False) -> Path:
        p = tmp_path / f"fs{len(mounted)}"
        _mount_tmpfs(p, size, ro)
        mounted.append(p)
        return p

    yield mount
    for p in reversed(mounted):
        _umount(p)


@pytest.fixture
def ro_copy(tmp_path):
    """ro_copy(folder) -> a read-only view (bind mount) of a copy of `folder`; skips where mounts are refused."""
    mounted: list[Path] = []

    def make(src: Path) -> Path:
        import shutil

        copy = tmp_path / f"copy{len(mounted)}"
        shutil.copytree(src, copy)
        view = tmp_path / f"ro{len(mounted)}"
        view.mkdir()
        r = subprocess.run(["mount", "--bind", str(copy), str(view)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot bind-mount here (needs root): {r.stderr.strip()}")
        mounted.append(view)
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {r.stderr.strip()}")
        return view

    yield make
    for p in reversed(mounted):
        _umount(p)


def _fill(fs: Path, leave: int = 8192) -> Path:
    """Fill file system `fs` until about `leave` bytes are free; returns the filler file."""
    st = os.statvfs(fs)
    free = st.f_bfree * st.f_frsize
    filler = fs / "filler.bin"
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def _one_error_line(err: str, *must: str) -> str:
    """The stderr of a failed command: exactly one `error:` line, no traceback; the line contains `must`."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for m in must:
        assert m in lines[0], (m, lines[0])
    return lines[0]


def _no_temp_left(folder: Path) -> None:
    left = [p for p in folder.rglob(".*") if ".tmp" in p.name]
    assert left == [], left


# ---------------------------------------------------------------------------------------------------------
# the writer: OutputError
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("err, cause", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                        (errno.EROFS, "read-only file system")])
def test_atomic_write_turns_os_errors_into_one_line_output_errors(tmp_path, err, cause):
    p = tmp_path / "a.bin"
    atomic_write_text(p, "old")

    def fail(f):
        f.write(b"partial")
        raise OSError(err, os.strerror(err))

    with pytest.raises(OutputError) as ei:
        atomic_write(p, fail)
    e = ei.value
    assert e.errno == err and e.path == p and isinstance(e, OSError)
    assert str(e).startswith(f"cannot write {p}: ") and cause in str(e) and "\n" not in str(e)
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]


def test_torch_short_write_is_a_disk_full_output_error(tmp_path):
    """torch.save reports a refused write as RuntimeError('... unexpected pos ...'): an OutputError (ENOSPC)."""
    p = tmp_path / "c.pt"
    atomic_write_text(p, "old")

    def torch_failure(f):
        f.write(b"PK")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with pytest.raises(OutputError, match="no space left on the device") as ei:
        atomic_write(p, torch_failure)
    assert ei.value.errno == errno.ENOSPC and p.read_text() == "old"
    # an unrelated RuntimeError of the callback is not an output error
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(p, lambda f: (_ for _ in ()).throw(RuntimeError("boom")))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.pt"]


def test_parent_is_a_file_and_destination_is_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"f is a file, not a folder") as ei:
        atomic_write_text(tmp_path / "f" / "sub" / "a.txt", "y")
    assert ei.value.path == tmp_path / "f" / "sub" / "a.txt"
    with pytest.raises(OutputError, match="f is a file, not a folder"):
        atomic_write_text(tmp_path / "f" / "a.txt", "y")
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_text(tmp_path / "d", "y")
    assert (tmp_path / "f").read_text() == "x"


def test_real_disk_full_torch_save_keeps_the_previous_file(tmpfs):
    fs = tmpfs("256k")
    p = fs / "ckpt.pt"
    atomic_write(p, lambda f: torch.save({"x": torch.arange(10.0)}, f))
    with pytest.raises(OutputError, match="no space left on the device") as ei:  # 400 kB into 256 kB
        atomic_write(p, lambda f: torch.save({"x": torch.zeros(100_000)}, f))
    assert ei.value.errno == errno.ENOSPC and ei.value.path == p
    assert torch.equal(torch.load(p)["x"], torch.arange(10.0))
    assert sorted(x.name for x in fs.iterdir()) == ["ckpt.pt"]


def test_save_checkpoint_refuses_up_front_when_the_tensors_do_not_fit(tmpfs, monkeypatch):
    from dyngauss.model.checkpoint import save_checkpoint

    fs = tmpfs("1m")
    _fill(fs, leave=64 * 1024)
    opened = []
    monkeypatch.setattr("dyngauss.io.atomic.tempfile.mkstemp",
                        lambda *a, **k: opened.append(1) or pytest.fail("a temporary file was created"))
    with pytest.raises(OutputError, match=r"needs about 0.4 MB"):
        save_checkpoint({"gaussians": {"x": torch.zeros(100_000)}}, fs / "ckpt_000001.pt")
    assert opened == []


def test_ensure_writable_dir(tmp_path):
    from dyngauss.io import ensure_writable_dir

    assert ensure_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is a file"):
        ensure_writable_dir(tmp_path / "file")
    with pytest.raises(OutputError, match="file is a file, not a folder"):
        ensure_writable_dir(tmp_path / "file" / "run")
    assert (tmp_path / "file").read_text() == "x"


# ---------------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------------
def _no_training(monkeypatch):
    """Training must not start: the out-folder check comes first."""
    def refuse(*a, **k):
        raise AssertionError("training work started before the out folder was checked")

    monkeypatch.setattr("dyngauss.train.run.run_job", refuse)
    monkeypatch.setattr("dyngauss.train.trainer.Trainer.__init__", refuse)


def test_train_out_is_a_file_or_under_a_file(tiny_scene, tmp_path, capsys, monkeypatch):
    from dyngauss.cli.train import main

    _no_training(monkeypatch)
    f = tmp_path / "afile"
    f.write_text("keep me")
    assert main(_overrides(tiny_scene, f)) == 2
    _one_error_line(capsys.readouterr().err, str(f), "is a file, not a folder")
    assert main(_overrides(tiny_scene, f / "run")) == 2
    _one_error_line(capsys.readouterr().err, str(f / "run"), f"{f} is a file, not a folder")
    assert f.read_text() == "keep me"


def test_train_read_only_out_is_refused_before_training(tiny_scene, tmpfs, capsys, monkeypatch):
    from dyngauss.cli.train import main

    ro = tmpfs("1m", ro=True)
    _no_training(monkeypatch)
    assert main(_overrides(tiny_scene, ro / "run")) == 2
    _one_error_line(capsys.readouterr().err, str(ro / "run"), "read-only file system")


def test_train_permission_denied(tiny_scene, tmp_path, capsys, monkeypatch):
    """A folder the user may not write: chmod 0o555 where that binds (not root), else the OS error injected."""
    from dyngauss.cli.train import main

    _no_training(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:
        locked.chmod(0o555)
    else:  # root ignores permission bits: inject the EACCES the file system would give
        real = os.mkdir

        def mkdir(path, *a, **k):
            if Path(path).parent == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *a, **k)

        monkeypatch.setattr(os, "mkdir", mkdir)
    try:
        assert main(_overrides(tiny_scene, locked / "run")) == 2
    finally:
        locked.chmod(0o755)
    _one_error_line(capsys.readouterr().err, str(locked / "run"), "permission denied")


_DISK_FILLER = textwrap.dedent("""
    # after the first checkpoint is written, fill the disk: the next one meets a full disk (ENOSPC)
    import os, sys
    import dyngauss.model.checkpoint as ck
    real = ck.atomic_write
    def atomic_write(path, write, *a, **k):
        out = real(path, write, *a, **k)
        if out.name.startswith("ckpt_") and not os.path.exists(os.environ["FILLER"]):
            st = os.statvfs(out.parent)
            with open(os.environ["FILLER"], "wb") as f:
                f.write(b"\\0" * max(0, st.f_bfree * st.f_frsize - 8192))
        return out
    ck.atomic_write = atomic_write
    from dyngauss.cli.train import main
    sys.exit(main(sys.argv[1:]))
""")


def test_train_disk_full_one_error_line_previous_checkpoint_intact(tiny_scene, tmpfs):
    fs = tmpfs("16m")
    run = fs / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FILLER": str(fs / "filler.bin")}
    r = subprocess.run([sys.executable, "-c", _DISK_FILLER, *_overrides(tiny_scene, run)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r.stderr, "no space left on the device")
    assert str(run / "checkpoints" / "ckpt_000008.pt") in line
    assert [p.name for p in (run / "checkpoints").glob("ckpt_*.pt")] == ["ckpt_000004.pt"]
    _no_temp_left(run)
    (fs / "filler.bin").unlink()
    m = DynamicGaussians.load(run)  # the previous checkpoint is intact and loads
    assert m.info.step == 4 and m.info.path.name == "ckpt_000004.pt"


# ---------------------------------------------------------------------------------------------------------
# export, eval, render, play
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precheck", [True, False], ids=["free-space-check", "disk-full-mid-write"])
def test_export_disk_full_keeps_the_previous_export(run_dir, tmpfs, capsys, monkeypatch, precheck):
    from dyngauss.cli.export import main
    from dyngauss.export.sequence import load_manifest

    if not precheck:  # meet the full disk while writing the frames
        monkeypatch.setattr("dyngauss.export.sequence.require_free_space", lambda *a: None)
    fs = tmpfs("8m")
    out = fs / "seq"
    assert main(["--run", str(run_dir), "--out", str(out), "--frames", "2", "-q"]) == 0
    capsys.readouterr()
    _fill(fs)
    assert main(["--run", str(run_dir), "--out", str(out), "--frames", "5", "-q"]) == 2
    line = _one_error_line(capsys.readouterr().err, f"cannot write {out}:", "no space left on the device")
    assert ("needs about" in line) == precheck
    assert load_manifest(out)["count"] == 2  # the previous export, complete
    assert sorted(p.name for p in fs.iterdir()) == ["filler.bin", "seq"]  # no temporary folder left


def test_export_read_only_and_under_a_file(run_dir, tmpfs, tmp_path, capsys):
    from dyngauss.cli.export import main

    ro = tmpfs("1m", ro=True)
    assert main(["--run", str(run_dir), "--out", str(ro / "seq"), "--frames", "2", "-q"]) == 2
    _one_error_line(capsys.readouterr().err, f"cannot write {ro / 'seq'}:", "read-only file system")
    (tmp_path / "f").write_text("x")
    assert main(["--run", str(run_dir), "--out", str(tmp_path / "f" / "seq"), "--frames", "2", "-q"]) == 2
    _one_error_line(capsys.readouterr().err, str(tmp_path / "f" / "seq"), "is a file, not a folder")


def test_eval_read_only_run_folder(run_dir, ro_copy, capsys):
    from dyngauss.cli.eval import main

    ro = ro_copy(run_dir)
    before = sorted(p.relative_to(ro) for p in ro.rglob("*"))
    assert main(["--run", str(ro)]) == 2
    _one_error_line(capsys.readouterr().err, str(ro), "read-only file system")
    assert sorted(p.relative_to(ro) for p in ro.rglob("*")) == before


def test_eval_disk_full_keeps_metrics(run_dir, tmp_path, capsys, monkeypatch):
    """metrics.json of an earlier evaluation stays when the new one cannot be written (ENOSPC injected)."""
    import shutil

    from dyngauss.cli.eval import main

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "metrics.json").write_text('{"psnr": 1.0}')

    def disk_full(path, text, fsync=True):  # the real writer, meeting a full disk
        def write(f):
            f.write(text.encode()[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return atomic_write(path, write, fsync)

    monkeypatch.setattr("dyngauss.eval.evaluate.atomic_write_text", disk_full)
    assert main(["--run", str(run), "--no-renders"]) == 2
    _one_error_line(capsys.readouterr().err, str(run / "metrics.json"), "no space left")
    assert (run / "metrics.json").read_text() == '{"psnr": 1.0}'
    _no_temp_left(run)


def test_render_and_play_into_read_only_folders(run_dir, tmpfs, tmp_path, capsys):
    from dyngauss.cli.export import main as export_main
    from dyngauss.cli.play import main as play_main
    from dyngauss.cli.render import main as render_main

    ro = tmpfs("1m", ro=True)
    assert render_main(["--run", str(run_dir), "--frames", "2", "--size", "32", "32",
                        "--out", str(ro / "a.gif")]) == 2
    _one_error_line(capsys.readouterr().err, str(ro / "a.gif"), "ead-only file system")
    seq = tmp_path / "seq"
    assert export_main(["--run", str(run_dir), "--out", str(seq), "--frames", "2", "-q"]) == 0
    capsys.readouterr()
    rc = play_main([str(seq), "--frames", str(ro / "pngs"), "--size", "32", "32"])
    err = capsys.readouterr().err
    if rc == 3:
        pytest.skip(f"no offscreen renderer here: {err.strip()}")
    assert rc == 2
    _one_error_line(err, str(ro / "pngs"), "ead-only file system")


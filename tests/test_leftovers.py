"""Leftovers of killed writers and broken checkpoints: the next start of the same tool cleans up what a killed
one left (only stale entries, never a live writer's), and loading skips a newest checkpoint that does not read
for the previous intact one, saying so.

The kills are real: a subprocess SIGKILLs itself in the middle of a checkpoint write / an export.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from dyngauss.config import load_config
from dyngauss.io.stale import remove_stale_temps, writer_tag
from dyngauss.model import CheckpointError, DynamicGaussians
from dyngauss.model.checkpoint import find_checkpoint, read_checkpoint, remove_stale_run_temps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from dyngauss.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(resolution=32, n_train=8, n_val=2, n_test=3, n_video=4, n_tracks=64, supersample=2)
    return generate(tmp_path_factory.mktemp("tiny") / "scene", cfg)


def _overrides(scene, out, *extra) -> list[str]:
    return [f"data.path={scene}", f"out={out}", "train.iters=12", "train.warmup_iters=4", "model.num_points=300",
            "densify.refine_start_iter=2", "densify.refine_every=3", "densify.refine_stop_iter=100",
            "train.progress=false", "train.save_every=4", "deform.kind=mlp", "deform.width=32", "deform.depth=2",
            "model.sh_degree=1", "model.sh_degree_interval=5", "eval.lpips=false", "export.frames=3", *extra]


@pytest.fixture(scope="module")
def run_dir(tiny_scene, tmp_path_factory):
    """A trained run folder with checkpoints at steps 4, 8 and 12 (no eval/export)."""
    from dyngauss.train.trainer import Trainer

    run = tmp_path_factory.mktemp("runs") / "base"
    Trainer(load_config(None, _overrides(tiny_scene, run))).train()
    assert [p.name for p in sorted((run / "checkpoints").glob("ckpt_*.pt"))] == \
        ["ckpt_000004.pt", "ckpt_000008.pt", "ckpt_000012.pt"]
    return run


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*") if ".tmp" in p.name)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------------------------------------------
# kill -9 during a checkpoint write -> the next train start removes the temporary file
# ---------------------------------------------------------------------------------------------------------
_KILL_IN_CHECKPOINT = textwrap.dedent("""
    # SIGKILL this process in the middle of writing ckpt_000008.pt (some bytes written, not renamed)
    import os, signal, sys
    import dyngauss.model.checkpoint as ck
    real = ck.atomic_write
    def atomic_write(path, write, *a, **k):
        if path.name != "ckpt_000008.pt":
            return real(path, write, *a, **k)
        def killed(f):
            f.write(b"PK\\x03\\x04 partial checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, killed, *a, **k)
    ck.atomic_write = atomic_write
    from dyngauss.cli.train import main
    sys.exit(main(sys.argv[1:]))
""")


def test_kill_during_checkpoint_write_then_next_train_start_removes_the_temp_file(tiny_scene, tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", _KILL_IN_CHECKPOINT, *_overrides(tiny_scene, run)], cwd=ROOT,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = _temps(run / "checkpoints")
    assert len(left) == 1 and left[0].name.startswith(".ckpt_000008.pt.") and left[0].name.endswith(".tmp")
    assert [p.name for p in (run / "checkpoints").glob("ckpt_*.pt")] == ["ckpt_000004.pt"]

    r = subprocess.run([sys.executable, "-m", "dyngauss", "train", "--resume", f"out={run}"], cwd=ROOT,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"removed stale temporary file {left[0]}" in r.stderr
    assert _temps(run) == []
    assert DynamicGaussians.load(run).info.step == 12


# ---------------------------------------------------------------------------------------------------------
# kill -9 during an export -> the next export removes the temporary folder
# ---------------------------------------------------------------------------------------------------------
_KILL_IN_EXPORT = textwrap.dedent("""
    # SIGKILL this process after the second frame of the export is written into its temporary folder
    import os, signal, sys
    import dyngauss.export.sequence as seq
    real = seq.write_gaussians_ply
    written = []
    def write_gaussians_ply(path, *a, **k):
        out = real(path, *a, **k)
        written.append(path)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    seq.write_gaussians_ply = write_gaussians_ply
    from dyngauss.cli.export import main
    sys.exit(main(sys.argv[1:]))
""")


def test_kill_during_export_then_next_export_removes_the_temp_folder(run_dir, tmp_path):
    out = tmp_path / "ply"
    args = ["--run", str(run_dir), "--out", str(out), "--frames", "4", "-q"]
    r = subprocess.run([sys.executable, "-c", _KILL_IN_EXPORT, *args], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".ply.tmp-")]
    assert len(left) == 1 and len(list(left[0].glob("frame_*.ply"))) == 2 and not out.exists()

    r = subprocess.run([sys.executable, "-m", "dyngauss", "export", *args], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"removed stale temporary folder {left[0]}" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ply"]
    from dyngauss.export.sequence import load_manifest

    assert load_manifest(out)["count"] == 4


def test_export_puts_back_a_previous_export_moved_aside_by_a_killed_one(run_dir, tmp_path):
    """Killed between its two renames, an export leaves the previous one as .NAME.old-*: it comes back."""
    from dyngauss.export.sequence import export_sequence, load_manifest

    model = DynamicGaussians.load(run_dir)
    out = tmp_path / "ply"
    export_sequence(model, [0.0, 1.0], out)
    aside = tmp_path / f".ply.old-{writer_tag(_dead_pid())}-abcd1234"
    os.rename(out, aside)
    notes = []
    # the generic cleanup keeps it (it may be the only copy) ...
    assert remove_stale_temps(tmp_path)[0].removed is False and aside.is_dir()
    # ... the export restores it, then replaces it with the new export
    from dyngauss.export.sequence import clean_export_leftovers

    clean_export_leftovers(out, log=notes.append)
    assert load_manifest(out)["count"] == 2 and not aside.exists()
    assert any("put back the previous export" in n for n in notes)
    export_sequence(model, [0.0, 0.5, 1.0], out, log=notes.append)
    assert load_manifest(out)["count"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["ply"]


# ---------------------------------------------------------------------------------------------------------
# only stale entries go
# ---------------------------------------------------------------------------------------------------------
def test_only_stale_temporaries_are_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, live = _dead_pid(), sleeper.pid
        ck = tmp_path / "checkpoints"
        ck.mkdir()
        entries = {
            "dead": ck / f".ckpt_000008.pt.{writer_tag(dead)}.k2j4h5g6.tmp",          # killed writer: goes
            "live": ck / f".ckpt_000012.pt.{writer_tag(live)}.a8d7f6s5.tmp",          # running writer: stays
            "mine": ck / f".ckpt_000016.pt.{writer_tag()}.q1w2e3r4.tmp",               # this process: stays
            "other_host": ck / f".ckpt_000020.pt.00000000-{dead}.z9x8c7v6.tmp",       # cannot check: stays
            "untagged_new": tmp_path / ".config.yaml.abcdefgh.tmp",                     # may be live: stays
            "untagged_old": tmp_path / ".metrics.json.hgfedcba.tmp",                    # 2 h untouched: goes
            "dead_dir": tmp_path / f".ply.tmp-{writer_tag(dead)}-x1y2z3w4",             # killed export: goes
            "live_dir": tmp_path / f".ply_points.tmp-{writer_tag(live)}-p0o9i8u7",      # running export: stays
            "ordinary": tmp_path / "notes.tmp",                                         # not ours: stays
            "hidden": tmp_path / ".lock",                                               # not a temporary: stays
        }
        for name, p in entries.items():
            if name.endswith("_dir"):
                p.mkdir()
                (p / "frame_0000.ply").write_bytes(b"x" * 100)
            else:
                p.write_bytes(b"")
        old = time.time() - 2 * 3600
        os.utime(entries["untagged_old"], (old, old))
        notes: list[str] = []
        found = remove_stale_run_temps(tmp_path, log=notes.append)
        gone = {name for name, p in entries.items() if not p.exists()}
        assert gone == {"dead", "untagged_old", "dead_dir"}
        assert sorted(f.path for f in found) == sorted(entries[n] for n in gone)
        assert len(notes) == 3 and all(n.startswith("note: removed stale temporary") for n in notes)
        assert any(f"pid {dead}, which is no longer running" in n for n in notes)
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------------------------------------------------
# loading skips a broken newest checkpoint
# ---------------------------------------------------------------------------------------------------------
def _copy_run(run_dir: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(run_dir, dst)
    return dst


def test_truncated_newest_checkpoint_is_skipped_for_the_previous_one(run_dir, tmp_path, capsys):
    run = _copy_run(run_dir, tmp_path / "run")
    newest = run / "checkpoints" / "ckpt_000012.pt"
    with zipfile.ZipFile(newest) as z:  # what the quick check relies on: torch.save writes a zip, directory last
        assert z.namelist()
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # cut short (a copy that stopped, a failing disk)
    m = DynamicGaussians.load(run)
    assert m.info.step == 8 and m.info.path.name == "ckpt_000008.pt"
    err = capsys.readouterr().err
    assert f"warning: skipped checkpoint {newest}: truncated or corrupt" in err and "using ckpt_000008.pt" in err
    assert find_checkpoint(run, warn=None).name == "ckpt_000008.pt"
    assert [str(p) for p, _ in read_checkpoint(run, warn=None)["_skipped"]] == [str(newest)]
    # the trainer resumes from it too
    from dyngauss.train.trainer import Trainer

    t = Trainer(load_config(run / "config.yaml", [f"out={run}"]), resume=True)
    assert t.step == 8
    assert "skipped checkpoint" in capsys.readouterr().err
    # a file named explicitly is not replaced by another one
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        DynamicGaussians.load(newest)


def test_empty_and_corrupt_checkpoints_are_skipped(run_dir, tmp_path, capsys):
    run = _copy_run(run_dir, tmp_path / "run")
    ck = run / "checkpoints"
    (ck / "ckpt_000016.pt").write_bytes(b"")                         # killed before the first byte
    with zipfile.ZipFile(ck / "ckpt_000020.pt", "w") as z:            # a complete zip that torch cannot read
        z.writestr("junk.txt", "not a checkpoint")
    m = DynamicGaussians.load(run)
    assert m.info.step == 12
    err = capsys.readouterr().err
    assert "skipped checkpoint" in err and "ckpt_000020.pt" in err and "ckpt_000016.pt: empty file" in err


def test_no_readable_checkpoint_lists_them_all(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    for p in (run / "checkpoints").glob("ckpt_*.pt"):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError) as ei:
        DynamicGaussians.load(run)
    msg = str(ei.value)
    assert "no readable checkpoint" in msg and "3 tried" in msg
    assert all(f"ckpt_{s:06d}.pt: truncated or corrupt" in msg for s in (4, 8, 12))
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        find_checkpoint(run, warn=None)

"""A sequence folder that SuperSplat's animation timeline opens as one sequence, and the rule it follows.

SuperSplat (the PlayCanvas splat editor; rule read in playcanvas/supersplat v2.32.2, ``isPlySequence`` in
src/file-handler.ts) plays the files imported together (dropped, as files or as a folder, or picked in the
import dialog) as an animation when there are at least two and *every* name is one common prefix followed by a
frame number and ``.ply`` (or ``.compressed.ply``), compared case-insensitively; the frames are ordered by that
number. dyngauss's frame names (``frame_0000.ply`` ...) follow it, so selecting the ``frame_*.ply`` files of an
export and dropping them works. Dropping the whole export folder does not: its ``sequence.json`` (and
``nodes_*.ply``, a second prefix) are imported too, so SuperSplat loads every file as a separate scene.
:func:`supersplat_folder` writes a folder holding only the frames (``dyngauss export --supersplat``), which can
be dropped as it is. SuperSplat reads PLYs with PlayCanvas's splat-transform library (tests/test_interop.py runs
its command-line tool on our frames); point frames (``format="points"``) carry no Gaussians and are refused.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from .sequence import SequenceError, load_manifest

FRAME_NAME = re.compile(r"^(.*?)(\d+)(?:\.compressed)?\.ply$")  # prefix, frame number (SuperSplat's rule)
SUFFIX = "_supersplat"


def is_supersplat_sequence(names: Iterable[str]) -> bool:
    """Whether SuperSplat would play files with these names (base names or paths relative to a dropped
    folder) as one animation: at least two, each a common prefix + frame number + ``.ply``."""
    prefixes = set()
    count = 0
    for name in names:
        m = FRAME_NAME.match(str(name).lower())
        if m is None:
            return False
        prefixes.add(m.group(1))
        count += 1
    return count >= 2 and len(prefixes) == 1


def supersplat_folder(seq_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write `out_dir` (default: ``<seq_dir>_supersplat`` next to the sequence) holding only the frame PLYs of
    the gaussians sequence `seq_dir`, as hard links (copies where the file system has none), so that dropping
    the folder on SuperSplat opens the timeline. An earlier such folder is replaced; after a new export, run it
    again (hard links keep the old frames). Returns `out_dir`.

    Raises SequenceError: not a complete sequence, a points sequence, fewer than 2 frames, frame names outside
    the rule, or `out_dir` holding files other than frame PLYs."""
    seq_dir = Path(seq_dir)
    m = load_manifest(seq_dir)
    if m["format"] != "gaussians":
        raise SequenceError(f"{seq_dir}: a {m['format']} sequence has no Gaussians for SuperSplat; export with "
                            f"--format gaussians")
    frames = list(m["frames"])
    if not is_supersplat_sequence(frames):
        raise SequenceError(f"{seq_dir}: SuperSplat needs at least 2 frames named <prefix><number>.ply, got "
                            f"{frames[:3]}")
    out = Path(out_dir) if out_dir is not None else seq_dir.parent / (seq_dir.name + SUFFIX)
    if out.resolve() == seq_dir.resolve():
        raise SequenceError(f"{out}: the SuperSplat folder must differ from the sequence folder")
    if out.exists() and (not out.is_dir() or not is_supersplat_sequence(p.name for p in out.iterdir())):
        if not (out.is_dir() and not any(out.iterdir())):
            raise SequenceError(f"{out} exists and holds other files than frame PLYs; not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name in frames:
            try:
                os.link(seq_dir / name, tmp / name)
            except OSError:  # no hard links here (another file system, FAT, ...): copy
                shutil.copyfile(seq_dir / name, tmp / name)
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

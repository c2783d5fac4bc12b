"""Which offscreen back-end works here, checked in a child process (a broken GL/Vulkan stack may abort the
process that tries it, e.g. Filament's C++ panic without a Vulkan driver)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

IN_PROBE_ENV = "DYNGAUSS_OFFSCREEN_PROBE"  # set in the child: FilamentBackend then skips its own probe
_ORDER = ("legacy", "filament")  # auto: the order open_offscreen tries

_CHILD = """\
import sys
sys.path.insert(0, {root!r})
from dyngauss.viewer.backends import open_offscreen
from dyngauss.viewer.runtime import OffscreenUnavailable
try:
    b = open_offscreen(32, 32, {backend!r})
except OffscreenUnavailable as e:
    print('FAILED', str(e).replace(chr(10), ' | ')); sys.exit(1)
img = b.render(); b.close()
print('BACKEND', b.name, img.shape)
"""


def probe_offscreen(backend: str = "auto", timeout: float = 60.0) -> tuple[str | None, str]:
    """Start `backend` ("legacy", "filament", or "auto": each in turn) in a child process and render a 32x32
    image. Returns (the working back-end's name, its report) or (None, why each failed). `timeout` seconds per
    child."""
    if backend == "auto":
        errors = []
        for name in _ORDER:
            ok, msg = probe_offscreen(name, timeout)
            if ok is not None:
                return ok, msg
            errors.append(f"{name}: {msg}")
        return None, "; ".join(errors)
    # the folder holding this dyngauss package, so the child imports the same code (installed or a clone)
    code = _CHILD.format(root=str(Path(__file__).resolve().parents[2]), backend=backend)
    env = dict(os.environ, **{IN_PROBE_ENV: "1"})
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"offscreen probe ({backend}) timed out after {timeout:g} s"
    for line in p.stdout.splitlines():
        if line.startswith("BACKEND "):
            return line.split()[1], line
        if line.startswith("FAILED "):
            return None, line[7:]
    tail = [ln for ln in p.stderr.strip().splitlines() if ln.strip()][-3:]
    return None, f"probe process exited with code {p.returncode}: " + " | ".join(tail)

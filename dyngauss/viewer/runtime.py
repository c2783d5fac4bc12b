"""Importing Open3D and preparing the GL runtime it needs (display detection, XDG_RUNTIME_DIR)."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


class OffscreenUnavailable(RuntimeError):
    """No rendering path works on this machine (the message says why and what to install)."""


def import_open3d(verbosity: str = "Warning"):
    """The open3d module with its log level set (Debug/Info/Warning/Error). Raises OffscreenUnavailable when it
    cannot be imported (on Linux it needs system libraries such as libusb-1.0-0, libgl1, libegl1)."""
    try:
        import open3d as o3d
    except ImportError as e:
        raise OffscreenUnavailable(
            f"cannot import open3d ({e}). Open3D needs e.g. libusb-1.0-0, libgl1, libegl1 (apt) on Linux") from e
    try:
        o3d.utility.set_verbosity_level(getattr(o3d.utility.VerbosityLevel, verbosity))
    except Exception:  # noqa: BLE001 - an old Open3D without this level: keep its default
        pass
    return o3d


def ensure_runtime_dir() -> None:
    """Mesa/GLFW complain when XDG_RUNTIME_DIR is unset; give them a private one (mode 0700 in the temp dir)."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    d = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(d)
    except OSError:
        pass


def has_display() -> bool:
    """Whether a window can be opened (Windows/macOS, or $DISPLAY / $WAYLAND_DISPLAY set)."""
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

"""File formats and safe writes: atomic writes (`atomic`), leftovers of killed writers (`stale`), PLY (`ply`),
videos (`video`)."""
from .atomic import (OutputError, atomic_write, atomic_write_bytes, atomic_write_text, describe_os_error,
                     ensure_writable_dir, output_error)
from .stale import remove_stale_temps

__all__ = ["OutputError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "describe_os_error",
           "ensure_writable_dir", "output_error", "remove_stale_temps"]

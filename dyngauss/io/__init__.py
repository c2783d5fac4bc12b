"""File formats and safe writes: atomic writes (`atomic`), PLY (`ply`), videos (`video`)."""
from .atomic import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

"""Console commands (`dyngauss train|eval|export|...`); each command module has `main(argv) -> int`."""
from .progress import progress_printer

__all__ = ["progress_printer"]

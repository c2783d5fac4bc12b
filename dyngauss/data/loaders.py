"""Pick the loader of a dataset folder: D-NeRF/Blender (``transforms_*.json``) or Nerfies/HyperNeRF
(``dataset.json`` + ``camera/``). Both return a :class:`~dyngauss.data.dnerf.DNeRFSplit`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import dnerf, nerfies
from .dnerf import DatasetError, DNeRFSplit, check_dataset_folder

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["dataset_format", "available_splits", "load_split"]


def resolve_dataset(data: "DataConfig") -> Path:
    """The dataset folder the `data` config section names: ``data.path``, or for ``data.path == ""`` the built-in
    synthetic scene (generated once into the cache, :func:`dyngauss.data.synthetic.ensure_scene`)."""
    if data.path:
        return Path(data.path).expanduser()
    from .synthetic import SyntheticConfig, ensure_scene

    scfg = SyntheticConfig(resolution=data.synthetic_resolution, seed=data.synthetic_seed,
                           n_train=data.synthetic_train_frames)
    return Path(ensure_scene(scfg, cache_dir=data.cache_dir or None))


def _is_dnerf_folder(path: Path) -> bool:
    return (path / "transforms.json").is_file() or any(path.glob("transforms_*.json"))


def dataset_format(path: str | os.PathLike) -> str:
    """``"dnerf"`` or ``"nerfies"`` (D-NeRF wins when a folder has both); DatasetError otherwise."""
    folder = check_dataset_folder(path)
    if _is_dnerf_folder(folder):
        return "dnerf"
    if nerfies.is_nerfies_folder(folder):
        return "nerfies"
    raise DatasetError(f"unrecognised dataset folder {folder}: expected {folder / 'transforms_train.json'} "
                       f"(D-NeRF/Blender format) or {folder / 'dataset.json'} and {folder / 'camera'}/ "
                       "(Nerfies/HyperNeRF format)")


def available_splits(path: str | os.PathLike) -> list[str]:
    """Split names the folder's loader accepts (see :func:`dnerf.available_splits`,
    :func:`nerfies.nerfies_splits`)."""
    if dataset_format(path) == "nerfies":
        return nerfies.nerfies_splits(path)
    return dnerf.available_splits(path)


def load_split(path: str | os.PathLike, split: str = "train", downscale: float = 1,
               background: Sequence[float] = (1.0, 1.0, 1.0),
               frames: Sequence[int] | slice | None = None) -> DNeRFSplit:
    """Load one split of a D-NeRF or Nerfies folder (same arguments as :func:`dnerf.load_dnerf`)."""
    if dataset_format(path) == "nerfies":
        return nerfies.load_nerfies(path, split, downscale=downscale, background=background, frames=frames)
    return dnerf.load_dnerf(path, split, downscale=downscale, background=background, frames=frames)

"""Pick the loader of a dataset folder: D-NeRF/Blender (``transforms_*.json``), Nerfies/HyperNeRF
(``dataset.json`` + ``camera/``), Panoptic / Dynamic3DGaussians (``train_meta.json`` / ``test_meta.json``) or
Neural 3D Video / LLFF-style videos (``poses_bounds.npy`` + ``cam00.mp4`` ...). Every loader returns a
:class:`~dyngauss.data.dnerf.DNeRFSplit`; the two multi-camera formats return its subclass
:class:`~dyngauss.data.multiview.MultiViewSplit` (lazily decoded frames grouped by time).

:func:`split_options` turns the ``data`` config section into the keyword arguments of :func:`load_split`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import dnerf, n3v, nerfies, panoptic
from .dnerf import DatasetError, DNeRFSplit, check_dataset_folder
from .multiview import DEFAULT_CACHE_GB

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["dataset_format", "available_splits", "load_split", "split_options", "resolve_dataset"]


def resolve_dataset(data: "DataConfig") -> Path:
    """The dataset folder the `data` config section names: ``data.path``, or for ``data.path == ""`` the built-in
    synthetic scene (generated once into the cache, :func:`dyngauss.data.synthetic.ensure_scene`)."""
    if data.path:
        return Path(data.path).expanduser()
    from .synthetic import SyntheticConfig, ensure_scene

    scfg = SyntheticConfig(resolution=data.synthetic_resolution, seed=data.synthetic_seed,
                           n_train=data.synthetic_train_frames, n_cameras=data.synthetic_cameras,
                           motion=data.synthetic_motion, train_camera=data.synthetic_train_camera,
                           train_depth=data.synthetic_depth)
    return Path(ensure_scene(scfg, cache_dir=data.cache_dir or None))


def _is_dnerf_folder(path: Path) -> bool:
    return (path / "transforms.json").is_file() or any(path.glob("transforms_*.json"))


def dataset_format(path: str | os.PathLike) -> str:
    """``"dnerf"``, ``"nerfies"``, ``"panoptic"`` or ``"n3v"``, tried in that order (the first whose files the
    folder has wins); DatasetError otherwise."""
    folder = check_dataset_folder(path)
    if _is_dnerf_folder(folder):
        return "dnerf"
    if nerfies.is_nerfies_folder(folder):
        return "nerfies"
    if panoptic.is_panoptic_folder(folder):
        return "panoptic"
    if n3v.is_n3v_folder(folder):
        return "n3v"
    raise DatasetError(f"unrecognised dataset folder {folder}: expected {folder / 'transforms_train.json'} "
                       f"(D-NeRF/Blender format), {folder / 'dataset.json'} and {folder / 'camera'}/ "
                       f"(Nerfies/HyperNeRF format), {folder / 'train_meta.json'} (Panoptic / "
                       f"Dynamic3DGaussians format) or {folder / n3v.POSES_FILE} and cam00.mp4, ... (Neural 3D "
                       "Video format)")


def split_options(data: "DataConfig") -> dict:
    """Keyword arguments of :func:`load_split` from the ``data`` config section (downscale, background,
    test_every, time_stride, max_frames, test_camera, seg_as_alpha, cache_gb)."""
    return {"downscale": data.downscale, "background": tuple(data.background), "test_every": data.test_every,
            "time_stride": data.time_stride, "max_frames": data.max_frames, "test_camera": data.test_camera,
            "seg_as_alpha": data.seg_as_alpha, "cache_gb": data.frame_cache_gb}


def available_splits(path: str | os.PathLike, test_every: int = dnerf.AUTO_TEST_EVERY,
                     test_camera: str = n3v.DEFAULT_TEST_CAMERA) -> list[str]:
    """Split names the folder's loader accepts (see :func:`dnerf.available_splits`,
    :func:`nerfies.nerfies_splits`, :func:`panoptic.panoptic_splits`, :func:`n3v.n3v_splits`); `test_every`: the
    derived splits of a plain ``transforms.json``; `test_camera`: the held-out cameras of a Neural 3D Video
    folder ("" = none: no test split)."""
    fmt = dataset_format(path)
    if fmt == "nerfies":
        return nerfies.nerfies_splits(path)
    if fmt == "panoptic":
        return panoptic.panoptic_splits(path)
    if fmt == "n3v":
        return n3v.n3v_splits(path, test_camera)
    return dnerf.available_splits(path, test_every)


def load_split(path: str | os.PathLike, split: str = "train", downscale: float = 1,
               background: Sequence[float] = (1.0, 1.0, 1.0),
               frames: Sequence[int] | slice | None = None, test_every: int = dnerf.AUTO_TEST_EVERY,
               time_stride: int = 1, max_frames: int = 0, test_camera: str = n3v.DEFAULT_TEST_CAMERA,
               seg_as_alpha: bool = True, cache_gb: float = DEFAULT_CACHE_GB) -> DNeRFSplit:
    """Load one split of a dataset folder (the arguments of :func:`dnerf.load_dnerf`; `test_every` applies to the
    derived splits of a folder with only a ``transforms.json``, see :func:`dnerf.auto_split_rows`). The
    multi-camera formats (:func:`panoptic.load_panoptic`, :func:`n3v.load_n3v`) also take `time_stride` /
    `max_frames` (time steps kept), `cache_gb` (decoded-frame cache), `seg_as_alpha` (Panoptic) and
    `test_camera` (Neural 3D Video); the other formats ignore those."""
    fmt = dataset_format(path)
    if fmt == "panoptic":
        return panoptic.load_panoptic(path, split, downscale=downscale, background=background, frames=frames,
                                      time_stride=time_stride, max_frames=max_frames, seg_as_alpha=seg_as_alpha,
                                      cache_gb=cache_gb)
    if fmt == "n3v":
        return n3v.load_n3v(path, split, downscale=downscale, background=background, frames=frames,
                            time_stride=time_stride, max_frames=max_frames, test_camera=test_camera,
                            cache_gb=cache_gb)
    if fmt == "nerfies":
        return nerfies.load_nerfies(path, split, downscale=downscale, background=background, frames=frames)
    return dnerf.load_dnerf(path, split, downscale=downscale, background=background, frames=frames,
                            test_every=test_every)

"""Rasterized Gaussians for the player (`dyngauss play --splats`): each frame's 3DGS PLY rendered by
:func:`dyngauss.render.rasterize` (the C++ CPU kernel on a CPU, gsplat on a CUDA GPU) from the player's camera
into an RGB image, which the window shows as an Open3D Image geometry and the headless renderer writes as it is.

Cameras. Open3D's legacy ViewControl reports a pinhole (``convert_to_pinhole_camera_parameters``) whose
extrinsic is the OpenCV world-to-camera matrix dyngauss uses, but whose principal point follows Open3D's pixel
convention (pixel centres at integer coordinates: a centred camera has cx = W/2 - 0.5), while
:class:`dyngauss.data.camera.Camera` puts pixel centres at col + 0.5 (cx = W/2, as
:func:`dyngauss.viewer.framing.frame_bbox` does). :func:`camera_from_o3d` adds that half pixel.

This module imports torch (the rest of :mod:`dyngauss.viewer` does not); it is imported only for --splats.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data.camera import Camera
from ..io.ply import PlyError, read_gaussians_ply
from .framing import Framing
from .overlay import draw_line_set
from .sequence import LoadedSequence

O3D_PIXEL_OFFSET = 0.5  # dyngauss principal point = Open3D principal point + this (pixels)
BACKENDS = ("auto", "cpu", "gsplat", "torch")
DEFAULT_CACHE_BYTES = 2 << 30  # frames kept in memory (decoded tensors), least recently used dropped first


class SplatError(ValueError):
    """--splats cannot render this sequence (point frames, unreadable or inconsistent Gaussian PLYs) or with this
    backend (no CUDA for gsplat); the message names the file or the cause."""


def camera_from_o3d(intrinsic: np.ndarray, extrinsic: np.ndarray, width: int, height: int) -> Camera:
    """A dyngauss Camera from an Open3D pinhole: `intrinsic` K [3,3] in Open3D's pixel convention (pixels),
    `extrinsic` [4,4] world-to-camera (OpenCV axes, world units), image `width` x `height` pixels."""
    K = np.array(intrinsic, np.float64, copy=True)
    K[0, 2] += O3D_PIXEL_OFFSET
    K[1, 2] += O3D_PIXEL_OFFSET
    return Camera(K=torch.from_numpy(K), viewmat=torch.from_numpy(np.array(extrinsic, np.float64)),
                  width=int(width), height=int(height))


def camera_from_view(vis) -> Camera:
    """The camera of a legacy Open3D Visualizer's view control now (see :func:`camera_from_o3d`)."""
    p = vis.get_view_control().convert_to_pinhole_camera_parameters()
    return camera_from_o3d(p.intrinsic.intrinsic_matrix, p.extrinsic, p.intrinsic.width, p.intrinsic.height)


def camera_from_framing(framing: Framing) -> Camera:
    """The player's fixed camera (:func:`dyngauss.viewer.framing.frame_bbox`) as a dyngauss Camera (same K,
    same extrinsic: both use dyngauss's pixel convention)."""
    return Camera(K=torch.from_numpy(np.asarray(framing.K, np.float64)),
                  viewmat=torch.from_numpy(np.asarray(framing.extrinsic, np.float64)),
                  width=framing.width, height=framing.height)


def pick_device(backend: str) -> torch.device:
    """Where the Gaussians live for `backend`: "gsplat" needs CUDA; "auto" takes CUDA when torch sees a GPU and
    gsplat imports, else the CPU; "cpu" / "torch" the CPU. Raises SplatError (unknown name, no CUDA)."""
    if backend not in BACKENDS:
        raise SplatError(f"unknown splat backend {backend!r}; use one of {', '.join(BACKENDS)}")
    from ..render import gsplat_backend

    if backend == "gsplat":
        if not gsplat_backend.is_available():
            raise SplatError("--splat-backend gsplat needs a CUDA GPU and the gsplat package "
                             "(use --splat-backend cpu for the C++ CPU kernel)")
        return torch.device("cuda")
    if backend == "auto" and gsplat_backend.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class SplatFrame:
    """One frame's Gaussians as render-ready tensors on one device: means [N,3] world units, quats [N,4] (wxyz,
    as stored), scales [N,3] linear standard deviations, opacities [N] in [0,1], sh [N,K,3], sh_degree."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    sh_degree: int

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.means, self.quats, self.scales, self.opacities,
                                                              self.sh))


def load_splat_frame(path: str | os.PathLike, device: torch.device | str = "cpu") -> SplatFrame:
    """Read a 3DGS PLY (:func:`dyngauss.io.ply.read_gaussians_ply`) and activate it: exp(log scales),
    sigmoid(opacity logits). Raises SplatError naming the file when it is not a readable Gaussian PLY."""
    try:
        d = read_gaussians_ply(path)
    except PlyError as e:
        raise SplatError(str(e)) from None
    t = {k: torch.from_numpy(np.ascontiguousarray(d[k])).to(device)
         for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
    return SplatFrame(t["means"], t["quats"], torch.exp(t["log_scales"]), torch.sigmoid(t["opacity_logits"]),
                      t["sh"], int(d["sh_degree"]))


class SplatRenderer:
    """Renders frame i of a Gaussian sequence from a Camera into uint8 [H,W,3].

    `backend`: "auto" (gsplat on a CUDA GPU, else the C++ CPU kernel, else the torch reference with a warning),
    "cpu", "gsplat" or "torch"; `background` RGB in [0,1] (default the sequence's); frames are read on first use
    and kept while they fit in `cache_bytes`; :attr:`scale` multiplies every Gaussian's size (the window's [ ]
    keys). Raises SplatError for a sequence of points, and the kernel's KernelUnavailableError for backend "cpu"
    without a working C++ compiler."""

    def __init__(self, seq: LoadedSequence, backend: str = "auto", background: Sequence[float] | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        if seq.fmt != "gaussians":
            raise SplatError(f"{seq.path}: --splats needs Gaussian frames (export --format gaussians); this "
                             f"sequence holds {seq.fmt}")
        if not seq.files:
            raise SplatError(f"{seq.path}: the loaded sequence lists no frame files")
        self.seq = seq
        self.device = pick_device(backend)
        from ..render.api import resolve_backend

        self.backend = resolve_backend(backend, self.device)
        bg = seq.background if background is None else background
        self.background = torch.tensor([float(c) for c in bg][:3], dtype=torch.float32, device=self.device)
        self.cache_bytes = int(cache_bytes)
        self.scale = 1.0
        self._cache: OrderedDict[int, SplatFrame] = OrderedDict()
        self._rows: int | None = None

    @property
    def name(self) -> str:
        """The rasterizer in words, e.g. "cpu" (C++ kernel) or "gsplat (cuda)"."""
        return f"{self.backend} ({self.device.type})" if self.device.type != "cpu" else self.backend

    def frame(self, i: int) -> SplatFrame:
        """Frame i's Gaussians (cached). SplatError when its row count differs from the other frames'."""
        f = self._cache.get(i)
        if f is not None:
            self._cache.move_to_end(i)
            return f
        f = load_splat_frame(self.seq.files[i], self.device)
        n = f.means.shape[0]
        if self._rows is not None and n != self._rows:
            raise SplatError(f"{self.seq.files[i]}: {n} Gaussians but an earlier frame has {self._rows}")
        self._rows = n
        self._cache[i] = f
        total = sum(c.nbytes for c in self._cache.values())
        while len(self._cache) > 1 and total > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            total -= old.nbytes
        return f

    def render(self, i: int, camera: Camera, nodes: bool = False) -> np.ndarray:
        """Frame i seen by `camera` -> uint8 [H,W,3] (colours clamped to [0,1]); `nodes` draws the frame's node
        graph on top when the sequence has one."""
        from ..render import rasterize

        f = self.frame(i)
        scales = f.scales if self.scale == 1.0 else f.scales * float(self.scale)
        with torch.no_grad():
            out = rasterize(f.means, f.quats, scales, f.opacities, f.sh, camera.to(self.device),
                            sh_degree=f.sh_degree, background=self.background, backend=self.backend)
        img = (out.rgb[0].clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
        if nodes and self.seq.nodes is not None:
            nd = self.seq.nodes[i]
            draw_line_set(img, camera.K.numpy(), camera.viewmat.numpy(), nd["vertices"], nd["edges"], nd["edge_rgb"])
        return img


def splat_scale_step(scale: float, factor: float) -> float:
    """The next size multiplier for the [ ] keys: `scale` * `factor`, kept in [1/8, 8]."""
    return float(min(8.0, max(0.125, scale * factor)))

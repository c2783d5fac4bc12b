"""Render timing with and without the deformation field (FPS and the deformed/static ratio of the benchmarks).

Three ways to draw a frame at time t: ``static`` rasterizes the canonical Gaussians (the floor: no field),
``deformed`` evaluates the field for every frame (what training and evaluation pay), ``cached`` reuses the
posed Gaussians of a time already seen (what playback of a fixed t costs, e.g. a paused player), and, on a
CUDA device, ``graphed`` evaluates the field for every frame replayed as one CUDA graph
(:class:`dyngauss.model.graphed.GraphedPoser`).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ..data.camera import Camera
from ..model.dynamic import DynamicGaussians
from ..render.api import rasterize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_renders(model: DynamicGaussians, cameras: Sequence[Camera], *, backend: str = "auto", reps: int = 3,
                 warmup: int = 2, **raster_kw) -> dict:
    """Median seconds per frame over `reps` passes through `cameras` (each at its own time) for the static,
    deformed and cached modes, and FPS / the deformed-to-static ratio. The first `warmup` frames are not
    timed (kernel loading, allocator warm-up)."""
    gaussians = model.gaussians
    device = model.device
    raster_kw = {**model.render_options(), **raster_kw}
    cams = [c.to(device) for c in cameras]
    sh = gaussians.sh
    deg = gaussians.max_sh_degree
    opac = gaussians.opacities

    def draw(means, quats, log_scales, cam):
        return rasterize(means, quats, torch.exp(log_scales), opac, sh, cam, sh_degree=deg, backend=backend,
                         **raster_kw)

    cache: dict[float, tuple] = {}
    modes = ["static", "deformed", "cached"]
    poser, graph_error = None, None
    if device.type == "cuda" and model.kind != "none":
        from ..model.graphed import GraphedPoser

        try:
            poser = GraphedPoser(model)
            modes.append("graphed")
        except RuntimeError as e:  # a field that cannot be captured: report, time the others
            graph_error = str(e).splitlines()[0]

    def frame(mode: str, cam: Camera):
        t = float(cam.time)
        if mode == "static":
            return draw(gaussians.means, gaussians.quats, gaussians.log_scales, cam)
        if mode == "cached" and t in cache:
            return draw(*cache[t], cam)
        if mode == "graphed":
            return draw(*poser.pose(t), cam)
        p = model.pose(t)
        m, q, s = p.means, p.quats, p.log_scales
        if mode == "cached":
            cache[t] = (m, q, s)
        return draw(m, q, s, cam)

    out: dict[str, float] = {}
    for mode in modes:
        for cam in cams[:warmup]:
            frame(mode, cam)
        if mode == "cached":  # fill the cache first: cached timing is the playback of times already seen
            for cam in cams:
                frame(mode, cam)
        secs = []
        for _ in range(max(1, reps)):
            for cam in cams:
                _sync(device)
                t0 = time.perf_counter()
                frame(mode, cam)
                _sync(device)
                secs.append(time.perf_counter() - t0)
        out[f"{mode}_s"] = float(np.median(secs))
        out[f"{mode}_fps"] = 1.0 / out[f"{mode}_s"]
    out["deformed_over_static"] = out["deformed_s"] / out["static_s"]
    out["cached_over_static"] = out["cached_s"] / out["static_s"]
    if poser is not None:
        out["graphed_over_static"] = out["graphed_s"] / out["static_s"]
    elif graph_error is not None:
        out["graph_error"] = graph_error
    return out

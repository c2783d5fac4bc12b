"""Posing the Gaussians at time t as one replayed CUDA graph (GPU evaluation and playback).

On a GPU the deformation field is launch-bound, not arithmetic-bound: an MLP over ~50k Gaussians plus the
SE(3) exponential and the posing is ~100 small kernels whose launch overhead (milliseconds) exceeds their
arithmetic. A CUDA graph captured once for the current Gaussians replays them all with one launch; the time
lives in a device tensor overwritten before each replay, so any t can be posed. The graph is valid while
the Gaussians and the field's parameters keep their storage (inference: no optimizer step or densification
in between; build a new poser after those). The field is evaluated with ``frame=None`` (time codes and node
tables interpolated in t), which is what the field gives at any time between training frames.
"""
from __future__ import annotations

import torch

from .dynamic import DynamicGaussians


class GraphedPoser:
    """``pose(t) -> (means, quats, log_scales)`` of `model` posed at t, replayed as one CUDA graph.

    The returned tensors are the graph's output buffers: the next ``pose`` call overwrites them (clone to keep).
    """

    def __init__(self, model: DynamicGaussians, warmup: int = 2):
        dev = model.device
        if dev.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device, not {dev}")
        self.t = torch.zeros((), device=dev, dtype=model.gaussians.means.dtype)
        side = torch.cuda.Stream(dev)  # warm-up (lazy allocations, node binding) off the capture
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(max(1, warmup)):
                model.pose(self.t)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            p = model.pose(self.t)
        self.out = (p.means, p.quats, p.log_scales)

    @torch.no_grad()
    def pose(self, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.t.fill_(float(t))
        self.graph.replay()
        return self.out

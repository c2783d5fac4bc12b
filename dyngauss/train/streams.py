"""Independent random streams of one training run (common random numbers for ablations).

Training draws random numbers for several unrelated purposes: which frame to fit, which flow prior of
that frame, the random background colour, and the Gaussians sampled by the motion losses. With a single
shared generator, switching one loss on shifts every later draw, so two runs that differ by one loss also
see different frames and backgrounds, and their difference mixes the loss's effect with sampling noise
(measured: ~0.6 dB between runs whose forward models get identical gradients). Each purpose gets its own
generator, derived from the run seed by ``numpy.random.SeedSequence.spawn``, so a term only consumes its own
stream. Code we do not control that draws from torch's global CPU generator (gsplat's densification) runs
inside :meth:`RandomStreams.global_cpu` with its own stream swapped in.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

__all__ = ["RandomStreams"]

_NUMPY = ("frames", "priors")
_TORCH = ("background", "anchors", "init", "densify", "warp", "tracks")  # new ones last: the others keep seeds


class RandomStreams:
    """Named generators: numpy ``frames``/``priors``, torch (CPU) ``background``/``anchors``/``init``/``densify``/
    ``warp``/``tracks`` (the photometric-warp neighbours, the 2D tracks' other frames)."""

    def __init__(self, seed: int):
        children = np.random.SeedSequence(int(seed)).spawn(len(_NUMPY) + len(_TORCH))
        self.np = {name: np.random.default_rng(ss) for name, ss in zip(_NUMPY, children)}
        self.torch: dict[str, torch.Generator] = {}
        for name, ss in zip(_TORCH, children[len(_NUMPY):]):
            g = torch.Generator(device="cpu")
            g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
            self.torch[name] = g

    # ---- draws -----------------------------------------------------------------------------------
    def integer(self, stream: str, n: int) -> int:
        """A uniform integer in [0, n) from numpy stream `stream`."""
        return int(self.np[stream].integers(n))

    def uniform(self, stream: str, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform [0,1) floats from torch stream `stream` (drawn on the CPU, then moved)."""
        return torch.rand(shape, generator=self.torch[stream]).to(device)

    def randint(self, stream: str, high: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """`size` uniform integers in [0, high) from torch stream `stream`."""
        return torch.randint(0, high, (size,), generator=self.torch[stream]).to(device)

    @contextmanager
    def global_cpu(self, stream: str) -> Iterator[None]:
        """Run a block with torch's global CPU generator set to `stream`'s state (and `stream` advanced by
        what the block drew), restoring the global generator afterwards."""
        saved = torch.get_rng_state()
        torch.set_rng_state(self.torch[stream].get_state())
        try:
            yield
        finally:
            self.torch[stream].set_state(torch.get_rng_state())
            torch.set_rng_state(saved)

    # ---- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"numpy": {k: g.bit_generator.state for k, g in self.np.items()},
                "torch": {k: g.get_state() for k, g in self.torch.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, s in state.get("numpy", {}).items():
            if k in self.np:
                self.np[k].bit_generator.state = s
        for k, s in state.get("torch", {}).items():
            if k in self.torch:
                self.torch[k].set_state(s)

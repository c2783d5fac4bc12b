"""Evaluation split over the ranks of a ``torch.distributed`` run: which frames a rank takes, and the gather.

Rank r of W takes frames r, r+W, r+2W, ... of a split (:func:`frame_share`: strided, so every rank gets a
spread of times and the shares differ in length by at most one); each rank computes its frames' records and
:func:`gather_records` collects them on every rank with ``torch.distributed.all_gather_object`` on the
default process group (gloo on CPU, nccl on CUDA; any picklable record). Every rank must call
:func:`gather_records` exactly once per evaluation, also a rank whose share is empty (more ranks than frames),
or the others wait for it. This module only reads ``torch.distributed``'s state; joining the group is the
launcher's business (``dyngauss.train.distributed.init_distributed`` under torchrun).
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_rank", "frame_share", "gather_records"]


def check_rank(rank: int, world: int) -> None:
    """Raise ValueError unless 0 <= rank < world; RuntimeError when world > 1 and the default process group is
    not initialised or has another size (the evaluation would wait forever or gather the wrong ranks)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"evaluation rank {rank} of world {world}: need world >= 1 and 0 <= rank < world")
    if world == 1:
        return
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(f"evaluation split over {world} ranks needs an initialised torch.distributed process "
                           "group (launch with torchrun)")
    size = torch.distributed.get_world_size()
    if size != world or torch.distributed.get_rank() != rank:
        raise RuntimeError(f"evaluation asked for rank {rank} of {world}, but the process group is rank "
                           f"{torch.distributed.get_rank()} of {size}")


def frame_share(n_frames: int, rank: int, world: int) -> list[int]:
    """The frame indices rank `rank` of `world` evaluates: ``rank, rank + world, ...`` below `n_frames` (empty
    when rank >= n_frames). The shares of ranks 0..world-1 are disjoint and cover ``range(n_frames)``."""
    return list(range(rank, n_frames, world))


def gather_records(records: Any, world: int) -> list[Any]:
    """Every rank's `records` (a picklable object), in rank order, on every rank; ``[records]`` when
    world == 1 (no collective). A collective call: every rank of the group must make it."""
    if world <= 1:
        return [records]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, records)
    return out

"""Temporal curriculum: which training frames a step may draw.

A static warm-up fitted to every frame makes the canonical Gaussians a blur of all times, which a deformation
field must then take apart; under a large motion (a box turning 240°) it never does, and re-arranges Gaussians
instead of moving them. With ``train.time_window`` w0 < 1 the warm-up trains only the frames within w0 of
``train.canonical_time`` t_c, so the canonical Gaussians are the scene near t_c (the canonical frame anchored at
one time, as Shape of Motion and Dynamic3DGaussians anchor theirs at a frame); after the warm-up the half-width
grows linearly to 1 over ``train.time_window_steps`` steps, so the field learns small motions first and extends
them outward in time (a coarse-to-fine schedule in time, like Nerfies' coarse-to-fine in space).
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["window_half_width", "frames_in_window"]


def window_half_width(step: int, warmup_iters: int, start: float, grow_steps: int) -> float:
    """The half-width of the time window at `step`: `start` during the warm-up (step < warmup_iters), then linear
    to 1 over `grow_steps` steps (1 at once when grow_steps is 0). Always in [start, 1] for start in (0, 1]."""
    if start >= 1.0:
        return 1.0
    k = step - warmup_iters
    if k < 0:
        return float(start)
    if grow_steps <= 0:
        return 1.0
    return float(min(1.0, start + (1.0 - start) * (k + 1) / grow_steps))


def frames_in_window(times: Sequence[float], center: float, half_width: float) -> list[int] | None:
    """Indices of the frames with |times[i] - center| <= half_width (times in [0, 1]); None when that is every
    frame (the caller draws from all of them, as without a window). When no frame is that close, the frames at
    the smallest distance (never an empty list for a non-empty `times`)."""
    if half_width >= 1.0 or not times:
        return None
    dist = [abs(float(t) - center) for t in times]
    inside = [i for i, d in enumerate(dist) if d <= half_width + 1e-9]
    if len(inside) == len(times):
        return None
    if not inside:
        m = min(dist)
        inside = [i for i, d in enumerate(dist) if d <= m + 1e-9]
    return inside

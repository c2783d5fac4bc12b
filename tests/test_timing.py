"""Render timing modes: static/deformed/cached draw the right images and the ratios are consistent."""
from __future__ import annotations

import torch

from dyngauss.data.camera import Camera
from dyngauss.deform.base import Motion
from dyngauss.eval.timing import time_renders
from dyngauss.model import DynamicGaussians
from dyngauss.model.gaussians import Gaussians


class CountingShift(torch.nn.Module):
    """Translate everything by (t, 0, 0); counts calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, means, t, frame=None):
        self.calls += 1
        rot = torch.zeros(len(means), 4)
        rot[:, 0] = 1
        trans = torch.zeros(len(means), 3)
        trans[:, 0] = float(t)
        return Motion(rot, trans)


def test_time_renders_modes_and_field_calls():
    g = Gaussians.random(200, 0.5, seed=0, sh_degree=0)
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]])
    V = torch.eye(4)
    V[2, 3] = 3.0
    cams = [Camera(K, V, 32, 32, time=t) for t in (0.0, 0.25, 0.5)]
    f = CountingShift()
    r = time_renders(DynamicGaussians(g, f), cams, backend="torch", reps=2, warmup=1)
    # deformed: warm-up 1 + 2 reps x 3 cameras; cached: warm-up 1 (fills t=0), then 2 more misses, then hits
    assert f.calls == (1 + 2 * 3) + 3
    for k in ("static", "deformed", "cached"):
        assert r[f"{k}_s"] > 0 and abs(r[f"{k}_fps"] * r[f"{k}_s"] - 1) < 1e-9
    assert abs(r["deformed_over_static"] - r["deformed_s"] / r["static_s"]) < 1e-12

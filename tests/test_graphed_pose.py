"""CUDA-graph posing (render/graphed.py) equals eager posing at every time; CUDA tests skip without CUDA."""
from __future__ import annotations

import pytest
import torch

from dyngauss.deform.config import field_config
from dyngauss.model.gaussians import Gaussians
from dyngauss.model import DynamicGaussians
from dyngauss.model.graphed import GraphedPoser


def _model(kind: str, device: str, n: int = 3000, **kw):
    g = torch.Generator().manual_seed(0)
    means = torch.randn(n, 3, generator=g) * 0.5
    gs = Gaussians(means, torch.randn(n, 4, generator=g), torch.full((n, 3), -3.0), torch.zeros(n),
                   torch.rand(n, 1, 3, generator=g), torch.rand(n, 3, 3, generator=g), sh_degree=1).to(device)
    field = field_config(kind, **kw).build(num_frames=10)
    with torch.no_grad():  # a field that moves: random output heads
        for name, p in field.named_parameters():
            if "head" in name or "node_table" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    field = field.to(device)
    if hasattr(field, "init_nodes"):
        field.init_nodes(gs.means)
    return gs, field


def test_graphed_poser_needs_cuda():
    gs, field = _model("mlp", "cpu", n=10)
    with pytest.raises(ValueError, match="CUDA"):
        GraphedPoser(DynamicGaussians(gs, field))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", [dict(kind="mlp"), dict(kind="mlp", time_mode="latent", dscale=True),
                                  dict(kind="nodes", num_nodes=64),
                                  dict(kind="nodes", num_nodes=64, time_mode="latent", node_table=True)])
def test_graphed_pose_matches_eager(case):
    gs, field = _model(device="cuda", **case)
    model = DynamicGaussians(gs, field)
    poser = GraphedPoser(model)
    prev = None
    for t in (0.05, 0.5, 0.37, 0.93):
        with torch.no_grad():
            p = model.pose(t)
        eager = (p.means, p.quats, p.log_scales)
        with torch.no_grad():
            got = [x.clone() for x in poser.pose(t)]
        for a, b in zip(eager, got):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
        if prev is not None:  # the replay reads the new time: the pose moved
            assert (got[0] - prev).abs().max() > 1e-4
        prev = got[0]

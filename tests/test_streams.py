"""Random streams: independent per purpose, reproducible from the seed, and restorable from a state."""
from __future__ import annotations

import torch

from dyngauss.train.streams import RandomStreams


def test_streams_are_independent_and_seeded():
    a, b = RandomStreams(3), RandomStreams(3)
    b.randint("anchors", 100, 50)          # draws in one stream ...
    b.integer("priors", 7)
    assert [a.integer("frames", 1000) for _ in range(20)] == [b.integer("frames", 1000) for _ in range(20)]
    assert torch.equal(a.uniform("background", (3,)), b.uniform("background", (3,)))  # ... leave the others
    fa = [RandomStreams(3).integer("frames", 10 ** 9), RandomStreams(4).integer("frames", 10 ** 9)]
    assert fa[0] != fa[1]                  # the seed matters
    s = RandomStreams(0)
    assert s.integer("frames", 10 ** 9) != s.integer("priors", 10 ** 9)  # streams differ from each other


def test_state_round_trip():
    a = RandomStreams(1)
    a.integer("frames", 10)
    a.uniform("background", (3,))
    state = a.state_dict()
    nxt = (a.integer("frames", 10 ** 9), a.uniform("background", (3,)), a.randint("anchors", 99, 5))
    b = RandomStreams(2)
    b.load_state_dict(state)
    again = (b.integer("frames", 10 ** 9), b.uniform("background", (3,)), b.randint("anchors", 99, 5))
    assert nxt[0] == again[0] and torch.equal(nxt[1], again[1]) and torch.equal(nxt[2], again[2])


def test_global_cpu_swaps_in_the_stream():
    s = RandomStreams(5)
    torch.manual_seed(0)
    outside = torch.get_rng_state()
    with s.global_cpu("densify"):
        x1 = torch.randn(4)
    assert torch.equal(torch.get_rng_state(), outside)        # global generator untouched
    with s.global_cpu("densify"):
        x2 = torch.randn(4)                                   # the stream continues where it stopped
    t = RandomStreams(5)
    with t.global_cpu("densify"):
        y = torch.randn(8)
    assert torch.equal(torch.cat([x1, x2]), y)

"""MotionTerms' schedules: motion.flow_every spaces the flow loss without changing its weight."""
from __future__ import annotations

from types import SimpleNamespace

from dyngauss.losses.motion_config import MotionLossConfig
from dyngauss.train.motion_terms import MotionTerms


def _terms(tmp_path, **cfg) -> MotionTerms:
    scene = SimpleNamespace(path=tmp_path, train=SimpleNamespace(cameras=[], meta={}), frame_index=lambda t: None)
    terms = MotionTerms(MotionLossConfig(**cfg), scene, tmp_path, log=lambda *a: None)
    terms.priors_by_src = {0: ["prior-a", "prior-b"]}  # what _setup_flow builds from DIS flow, per source frame
    return terms


def test_flow_every_picks_priors_on_every_nth_step_only(tmp_path):
    every3 = _terms(tmp_path, flow_every=3)
    picked = [every3.pick_prior(0, s) is not None for s in range(9)]
    assert picked == [True, False, False] * 3
    every1 = _terms(tmp_path)  # default 1: every step
    assert all(every1.pick_prior(0, s) is not None for s in range(5))
    assert every1.pick_prior(1, 0) is None  # a frame without priors
    # skipped steps draw nothing: the priors stream sees the same draws as with flow_every=1 on the kept steps
    a, b = _terms(tmp_path, flow_every=2), _terms(tmp_path)
    assert [a.pick_prior(0, s) for s in (0, 2, 4, 6)] == [b.pick_prior(0, s) for s in range(4)]
    # the weight schedule is the same either way
    assert a.cfg.flow_weight_at(10) == b.cfg.flow_weight_at(10)

"""The temporal curriculum (train.time_window): the schedule of the half-width, the frames it allows, and the
trainer drawing only those frames during the warm-up — and exactly the old draws when it is off."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dyngauss.config import ConfigError, load_config
from dyngauss.train.time_window import frames_in_window, window_half_width


def test_half_width_schedule():
    assert window_half_width(0, 100, 1.0, 50) == 1.0  # off
    assert window_half_width(99, 100, 0.1, 50) == 0.1  # the warm-up
    assert window_half_width(100, 100, 0.1, 0) == 1.0  # at once after it
    ws = [window_half_width(s, 100, 0.1, 50) for s in range(100, 160)]
    assert ws[0] == pytest.approx(0.1 + 0.9 / 50) and ws[48] < 1.0 and ws[49] == 1.0 and ws[-1] == 1.0
    assert all(b > a for a, b in zip(ws[:49], ws[1:50]))  # grows linearly, then stays
    assert np.allclose(np.diff(ws[:50]), 0.9 / 50)


def test_frames_in_window():
    times = np.linspace(0, 1, 11).tolist()
    assert frames_in_window(times, 0.5, 0.1) == [4, 5, 6]
    assert frames_in_window(times, 0.0, 0.25) == [0, 1, 2]
    assert frames_in_window(times, 0.5, 1.0) is None and frames_in_window(times, 0.5, 0.5) is None  # every frame
    assert frames_in_window([0.0, 1.0, 0.2], 0.45, 0.1) == [2]   # none inside: the nearest
    assert frames_in_window([0.4, 0.6, 0.0], 0.5, 0.01) == [0, 1]  # ties: both


def test_config_ranges():
    for bad in ("train.time_window=0", "train.time_window=1.5", "train.canonical_time=-0.1",
                "train.time_window_steps=-1"):
        with pytest.raises(ConfigError):
            load_config(None, [bad])



def _cfg(tmp: Path, cache: Path, extra: list[str]):
    return load_config(None, [
        f"out={tmp / 'run'}", f"data.cache_dir={cache}", "data.synthetic_resolution=24",
        "data.synthetic_train_frames=20", "model.num_points=200", "render.backend=torch", "train.progress=false",
        "train.save_every=0", "train.image_log_every=0", "train.warmup_iters=30", "train.iters=60",
        "densify.enabled=false"] + extra)


def _drawn(trainer, steps: int) -> list[float]:
    """The times of the frames drawn at steps 0 .. steps-1 (the trainer's sampler, step by step)."""
    times = []
    for s in range(steps):
        trainer.step = s
        times.append(float(trainer.cameras[trainer.sample_frame()].time))
    return times


def test_trainer_draws_inside_the_window(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    tr = Trainer(_cfg(tmp_path, cache, ["train.time_window=0.15", "train.time_window_steps=20",
                                        "train.canonical_time=0.3"]))
    times = _drawn(tr, 60)
    warm, grow, late = times[:30], times[30:50], times[50:]
    assert all(abs(t - 0.3) <= 0.15 + 1e-6 for t in warm)
    assert len(set(warm)) >= 4  # the frames of the window, not one
    assert max(abs(t - 0.3) for t in late) > 0.45  # every frame again after the growth
    for k, t in enumerate(grow):  # within the widening window at each step
        assert abs(t - 0.3) <= window_half_width(30 + k, 30, 0.15, 20) + 1e-6


def test_off_draws_exactly_as_before(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    tr = Trainer(_cfg(tmp_path, cache, ["train.time_window=1"]))
    seq = []
    for s in range(40):
        tr.step = s
        seq.append(tr.sample_frame())
    ref = Trainer(_cfg(tmp_path / "b", cache, []))
    assert seq == [ref.streams.integer("frames", len(ref.cameras)) for _ in range(40)]


def test_a_short_training_with_the_window_runs(tmp_path, cache):
    from dyngauss.train.trainer import Trainer

    torch.set_num_threads(1)
    tr = Trainer(_cfg(tmp_path, cache, ["train.time_window=0.1", "train.time_window_steps=10",
                                        "train.warmup_iters=10", "train.iters=25"]))
    losses = [float(tr.train_step()["loss"]) for _ in range(25)]
    assert all(np.isfinite(losses)) and tr.step == 25

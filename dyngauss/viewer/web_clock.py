"""The web viewer's playback clock: continuous time in [t0, t1], play/pause, speed, loop.

At speed 1 one pass over [t0, t1] lasts ``duration_s`` wall-clock seconds (key frames / fps, so a sequence plays
at its exported frame rate). Advancing is by elapsed wall-clock time, so a slow frame is dropped rather than the
playback slowing down. No viser, no torch: the viewer drives it from its worker thread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SPEEDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class PlaybackClock:
    """t0 < t1: the time range; duration_s > 0: seconds per pass at speed 1."""

    t0: float = 0.0
    t1: float = 1.0
    duration_s: float = 5.0
    t: float = 0.0
    playing: bool = False
    speed: float = 1.0
    loop: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.t0) and math.isfinite(self.t1) and self.t1 > self.t0):
            raise ValueError(f"time range must be finite with t0 < t1, got [{self.t0}, {self.t1}]")
        if not (self.duration_s > 0):
            raise ValueError(f"duration_s must be positive, got {self.duration_s}")
        self.t = self.clamp(self.t)

    def clamp(self, t: float) -> float:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        return min(max(t, self.t0), self.t1)

    def seek(self, t: float) -> float:
        """Jump to time t (clamped to the range); playing or not stays as it is."""
        self.t = self.clamp(t)
        return self.t

    def play(self) -> None:
        """Start playing; from the end of the range without loop, start again from t0."""
        if not self.loop and self.t >= self.t1:
            self.t = self.t0
        self.playing = True

    def pause(self) -> None:
        self.playing = False

    def advance(self, dt_s: float) -> float:
        """Move on by `dt_s` wall-clock seconds when playing; at t1: wrap to t0 (loop) or stop at t1 (paused).
        Returns the new time."""
        if not self.playing or dt_s <= 0:
            return self.t
        span = self.t1 - self.t0
        t = self.t + span * self.speed * dt_s / self.duration_s
        if t > self.t1:
            if self.loop:
                t = self.t0 + math.fmod(t - self.t0, span)
            else:
                t, self.playing = self.t1, False
        self.t = t
        return t

"""Playback state of the player: which frame to show after some wall time, at a speed, looping or not.

Pure python (no renderer): the window loop asks :meth:`PlaybackState.tick` for the frame each iteration.
"""
from __future__ import annotations

import math
from typing import Sequence


class PlaybackState:
    """Time-based playback over `count` frames at `fps` (real time: frames are skipped when rendering is
    slower than the frame rate). pos is measured in frames."""

    SPEEDS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

    def __init__(self, count: int, fps: float, loop: bool = True, playing: bool = True, speed: float = 1.0):
        if count < 1:
            raise ValueError("need at least one frame")
        self.count, self.fps, self.loop, self.playing = int(count), float(fps), bool(loop), bool(playing)
        self.speed = float(speed)
        self.pos = 0.0

    @property
    def frame(self) -> int:
        """The frame index shown now, in [0, count)."""
        return min(self.count - 1, max(0, int(math.floor(self.pos + 1e-9))))

    def tick(self, dt: float) -> int:
        """Advance by dt seconds of wall time; returns the frame to show."""
        if self.playing and self.count > 1:
            self.pos += dt * self.fps * self.speed
            if self.pos >= self.count:
                if self.loop:
                    self.pos %= self.count
                else:
                    self.pos = self.count - 1
                    self.playing = False
        return self.frame

    def toggle(self) -> None:
        """Play/pause."""
        if not self.playing and not self.loop and self.frame == self.count - 1:
            self.pos = 0.0  # at the end of a non-looping run: play restarts
        self.playing = not self.playing

    def step(self, d: int) -> int:
        """Pause and move `d` frames (wrapping when looping, else clamped); returns the new frame."""
        self.playing = False
        f = self.frame + int(d)
        f = f % self.count if self.loop else min(self.count - 1, max(0, f))
        self.pos = float(f)
        return f

    def faster(self) -> float:
        """Next speed up in SPEEDS; returns it."""
        self.speed = next((s for s in self.SPEEDS if s > self.speed + 1e-9), self.SPEEDS[-1])
        return self.speed

    def slower(self) -> float:
        """Next speed down in SPEEDS; returns it."""
        self.speed = next((s for s in reversed(self.SPEEDS) if s < self.speed - 1e-9), self.SPEEDS[0])
        return self.speed

    def toggle_loop(self) -> bool:
        """Loop on/off; returns the new setting."""
        self.loop = not self.loop
        return self.loop

    def describe(self, times: Sequence[float] | None = None) -> str:
        """One status line (frame, time from `times` when given, speed, playing, loop)."""
        t = f" t={times[self.frame]:.3f}" if times else ""
        return (f"frame {self.frame + 1}/{self.count}{t}  speed {self.speed:g}x  "
                f"{'playing' if self.playing else 'paused'}  loop {'on' if self.loop else 'off'}")


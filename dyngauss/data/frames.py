"""Frames of a split decoded when first used and kept as 8-bit arrays, at the split's size, under a byte budget.

Why: a multi-view capture does not fit in memory decoded. Neural 3D Video (DyNeRF): ~20 cameras x 300 frames at
2704 x 2028 is 99 GB as uint8 and 395 GB as float32 [N,H,W,3]; at ``data.downscale=2`` 25 / 99 GB, at 4 6 / 25 GB
(``data.time_stride=2`` halves each). CMU Panoptic as prepared by Dynamic3DGaussians: 31 cameras x 150 frames at
640 x 360 is 3.2 GB uint8, 12.9 GB float32. The D-NeRF loader's eager float32 tensor is the wrong shape for these.

Design (the multi-view loaders, dyngauss/data/n3v.py and panoptic.py, build on it):

* A :class:`FrameStore` knows, for each frame of a split, its *decode group*: the unit decoded in one go (one
  image file; or a chunk of consecutive frames of one camera's video, decoded in a single ffmpeg pass from the
  chunk's first frame). Nothing is decoded when the split is loaded.
* On first access a frame's whole group is decoded, composited on the background, area-downscaled and kept as
  uint8 (rgb, plus alpha and a foreground mask when the split has them) in an LRU cache of at most
  ``budget_bytes`` (the group just decoded always stays). 8-bit storage quantises downscaled values to 1/255
  (half a level at most), the price of a 4x smaller cache than float32.
* :class:`LazyFrames` is the float32 [N,H,W,C] "tensor" a split exposes as ``images`` / ``alphas`` / ``masks``:
  indexing (``images[i]``, ``images[i, :, :, 0]``, ``images[[3, 5]]``, slices) decodes what it touches and
  returns torch tensors; ``.to(device)`` / :meth:`LazyFrames.materialize` build the full float32 tensor group by
  group (what today's single-camera trainer does with its training split: size it with data.downscale,
  data.time_stride and data.max_frames).

Memory: cache (``budget_bytes``) + one decoded group at full source size while it is being decoded (a video chunk
is streamed frame by frame, so one source frame: 16 MB at 2.7K) + whatever the caller materialises. Random access
over a split larger than the budget re-decodes evicted groups (a video chunk from its first frame): a sampler that
draws frames grouped by time (:meth:`dyngauss.data.multiview.MultiViewSplit.frames_at`) within a window of times
keeps the working set to a few chunks per camera.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch

from .images import decode_ahead

__all__ = ["Decoded", "FrameStore", "LazyFrames", "to_u8"]

# One decoded frame: rgb uint8 [H,W,3] (composited on the split's background), alpha uint8 [H,W,1] or None,
# foreground mask uint8 [H,W,1] or None.
Decoded = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]

CHANNELS = {"rgb": 3, "alpha": 1, "mask": 1}


def to_u8(x: np.ndarray) -> np.ndarray:
    """float [..] in [0,1] -> uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


class FrameStore:
    """Decoded frames of one split, on demand, under a byte budget (module docstring).

    n_frames: frames of the split; width, height: their (already downscaled) size; groups: [n_frames] the decode
    group of each frame (any hashable: an image path, ``(camera, chunk)``); decode(group, frames) -> {frame:
    Decoded} for the listed frames of that group (all of them, each [height,width,...]); has_alpha / has_mask:
    whether Decoded carries an alpha / a mask (None otherwise); budget_bytes: cache size (>= one group is kept
    whatever the budget); workers: threads decoding groups ahead in :meth:`frames` (image files; a video group is
    one ffmpeg process already)."""

    def __init__(self, n_frames: int, width: int, height: int, groups: Sequence[Hashable],
                 decode: Callable[[Hashable, list[int]], dict[int, Decoded]], has_alpha: bool = False,
                 has_mask: bool = False, budget_bytes: int = 4 << 30, workers: int = 1) -> None:
        if len(groups) != n_frames:
            raise ValueError(f"groups has {len(groups)} entries for {n_frames} frames")
        self.n_frames, self.width, self.height = int(n_frames), int(width), int(height)
        self.groups = list(groups)
        self.has_alpha, self.has_mask = bool(has_alpha), bool(has_mask)
        self.budget_bytes = int(budget_bytes)
        self.workers = max(1, int(workers))
        self._decode = decode
        self._members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(self.groups):
            self._members.setdefault(g, []).append(i)
        self._cache: OrderedDict[Hashable, dict[int, Decoded]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self.decoded_groups = 0  # how many group decodes ran (cache misses), for tests and logs

    @property
    def frame_bytes(self) -> int:
        """Cache bytes of one frame (rgb + alpha + mask, uint8)."""
        return self.width * self.height * (3 + self.has_alpha + self.has_mask)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def members(self, group: Hashable) -> list[int]:
        return list(self._members[group])

    def _checked(self, group: Hashable, out: dict[int, Decoded]) -> dict[int, Decoded]:
        want = self._members[group]
        missing = [i for i in want if i not in out]
        if missing:
            raise RuntimeError(f"decode of group {group!r} returned no frame for rows {missing[:5]}")
        for i in want:
            rgb, a, m = out[i]
            if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
                raise RuntimeError(f"decode of group {group!r} gave frame {i} as {rgb.dtype} {rgb.shape}, expected "
                                   f"uint8 {(self.height, self.width, 3)}")
        return {i: out[i] for i in want}

    def _insert(self, group: Hashable, out: dict[int, Decoded]) -> None:
        self._cache[group] = out
        self._bytes += len(out) * self.frame_bytes
        while self._bytes > self.budget_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= len(old) * self.frame_bytes

    def group(self, group: Hashable) -> dict[int, Decoded]:
        """{frame: Decoded} of every frame of `group`, decoded now unless cached."""
        with self._lock:
            hit = self._cache.get(group)
            if hit is not None:
                self._cache.move_to_end(group)
                return hit
            out = self._checked(group, self._decode(group, list(self._members[group])))
            self.decoded_groups += 1
            self._insert(group, out)
            return out

    def frame(self, i: int) -> Decoded:
        """Decoded frame `i` (0 <= i < n_frames)."""
        return self.group(self.groups[i])[i]

    def frames(self, rows: Sequence[int]) -> Iterator[tuple[int, Decoded]]:
        """(row, Decoded) for every row, group by group (each group decoded at most once; uncached groups decoded
        ahead on `workers` threads), in the order of each group's first row."""
        order: list[Hashable] = []
        want: dict[Hashable, list[int]] = {}
        for r in rows:
            g = self.groups[r]
            if g not in want:
                order.append(g)
                want[g] = []
            want[g].append(r)
        with self._lock:
            cached = {g for g in order if g in self._cache}
        todo = [g for g in order if g not in cached]

        def dec(g):
            return g, self._checked(g, self._decode(g, list(self._members[g])))

        ahead = decode_ahead(todo, dec, self.workers) if self.workers > 1 and len(todo) > 1 else None
        for g in order:
            if g in cached or ahead is None:
                out = self.group(g)
            else:
                _, out = next(ahead)
                with self._lock:
                    if g not in self._cache:
                        self.decoded_groups += 1
                        self._insert(g, out)
            for r in want[g]:
                yield r, out[r]


def _rows(key, n: int) -> list[int] | int:
    """An int row, or the list of rows of a slice / sequence / tensor / array index (IndexError out of range)."""
    if isinstance(key, torch.Tensor):
        key = key.tolist() if key.dim() else int(key)
    elif isinstance(key, np.ndarray):
        key = key.tolist() if key.ndim else int(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        i = int(key)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for {n} frames")
        return i % n
    if isinstance(key, slice):
        return list(range(*key.indices(n)))
    if isinstance(key, list):
        if key and all(isinstance(k, bool) for k in key):
            if len(key) != n:
                raise IndexError(f"boolean index of length {len(key)} for {n} frames")
            return [i for i, k in enumerate(key) if k]
        out = []
        for k in key:
            r = _rows(k, n)
            if not isinstance(r, int):
                raise IndexError("a frame list must hold integers")
            out.append(r)
        return out
    raise TypeError(f"cannot index frames with {type(key).__name__}")


class LazyFrames:
    """Read-only float32 [N,H,W,C] view of one channel of a :class:`FrameStore`: ``"rgb"`` (C=3, composited on
    the background), ``"alpha"`` or ``"mask"`` (C=1), values in [0,1].

    Supports ``len``, ``.shape``, ``.dtype``, iteration, indexing by an int (-> [H,W,C]), a slice / list /
    1-D tensor of rows (-> [k,H,W,C]) and a tuple whose first item is one of those (``alphas[k, :, :, 0]``);
    ``.to(device)`` and ``.cpu()`` return the whole tensor (:meth:`materialize`)."""

    dtype = torch.float32

    def __init__(self, store: FrameStore, channel: str = "rgb") -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
        if channel == "alpha" and not store.has_alpha or channel == "mask" and not store.has_mask:
            raise ValueError(f"the frames have no {channel} channel")
        self.store, self.channel = store, channel

    @property
    def shape(self) -> tuple[int, int, int, int]:
        s = self.store
        return (s.n_frames, s.height, s.width, CHANNELS[self.channel])

    def __len__(self) -> int:
        return self.store.n_frames

    def __repr__(self) -> str:
        return f"LazyFrames({self.channel}, shape={self.shape}, cached={self.store.cached_bytes / 2**20:.1f} MiB)"

    def _pick(self, d: Decoded) -> np.ndarray:
        return d[("rgb", "alpha", "mask").index(self.channel)]

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(arr.astype(np.float32) * np.float32(1.0 / 255.0))

    def __getitem__(self, key) -> torch.Tensor:
        rest = ()
        if isinstance(key, tuple):  # torch semantics: the first item picks frames, the rest index each frame
            if not key:
                return self.materialize()
            key, rest = key[0], key[1:]
        rows = _rows(key, len(self))
        if isinstance(rows, int):
            out = self._tensor(self._pick(self.store.frame(rows)))
            return out[rest] if rest else out
        got = dict((r, self._pick(d)) for r, d in self.store.frames(rows))
        s = self.shape
        out = torch.stack([self._tensor(got[r]) for r in rows]) if rows else torch.empty((0,) + s[1:])
        return out[(slice(None),) + rest] if rest else out

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]

    def materialize(self, device: torch.device | str = "cpu", rows: Sequence[int] | None = None) -> torch.Tensor:
        """The float32 tensor [len(rows),H,W,C] on `device` (all frames by default), filled group by group."""
        rows = list(range(len(self))) if rows is None else [int(r) for r in rows]
        out = torch.empty((len(rows),) + self.shape[1:], dtype=torch.float32, device=device)
        where = {}
        for k, r in enumerate(rows):
            where.setdefault(r, []).append(k)
        for r, d in self.store.frames(rows):
            t = self._tensor(self._pick(d)).to(device)
            for k in where[r]:
                out[k] = t
        return out

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
           **_ignored) -> torch.Tensor:
        """The whole float32 tensor on `device` (like ``tensor.to``); `dtype` converts it afterwards."""
        out = self.materialize(device if device is not None else "cpu")
        return out.to(dtype) if dtype is not None else out

    def cpu(self) -> torch.Tensor:
        return self.materialize("cpu")

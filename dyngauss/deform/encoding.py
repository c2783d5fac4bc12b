"""Positional encodings and the small MLP blocks the deformation fields are built from."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def pe_window(alpha: float | torch.Tensor, num_freqs: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Nerfies coarse-to-fine window: w_j = (1 - cos(pi * clamp(alpha - j, 0, 1))) / 2, j < num_freqs."""
    j = torch.arange(num_freqs, device=device, dtype=dtype)
    return 0.5 * (1 - torch.cos(math.pi * (alpha - j).clamp(0.0, 1.0)))


class PositionalEncoding(nn.Module):
    """x [...,D] -> [x, sin(2^j x), cos(2^j x)] for j < num_freqs (times `scale`), optionally windowed.

    `forward(x, alpha=None)`: alpha in [0, num_freqs] enables the coarse-to-fine window (None = all bands
    fully on). The identity term is never windowed. Output size: `out_dim`."""

    def __init__(self, in_dim: int, num_freqs: int, include_input: bool = True, scale: float = 1.0):
        super().__init__()
        self.in_dim, self.num_freqs, self.include_input = in_dim, int(num_freqs), include_input
        self.register_buffer("freqs", scale * 2.0 ** torch.arange(self.num_freqs, dtype=torch.float32),
                             persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.num_freqs)

    def forward(self, x: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        parts = [x] if self.include_input else []
        if self.num_freqs > 0:
            xb = x.unsqueeze(-1) * self.freqs.to(x.dtype)  # [...,D,F]
            s, c = torch.sin(xb), torch.cos(xb)
            if alpha is not None:
                w = pe_window(alpha, self.num_freqs, x.device, x.dtype)
                s, c = s * w, c * w
            parts += [s.flatten(-2), c.flatten(-2)]
        return torch.cat(parts, -1) if parts else x[..., :0]


class ConditionedMLP(nn.Module):
    """ReLU MLP on a per-point input `x` [N,Dx] and a conditioning vector `c` ([Dc] / [1,Dc] shared by all
    points, or [N,Dc]). The first layer (and the skip layer) split their weights into an x part and a c part
    so that a shared c costs one tiny matmul instead of N. `skip` re-injects the inputs before that layer.

    Returns the last hidden features [N,width] (heads are separate, see :class:`ZeroLinear`)."""

    def __init__(self, x_dim: int, c_dim: int, width: int, depth: int, skip: int | None = None):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.skip = skip if (skip is not None and 0 < skip < depth) else None
        self.layers = nn.ModuleList()
        self.cond = nn.ModuleDict()
        for i in range(depth):
            if i == 0:
                self.layers.append(nn.Linear(x_dim, width))
                if c_dim:
                    self.cond["0"] = nn.Linear(c_dim, width, bias=False)
            elif i == self.skip:
                self.layers.append(nn.Linear(width + x_dim, width))
                if c_dim:
                    self.cond[str(i)] = nn.Linear(c_dim, width, bias=False)
            else:
                self.layers.append(nn.Linear(width, width))
        self.width = width

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, x], -1)
            if c is not None and str(i) in self.cond:
                cb = self.cond[str(i)](c)
                if cb.shape[0] == 1:  # shared condition: fold it into the bias (one pass over N)
                    h = F.linear(h, layer.weight, layer.bias + cb[0])
                else:
                    h = layer(h) + cb
            else:
                h = layer(h)
            h = F.relu(h, inplace=True)
        return h


class ZeroLinear(nn.Linear):
    """Linear layer initialised to exactly zero (so a field starts as the identity)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


def as_time_tensor(t: float | torch.Tensor, n: int, device, dtype) -> torch.Tensor:
    """t (float, 0-d, [1] or [N]) -> [1,1] (shared) or [N,1] (per point)."""
    t = torch.as_tensor(t, device=device, dtype=dtype)
    if t.numel() == 1:
        return t.reshape(1, 1)
    if t.numel() != n:
        raise ValueError(f"t has {t.numel()} values for {n} points")
    return t.reshape(n, 1)


def frame_interp(frame_times: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation in time between frames: frame_times [F] (any order), t [B] ->
    (lo [B], hi [B], a [B]) with value(t) = (1 - a) value[lo] + a value[hi] (indices into frame_times;
    clamped at the ends)."""
    if frame_times.numel() == 1:
        z = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
        return z, z, torch.zeros(t.shape[0], dtype=frame_times.dtype, device=t.device)
    st, order = torch.sort(frame_times)
    tt = t.to(st.dtype).contiguous()
    hi = torch.searchsorted(st, tt).clamp(1, st.numel() - 1)
    lo = hi - 1
    a = ((tt - st[lo]) / (st[hi] - st[lo]).clamp_min(1e-12)).clamp(0.0, 1.0)
    return order[lo], order[hi], a


def anneal_alpha(num_freqs: int, step: float | torch.Tensor, anneal_steps: int) -> float | torch.Tensor | None:
    """Nerfies coarse-to-fine window position at `step` (None: no annealing, all bands on). A tensor step (the
    fields' step buffer) gives a 0-d tensor on its device: no host sync, so posing can be a CUDA graph."""
    if anneal_steps <= 0:
        return None
    if isinstance(step, torch.Tensor):
        return num_freqs * (step.to(torch.float64) / anneal_steps).clamp(max=1.0)  # float64: as the float path
    return num_freqs * min(1.0, float(step) / anneal_steps)

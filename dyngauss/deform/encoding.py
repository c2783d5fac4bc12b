"""Positional encodings, the time code and the small MLP blocks the deformation fields are built from."""
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


def frame_times_tensor(num_frames: int, frame_times=None) -> torch.Tensor:
    """The times [F] float32 of F frames: `frame_times` (any sequence, one per frame) or evenly spaced in [0, 1].
    Raises ValueError when their count is not `num_frames`."""
    ft = torch.linspace(0.0, 1.0, int(num_frames)) if frame_times is None else \
        torch.as_tensor(frame_times, dtype=torch.float32).reshape(-1).clone()
    if ft.numel() != num_frames:
        raise ValueError(f"frame_times has {ft.numel()} entries for {num_frames} frames")
    return ft


class TimeCode(nn.Module):
    """Time conditioning: PE of t (`mode="pe"`) or per-frame latent codes with interpolation (`"latent"`)."""

    def __init__(self, mode: str = "pe", time_freqs: int = 6, num_frames: int | None = None,
                 latent_dim: int = 8, frame_times: torch.Tensor | None = None, latent_init_std: float = 0.1,
                 latent_init: str = "smooth"):
        super().__init__()
        if mode not in ("pe", "latent"):
            raise ValueError(f"time_mode must be 'pe' or 'latent', got {mode!r}")
        self.mode = mode
        if mode == "pe":
            self.pe = PositionalEncoding(1, time_freqs)
            self.out_dim = self.pe.out_dim
        else:
            if not num_frames or num_frames < 1:
                raise ValueError("time_mode='latent' needs num_frames >= 1")
            if latent_init not in ("smooth", "random"):
                raise ValueError(f"latent_init must be 'smooth' or 'random', got {latent_init!r}")
            self.codes = nn.Embedding(int(num_frames), latent_dim)
            self.register_buffer("frame_times", frame_times_tensor(num_frames, frame_times))
            self.latent_init, self.latent_init_std = latent_init, latent_init_std
            self.init_codes()
            self.out_dim = latent_dim

    @torch.no_grad()
    def init_codes(self) -> None:
        """"random": N(0, std^2). "smooth" (default): a smooth basis of the frame's time
        [2t-1, cos(pi t), sin(pi t), cos(2 pi t), ...] plus N(0, (std/10)^2) noise, so that frames close in
        time start with close codes (learning then only refines them; with random codes a short run must
        memorise an arbitrary code -> motion map)."""
        w = self.codes.weight
        if self.latent_init == "random":
            w.normal_(std=self.latent_init_std)
            return
        t = self.frame_times.to(w.dtype)[:, None]
        feats = [2 * t - 1]
        k = 1
        while len(feats) < w.shape[1]:
            feats += [torch.cos(torch.pi * k * t), torch.sin(torch.pi * k * t)]
            k += 1
        w.copy_(torch.cat(feats, 1)[:, :w.shape[1]] + torch.randn_like(w) * self.latent_init_std / 10)

    @property
    def num_frames(self) -> int:
        return self.codes.num_embeddings if self.mode == "latent" else 0

    def set_frame_times(self, times) -> None:
        t = torch.as_tensor(times, dtype=self.frame_times.dtype, device=self.frame_times.device).reshape(-1)
        if t.numel() != self.num_frames:
            raise ValueError(f"{t.numel()} times for {self.num_frames} frames")
        self.frame_times.copy_(t)

    def forward(self, t: torch.Tensor, frame=None) -> torch.Tensor:
        """t [1,1] or [N,1] -> code [1,C] or [N,C]."""
        if self.mode == "pe":
            return self.pe(t)
        w = self.codes.weight
        if frame is not None:
            f = torch.as_tensor(frame, device=w.device, dtype=torch.long).reshape(-1)
            return w[f].to(t.dtype)
        return self.interpolate(t.reshape(-1)).to(t.dtype)

    def interpolate(self, t: torch.Tensor) -> torch.Tensor:
        """Codes at times t [B] by linear interpolation between the two nearest frames -> [B,C]."""
        w = self.codes.weight
        lo, hi, a = frame_interp(self.frame_times, t)
        a = a.to(w.dtype).unsqueeze(-1)
        return w[lo] * (1 - a) + w[hi] * a

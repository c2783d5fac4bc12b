"""The step guard: judge every optimizer step, undo the unhealthy ones, and remember the last good checkpoint.

Why: a non-finite loss is only the late symptom of a blow-up. A learning rate far too high (``optim.scales_lr=1000``)
gives finite gradients and a finite but absurd update (log-scales of 1000); the next render overflows, and every
checkpoint written from then on holds the poisoned parameters. So the guard looks at the update itself.

The rule (a step is *healthy* when all hold):

1. the loss and every gradient are finite (checked by the trainer before the update);
2. after the optimizer steps, for every parameter tensor the largest element change ``max |p_after - p_before|``
   is finite and at most the bound of its optimizer group (:class:`UpdateBounds`).

Adam moves an element by at most about ``lr * (1 - beta1) / sqrt(1 - beta2)`` = 3.2 lr per step whatever the
gradient (Kingma & Ba, "Adam", ICLR 2015, sec. 2.1: the effective step is bounded by the step size), so a bound in
the parameter's own units separates "the learning rate is sane" from "the learning rate is absurd" without looking
at the loss, which varies from frame to frame and jumps at opacity resets. The default bounds are 60x (opacity
logits) to 2000x (means) above the largest step Adam can take at the default learning rates, and far below the
changes that ruin a scene: moving a Gaussian by the whole scene, growing it by e^5 = 150x, flipping an opacity
logit by 10. Measured on the built-in scene (400 steps of the default job; 350 steps of a 512-node field, 250 of
them with the field training): the largest change was 1.4 % of its bound (opacities), under 0.4 % elsewhere.

An unhealthy update is undone from a copy kept just before ``step()``: parameters and optimizer states (Adam's
moments and step counts). Densification runs after the verdict, only on healthy steps, so its state needs no
copy. Copies go into buffers reused from step to step (one fused copy of the parameters and their Adam moments,
3.4 MB for 20k Gaussians of SH degree 0 and the default mlp field) and the check is one fused subtract / abs / max:
about 0.6 + 0.4 ms per step on one CPU thread at 20k Gaussians, under 1 % of a CPU training step.

``last_good.json`` (in RUN/checkpoints/) names the newest checkpoint whose next step was healthy: a checkpoint
becomes good only once a healthy step has run from it, so one written just before a blow-up that the bounds did
not catch is never called good.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from ..io import atomic_write_text

LAST_GOOD = "last_good.json"
REJECTED_DIR = "rejected"


@dataclass(frozen=True)
class UpdateBounds:
    """The largest change one optimizer step may make to one element, per optimizer group name.

    Units are the parameters' own: ``means`` in scene scales (world units / scene scale), ``scales`` in log
    scale, ``opacities`` in logits, ``quats`` in (unnormalised) quaternion components, ``sh0`` / ``shN`` in SH
    colour coefficients; ``field`` applies to every other group (deformation-field weights, node radii, latent
    codes), whose default learning rates are 1e-3.
    """

    means: float = 1.0
    scales: float = 5.0
    quats: float = 1.0
    opacities: float = 10.0
    sh0: float = 10.0
    shN: float = 10.0
    field: float = 1.0

    def for_group(self, name: str, scene_scale: float = 1.0) -> float:
        """The bound of the optimizer group `name` (means: times `scene_scale`)."""
        if name == "means":
            return self.means * scene_scale
        return float(getattr(self, name)) if name in ("scales", "quats", "opacities", "sh0", "shN") else self.field


def largest_changes(before: list[torch.Tensor], after: list[torch.Tensor]) -> torch.Tensor:
    """``max |after_i - before_i|`` for each pair of same-shaped tensors, as one float tensor (N,) on the CPU.

    NaN when a change is not finite (an inf - inf or a NaN element). The tensors must not be empty (no maximum);
    an empty list gives an empty result."""
    if not before:
        return torch.zeros(0)
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(after):
        by_device.setdefault(t.device, []).append(i)
    out = torch.empty(len(after))
    for idx in by_device.values():  # one fused subtraction and norm per device, one transfer
        diffs = torch._foreach_sub([after[i] for i in idx], [before[i] for i in idx])
        torch._foreach_abs_(diffs)
        maxima = torch._foreach_max(diffs) if hasattr(torch, "_foreach_max") else [d.amax() for d in diffs]
        out[idx] = torch.stack([m.float() for m in maxima]).cpu()  # max propagates NaN
    return out


def first_violation(names: list[str], changes: torch.Tensor, bounds: list[float]) -> str | None:
    """The reason a step is unhealthy (the first group whose change is not finite or beyond its bound), or None.

    `changes` and `bounds` are aligned with `names` (one entry per parameter tensor)."""
    if not names:
        return None
    bad = ~(changes <= torch.tensor(bounds, dtype=changes.dtype))  # NaN compares False: caught here
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0])
    value = float(changes[i])
    if not math.isfinite(value):
        return f"{names[i]} became non-finite in the update"
    return (f"the update moved {names[i]} by {value:.3g} in one step (bound {bounds[i]:.3g}; is "
            f"{lr_key(names[i])} too high?)")


_FIELD_LR_KEYS = {"deform.nodes.radii": "deform.node_lr", "deform.nodes.table": "deform.table_lr",
                  "deform.nodes.pos": "deform.node_pos_lr",
                  "deform.mlp.ambient": "deform.ambient_lr", "deform.mlp.latent": "deform.latent_lr",
                  "deform.nodes.latent": "deform.latent_lr", "deform.tracking.rot": "deform.rot_lr",
                  "deform.bases.weights": "deform.weight_lr"}


def lr_key(group: str) -> str:
    """The config key of the learning rate of optimizer group `group` (Gaussian groups: optim.<name>_lr)."""
    if group in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        return f"optim.{group}_lr"
    return _FIELD_LR_KEYS.get(group, "deform.lr")


class StepGuard:
    """Keeps a copy of what the coming optimizer steps change, judges the steps, and undoes them.

    Usage, per training step: ``keep(optimizers)``; call ``step()`` on each; ``reason = judge()``; if `reason`
    is not None, ``undo()`` puts parameters and optimizer states back bit-exactly.
    """

    def __init__(self, bounds: UpdateBounds | None = None, scene_scale: float = 1.0):
        self.bounds = bounds or UpdateBounds()
        self.scene_scale = float(scene_scale)
        self._buffers: list[torch.Tensor] = []
        self._params: list[torch.Tensor] = []      # judged (non-empty) parameters; aligned with the next 3
        self._before: list[torch.Tensor] = []      # their copies
        self._names: list[str] = []
        self._limits: list[float] = []
        self._copies: list[tuple[torch.Tensor, torch.Tensor]] = []   # (live tensor, its copy)
        self._states: list[tuple[torch.optim.Optimizer, torch.Tensor, dict | None]] = []  # (opt, param, state)
        self.changes = torch.zeros(0)              # the largest change per judged tensor, set by judge()

    def _buffer(self, i: int, like: torch.Tensor) -> torch.Tensor:
        if i < len(self._buffers):
            b = self._buffers[i]
            if b.shape == like.shape and b.dtype == like.dtype and b.device == like.device:
                return b
            self._buffers[i] = b = torch.empty_like(like)
        else:
            b = torch.empty_like(like)
            self._buffers.append(b)
        return b

    @torch.no_grad()
    def keep(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Copy every parameter of `optimizers` that has a gradient, and its optimizer state (before their
        ``step()``)."""
        self._params, self._before, self._names, self._limits = [], [], [], []
        self._copies, self._states = [], []
        n = 0
        for opt in optimizers:
            for group in opt.param_groups:
                name = str(group.get("name", "params"))
                for p in group["params"]:
                    if p.grad is None:  # torch's optimizers leave it and its state alone (e.g. the tables of the
                        continue        # frames a step did not render, deform.kind=tracking): nothing to keep
                    state = opt.state.get(p)
                    self._states.append((opt, p, dict(state) if state else None))
                    live = [p.data] + ([v for v in state.values() if isinstance(v, torch.Tensor)] if state else [])
                    for j, t in enumerate(live):
                        b = self._buffer(n, t)
                        n += 1
                        self._copies.append((t, b))
                        if j == 0 and p.numel():
                            self._params.append(p)
                            self._before.append(b)
                            self._names.append(name)
                            self._limits.append(self.bounds.for_group(name, self.scene_scale))
        del self._buffers[n:]
        _copy_all([b for _, b in self._copies], [t for t, _ in self._copies])

    @torch.no_grad()
    def judge(self) -> str | None:
        """After the steps: None when every parameter changed by a finite amount within its bound, else why not."""
        self.changes = largest_changes(self._before, [p.data for p in self._params])
        return first_violation(self._names, self.changes, self._limits)

    def headroom(self) -> dict[str, float]:
        """Per optimizer group, the largest ``change / bound`` of the last :meth:`judge` (1 = at the bound): how
        far normal training stays from firing."""
        out: dict[str, float] = {}
        for name, c, b in zip(self._names, self.changes.tolist(), self._limits):
            out[name] = max(out.get(name, 0.0), c / b)
        return out

    @torch.no_grad()
    def undo(self) -> None:
        """Put the parameters and optimizer states kept by :meth:`keep` back (in place, bit-exactly)."""
        _copy_all([t for t, _ in self._copies], [b for _, b in self._copies])
        for opt, p, state in self._states:
            if state is None:
                opt.state.pop(p, None)  # the step created it: a step that never happened has none
            else:
                opt.state[p] = state    # the same tensors (now holding their old values) and plain values


def _copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """``dst[i].copy_(src[i])`` for all i, fused per (device, dtype) group."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(src):
        groups.setdefault((t.device, t.dtype, dst[i].device, dst[i].dtype), []).append(i)
    for idx in groups.values():
        torch._foreach_copy_([dst[i] for i in idx], [src[i] for i in idx])


# ---- last_good.json ------------------------------------------------------------------------------------------
def write_last_good(ckpt_dir: str | Path, checkpoint: str | Path, step: int) -> Path:
    """Record `checkpoint` (a file in `ckpt_dir`) at `step` as the newest one whose next step was healthy."""
    ckpt_dir = Path(ckpt_dir)
    record = {"checkpoint": Path(checkpoint).name, "step": int(step),
              "meaning": "the newest checkpoint from which a healthy training step ran (dyngauss train guard)"}
    return atomic_write_text(ckpt_dir / LAST_GOOD, json.dumps(record, indent=1) + "\n")


def read_last_good(ckpt_dir: str | Path) -> tuple[Path, int] | None:
    """(path, step) of the last good checkpoint recorded in `ckpt_dir`, or None when there is no record, it is
    unreadable, or the file it names is gone."""
    ckpt_dir = Path(ckpt_dir)
    try:
        record = json.loads((ckpt_dir / LAST_GOOD).read_text(encoding="utf-8"))
        path, step = ckpt_dir / str(record["checkpoint"]), int(record["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (path, step) if path.is_file() else None


def set_aside(ckpt_dir: str | Path, checkpoints: Iterable[str | Path]) -> list[Path]:
    """Move `checkpoints` (files in `ckpt_dir`) into ``ckpt_dir/rejected/`` so that resuming and loading the run
    pick the older good one; returns their new paths (nothing is deleted; missing files are passed over)."""
    dest = Path(ckpt_dir) / REJECTED_DIR
    moved = []
    for c in checkpoints:
        c = Path(c)
        if not c.is_file():
            continue
        dest.mkdir(exist_ok=True)
        target = dest / c.name
        c.replace(target)
        moved.append(target)
    return moved

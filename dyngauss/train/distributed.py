"""Data-parallel training over processes with ``torch.distributed`` (DDP semantics, launched by torchrun).

Every rank holds a full copy of the model and of the run's random streams (train/streams.py, same seed on every
rank). Each step all ranks draw the same global batch of ``train.batch_size`` frames; rank r renders its
contiguous share (:func:`shard`), scales its loss by 1/B (B = the global batch), and the gradients of every
trained tensor (Gaussians, deformation field(s)) are summed over ranks (:meth:`Dist.all_reduce_grads`), so
the summed gradient is the one a single process with batch B computes. The densification statistics
(gsplat DefaultStrategy grad2d / count / radii) are reduced the same way (:meth:`Dist.reduce_strategy_sums`),
so every rank takes the same optimizer step and the same densify/prune decision and the parameters stay
identical; :meth:`Dist.check_same` verifies that cheaply (a checksum all-reduce) every
``train.dist_check_every`` steps. Rank 0 alone writes checkpoints, TensorBoard, config.yaml, metrics, exports and
holds the run-folder lock. After training every rank evaluates a strided share of the evaluation frames (rank r:
frames r, r+W, ...; dyngauss/eval/shards.py) and writes their renders; rank 0 gathers the per-frame results,
computes the motion metrics alone and writes metrics.json (train/run.py, eval/evaluate.py).

Launch: ``torchrun --nproc_per_node N -m dyngauss train ...`` (detected from the RANK / WORLD_SIZE /
LOCAL_RANK environment variables torchrun sets); backend gloo on CPU, nccl on CUDA (rank -> cuda:LOCAL_RANK).
gsplat's own distributed mode (Gaussians sharded over GPUs) is not wired: it needs CUDA and a packed layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

__all__ = ["Dist", "env_rank", "env_world_size", "init_distributed", "shard"]


def env_rank() -> int:
    """This process's global rank from torchrun's environment (0 without one)."""
    return int(os.environ.get("RANK", "0") or 0)


def env_world_size() -> int:
    """The number of processes from torchrun's environment (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def shard(items: list, rank: int, world: int) -> list:
    """Rank `rank`'s contiguous share of `items` (shares differ in length by at most one; the first ranks take
    the extra ones). Concatenating the shares of ranks 0..world-1 gives `items` back."""
    n, k = len(items), world
    base, extra = divmod(n, k)
    start = rank * base + min(rank, extra)
    return items[start:start + base + (1 if rank < extra else 0)]


@dataclass
class Dist:
    """The process group of a run (``world == 1``: a single process, every collective is a no-op)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_grads(self, params: list[torch.Tensor]) -> None:
        """Sum the gradients of `params` over ranks, in place (one flat all-reduce). A tensor with a gradient on
        some rank gets one (zeros where it had none) on every rank, so every rank's optimizer steps the same
        tensors."""
        if not self.enabled or not params:
            return
        dev = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
        torch.distributed.all_reduce(has, op=torch.distributed.ReduceOp.MAX)
        live = [p for p, h in zip(params, has.tolist()) if h > 0]
        if not live:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in live:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def mean_logs(self, logs: dict) -> dict:
        """`logs` with every scalar tensor replaced by its mean over ranks (one all-reduce); other values kept."""
        keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
        if not self.enabled or not keys:
            return logs
        v = torch.stack([logs[k].detach().float().reshape(()) for k in keys])
        torch.distributed.all_reduce(v)
        return {**logs, **{k: x / self.world for k, x in zip(keys, v)}}

    def any(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """True when `flag` is true on any rank (a stop request, a time limit): every rank decides alike."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def reduce_strategy_sums(self, state: dict) -> None:
        """Make one step's gsplat DefaultStrategy statistics global, in place: ``grad2d`` and ``count`` (this
        step's sums, started from zero) summed over ranks, ``radii`` (running) the maximum over ranks."""
        if not self.enabled:
            return
        for key in ("grad2d", "count"):
            if state.get(key) is not None:
                torch.distributed.all_reduce(state[key])
        if state.get("radii") is not None:
            torch.distributed.all_reduce(state["radii"], op=torch.distributed.ReduceOp.MAX)

    def broadcast_params(self, tensors: list[torch.Tensor]) -> None:
        """Copy rank 0's values of `tensors` to every rank (start of training, as DDP does)."""
        if self.enabled:
            with torch.no_grad():
                for t in tensors:
                    torch.distributed.broadcast(t.data, src=0)

    def check_same(self, tensors: list[torch.Tensor], step: int) -> None:
        """Raise RuntimeError when the ranks' copies of `tensors` differ (compares a float64 checksum of each
        rank with the maximum and minimum over ranks: two all-reduces of a few numbers)."""
        if not self.enabled:
            return
        with torch.no_grad():
            dev = tensors[0].device if tensors else torch.device("cpu")
            parts = [torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors]
            parts.append(torch.tensor([float(sum(t.numel() for t in tensors))], dtype=torch.float64, device=dev))
            sums = torch.cat(parts)
            hi, lo = sums.clone(), sums.clone()
            torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
            torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        if not torch.equal(hi, lo):
            raise RuntimeError(f"distributed training: the ranks' parameters differ at step {step} (rank {self.rank}); "
                               "a collective was skipped or an operation is not deterministic across ranks")

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1 (else a single-process :class:`Dist`).

    Backend nccl when `device` is CUDA (this rank then uses cuda:LOCAL_RANK), gloo otherwise. Returns the Dist
    and the device this rank trains on. Raises RuntimeError when the rendezvous fails (torch's message)."""
    world = env_world_size()
    if world <= 1:
        return Dist(), device
    rank, local = env_rank(), int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return Dist(rank=rank, world=world, local_rank=local), device

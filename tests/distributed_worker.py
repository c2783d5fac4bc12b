"""One rank of a tiny distributed training for tests/test_distributed.py (and one process of tests/test_batch.py).

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_worker.py SCENE OUT STEPS RESULT [k=v ...]

Trains STEPS steps of a tiny config on SCENE (train.batch_size etc. from the overrides) and writes
RESULT.<rank>.pt: every trained tensor by name, the Gaussian count after each step and the per-step losses.
With DISTRIBUTED_WORKER_PERTURB set, rank 1 nudges one parameter after setup (the ranks then differ).
"""
from __future__ import annotations

import os
import sys

import torch


def tiny_overrides(scene, out, *extra) -> list[str]:
    """The tiny training of the distributed tests: densification every 3 steps from step 3."""
    return [f"data.path={scene}", f"out={out}", "train.iters=30", "train.warmup_iters=4", "model.num_points=300",
            "densify.refine_start_iter=2", "densify.refine_every=3", "densify.refine_stop_iter=100",
            "train.progress=false", "train.save_every=0", "deform.kind=mlp", "deform.width=32", "deform.depth=2",
            "model.sh_degree=1", "model.sh_degree_interval=5", "train.dist_check_every=5", *extra]


def train(scene, out, steps: int, extra: list[str]) -> dict:
    """Train `steps` steps in this process (joining torchrun's group when launched by it); the result dict."""
    from dyngauss.config import load_config
    from dyngauss.train.distributed import init_distributed
    from dyngauss.train.trainer import Trainer

    cfg = load_config(None, tiny_overrides(scene, out, *extra))
    dist, device = init_distributed(torch.device("cpu"))
    try:
        t = Trainer(cfg, dist=dist, device=device)
        if dist.rank == 1 and os.environ.get("DISTRIBUTED_WORKER_PERTURB"):  # the divergence check must catch it
            with torch.no_grad():
                t.gaussians.params["means"][0, 0] += 1e-3
        counts, losses = [], []
        for _ in range(steps):
            losses.append(float(t.train_step()["loss"]))
            counts.append(len(t.gaussians))
        params = {f"g.{k}": v.detach().clone() for k, v in t.gaussians.params.items()}
        params.update({f"d.{k}": v.detach().clone() for k, v in t.deform.named_parameters()})
        return {"params": params, "counts": counts, "losses": losses, "rank": dist.rank, "world": dist.world}
    finally:
        dist.close()


def main(argv: list[str]) -> int:
    scene, out, steps, result, *extra = argv
    res = train(scene, out, int(steps), extra)
    torch.save(res, f"{result}.{res['rank']}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

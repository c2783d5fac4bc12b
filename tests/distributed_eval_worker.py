"""One rank of a distributed evaluation for tests/test_distributed_eval.py.

    python -m torch.distributed.run --nproc_per_node N tests/distributed_eval_worker.py RUN SCENE OUT RESULT [FRAMES]

Loads RUN's newest checkpoint, joins torchrun's gloo group and evaluates SCENE's test split (its first FRAMES
frames when given) with ``evaluate_run(..., rank, world)`` into OUT, recording the frames this rank's model
rendered. Writes RESULT.<rank>.pt: rank, world, the rendered frame names (in call order) and the returned
metrics. With DISTRIBUTED_EVAL_WORKER_FAIL set, rank 1's renders raise (the other ranks must not hang).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch


def evaluate(run, scene, out, frames: int | None) -> dict:
    from dyngauss.data.loaders import load_split, split_options
    from dyngauss.eval.evaluate import evaluate_run
    from dyngauss.model import DynamicGaussians
    from dyngauss.train.distributed import init_distributed

    dist, device = init_distributed(torch.device("cpu"))
    try:
        model = DynamicGaussians.load(run)
        split = load_split(scene, "test", frames=None if frames is None else list(range(frames)),
                           **split_options(model.config.data))
        rendered: list[str] = []
        render = model.render

        def spy(cam, t, **kw):
            if dist.rank == 1 and os.environ.get("DISTRIBUTED_EVAL_WORKER_FAIL"):
                raise ValueError("injected render failure")
            rendered.append(cam.name)
            return render(cam, t, **kw)

        model.render = spy
        metrics = evaluate_run(model, split, out, "test", lpips=False, save_renders=True, data_path=scene,
                               motion=False, rank=dist.rank, world=dist.world)
        return {"rank": dist.rank, "world": dist.world, "rendered": rendered, "metrics": metrics}
    finally:
        dist.close()


def main(argv: list[str]) -> int:
    run, scene, out, result, *rest = argv
    res = evaluate(Path(run), Path(scene), Path(out), int(rest[0]) if rest else None)
    torch.save(res, f"{result}.{res['rank']}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

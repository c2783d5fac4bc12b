"""`dyngauss train`: train a dynamic Gaussian scene, evaluate it and export a PLY sequence.

    dyngauss train                                          # built-in synthetic scene, CPU (config: default)
    dyngauss train --config nodes train.iters=500 out=runs/x    # a shipped config by name (see below)
    dyngauss train --config my.yaml data.path=../shared/data/twist deform.kind=nodes out=runs/twist
    dyngauss train --resume out=runs/x train.iters=8000     # continue a run with its own config (+ changes)
    dyngauss train --overwrite out=runs/x ...               # start over in a folder that holds a run

    torchrun --nproc_per_node 2 -m dyngauss train train.batch_size=4 out=runs/x   # data-parallel, 2 processes

--config takes a YAML file, or the name of a shipped config (`nodes`, `nodes.yaml` or `configs/nodes.yaml` when
no such file exists here). `python tools/train.py ...` is the same command.

--resume (anywhere on the line) continues RUN (out=RUN) from its newest checkpoint with RUN/config.yaml; the
overrides given may change only what can change mid-run: train.iters, learning rates (optim.*, deform.lr,
deform.lr_final), logging/saving/progress/time limit, train.device, render.backend, data.eval_split, eval.*,
export.*, and data.path for a moved copy of the same dataset. Others (data, model.*, deform.kind and shape,
densify.*, loss.*, motion.*, ...) are refused before any work; --config cannot be combined with --resume.
Under torchrun (RANK/WORLD_SIZE set; also `torchrun ... tools/train.py`) the global batch train.batch_size is
split over the processes (dyngauss/train/distributed.py); rank 0 alone locks, writes and evaluates the run folder.
A run folder has one writer: RUN/.lock (pid, host, start time) is held while training; a lock of a process
that no longer runs on this host is taken over. A fresh run into a folder that holds checkpoints is refused
unless --overwrite, which moves the old contents to RUN.old-<YYYYmmdd-HHMMSS> (nothing is deleted).
Before any training work the out folder must be creatable and writable; temporary files and export folders
that a killed training left in it (.NAME.*.tmp, .ply.tmp-*) are removed (only those of processes no longer
running, or untouched for an hour).
Exit codes: 0 ok, 1 dataset / checkpoint / training / kernel error, 2 bad config or override, refused resume
or refused run folder, or an out folder / output that cannot be written (disk full, read-only, permission
denied, a path that is a file: one `error:` line naming it; the checkpoints written before stay intact),
3 the run folder is in use by another training (or locked from another host),
130 / 143 stopped by Ctrl-C (SIGINT) / SIGTERM: training finishes its step, writes a checkpoint and prints the
--resume command; a second signal stops at once (the previous checkpoints stay intact).
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
from contextlib import nullcontext  # noqa: E402
import sys  # noqa: E402

DEFAULT_CONFIG = "default"


def _parser() -> argparse.ArgumentParser:
    from ..resources import config_names

    names = ", ".join(config_names()) or "none found"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None,
                    help=f"YAML file or shipped config name (default: {DEFAULT_CONFIG}; shipped: {names})")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in `out` from its newest checkpoint with its own config.yaml")
    mode.add_argument("--overwrite", action="store_true",
                      help="start over in `out` even if it holds a run (its contents move to OUT.old-<time>)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.iters=500 deform.kind=mlp")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_intermixed_args(argv)  # --resume / --overwrite before, between or after the overrides
    if args.resume and args.config is not None:
        ap.error("--config cannot be combined with --resume: a resumed run uses its own config.yaml "
                 "(give out=RUN and only the keys to change)")
    from ..config import ConfigError, load_config
    from ..data.dnerf import DatasetError
    from ..model import CheckpointError
    from ..render.cpu_backend import KernelUnavailableError
    from ..resources import find_config
    from ..train.resume import ResumeError, check_resumable, resume_config, run_dir_of
    from ..train.distributed import env_rank
    from ..train.run import run_job
    from ..train.run_folder import RunBusyError, RunFolderError, RunLock
    from ..train.signals import interrupt_report, raise_on_signals
    from ..train.trainer import TrainingError

    restore_signals = raise_on_signals()  # SIGINT/SIGTERM: Interrupted (the trainer saves first), exit 130/143
    cfg = None
    try:
        if args.resume:
            run_dir = run_dir_of(args.overrides)
            check_resumable(run_dir)
            main_rank = env_rank() == 0  # torchrun: rank 0 holds the lock and tidies the folder
            if main_rank:
                _prepare_out(run_dir)
            with RunLock(run_dir) if main_rank else nullcontext():  # held from reading the config to the end
                cfg = resume_config(run_dir, args.overrides)
                run_job(cfg, resume=True)
        else:
            cfg = load_config(find_config(args.config or DEFAULT_CONFIG), args.overrides)
            if env_rank() == 0:
                _prepare_out(cfg.out)
            run_job(cfg, overwrite=args.overwrite)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except RunBusyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ResumeError, RunFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DatasetError, CheckpointError, TrainingError, KernelUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permission denied, read-only, a path that is a file: one line, exit 2
        from ..io import describe_os_error

        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # one message naming the checkpoint and the command that continues
        message, code = interrupt_report(e, cfg.out if cfg is not None else None)
        print(message, file=sys.stderr)
        return code
    finally:
        restore_signals()
    return 0


def _prepare_out(run_dir) -> None:
    """Before any training work: the run folder must be creatable and writable (OutputError otherwise), and
    what killed writers left in it (stale temporary files and export folders) goes."""
    from ..io import ensure_writable_dir
    from ..model.checkpoint import remove_stale_run_temps

    ensure_writable_dir(run_dir)
    remove_stale_run_temps(run_dir)


if __name__ == "__main__":
    sys.exit(main())

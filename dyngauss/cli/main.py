"""The `dyngauss` console command: `dyngauss <command> [options]` runs dyngauss.cli.<module>.main(options).

Command modules are imported only when their command runs, so `dyngauss --help` is fast and needs no torch.
`python -m dyngauss ...` is the same command.
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import difflib  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
from typing import NamedTuple  # noqa: E402

PROG = "dyngauss"


class Command(NamedTuple):
    module: str     # module with main(argv: list[str] | None) -> int
    summary: str    # one line for `dyngauss --help`


COMMANDS: dict[str, Command] = {
    "train": Command("dyngauss.cli.train", "train a scene, then evaluate it and export a PLY sequence"),
    "eval": Command("dyngauss.cli.eval", "evaluate a trained run on a split (metrics.json, renders)"),
    "export": Command("dyngauss.cli.export", "export a trained model as a per-frame PLY sequence"),
    "play": Command("dyngauss.cli.play", "play a PLY sequence (Open3D window, or headless to a video / PNGs)"),
    "render": Command("dyngauss.cli.render", "render a trained model along a camera path into a video"),
    "view": Command("dyngauss.cli.view", "open a run, checkpoint or PLY sequence in a web browser (time slider)"),
    "prepare-video": Command("dyngauss.cli.prepare_video",
                             "turn your own video into a training folder (frames, SfM cameras)"),
    "make-synthetic": Command("dyngauss.cli.make_synthetic", "generate the built-in synthetic scene"),
    "compare-poses": Command("dyngauss.cli.compare_poses",
                             "estimated vs true cameras of a prepared video (pose errors, twin dataset)"),
}


def usage() -> str:
    """The text of `dyngauss --help`: one line per command."""
    from .. import __version__

    width = max(len(n) for n in COMMANDS)
    lines = [f"usage: {PROG} <command> [options]      ({PROG} <command> --help: that command's options)", "",
             f"dyngauss {__version__}: dynamic 3D Gaussian splatting (CPU and GPU).", "", "commands:"]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this message and exit", "  --version   print the version and exit",
              "", f"e.g.  {PROG} train --config nodes out=runs/x   then   {PROG} play runs/x/ply"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run `dyngauss <command> ...`; returns the command's exit code (2 for an unknown command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        from .. import __version__

        print(f"{PROG} {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"{PROG}: unknown command {name!r}{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(cmd.module)
    # argparse names the program after sys.argv[0]: make a command's usage line read "dyngauss <command>"
    saved = sys.argv[0] if sys.argv else None
    if sys.argv:
        sys.argv[0] = f"{PROG} {name}"
    try:
        rc = module.main(rest)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if saved is not None:
            sys.argv[0] = saved
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Open a trained scene in a web browser: time slider, play/pause, cameras, node graph, motion trails.

    dyngauss view runs/x                      # the run's newest checkpoint; open http://127.0.0.1:8080
    dyngauss view runs/x/checkpoints/ckpt_005000.pt --port 8081
    dyngauss view runs/x/ply                  # an exported PLY sequence alone (no torch model needed)
    dyngauss view runs/x --screenshot view.png --time 0.5   # headless: one picture through Chromium, then exit
(`python tools/view.py ...` is the same command.)

The page is served by viser (https://viser.studio); the Gaussians are drawn in the browser (WebGL). On a remote
machine forward the port (ssh -L 8080:127.0.0.1:8080 host) or listen on all interfaces with --host 0.0.0.0.
"Export this time" writes the Gaussians at the slider's time as a 3DGS PLY into --export-dir (default:
RUN/view_exports) and offers it as a download. Live viewing while training: train.viewer=true (README).
Exit codes: 0 ok (Ctrl+C ends the server), 2 bad arguments / unreadable PATH, 3 --screenshot without a
usable Chromium.
"""
from __future__ import annotations

import argparse
import os
import sys
import time as _time


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="run folder, checkpoint file (.pt) or sequence folder (sequence.json)")
    ap.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    ap.add_argument("--port", type=int, default=8080, help="port (a busy one: the next free one; 0: any)")
    ap.add_argument("--time", type=float, default=None, help="initial time in [0, 1]")
    ap.add_argument("--play", action="store_true", help="start playing")
    ap.add_argument("--device", default="auto", help="where a model is posed: auto | cpu | cuda | cuda:N")
    ap.add_argument("--dataset", default=None, help="dataset folder whose cameras to show (default: the run's)")
    ap.add_argument("--no-cameras", action="store_true", help="do not load or show the dataset's cameras")
    ap.add_argument("--export-dir", default=None, help="where 'Export this time' writes (default RUN/view_exports)")
    ap.add_argument("--trails", type=int, default=0, metavar="N",
                    help="start with the trails of the N Gaussians that move most")
    ap.add_argument("--nodes", action="store_true", help="start with the node graph shown (node fields)")
    ap.add_argument("--zoom", type=float, default=1.0,
                    help="initial distance as a multiple of the test camera's (> 1: further back)")
    shot = ap.add_argument_group("headless picture (no server left running)")
    shot.add_argument("--screenshot", default=None, metavar="PNG", help="save what a browser shows, then exit")
    shot.add_argument("--size", type=int, nargs=2, default=(960, 640), metavar=("W", "H"),
                      help="browser window for --screenshot (CSS pixels)")
    shot.add_argument("--wait", type=float, default=6.0, help="seconds to let the page draw before --screenshot")
    return ap


def _check(args) -> str | None:
    if not (args.port == 0 or 1024 <= args.port <= 65535):
        return f"--port must be 0 or in 1024..65535, got {args.port}"
    if args.time is not None and not (0.0 <= args.time <= 1.0):
        return f"--time must be in [0, 1], got {args.time}"
    if min(args.size) < 64:
        return f"--size must be at least 64 x 64, got {args.size[0]} x {args.size[1]}"
    if not args.zoom > 0:
        return f"--zoom must be positive, got {args.zoom}"
    if args.trails < 0:
        return f"--trails must be >= 0, got {args.trails}"
    return None


def screenshot(viewer, out: str, size: tuple[int, int], wait_s: float) -> int:
    """Open the viewer in headless Chromium, save a PNG of the page to `out`; returns the exit code."""
    import cv2

    from ..viewer.web_shot import BrowserUnavailable, HeadlessBrowser

    try:
        with HeadlessBrowser(*size) as browser:
            tab = browser.open(viewer.url)
            deadline = _time.monotonic() + 60
            while viewer.client_count() == 0 and _time.monotonic() < deadline:
                _time.sleep(0.1)
            _time.sleep(wait_s)
            tab.dismiss_notifications()
            _time.sleep(0.5)
            img = tab.screenshot()
            tab.close()
    except BrowserUnavailable as e:
        print(f"error: --screenshot needs Chromium: {e}", file=sys.stderr)
        return 3
    if not cv2.imwrite(out, img[..., ::-1]):
        print(f"error: cannot write {out}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({img.shape[1]}x{img.shape[0]})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve the viewer until Ctrl+C (or take one --screenshot); returns the exit code."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from ..config import ConfigError
    from ..model.checkpoint import CheckpointError
    from ..viewer.web import WebViewer
    from ..viewer.web_open import ViewOpenError, open_path

    try:
        opened = open_path(args.path, device=args.device, dataset=args.dataset, cameras=not args.no_cameras)
    except (ViewOpenError, CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in opened.notes:
        print(note)
    viewer = WebViewer(opened.source, host=args.host, port=args.port, start_time=args.time,
                       export_dir=args.export_dir or opened.export_dir, zoom=args.zoom)
    try:
        if args.nodes:
            viewer.show_nodes(True)
        if args.trails:
            viewer.pick_most_moving(args.trails)
        if args.play:
            viewer.play()
        if args.screenshot:
            viewer.wait_shown(timeout=60)
            return screenshot(viewer, args.screenshot, tuple(args.size), args.wait)
        print(f"viewer at {viewer.url}  (Ctrl+C to stop)", flush=True)
        viewer.serve_forever()
    finally:
        viewer.close()
    return 0

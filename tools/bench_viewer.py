#!/usr/bin/env python
"""Web viewer benchmark: what one time step costs, the browser's frame rate, and the live viewer's training cost.

    python tools/bench_viewer.py view RUN            # a trained run (or checkpoint / sequence folder)
    python tools/bench_viewer.py view RUN --no-browser
    python tools/bench_viewer.py train --steps 800   # built-in scene: steps/s with and without the live viewer

view: opens PATH like `dyngauss view`, connects a browser-less client (dyngauss.viewer.web_client.ProbeClient)
and moves the slider to `--times` times:
  step          seconds from set_time to the frame sent (pose on this machine + covariances + pack + send)
  sent          bytes the client received per time step (viser's Gaussian-splat buffer: 32 bytes per Gaussian)
then the alternative the viewer does not use, server-side rendering streamed as images (nerfview style): our
rasterizer (render.backend auto: gsplat on a GPU, else the C++ CPU kernel) at 640x480, 1280x720 and
1920x1080 from the test camera,
JPEG-encoded (quality 85): seconds per view and bytes per image. Unless --no-browser, headless Chromium
(software WebGL, SwiftShader: a CPU-only client) opens the page: requestAnimationFrame rate while idle, while
the view turns (the server moves the browser's camera 30 times a second) and while playing.

train: one Trainer on the built-in scene (CPU-sized defaults); after --warmup steps, alternating segments of
--segment steps with the live viewer's step hook off / on (a ProbeClient connected, snapshots every --every
steps; the viewer thread poses and sends each snapshot), in the order off on on off (repeated), so a steady drift
(densification adds Gaussians) hits both alike. --control: no client, so the hook never snapshots (noise floor).
Reports steps/s of each and the slow-down, and the process's CPU time per step of each (all threads: on a
machine shared with other work, wall-clock rates swing by several percent between segments; the CPU time the
viewer adds is the cost that training pays when the cores are busy).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def bench_view(args) -> None:
    from dyngauss.viewer.web import WebViewer
    from dyngauss.viewer.web_client import ProbeClient
    from dyngauss.viewer.web_open import open_path

    opened = open_path(args.path, device=args.device)
    src = opened.source
    viewer = WebViewer(src, port=0, export_dir="/tmp/bench_viewer_exports")
    try:
        with ProbeClient(viewer.url) as probe:
            while viewer.client_count() == 0:
                time.sleep(0.05)
            viewer.wait_shown(timeout=60)
            probe.wait_quiet(1.0)
            steps, sent = [], []
            lo, hi = src.time_range
            for t in np.linspace(lo, hi, args.times + 1)[1:]:
                b0 = probe.counts()[1]
                t0 = time.perf_counter()
                viewer.set_time(float(t))
                viewer.wait_shown(float(t), timeout=60)
                steps.append(time.perf_counter() - t0)
                sent.append(probe.wait_quiet(0.3)[1] - b0)
            n = len(src.frame(lo))
            print(f"{src.label}: {n} Gaussians")
            print(f"  client-side splats: {1000 * np.median(steps):.0f} ms per time step on the server "
                  f"(median of {len(steps)}), {np.median(sent) / 1024:.0f} kB sent per time step "
                  f"({np.median(sent) / n:.1f} B per Gaussian)")
        _server_side(src, args)
        if not args.no_browser:
            _browser(viewer, args)
    finally:
        viewer.close()


def _server_side(src, args) -> None:
    import cv2
    import torch

    from dyngauss.data.camera import Camera

    model = getattr(src, "model", None)
    if model is None:
        print("  server-side rendering: needs a model (not a sequence); skipped")
        return
    cam = next((c for c in src.cameras if c.split != "train"), None)
    for w, h in ((640, 480), (1280, 720), (1920, 1080)):
        if cam is not None:
            f = 0.5 * h / np.tan(cam.fov_y / 2)
            view = torch.as_tensor(np.linalg.inv(cam.c2w), dtype=torch.float32)
        else:
            f = float(w)
            view = torch.eye(4)
            view[2, 3] = 4.0
        K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float32)
        camera = Camera(K, view, w, h).to(model.device)
        times, sizes = [], []
        with torch.no_grad():
            for i in range(args.renders + 1):
                t0 = time.perf_counter()
                out = model.render(camera, 0.5, background=model.background())
                img = (out.rgb[0].clamp(0, 1) * 255).byte().cpu().numpy()
                ok, jpg = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
                if i:  # the first one warms up (kernel build / caches)
                    times.append(time.perf_counter() - t0)
                    sizes.append(len(jpg))
        print(f"  server-side rendering at {w}x{h} ({'gsplat' if model.device.type == 'cuda' else 'CPU kernel'}): "
              f"{1000 * np.median(times):.0f} ms per view (pose + rasterize + JPEG, median of {len(times)}), "
              f"{np.median(sizes) / 1024:.0f} kB per image")


def _browser(viewer, args) -> None:
    from dyngauss.viewer.web_shot import BrowserUnavailable, HeadlessBrowser

    try:
        with HeadlessBrowser(*args.size) as browser:
            tab = browser.open(viewer.url)
            time.sleep(args.settle)
            tab.dismiss_notifications()
            renderer = tab.evaluate("(() => {const g = document.createElement('canvas').getContext('webgl2');"
                                    "return g ? g.getParameter(g.RENDERER) : 'no webgl2';})()")
            idle = tab.frame_rate(args.seconds)
            with _orbiting(viewer):
                orbit = tab.frame_rate(args.seconds)
            viewer.play()
            time.sleep(1.0)
            playing = tab.frame_rate(args.seconds)
            viewer.pause()
            print(f"  headless Chromium ({renderer}), {args.size[0]}x{args.size[1]}: {idle:.1f} FPS idle, "
                  f"{orbit:.1f} FPS while the view turns, {playing:.1f} FPS while playing")
    except BrowserUnavailable as e:
        print(f"  browser: skipped ({e})")


@contextlib.contextmanager
def _orbiting(viewer, rate_hz: float = 30.0, deg_per_s: float = 30.0):
    """Turn every connected browser's view about its look-at point (about the scene's up axis) meanwhile."""
    import threading

    stop = threading.Event()

    def run() -> None:
        clients = list(viewer.server.get_clients().values())
        starts = [(c, np.array(c.camera.position), np.array(c.camera.look_at), np.array(c.camera.up_direction))
                  for c in clients]
        t0 = time.perf_counter()
        while not stop.wait(1.0 / rate_hz):
            a = np.radians(deg_per_s * (time.perf_counter() - t0))
            for c, pos, look, up in starts:
                u = up / np.linalg.norm(up)
                v = pos - look
                rot = v * np.cos(a) + np.cross(u, v) * np.sin(a) + u * np.dot(u, v) * (1 - np.cos(a))  # Rodrigues
                c.camera.position = look + rot
                c.camera.look_at = look

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()


def bench_train(args) -> None:
    import torch

    from dyngauss.config import load_config
    from dyngauss.train.trainer import Trainer
    from dyngauss.viewer.web_client import ProbeClient
    from dyngauss.viewer.web_live import LiveViewer

    torch.set_num_threads(args.threads)
    cfg = load_config(None, [f"out={args.out}", "train.progress=false", f"train.iters={args.steps + args.warmup}",
                             "train.save_every=0", "train.image_log_every=0"] + args.overrides)
    trainer = Trainer(cfg)
    for _ in range(args.warmup):
        trainer.train_step()
    live = LiveViewer(trainer, port=0, every=args.every)
    on = off = cpu_on = cpu_off = 0.0
    n_on = n_off = 0
    try:
        with ProbeClient(live.url) if not args.control else contextlib.nullcontext():
            while live.viewer.client_count() == 0 and not args.control:
                time.sleep(0.05)
            done, k = 0, 0
            while done < args.steps:
                hook = k % 4 in (1, 2)  # off on on off: a steady drift (the Gaussian count grows) cancels
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.segment):
                    trainer.train_step()
                    if hook:
                        live(trainer)
                if hook:  # the viewer thread finishes the segment's last frame inside the segment
                    live.viewer.wait_shown(revision=live.source.revision, timeout=30)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if hook:
                    on, n_on, cpu_on = on + dt, n_on + args.segment, cpu_on + dc
                else:
                    off, n_off, cpu_off = off + dt, n_off + args.segment, cpu_off + dc
                done += args.segment
                k += 1
    finally:
        live.close()
    r_off, r_on = n_off / off, n_on / on
    who = "no client: the control" if args.control else "a client connected"
    each = 1000 * live.snapshot_seconds / max(live.snapshots, 1)
    print(f"built-in scene, {len(trainer.gaussians)} Gaussians at the end, {args.threads} torch threads: "
          f"{r_off:.2f} steps/s without the viewer, {r_on:.2f} steps/s with it ({who}, a snapshot "
          f"every {args.every} steps: {live.snapshots} snapshots, {each:.0f} ms each on the training thread): "
          f"slow-down {100 * (1 - r_on / r_off):.1f}%")
    c_off, c_on = cpu_off / n_off, cpu_on / n_on  # process CPU seconds per step (all threads)
    print(f"  CPU time per step (all threads of the process): {1000 * c_off:.1f} ms without, {1000 * c_on:.1f} ms "
          f"with: +{100 * (c_on / c_off - 1):.1f}% ({1000 * (c_on - c_off) * args.every:.0f} ms per snapshot)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    v = sub.add_parser("view")
    v.add_argument("path")
    v.add_argument("--device", default="auto")
    v.add_argument("--times", type=int, default=20)
    v.add_argument("--renders", type=int, default=5)
    v.add_argument("--size", type=int, nargs=2, default=(640, 480))
    v.add_argument("--no-browser", action="store_true")
    v.add_argument("--seconds", type=float, default=5.0)
    v.add_argument("--settle", type=float, default=8.0)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=800)
    t.add_argument("--warmup", type=int, default=250)  # + segment/2: snapshots fall mid-segment
    t.add_argument("--segment", type=int, default=100)
    t.add_argument("--every", type=int, default=100)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--out", default="/tmp/bench_viewer_run")
    t.add_argument("--control", action="store_true", help="no client connected: the hook runs, never snapshots "
                   "(the noise floor of the comparison)")
    t.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = ap.parse_args()
    (bench_view if args.what == "view" else bench_train)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

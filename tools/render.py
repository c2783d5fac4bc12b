#!/usr/bin/env python
"""Render a trained model over time along a camera path into a video (mp4/gif), with dyngauss.render.rasterize.

    python tools/render.py --run runs/x                               # fixed camera, 60 frames -> RUN/render_fixed.mp4
    python tools/render.py --run runs/x --path orbit --frames 90 --out orbit.gif --size 320 320
    python tools/render.py --run runs/x --path split:test --out test.mp4     # each test camera at its own time

Paths:
  fixed       one camera (the dataset's `video` split camera if it has one, else the first test/val/train camera;
              without a dataset, a camera framing the Gaussians) while t goes 0 -> 1
  orbit       that camera circled --turns times around the world --up axis through the scene centre, t 0 -> 1
  split:NAME  the cameras of a dataset split (train/val/test/video), each at its own time (--frames subsamples)
Exit codes: 0 ok, 2 bad arguments / missing or incompatible checkpoint or dataset.
"""
from __future__ import annotations

import os

# OpenMP threads sleep when idle instead of spinning (3x faster on busy machines); must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dyngauss.cli import progress_printer  # noqa: E402

import numpy as np  # noqa: E402


class RenderToolError(Exception):
    pass


def _rot_about(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _scene_center(gaussians) -> tuple[np.ndarray, np.ndarray]:
    """(centre [3], robust bbox [2,3]) of the visible canonical Gaussians."""
    import torch

    with torch.no_grad():
        m = gaussians.means.detach().float().cpu()
        keep = torch.sigmoid(gaussians.opacity_logits.detach().float().cpu()) >= 0.05
        m = (m[keep] if keep.any() else m).numpy().astype(np.float64)
    if len(m) == 0:
        return np.zeros(3), np.stack([-np.ones(3), np.ones(3)])
    q = np.quantile(m, [0.01, 0.99], axis=0) if len(m) > 100 else np.stack([m.min(0), m.max(0)])
    return 0.5 * (q[0] + q[1]), q


def _dataset_cameras(model, data: str | None, split: str | None, one: bool):
    """(cameras, split name) from the model's cameras or its dataset; None if unavailable."""
    cams = getattr(model, "cameras", None) or {}
    order = [split] if split else ["video", "test", "val", "train"]
    for s in order:
        if cams.get(s):
            return list(cams[s][:1] if one else cams[s]), s
    path = data or (getattr(model, "extra", None) or {}).get("dataset")
    if not path or not Path(path).is_dir():
        if split:
            raise RenderToolError(f"split {split!r} needs the dataset: give --data PATH (the run records "
                                  f"{path!r})")
        return None
    from dyngauss.data.dnerf import DatasetError
    from dyngauss.data.loaders import available_splits, load_split

    try:
        have = available_splits(path)
    except DatasetError as e:
        raise RenderToolError(str(e)) from None
    for s in order:
        if s in have:
            cfg = model.cfg
            try:
                sp = load_split(path, s, downscale=getattr(cfg.data, "downscale", 1) or 1,
                                background=tuple(cfg.data.background), frames=[0] if one else None)
            except DatasetError as e:
                raise RenderToolError(str(e)) from None
            return list(sp.cameras), s
    if split:
        raise RenderToolError(f"dataset {path} has no split {split!r} (has {have})")
    return None


def build_path(model, path: str, frames: int | None, size, data: str | None, up, turns: float):
    """[(Camera, time, frame index or None)] for the requested camera path."""
    from dyngauss.data.camera import Camera, look_at_viewmat

    n = frames or 60
    center, bb = _scene_center(model.gaussians)
    if path.startswith("split:"):
        split = path.split(":", 1)[1]
        cams, _ = _dataset_cameras(model, data, split, one=False)
        cams = sorted(cams, key=lambda c: (c.time, c.index))
        if frames and frames < len(cams):
            cams = [cams[int(i)] for i in np.linspace(0, len(cams) - 1, frames).round()]
        out = [(c, float(c.time), None) for c in cams]
    elif path in ("fixed", "orbit"):
        found = _dataset_cameras(model, data, None, one=True)
        if found:
            ref = found[0][0]
        else:  # no dataset: frame the Gaussians' bounding sphere from a 3/4 view
            r = max(0.5 * float(np.linalg.norm(bb[1] - bb[0])), 1e-3)
            W, H = size or (400, 400)
            fov = math.radians(40)
            f = 0.5 * H / math.tan(fov / 2)
            d = 1.1 * r / math.sin(min(fov, 2 * math.atan(0.5 * W / f)) / 2)
            u = np.asarray(up, float) / np.linalg.norm(up)
            side = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
            side = side - side.dot(u) * u
            side /= np.linalg.norm(side)
            eye = center + d * (math.cos(math.radians(20)) * (_rot_about(u, math.radians(-60)) @ side)
                                + math.sin(math.radians(20)) * u)
            K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
            ref = Camera(K, look_at_viewmat(eye, center, u), W, H)
        times = [0.0] if n == 1 else [float(t) for t in np.linspace(0, 1, n)]
        out = []
        for i, t in enumerate(times):
            if path == "fixed":
                cam = ref
            else:
                eye0 = ref.center.double().numpy()
                ang = 2 * math.pi * turns * i / max(n, 1)
                eye = center + _rot_about(np.asarray(up, float), ang) @ (eye0 - center)
                cam = Camera(ref.K.clone(), look_at_viewmat(eye, center, up), ref.width, ref.height)
            out.append((cam, t, model.frame_for_time(t) if hasattr(model, "frame_for_time") else None))
    else:
        raise RenderToolError(f"unknown --path {path!r}; use fixed, orbit or split:NAME")
    if size:
        W, H = int(size[0]), int(size[1])
        out = [(_resized(c, W, H), t, fr) for c, t, fr in out]
    return out


def _resized(cam, W: int, H: int):
    from dyngauss.data.camera import Camera

    if (cam.width, cam.height) == (W, H):
        return cam
    K = cam.K.clone()
    K[0] *= W / cam.width
    K[1] *= H / cam.height
    return Camera(K, cam.viewmat.clone(), W, H, cam.time, cam.name, cam.index, dict(cam.meta))


def render_frames(model, path_items, backend: str = "auto", background=None, progress=None):
    """Yield uint8 [H,W,3] images of the model at each (camera, time, frame)."""
    import torch

    from dyngauss.export.sequence import posed_gaussians
    from dyngauss.render.api import rasterize

    g = model.gaussians
    sh = g.sh.detach()
    deg = int(getattr(g, "max_sh_degree", math.isqrt(sh.shape[1]) - 1))
    opac = torch.sigmoid(g.opacity_logits.detach())
    bg = torch.tensor(background if background is not None else model.cfg.data.background, dtype=torch.float32,
                      device=sh.device)
    with torch.no_grad():
        for i, (cam, t, frame) in enumerate(path_items):
            pm, pq, ps = posed_gaussians(g, model.deform, t, frame)
            out = rasterize(pm, pq, torch.exp(ps), opac, sh, cam.to(pm.device), sh_degree=deg, background=bg,
                            backend=backend)
            img = out.rgb[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
            if progress:
                progress(i + 1, len(path_items))
            yield img


def write_video(frames, out: Path, fps: float) -> int:
    import imageio.v2 as iio

    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if out.suffix.lower() == ".gif":
        import imageio.v3 as iio3

        imgs = list(frames)
        iio3.imwrite(out, np.stack(imgs), duration=1000.0 / fps, loop=0)
        return len(imgs)
    writer = None
    try:
        for img in frames:
            if writer is None:
                writer = iio.get_writer(str(out), fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                        ffmpeg_log_level="error")
            h, w = img.shape[:2]
            if h % 2 or w % 2:  # yuv420p needs even sizes: pad by edge replication
                img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            writer.append_data(img)
            n += 1
    finally:
        if writer is not None:
            writer.close()
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder or checkpoint file")
    ap.add_argument("--path", default="fixed", help="fixed | orbit | split:NAME (default fixed)")
    ap.add_argument("--frames", type=int, default=None, help="number of frames (default 60; split: all)")
    ap.add_argument("--out", default=None, help="output .mp4/.mkv/.gif (default RUN/render_<path>.mp4)")
    ap.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None,
                    help="image size (default: the camera's)")
    ap.add_argument("--fps", type=float, default=None, help="video rate (default: the run's export.fps or 15)")
    ap.add_argument("--data", default=None, help="dataset folder for cameras (default: the one the run used)")
    ap.add_argument("--backend", default="auto", help="render backend: auto | torch | cpu | gsplat")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--up", type=float, nargs=3, default=(0.0, 0.0, 1.0), help="world up axis for orbit")
    ap.add_argument("--turns", type=float, default=1.0, help="orbit: revolutions over the video")
    ap.add_argument("--background", type=float, nargs=3, default=None)
    args = ap.parse_args(argv)

    if args.frames is not None and args.frames < 1:
        print("error: --frames must be >= 1", file=sys.stderr)
        return 2
    if args.size and min(args.size) < 1:
        print("error: --size must be positive", file=sys.stderr)
        return 2
    run = Path(args.run)
    if not run.exists():
        print(f"error: run folder or checkpoint not found: {run}", file=sys.stderr)
        return 2
    from dyngauss.train.checkpoint import CheckpointError, load_model

    try:
        model = load_model(run, device=args.device)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: cannot load {run}: {e}", file=sys.stderr)
        return 2
    try:
        items = build_path(model, args.path, args.frames, args.size, args.data, args.up, args.turns)
    except RenderToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not items:
        print("error: the camera path is empty", file=sys.stderr)
        return 2
    run_dir = run if run.is_dir() else Path(model.path).parent.parent
    out = Path(args.out) if args.out else run_dir / f"render_{args.path.replace(':', '_')}.mp4"
    fps = args.fps or float(getattr(getattr(model.cfg, "export", None), "fps", 0) or 15.0)
    c0 = items[0][0]
    print(f"rendering {len(items)} frames ({args.path}, {c0.width}x{c0.height}, {len(model.gaussians)} Gaussians)")

    progress = progress_printer("frame")
    t0 = time.perf_counter()
    try:
        n = write_video(render_frames(model, items, args.backend, args.background, progress), out, fps)
    except ValueError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"wrote {n} frames to {out} ({n / dt:.2f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

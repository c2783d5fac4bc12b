"""Render a trained model over time along a camera path into a video (mp4/gif), with dyngauss.render.rasterize.

    dyngauss render --run runs/x                              # fixed camera, 60 frames -> RUN/render_fixed.mp4
    dyngauss render --run runs/x --path orbit --frames 90 --out orbit.gif --size 320 320
    dyngauss render --run runs/x --path split:test --out test.mp4    # each test camera at its own time
(`python tools/render.py ...` is the same command.)

Paths:
  fixed       one camera (the dataset's `video` split camera if it has one, else the first test/val/train camera;
              without a dataset, a camera framing the Gaussians) while t goes 0 -> 1
  orbit       that camera circled --turns times around the world --up axis through the scene centre, t 0 -> 1
  split:NAME  the cameras of a dataset split (train/val/test/video), each at its own time (--frames subsamples)
Exit codes: 0 ok, 2 bad arguments / missing or incompatible checkpoint or dataset / an output that cannot be
written (disk full, read-only, permission denied: one `error:` line naming it).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .progress import progress_printer


class RenderToolError(Exception):
    """A bad --path, a missing dataset or split, an unloadable run (message says which)."""


def load_trained_model(run: Path, device: str):
    """The :class:`DynamicGaussians` of a run folder or checkpoint file. Raises RenderToolError."""
    from ..model import CheckpointError, DynamicGaussians

    try:
        return DynamicGaussians.load(run, device=device)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        raise RenderToolError(f"cannot load {run}: {e}") from None


# -- camera paths -------------------------------------------------------------------------------------------
def _rot_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix [3,3] by `angle` radians about `axis` (Rodrigues)."""
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
    from ..data.dnerf import DatasetError
    from ..data.loaders import available_splits, load_split

    try:
        have = available_splits(path)
    except DatasetError as e:
        raise RenderToolError(str(e)) from None
    for s in order:
        if s in have:
            cfg = model.config
            try:
                sp = load_split(path, s, downscale=getattr(cfg.data, "downscale", 1) or 1,
                                background=tuple(cfg.data.background), frames=[0] if one else None)
            except DatasetError as e:
                raise RenderToolError(str(e)) from None
            return list(sp.cameras), s
    if split:
        raise RenderToolError(f"dataset {path} has no split {split!r} (has {have})")
    return None


def build_path(model, path: str, frames: int | None, size: Sequence[int] | None, data: str | None,
               up: Sequence[float], turns: float) -> list:
    """[(Camera, time, frame index or None)] for the requested camera path. Raises RenderToolError."""
    from ..data.camera import Camera, look_at_viewmat
    from ..viewer.framing import frame_bbox

    n = frames or 60
    center, bb = _scene_center(model.gaussians)
    if path.startswith("split:"):
        cams, _ = _dataset_cameras(model, data, path.split(":", 1)[1], one=False)
        cams = sorted(cams, key=lambda c: (c.time, c.index))
        if frames and frames < len(cams):
            cams = [cams[int(i)] for i in np.linspace(0, len(cams) - 1, frames).round()]
        out = [(c, float(c.time), None) for c in cams]
    elif path in ("fixed", "orbit"):
        found = _dataset_cameras(model, data, None, one=True)
        if found:
            ref = found[0][0]
        else:  # no dataset: frame the Gaussians' bounding sphere from a 3/4 view (the player's framing)
            W, H = size or (400, 400)
            fr = frame_bbox((bb[0], bb[1]), W, H, up=up, margin=1.1)
            ref = Camera(fr.K, fr.extrinsic, W, H)
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
            out.append((cam, t, model.frame_index(t)))
    else:
        raise RenderToolError(f"unknown --path {path!r}; use fixed, orbit or split:NAME")
    if size:
        W, H = int(size[0]), int(size[1])
        out = [(_resized(c, W, H), t, fr) for c, t, fr in out]
    return out


def _resized(cam, W: int, H: int):
    from ..data.camera import Camera

    if (cam.width, cam.height) == (W, H):
        return cam
    K = cam.K.clone()
    K[0] *= W / cam.width
    K[1] *= H / cam.height
    return Camera(K, cam.viewmat.clone(), W, H, cam.time, cam.name, cam.index, dict(cam.meta))


# -- rendering ----------------------------------------------------------------------------------------------
def render_frames(model, path_items, backend: str = "auto", background=None, progress=None) -> Iterator[np.ndarray]:
    """Yield uint8 [H,W,3] images of the model at each (camera, time, frame)."""
    import torch

    bg = model.background() if background is None else torch.tensor(background, dtype=torch.float32,
                                                                      device=model.device)
    with torch.no_grad():
        for i, (cam, t, frame) in enumerate(path_items):
            out = model.render(cam.to(model.device), t, frame=frame, background=bg, backend=backend)
            img = out.rgb[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
            if progress:
                progress(i + 1, len(path_items))
            yield img


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder or checkpoint file")
    ap.add_argument("--path", default="fixed", help="fixed | orbit | split:NAME (default fixed)")
    ap.add_argument("--frames", type=int, default=None, help="number of frames (default 60; split: all)")
    ap.add_argument("--out", default=None, help="output .mp4/.mkv/.mov/.avi/.webm/.gif "
                                                "(default RUN/render_<path>.mp4)")
    ap.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None,
                    help="image size (default: the camera's)")
    ap.add_argument("--fps", type=float, default=None, help="video rate (default: the run's export.fps or 15)")
    ap.add_argument("--data", default=None, help="dataset folder for cameras (default: the one the run used)")
    ap.add_argument("--backend", default="auto", help="render backend: auto | torch | cpu | gsplat")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--up", type=float, nargs=3, default=(0.0, 0.0, 1.0), help="world up axis for orbit")
    ap.add_argument("--turns", type=float, default=1.0, help="orbit: revolutions over the video")
    ap.add_argument("--background", type=float, nargs=3, default=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Render the requested path into a video; returns the exit code (0 or 2)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep; must precede torch
    args = build_parser().parse_args(argv)
    from ..io.video import VideoError, check_video_path, write_video

    if args.frames is not None and args.frames < 1:
        print("error: --frames must be >= 1", file=sys.stderr)
        return 2
    if args.size and min(args.size) < 1:
        print("error: --size must be positive", file=sys.stderr)
        return 2
    try:
        if args.out:
            check_video_path(args.out)
    except VideoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = Path(args.run)
    if not run.exists():
        print(f"error: run folder or checkpoint not found: {run}", file=sys.stderr)
        return 2
    try:
        model = load_trained_model(run, args.device)
        items = build_path(model, args.path, args.frames, args.size, args.data, args.up, args.turns)
    except RenderToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not items:
        print("error: the camera path is empty", file=sys.stderr)
        return 2
    run_dir = run if run.is_dir() else Path(model.info.path).parent.parent
    out = Path(args.out) if args.out else run_dir / f"render_{args.path.replace(':', '_')}.mp4"
    fps = args.fps or float(getattr(getattr(model.config, "export", None), "fps", 0) or 15.0)
    c0 = items[0][0]
    print(f"rendering {len(items)} frames ({args.path}, {c0.width}x{c0.height}, {len(model.gaussians)} Gaussians)")

    t0 = time.perf_counter()
    try:  # the output's extension is checked before the first frame is rendered
        n = write_video(render_frames(model, items, args.backend, args.background, progress_printer("frame")),
                        out, fps)
    except ValueError as e:  # VideoError included
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # not writable / disk full: one line naming the path
        from ..io import describe_os_error

        print(f"\nerror: {describe_os_error(e)}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"wrote {n} frames to {out} ({n / dt:.2f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

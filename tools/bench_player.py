#!/usr/bin/env python
"""Playback benchmark: FPS of the player's per-frame update + render loop on a large sequence, offscreen.

    python tools/bench_player.py                                   # 100k points x 30 frames, 1280x720
    python tools/bench_player.py --points 300000 --size 960 720 --backend filament
    python tools/bench_player.py --seq runs/x/ply                  # an existing sequence
    xvfb-run -a python tools/bench_player.py                       # through an X server instead of EGL
    python tools/bench_player.py --splats --points 50000 --size 640 480   # rasterized Gaussians (play --splats)

It writes a synthetic sequence (a twisting, translating cloud; `--format points|gaussians`) to a temporary
folder, preloads it with the player's loader (timed), then renders every frame `--repeats` times with the
player's offscreen scene and reports:
  update        per-frame geometry update (numpy -> Open3D buffers)
  render+read   draw + read the image back (what --video/--frames pay per frame)
  FPS           1 / (update + render + read): the sustainable playback rate
  no-readback   legacy path only: update + draw without reading pixels back (what the window pays)
  CPU time      process CPU time per frame over all threads (llvmpipe renders on every core): with the
                machine to itself, wall time per frame is about CPU time / cores

--splats measures `dyngauss play --splats` instead (a Gaussian sequence; --sh-degree for the synthetic one):
  load          first read of a frame (PLY -> tensors on the render device), paid once per frame while the
                frames fit in the renderer's cache
  rasterize     dyngauss.render.rasterize from the framing camera -> uint8 image (--splat-backend: auto = gsplat
                on a CUDA GPU, else the C++ CPU kernel; --threads sets torch's / OpenMP's thread count)
  show          the window's cost: copy into the Open3D Image geometry + draw (legacy Visualizer, no read-back);
                skipped when no GL path works
  FPS           1 / (rasterize + show): the rate the window plays at once frames are cached
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def make_sequence(out: Path, n: int, frames: int, fmt: str, fps: float, seed: int = 0, sh_degree: int = 0) -> Path:
    """Synthetic sequence: a noisy cylinder twisting about z and sliding along x (Gaussians: sigma 0.01,
    opacity 0.95; SH bands above 0 small random values when `sh_degree` > 0)."""
    from dyngauss.io.ply import write_gaussians_ply, write_points_ply

    rng = np.random.default_rng(seed)
    th = rng.uniform(0, 2 * math.pi, n)
    z = rng.uniform(-1, 1, n)
    r = 0.4 + 0.02 * rng.normal(size=n)
    base = np.stack([r * np.cos(th), r * np.sin(th), z], 1).astype(np.float32)
    rgb = np.stack([0.5 + 0.5 * np.cos(th), 0.5 + 0.5 * z, 0.5 + 0.5 * np.sin(3 * th)], 1).clip(0, 1)
    out.mkdir(parents=True, exist_ok=True)
    sh = np.zeros((n, (sh_degree + 1) ** 2, 3), np.float32)
    sh[:, 0] = (rgb - 0.5) / 0.28209479177387814
    sh[:, 1:] = 0.1 * rng.normal(size=(n, sh.shape[1] - 1, 3))
    times = [i / max(frames - 1, 1) for i in range(frames)]
    names = []
    for i, t in enumerate(times):
        a = math.pi * t * base[:, 2]  # twist: angle grows with height
        c, s = np.cos(a), np.sin(a)
        p = np.stack([c * base[:, 0] - s * base[:, 1] + 0.5 * t, s * base[:, 0] + c * base[:, 1], base[:, 2]], 1)
        name = f"frame_{i:04d}.ply"
        if fmt == "points":
            write_points_ply(out / name, p, np.rint(rgb * 255).astype(np.uint8), fsync=False)
        else:
            q = np.stack([np.cos(a / 2), np.zeros(n), np.zeros(n), np.sin(a / 2)], 1)
            write_gaussians_ply(out / name, p, q, np.full((n, 3), math.log(0.01)), np.full(n, 3.0), sh, fsync=False)
        names.append(name)
    lo, hi = base.min(0) - [0, 0, 0], base.max(0) + [0.5, 0, 0]
    (out / "sequence.json").write_text(json.dumps({
        "version": 1, "format": fmt, "count": frames, "fps": fps, "times": times, "frames": names,
        "sh_degree": sh_degree if fmt == "gaussians" else 0, "num_gaussians": n,
        "bbox": {"min": lo.tolist(), "max": hi.tolist()}}))
    return out


def bench(seq_dir: Path, size: tuple[int, int], repeats: int, backend: str, point_size: float | None,
          warmup: int = 3) -> dict:
    from dyngauss.viewer import auto_point_size, frame_bbox, load_sequence, open_offscreen
    from dyngauss.viewer.scene import SceneGeometry

    t0 = time.perf_counter()
    seq = load_sequence(seq_dir)
    load_s = time.perf_counter() - t0
    W, H = size
    framing = frame_bbox(seq.bbox, W, H)
    be = open_offscreen(W, H, backend)
    try:
        scene = SceneGeometry(be.o3d, seq, glyphs=False)
        be.add("main", scene.geom, "points")
        be.setup(framing, point_size or auto_point_size(seq, framing), seq.background)
        for i in range(warmup):
            scene.set_frame(i % seq.count)
            be.update("main", scene.geom, "points")
            be.render()
        t_upd = t_ren = 0.0
        n = 0
        cpu0 = time.process_time()
        check = []
        for r in range(repeats):
            for i in range(seq.count):
                a = time.perf_counter()
                scene.set_frame(i)
                be.update("main", scene.geom, "points")
                b = time.perf_counter()
                img = be.render()
                c = time.perf_counter()
                t_upd += b - a
                t_ren += c - b
                n += 1
                if r == 0 and i in (0, seq.count // 2):
                    check.append(img)
        cpu_ms = 1e3 * (time.process_time() - cpu0) / n
        res = {"backend": be.name, "cpu_ms": cpu_ms, "frames": n, "points": seq.num_points, "size": [W, H],
               "load_s": load_s, "update_ms": 1e3 * t_upd / n, "render_read_ms": 1e3 * t_ren / n,
               "fps": n / (t_upd + t_ren), "seq_fps": seq.fps,
               "object_pixels": float((np.abs(check[0].astype(int) - 255).max(-1) > 30).mean()),
               "frames_differ": bool(len(check) > 1 and not np.array_equal(check[0], check[1]))}
        if be.name == "legacy":  # the window's cost: update + draw, no pixel read-back
            vis = be.vis
            a = time.perf_counter()
            m = 0
            for r in range(repeats):
                for i in range(seq.count):
                    scene.set_frame(i)
                    vis.update_geometry(scene.geom)
                    vis.poll_events()
                    vis.update_renderer()
                    m += 1
            be.render()  # make sure the last frame's work is finished before stopping the clock
            res["no_readback_fps"] = m / (time.perf_counter() - a)
    finally:
        be.close()
    return res


def bench_splats(seq_dir: Path, size: tuple[int, int], repeats: int, backend: str, warmup: int = 2) -> dict:
    """Time `dyngauss play --splats`: frame loading, rasterizing from the framing camera, showing in the window."""
    from dyngauss.viewer import OffscreenUnavailable, frame_bbox, load_sequence
    from dyngauss.viewer.splats import SplatRenderer, camera_from_framing

    seq = load_sequence(seq_dir)
    W, H = size
    r = SplatRenderer(seq, backend=backend)
    cam = camera_from_framing(frame_bbox(seq.bbox, W, H))
    t0 = time.perf_counter()
    for i in range(seq.count):
        r.frame(i)
    load_ms = 1e3 * (time.perf_counter() - t0) / seq.count
    for i in range(warmup):
        r.render(i % seq.count, cam)
    imgs, n = [], 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for rep in range(repeats):
        for i in range(seq.count):
            img = r.render(i, cam)
            n += 1
            if rep == 0 and i in (0, seq.count // 2):
                imgs.append(img)
    if r.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    render_ms = 1e3 * (time.perf_counter() - t0) / n
    res = {"backend": r.name, "gaussians": seq.num_points, "frames": n, "size": [W, H], "load_ms": load_ms,
           "render_ms": render_ms, "cpu_ms": 1e3 * (time.process_time() - cpu0) / n, "seq_fps": seq.fps,
           "object_pixels": float((np.abs(imgs[0].astype(int) - 255).max(-1) > 30).mean()),
           "frames_differ": bool(len(imgs) > 1 and not np.array_equal(imgs[0], imgs[1]))}
    try:
        res["show_ms"] = _show_ms(imgs, repeats * seq.count)
    except OffscreenUnavailable as e:
        res["show_note"] = str(e).splitlines()[0]
    res["fps"] = 1e3 / (render_ms + res.get("show_ms", 0.0))
    return res


def _show_ms(imgs: list, n: int) -> float:
    """ms per frame to copy an image into an Open3D Image geometry and draw it (legacy Visualizer, no
    read-back): the splat window's cost on top of rasterizing."""
    from dyngauss.viewer.runtime import OffscreenUnavailable, ensure_runtime_dir, import_open3d

    o3d = import_open3d("Error")
    ensure_runtime_dir()
    H, W = imgs[0].shape[:2]
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(width=W, height=H, visible=False):
        raise OffscreenUnavailable("Visualizer.create_window failed (no EGL and no X display)")
    try:
        geom = o3d.geometry.Image(np.ascontiguousarray(imgs[0]))
        vis.add_geometry(geom)
        vis.poll_events()
        vis.update_renderer()
        t0 = time.perf_counter()
        for k in range(n):
            np.asarray(geom)[...] = imgs[k % len(imgs)]
            vis.update_geometry(geom)
            vis.poll_events()
            vis.update_renderer()
        vis.capture_screen_float_buffer(do_render=False)  # wait for the last draw before stopping the clock
        return 1e3 * (time.perf_counter() - t0) / n
    finally:
        vis.destroy_window()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", help="benchmark this sequence folder instead of a synthetic one")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--format", choices=("points", "gaussians"), default="points")
    ap.add_argument("--fps", type=float, default=30.0, help="synthetic sequence's manifest fps (target)")
    ap.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    ap.add_argument("--repeats", type=int, default=3, help="passes over the sequence")
    ap.add_argument("--backend", default="auto", choices=("auto", "legacy", "filament"))
    ap.add_argument("--point-size", type=float, default=None)
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    ap.add_argument("--splats", action="store_true", help="benchmark `play --splats` (rasterized Gaussians)")
    ap.add_argument("--splat-backend", default="auto", choices=("auto", "cpu", "gsplat", "torch"))
    ap.add_argument("--sh-degree", type=int, default=0, choices=(0, 1, 2, 3), help="synthetic Gaussians' SH degree")
    ap.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads for --splats (default: all)")
    args = ap.parse_args(argv)
    if args.splats:
        args.format = "gaussians"
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)

    from dyngauss.viewer import OffscreenUnavailable

    tmp = None
    try:
        if args.seq:
            seq_dir = Path(args.seq)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="dyngauss_bench_"))
            t0 = time.perf_counter()
            seq_dir = make_sequence(tmp / "seq", args.points, args.frames, args.format, args.fps,
                                    sh_degree=args.sh_degree)
            print(f"wrote synthetic {args.format} sequence: {args.frames} frames x {args.points} points "
                  f"in {time.perf_counter() - t0:.1f} s")
        try:
            if args.splats:
                res = bench_splats(seq_dir, tuple(args.size), args.repeats, args.splat_backend)
            else:
                res = bench(seq_dir, tuple(args.size), args.repeats, args.backend, args.point_size)
        except OffscreenUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.splats:
        return _report_splats(res, args.json)
    W, H = res["size"]
    print(f"backend {res['backend']}, {res['points']} points, {W}x{H}, {res['frames']} frames; "
          f"preload {res['load_s']:.2f} s")
    print(f"  update       {res['update_ms']:7.2f} ms/frame")
    print(f"  render+read  {res['render_read_ms']:7.2f} ms/frame")
    print(f"  CPU time     {res['cpu_ms']:7.2f} ms/frame (all threads; wall time above grows when cores are busy)")
    print(f"  playback FPS {res['fps']:7.1f}  (update + render + read-back; sequence plays at {res['seq_fps']:g} fps"
          f" -> {'real time' if res['fps'] >= res['seq_fps'] else 'frames will be skipped'})")
    if "no_readback_fps" in res:
        print(f"  no-readback  {res['no_readback_fps']:7.1f} FPS  (update + draw, as in the window)")
    if res["object_pixels"] <= 0 or not res["frames_differ"]:
        print("warning: the rendered images look empty or static; check the setup", file=sys.stderr)
    if args.json:
        print(json.dumps(res))
    return 0


def _report_splats(res: dict, as_json: bool) -> int:
    W, H = res["size"]
    print(f"splats: {res['backend']}, {res['gaussians']} Gaussians, {W}x{H}, {res['frames']} frames")
    print(f"  load         {res['load_ms']:7.2f} ms/frame (first read of each frame)")
    print(f"  rasterize    {res['render_ms']:7.2f} ms/frame  (CPU time {res['cpu_ms']:.2f} ms over all threads)")
    if "show_ms" in res:
        print(f"  show         {res['show_ms']:7.2f} ms/frame (Image geometry update + draw)")
    else:
        print(f"  show         not measured: {res['show_note']}")
    print(f"  playback FPS {res['fps']:7.1f}  (sequence plays at {res['seq_fps']:g} fps -> "
          f"{'real time' if res['fps'] >= res['seq_fps'] else 'frames will be skipped'})")
    if res["object_pixels"] <= 0 or not res["frames_differ"]:
        print("warning: the rendered images look empty or static; check the setup", file=sys.stderr)
    if as_json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

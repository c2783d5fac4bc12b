"""Videos from the wild (issue 19, cases 5 and 6): variable-frame-rate phone videos and fixed cameras.

VFR: videos built here with ffmpeg (imageio-ffmpeg's binary) whose frame durations alternate or vary at random,
each frame showing its own index as a bar code; every distinct frame must come out once with its true
presentation timestamp. Fixed camera: a textured blob moving on a plain background with the camera fixed must
be refused (exit 2, before any mapping) and, with --fixed-camera, give a loadable D-NeRF folder with one camera
and the timestamps' times. Plus the camera check's verdicts on variants, and the SfM plausibility checks.
"""
from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from dyngauss.sfm.errors import PrepareError

ROOT = Path(__file__).resolve().parents[1]
CASUAL = ROOT.parent / "shared" / "data" / "casual_twist"
H, W = 64, 96          # bar-code frames
SH, SW = 128, 160      # camera-check clips
BITS = 6


# ----------------------------------------------------------------------------------------------- helpers

def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _texture(h, w, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.random((h // 8, w // 8, 3)), (w, h), interpolation=cv2.INTER_CUBIC)
    img += 0.5 * cv2.resize(rng.random((h // 3, w // 3, 3)), (w, h), interpolation=cv2.INTER_LINEAR)
    return (np.clip(img / 1.5, 0, 1) * 255).astype(np.uint8)


def _code_frame(k: int) -> np.ndarray:
    """A frame showing k as BITS vertical bars (bright = bit set)."""
    f = np.full((H, W, 3), 40, np.uint8)
    for b in range(BITS):
        if (k >> b) & 1:
            f[8:56, 16 * b + 2:16 * b + 14] = 230
    return f


def _read_code(img: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if img[32, 16 * b + 8].mean() > 128)


def _encode(args: list[str], path: Path, stdin: bytes | None = None) -> Path:
    cmd = [_ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", *args, "-fps_mode", "passthrough",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12", "-video_track_timescale", "90000", str(path)]
    subprocess.run(cmd, input=stdin, check=True)
    return path


def _vfr_setpts(path: Path, n: int) -> np.ndarray:
    """Frame durations alternate 1/30 s and 1/10 s (a phone that drops to 10 fps every other frame): raw frames
    piped at 30 fps, timestamps rewritten with setpts. Returns the true timestamps (s)."""
    raw = b"".join(_code_frame(k).tobytes() for k in range(n))
    _encode(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", "30", "-i", "-",
             "-vf", r"setpts=(floor(N/2)*4+mod(N\,2))/(30*TB)"], path, raw)
    k = np.arange(n)
    return ((k // 2) * 4 + k % 2) / 30.0


def _vfr_concat(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """Random frame durations (1/60 .. 1/8 s) through ffmpeg's concat demuxer. Returns the true timestamps."""
    import imageio.v3 as iio

    folder = path.parent / f"{path.stem}_frames"
    folder.mkdir()
    dur = np.random.default_rng(seed).choice([1 / 60, 1 / 30, 1 / 24, 1 / 15, 1 / 8], n)
    lines = ["ffconcat version 1.0"]
    for k in range(n):
        iio.imwrite(folder / f"{k:03d}.png", _code_frame(k))
        # the image demuxer's clock runs at 25 fps unless told otherwise: 90 kHz keeps the durations exact
        lines += [f"file '{folder / f'{k:03d}.png'}'", "option framerate 90000", f"duration {dur[k]:.9f}"]
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    _encode(["-f", "concat", "-safe", "0", "-i", str(folder / "list.txt")], path)
    return np.concatenate([[0.0], np.cumsum(dur[:-1])])


def _write_cfr(path: Path, frames, fps=10) -> Path:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, quality=8, macro_block_size=16)
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    return path


def _blob_frames(n=16, background=None, seed=1):
    """A textured disc that moves and grows over ``background`` (plain light grey by default); camera fixed."""
    import cv2

    tex = _texture(SH, SW, seed)
    bg = np.full((SH, SW, 3), 225, np.uint8) if background is None else background
    frames = []
    for i in range(n):
        m = np.zeros((SH, SW), np.uint8)
        cv2.ellipse(m, (45 + 4 * i, 64), (18 + i, 26), 10 * i, 0, 360, 255, -1)
        f = bg.copy()
        f[m > 0] = np.roll(tex, 3 * i, axis=1)[m > 0]
        frames.append(f)
    return frames


def _nothing_left(out: Path):
    assert not out.exists(), f"{out} was left behind"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(out.name + ".")]


def _prepare(video, out, **kw):
    from dyngauss.sfm.prepare import PrepareOptions, prepare_video

    return prepare_video(video, out, PrepareOptions(**kw), log=lambda s: None)


# ----------------------------------------------------------------------------------------------- VFR

@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    d = tmp_path_factory.mktemp("vfr")
    return {"alternating": (d / "alt.mp4", _vfr_setpts(d / "alt.mp4", 24)),
            "random": (d / "rnd.mp4", _vfr_concat(d / "rnd.mp4", 30))}


@pytest.mark.parametrize("kind", ["alternating", "random"])
def test_vfr_probe_and_decode_every_frame_once(vfr, kind):
    import imageio_ffmpeg

    from dyngauss.sfm.video import decode_frames, probe_video

    path, true_t = vfr[kind]
    n = len(true_t)
    # the cause of the bug: a reader on a constant-rate grid does not see n distinct frames
    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)
    grid_codes = [_read_code(np.frombuffer(b, np.uint8).reshape(H, W, 3)) for b in gen]
    assert grid_codes != list(range(n))
    info = probe_video(path)
    assert info.num_frames == n and info.vfr and (info.width, info.height) == (W, H)
    assert np.abs(info.times - true_t).max() < 1e-3
    assert info.duration == pytest.approx(true_t[-1], abs=1e-3)
    got = list(decode_frames(path, range(n), info=info))
    assert [i for i, _ in got] == list(range(n))
    assert [_read_code(img) for _, img in got] == list(range(n))
    some = [1, 5, n - 2]
    assert [(i, _read_code(img)) for i, img in decode_frames(path, some, info=info)] == [(k, k) for k in some]


def test_vfr_prepare_writes_true_times(vfr, tmp_path):
    """Every distinct frame once, named by its index, with time = its PTS over the kept span."""
    import imageio.v3 as iio

    path, true_t = vfr["random"]
    n = len(true_t)
    out = tmp_path / "all"
    s = _prepare(path, out, fixed_camera=True, step=1, test_every=0)
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert [f["frame_index"] for f in frames] == list(range(n)) and s["video_vfr"]
    assert np.abs(np.array([f["timestamp"] for f in frames]) - true_t).max() < 1e-3
    assert np.abs(np.array([f["time"] for f in frames]) - true_t / true_t[-1]).max() < 1e-3
    assert [_read_code(iio.imread(out / f"{f['file_path']}.png")) for f in frames] == list(range(n))

    # --fps samples real time: kept frames are the nearest to a 0.1 s grid, each once, over the whole video
    out = tmp_path / "fps"
    _prepare(path, out, fixed_camera=True, fps=10, test_every=0, min_frames=4)
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    idx = [f["frame_index"] for f in frames]
    grid = np.arange(0.0, true_t[-1] + 1e-9, 0.1)
    expect = sorted({int(np.argmin(np.abs(true_t - g))) for g in grid})
    assert idx == expect and len(set(idx)) == len(idx)
    assert [_read_code(iio.imread(out / f"{f['file_path']}.png")) for f in frames] == idx

    # --max-frames spreads over the whole duration (the old decoder dropped the second half)
    out = tmp_path / "max"
    _prepare(path, out, fixed_camera=True, max_frames=8, test_every=0, min_frames=4)
    ts = [f["timestamp"] for f in json.loads((out / "transforms.json").read_text())["frames"]]
    assert len(ts) <= 8 and ts[0] == 0.0 and ts[-1] > 0.85 * true_t[-1]
    assert np.all(np.diff(ts) > 0)


# ----------------------------------------------------------------------------------------------- fixed camera

@pytest.fixture(scope="module")
def plain_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    return _write_cfr(d / "plain.mp4", _blob_frames(16))


def _cli(args):
    from dyngauss.cli.prepare_video import main

    return main([str(a) for a in args])


def test_static_camera_plain_background_exits_2_before_mapping(plain_clip, tmp_path, monkeypatch, capsys):
    import dyngauss.sfm.prepare as prep

    def no_mapping(*a, **k):
        raise AssertionError("structure-from-motion must not start for a fixed camera")

    monkeypatch.setattr(prep, "run_sfm", no_mapping)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = _cli([plain_clip, "--out", out])
    elapsed = time.perf_counter() - t0
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    assert "error: the camera looks fixed" in cap.err and "--fixed-camera" in cap.err
    assert "[camera]" in cap.out and elapsed < 30.0
    _nothing_left(out)
    with pytest.raises(PrepareError) as ei:
        _prepare(plain_clip, out)
    assert ei.value.kind == "static"
    _nothing_left(out)


def test_fixed_camera_writes_loadable_dnerf(plain_clip, tmp_path, capsys):
    from dyngauss.data.loaders import load_split

    out = tmp_path / "fixed"
    rc = _cli([plain_clip, "--out", out, "--fixed-camera", "--fov", "50", "--test-every", "4"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed"]
    assert not (out / "points3d.ply").exists() and not (out / "_work").exists()
    tr, te = load_split(out, "train"), load_split(out, "test")
    assert len(tr) == 12 and len(te) == 4 and tr.images.shape[1:] == (SH, SW, 3)
    cams = tr.cameras + te.cameras
    V = np.stack([c.viewmat.double().numpy() for c in cams])
    assert np.abs(V - V[0]).max() == 0.0
    assert np.allclose(cams[0].center.numpy(), [0.0, -4.0, 0.0], atol=1e-6)
    f = 0.5 * SW / math.tan(math.radians(25.0))
    assert float(cams[0].K[0, 0]) == pytest.approx(f, rel=1e-5) and float(cams[0].K[1, 1]) == pytest.approx(f, rel=1e-5)
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert [fr["frame_index"] for fr in frames] == list(range(16))
    assert np.allclose([fr["timestamp"] for fr in frames], np.arange(16) / 10.0, atol=1e-3)
    assert np.allclose([fr["time"] for fr in frames], np.arange(16) / 15.0, atol=1e-3)
    times = sorted(tr.times.tolist() + te.times.tolist())
    assert np.allclose(times, np.arange(16) / 15.0, atol=1e-3)
    s = json.loads((out / "sfm.json").read_text())
    assert s["mode"] == "fixed_camera" and s["fov_deg"] == 50 and s["camera_motion"]["verdict"] == "static_plain"
    # default field of view
    s = _prepare(plain_clip, tmp_path / "default", fixed_camera=True)
    assert s["fov_deg"] == 60.0 and s["fov_source"] == "default"


def test_fixed_camera_argument_errors(plain_clip, tmp_path):
    out = tmp_path / "o"
    for kw, msg in (({"fov": 0.0}, "--fov"), ({"fov": 200.0}, "--fov"),
                    ({"fixed_camera": True, "masks": tmp_path}, "--masks")):
        with pytest.raises(PrepareError, match=msg) as ei:
            _prepare(plain_clip, out, **kw)
        assert ei.value.kind == "args"
        _nothing_left(out)


# ----------------------------------------------------------------------------------------------- camera check

def _thumbs(frames):
    from dyngauss.sfm.camera_motion import thumbnail

    return [thumbnail(f) for f in frames]


def _pan(n, step_px, seed=3, sky=False):
    big = _texture(2 * SH, 3 * SW, seed)
    frames = []
    for i in range(n):
        x = int(round(step_px * i))
        f = big[30:30 + SH, x:x + SW].copy()
        if sky:
            f[: int(0.4 * SH)] = (150, 190, 240)
        frames.append(f)
    return frames


def test_camera_check_verdicts():
    from dyngauss.sfm.camera_motion import measure_stillness

    def verdict(frames, moving=None):
        return measure_stillness(_thumbs(frames), moving).verdict

    wall = _texture(SH, SW, seed=5)
    assert verdict(_blob_frames(16)) == "static_plain"
    assert verdict(_blob_frames(16, background=wall)) == "static_textured"
    # exposure drift of a phone on a tripod does not hide a fixed camera
    drift = [np.clip(f.astype(int) + 2 * i, 0, 255).astype(np.uint8) for i, f in enumerate(_blob_frames(16, wall))]
    assert verdict(drift) == "static_textured"
    assert verdict(_pan(16, 4.0)) == "moving"
    assert verdict(_pan(30, 1.0 / 3.0)) == "moving"            # 10 px over the whole clip
    assert verdict(_pan(16, 4.0, sky=True)) == "moving"         # 40 % plain sky, the ground moves
    assert verdict([np.full((SH, SW, 3), 128, np.uint8)] * 10) == "no_texture"
    assert verdict(_blob_frames(2)) == "too_few_frames"
    # user masks of the moving object leave it out; the still wall still counts
    moving = [np.ones((SH, SW), bool)] * 16
    assert measure_stillness(_thumbs(_blob_frames(16, wall)), moving).verdict == "no_texture"


def test_camera_check_sees_casual_twist_camera_move():
    """The shared handheld-like video (a 90 degree arc in a textured room) passes the check."""
    from dyngauss.sfm.camera_motion import measure_stillness
    from dyngauss.sfm.video import decode_frames, probe_video, select_frames

    video = CASUAL / "video.mp4"
    if not video.is_file():
        pytest.skip(f"casual_twist video not found at {video}")
    info = probe_video(video)
    kept, _ = select_frames(info.times, step=5)
    st = measure_stillness(_thumbs([img for _, img in decode_frames(video, kept, info=info)]))
    assert st.verdict == "moving" and st.border_still_fraction < 0.5, st


def test_static_textured_wall_refused_before_mapping(tmp_path, monkeypatch):
    import dyngauss.sfm.prepare as prep

    monkeypatch.setattr(prep, "run_sfm", lambda *a, **k: pytest.fail("mapping started"))
    video = _write_cfr(tmp_path / "wall.mp4", _blob_frames(16, background=_texture(SH, SW, seed=5)))
    with pytest.raises(PrepareError, match="camera barely moves.*--fixed-camera") as ei:
        _prepare(video, tmp_path / "o")
    assert ei.value.kind == "static"
    # --skip-camera-check goes on to structure-from-motion
    with pytest.raises(pytest.fail.Exception, match="mapping started"):
        _prepare(video, tmp_path / "o", camera_check=False)
    _nothing_left(tmp_path / "o")


# ----------------------------------------------------------------------------------------------- plausibility

def test_check_focal_ranges():
    from dyngauss.sfm.plausibility import check_focal, focal_from_fov, horizontal_fov_deg

    assert horizontal_fov_deg(focal_from_fov(60.0, 480), 480) == pytest.approx(60.0)
    assert check_focal(415.7, 480) == pytest.approx(60.0, abs=0.01)
    for focal in (20.0, 5000.0):                        # 170 and 5.5 degrees
        with pytest.raises(PrepareError, match="implausible camera") as ei:
            check_focal(focal, 480)
        assert ei.value.kind == "implausible"
    with pytest.raises(PrepareError, match="--fov 40"):
        check_focal(focal_from_fov(80.0, 480), 480, expected_fov=40.0)
    assert check_focal(focal_from_fov(42.0, 480), 480, expected_fov=40.0) == pytest.approx(42.0)
    with pytest.raises(PrepareError):
        focal_from_fov(180.0, 480)


def _pan_video(tmp_path):
    return _write_cfr(tmp_path / "pan.mp4", _pan(12, 5.0))


def _fake_sfm(focal, coverage=None):
    """run_sfm stand-in: 12 cameras on a 60 degree arc around the origin, ``focal`` px, points near the origin."""
    from dyngauss.geometry.look_at import look_at_viewmat
    from dyngauss.sfm.colmap import SfmResult

    def run(image_dir, names, work_dir, opts, mask_dir=None, log=print):
        ang = np.radians(np.linspace(-30, 30, len(names)))
        w2c = [look_at_viewmat((3 * math.sin(a), -3 * math.cos(a), 0.5), (0, 0, 0), (0, 0, 1)) for a in ang]
        pts = np.random.default_rng(0).normal(0, 0.4, (200, 3))
        return SfmResult(names=list(names), registered=list(names), w2c=dict(zip(names, w2c)),
                         camera_model="SIMPLE_RADIAL", camera_params=[focal, SW / 2, SH / 2, 0.0], width=SW,
                         height=SH, points=pts, colors=np.full((200, 3), 128, np.uint8),
                         point_errors=np.full(200, 0.5), mean_reproj_error=0.5, num_models=1,
                         features={n: 500 for n in names}, seconds={}, coverage=coverage)
    return run


def test_implausible_focal_refused_and_low_coverage_warned(tmp_path, monkeypatch):
    import dyngauss.sfm.prepare as prep

    video = _pan_video(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(prep, "run_sfm", _fake_sfm(focal=20.0))          # 152 degrees over 160 px
    with pytest.raises(PrepareError, match="implausible camera.*--fixed-camera") as ei:
        _prepare(video, out)
    assert ei.value.kind == "implausible"
    _nothing_left(out)
    monkeypatch.setattr(prep, "run_sfm", _fake_sfm(focal=150.0))         # 56 degrees: fine, unless --fov 90
    with pytest.raises(PrepareError, match="--fov 90"):
        _prepare(video, out, fov=90.0)
    _nothing_left(out)
    monkeypatch.setattr(prep, "run_sfm", _fake_sfm(focal=150.0, coverage=0.1))
    logs: list[str] = []
    from dyngauss.sfm.prepare import PrepareOptions, prepare_video

    s = prepare_video(video, out, PrepareOptions(), log=logs.append)
    assert s["mode"] == "sfm" and s["camera_motion"]["verdict"] == "moving"
    assert s["fov_deg"] == pytest.approx(2 * math.degrees(math.atan(80 / 150)))
    assert len(s["warnings"]) == 1 and "cover only 10%" in s["warnings"][0]
    assert any(line.startswith("warning: the triangulated features cover only") for line in logs)

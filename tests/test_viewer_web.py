"""Web viewer without a browser: the playback clock, splat frames, camera poses, overlays, the model and sequence
sources, opening a path, the viser server (frames sent, export, trails) and the live viewer's step hook.
The page in a real browser: tests/test_viewer_browser.py."""
from __future__ import annotations

import math
import threading
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("viser", reason="viser is not installed (pip install -r requirements.txt)")

from dyngauss.export.sequence import export_sequence  # noqa: E402
from dyngauss.io.ply import read_gaussians_ply  # noqa: E402
from dyngauss.viewer.glyphs import quats_to_matrices  # noqa: E402
from dyngauss.viewer.web_cameras import matrix_to_wxyz, scene_up  # noqa: E402
from dyngauss.viewer.web_client import ProbeClient  # noqa: E402
from dyngauss.viewer.web_clock import PlaybackClock  # noqa: E402
from dyngauss.viewer.web_frame import SplatFrame  # noqa: E402
from dyngauss.viewer.web_overlays import (most_moving, project_normalized, select_in_rect,  # noqa: E402
                                          trail_segments)
from dyngauss.viewer.web_source import ModelSource, SequenceSource  # noqa: E402
from web_viewer_scene import SLIDE, slide_model, view_camera  # noqa: E402

from pathlib import Path  # noqa: E402

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------------------------------------ clock
def test_clock_plays_loops_and_stops():
    c = PlaybackClock(0.0, 1.0, duration_s=2.0)
    assert c.advance(1.0) == 0.0  # paused: time stands still
    c.play()
    assert c.advance(1.0) == pytest.approx(0.5)
    c.speed = 2.0
    assert c.advance(0.75) == pytest.approx(0.25)  # 0.5 + 0.75 s * 2 / 2 s = 1.25 -> wraps to 0.25
    c.loop = False
    c.advance(5.0)
    assert c.t == 1.0 and not c.playing
    c.play()  # from the end without loop: from the start again
    assert c.t == 0.0 and c.playing
    assert c.seek(7.0) == 1.0 and c.seek(-1.0) == 0.0
    with pytest.raises(ValueError, match="t0 < t1"):
        PlaybackClock(1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        c.seek(float("nan"))


# ------------------------------------------------------------------------------------- frames, cameras
def test_splat_frame_covariance_is_r_s2_rt():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(8, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s = rng.uniform(0.01, 0.5, (8, 3)).astype(np.float32)
    f = SplatFrame(np.zeros((8, 3), np.float32), q, s, np.ones(8, np.float32), np.zeros((8, 3), np.float32), 0.0)
    cov = f.covariances()
    for i in range(8):
        w, v = np.linalg.eigh(cov[i].astype(np.float64))
        assert np.allclose(np.sort(w), np.sort(s[i].astype(np.float64) ** 2), rtol=1e-4, atol=1e-9)
        r = quats_to_matrices(q[i:i + 1])[0]
        assert np.allclose(cov[i] @ r[:, 0], s[i, 0] ** 2 * r[:, 0], atol=1e-6)  # axis 0 is an eigenvector
    with pytest.raises(ValueError, match="rgb"):
        SplatFrame(f.means, q, s, f.opacities, np.zeros((7, 3)), 0.0)


def test_matrix_to_wxyz_inverts_quats_to_matrices():
    rng = np.random.default_rng(1)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        got = matrix_to_wxyz(quats_to_matrices(q[None])[0])
        assert np.allclose(got, q, atol=1e-9)


def test_scene_up_is_the_mean_camera_up():
    cam = view_camera()
    assert np.allclose(scene_up([cam, cam]), [0, -1, 0])  # OpenCV y is down: up is -y
    assert scene_up([]) is None


# ------------------------------------------------------------------------------------------ overlays
def test_projection_and_rectangle_pick():
    cam = view_camera()
    pts = np.array([[0.8, 0.0, 0.0],     # straight ahead: image centre
                    [0.8, 1.0, 0.0],     # below the centre (y down)
                    [-5.0, 0.0, 0.0],    # left, far outside the view
                    [0.8, 0.0, -8.0]])   # behind the camera
    uv, z = project_normalized(pts, cam.wxyz, cam.position, cam.fov_y, cam.aspect)
    assert np.allclose(uv[0], [0.5, 0.5]) and z[0] == pytest.approx(4.0)
    assert uv[1, 1] == pytest.approx(0.5 + 1.0 / 4.0 / (2 * math.tan(cam.fov_y / 2)))
    assert z[3] < 0
    rows = select_in_rect(pts, np.ones(4, bool), cam.wxyz, cam.position, cam.fov_y, cam.aspect, (0.4, 0.4),
                          (0.6, 0.9), max_count=10)
    assert rows.tolist() == [0, 1]
    only = select_in_rect(pts, np.array([False, True, True, True]), cam.wxyz, cam.position, cam.fov_y,
                          cam.aspect, (0, 0), (1, 1), max_count=10)
    assert only.tolist() == [1]  # not a candidate / outside / behind are left out


def test_trails_and_most_moving():
    tracks = np.zeros((3, 4, 3), np.float32)
    tracks[1, :, 0] = [0, 1, 2, 3]
    tracks[2, :, 0] = [0, 0.1, 0.2, 0.3]
    tracks[2, 2] = np.nan
    seg, col = trail_segments(tracks)
    assert seg.shape == (3 * 3 - 2, 2, 3) and col.shape == seg.shape and col.dtype == np.uint8
    assert np.isfinite(seg).all()
    assert tuple(col[0, 0]) != tuple(col[2, 1])  # early and late ends differ in colour
    assert most_moving(tracks[:2], np.array([10, 20]), 1).tolist() == [20]


# ------------------------------------------------------------------------------------------- sources
def test_model_source_frames_tracks_and_export(tmp_path):
    model = slide_model(n=60)
    src = ModelSource(model, [view_camera()], label="slide")
    f0, f1 = src.frame(0.0), src.frame(1.0)
    moving = np.arange(60) % 2 == 0
    assert np.allclose(f1.means[moving] - f0.means[moving], [0, 2 * SLIDE, 0], atol=1e-5)
    assert np.allclose(f1.means[~moving], f0.means[~moving])
    tr = src.tracks(np.array([0, 1, 999]), [0.0, 0.5, 1.0])
    assert np.allclose(tr[0, :, 1] - tr[0, 0, 1], [0, SLIDE, 2 * SLIDE], atol=1e-5)
    assert np.allclose(tr[1, :, 1], tr[1, 0, 1]) and np.isnan(tr[2]).all()
    out = src.export_ply(0.75, tmp_path / "t.ply")
    rec = read_gaussians_ply(out)
    with torch.no_grad():
        p = model.pose(0.75)
    assert np.allclose(rec["means"], p.means.numpy(), atol=1e-6)
    assert np.allclose(rec["opacity_logits"], model.gaussians.opacity_logits.detach().numpy())
    assert rec["sh"].shape == (60, 4, 3)
    assert src.nodes(0.5) is None and not src.has_nodes
    revision = src.revision
    src.publish(slide_model(n=30), step=7)
    assert src.revision == revision + 1 and len(src.frame(0.2)) == 30 and "step 7" in src.info


def test_model_source_node_graph_of_a_node_field():
    from dyngauss.model import DynamicGaussians

    src = ModelSource(DynamicGaussians.load(DATA / "ckpt_v1_nodes.pt"))
    assert src.has_nodes
    ov = src.nodes(0.3)
    m = src.model.deform.num_nodes
    assert ov.positions.shape == (m, 3) and len(ov.edges) > 0 and ov.edges.max() < m
    assert (ov.edges[:, 0] < ov.edges[:, 1]).all()  # undirected, each once


def test_sequence_source_nearest_frame_and_export(tmp_path):
    model = slide_model(n=40)
    seq = export_sequence(model, [0.0, 0.5, 1.0], tmp_path / "ply", log=lambda *a: None)
    src = SequenceSource(seq)
    assert src.key_times == [0.0, 0.5, 1.0] and src.time_range == (0.0, 1.0)
    with torch.no_grad():
        want = model.pose(0.5).means.numpy()
    assert np.allclose(src.frame(0.6).means, want, atol=1e-6)  # nearest frame to 0.6 is t=0.5
    assert src.frame(0.6).t == 0.5
    tr = src.tracks(np.array([0]), src.key_times)
    assert np.allclose(tr[0, :, 1] - tr[0, 0, 1], [0, SLIDE, 2 * SLIDE], atol=1e-5)
    rec = read_gaussians_ply(src.export_ply(0.9, tmp_path / "x.ply"))
    assert np.allclose(rec["means"], src.frame(1.0).means)


def test_open_path_kinds_and_errors(tmp_path):
    from dyngauss.viewer.web_open import ViewOpenError, open_path

    seq = export_sequence(slide_model(n=20), [0.0, 1.0], tmp_path / "run" / "ply", log=lambda *a: None)
    opened = open_path(seq, cameras=False)
    assert isinstance(opened.source, SequenceSource) and opened.export_dir == tmp_path / "run" / "view_exports"
    fallback = open_path(tmp_path / "run", cameras=False)  # a run folder with an export but no checkpoint
    assert isinstance(fallback.source, SequenceSource) and "no readable checkpoint" in fallback.notes[0]
    ck = open_path(DATA / "ckpt_v1_mlp.pt", device="cpu")
    assert isinstance(ck.source, ModelSource) and len(ck.source.frame(0.5)) > 0
    assert any("no cameras" in n or "cameras" in n for n in ck.notes)  # its dataset is gone: said, not raised
    with pytest.raises(ViewOpenError, match="no such file"):
        open_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ViewOpenError, match="not a sequence folder"):
        open_path(tmp_path / "empty")


# -------------------------------------------------------------------------------------------- server
@pytest.fixture
def viewer(tmp_path):
    from dyngauss.viewer.web import WebViewer

    v = WebViewer(ModelSource(slide_model(n=200), [view_camera(), view_camera("train", 0.25)], label="slide"),
                  port=0, export_dir=tmp_path / "exports")
    yield v
    v.close()


def test_server_serves_the_page_and_sends_frames(viewer):
    with urllib.request.urlopen(viewer.url, timeout=30) as r:
        assert r.status == 200 and b"<html" in r.read(2000).lower()
    assert viewer.wait_shown(0.0, timeout=30)
    n = viewer.frames_sent
    assert viewer.set_time(0.7) == pytest.approx(0.7)
    assert viewer.wait_shown(0.7, timeout=30) and viewer.frames_sent > n
    assert viewer._splats is not None and viewer._splats.buffer.shape == (200, 8)
    centers = viewer._splats.buffer[:, :3].copy().view(np.float32)
    assert np.allclose(centers, viewer.source.frame(0.7).means, atol=1e-6)
    viewer.play()
    threading.Event().wait(0.5)
    viewer.pause()
    assert viewer.time > 0.7 or viewer.time < 0.7  # moved (possibly wrapped past 1)


def test_export_button_writes_the_time_shown(viewer):
    viewer.set_time(0.25)
    path = viewer.export_now()
    assert path.parent.name == "exports" and path.name == "slide_t0.2500.ply"
    assert np.allclose(read_gaussians_ply(path)["means"], viewer.source.frame(0.25).means, atol=1e-6)


def test_pick_most_moving_selects_moving_gaussians(viewer):
    rows = viewer.pick_most_moving(16)
    assert len(rows) == 16 and (rows % 2 == 0).all()  # only even rows move in the slide scene
    assert viewer.wait_shown(timeout=30)
    deadline = 30.0
    while viewer._trail_paths is None and deadline > 0:
        threading.Event().wait(0.1)
        deadline -= 0.1
    assert viewer._trail_paths is not None and len(viewer._trail_paths.points) > 0


def test_frustum_hidden_at_the_start_camera(viewer):
    assert viewer._hidden_frustum == 0 and not viewer._frustums[0].visible and viewer._frustums[1].visible


# ------------------------------------------------------------------------------------------------ live
class _FakeTrainer:
    """What the live viewer reads of a trainer."""

    def __init__(self, tmp_path):
        from types import SimpleNamespace

        from dyngauss.data.camera import Camera
        from dyngauss.model import DynamicGaussians

        cam = Camera(torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]), torch.eye(4), 32, 32, time=0.0)
        split = SimpleNamespace(cameras=[cam], images=torch.zeros(1, 32, 32, 3))
        self.scene = SimpleNamespace(train=split, eval_split=None)
        self.model = DynamicGaussians.load(DATA / "ckpt_v1_mlp.pt")  # a run's model: config + buildable field
        self.step = 0
        self.run_dir = tmp_path / "run"
        self.cfg = None
        self.step_hooks = []


def test_live_viewer_snapshots_only_while_watched(tmp_path):
    from types import SimpleNamespace

    from dyngauss.viewer.web_live import start_live_viewer

    trainer = _FakeTrainer(tmp_path)
    assert start_live_viewer(SimpleNamespace(viewer=False, viewer_port=8080, viewer_every=2), trainer) is None
    logs = []
    live = start_live_viewer(SimpleNamespace(viewer=True, viewer_port=28311, viewer_every=2), trainer, logs.append)
    try:
        assert trainer.step_hooks == [live] and "live viewer at" in logs[0]
        for trainer.step in range(1, 5):
            live(trainer)
        assert live.snapshots == 0  # nobody connected: no copies
        with ProbeClient(live.url) as probe:
            deadline = 30.0
            while live.viewer.client_count() == 0 and deadline > 0:
                threading.Event().wait(0.05)
                deadline -= 0.05
            rev = live.source.revision
            with torch.no_grad():  # training changes the model; the viewer shows the snapshot of step 6
                trainer.model.gaussians.params["means"].add_(1.0)
            for trainer.step in range(5, 8):
                live(trainer)
            assert live.snapshots == 1 and live.source.revision == rev + 1 and live.source.step == 6
            assert live.viewer.wait_shown(revision=rev + 1, timeout=30)
            shown = live.source.frame(0.0).means
            with torch.no_grad():
                want = trainer.model.pose(0.0).means.numpy()
                trainer.model.gaussians.params["means"].add_(5.0)  # the snapshot shares no storage
            assert np.allclose(shown, want, atol=1e-6) and np.allclose(live.source.frame(0.0).means, want, atol=1e-6)
            assert probe.wait_quiet()[1] > 0
    finally:
        live.close()


def test_snapshot_shares_no_storage():
    from dyngauss.model import DynamicGaussians
    from dyngauss.viewer.web_live import snapshot_model

    for model in (DynamicGaussians.load(DATA / "ckpt_v1_nodes.pt"), slide_model(n=20)):  # payload / deep copy
        snap = snapshot_model(model)
        with torch.no_grad():
            before = model.pose(0.4).means.clone()
            assert torch.allclose(snap.pose(0.4).means, before, atol=1e-6)
            model.gaussians.params["means"].add_(1.0)
            for p in model.deform.parameters():
                p.add_(0.1)
            assert torch.allclose(snap.pose(0.4).means, before, atol=1e-6)
        assert not any(p.requires_grad for p in snap.parameters()) and snap.backward is None


# ------------------------------------------------------------------------------------------------- CLI
def test_view_command_arguments(capsys):
    from dyngauss.cli.main import main

    assert main(["view", "/nonexistent/run"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["view", str(DATA / "ckpt_v1_mlp.pt"), "--port", "80"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["view", str(DATA / "ckpt_v1_mlp.pt"), "--time", "2"]) == 2
    assert "--time" in capsys.readouterr().err


def test_tools_view_is_the_command():
    import importlib.util

    import dyngauss.cli.view

    spec = importlib.util.spec_from_file_location("_wrapper_view", Path(__file__).parents[1] / "tools" / "view.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main is dyngauss.cli.view.main


def test_train_with_the_live_viewer(tmp_path):
    """`train.viewer=true`: run_job starts the viewer before training; a client that connects then receives new
    frames while the model trains; the viewer stops with the training."""
    import re

    from dyngauss.config import load_config
    from dyngauss.train.run import run_job

    cfg = load_config(None, [f"out={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
                             "data.synthetic_resolution=24", "data.synthetic_train_frames=6", "model.num_points=200",
                             "render.backend=torch", "train.iters=8", "train.warmup_iters=2", "train.progress=false",
                             "train.viewer=true", "train.viewer_port=28411", "train.viewer_every=2",
                             "eval.lpips=false", "export.frames=2"])
    probes, logs = [], []

    def log(msg):
        logs.append(msg)
        m = re.search(r"live viewer at (http://\S+)", msg)
        if m:  # connect as a browser would, before the first step
            probe = ProbeClient(m.group(1))
            deadline = 30.0
            while probe.counts()[0] == 0 and deadline > 0:
                threading.Event().wait(0.05)
                deadline -= 0.05
            probes.append((probe, probe.wait_quiet(0.5)))

    torch.set_num_threads(1)
    run_job(cfg, log=log)
    assert probes, f"no live viewer line in {logs}"
    probe, (_, bytes_before) = probes[0]
    try:
        assert probe.counts()[1] > bytes_before  # frames of later snapshots arrived during training
    finally:
        probe.close()
    with pytest.raises(OSError):  # the server is gone after the job
        urllib.request.urlopen(re.search(r"http://\S+", next(m for m in logs if "live viewer" in m)).group(0),
                               timeout=5)

"""The web viewer in a real browser: headless Chromium (Debian's `chromium`, software WebGL) opens the page, the
time is set on the server at two times, and the screenshots must show the scene where it projects at each time
(and not where it is at the other time). Skips, saying why, when Chromium is missing or cannot start."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("viser", reason="viser is not installed (pip install -r requirements.txt)")

from dyngauss.viewer.web_overlays import project_normalized  # noqa: E402
from dyngauss.viewer.web_shot import BrowserUnavailable, HeadlessBrowser, chromium_executable  # noqa: E402
from dyngauss.viewer.web_source import ModelSource  # noqa: E402
from web_viewer_scene import slide_model, view_camera  # noqa: E402

W, H = 960, 640        # the browser's viewport; aspect 1.5 = the test camera's
INK = 40               # a pixel is "drawn" when a channel differs from the background by more than this


@pytest.fixture(scope="module")
def browser():
    if chromium_executable() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    try:
        b = HeadlessBrowser(W, H, timeout=90)
    except BrowserUnavailable as e:
        pytest.skip(f"chromium cannot start headless: {e}")
    yield b
    b.close()


def _footprint(src: ModelSource, t: float, shrink: float = 0.25) -> tuple[slice, slice]:
    """Pixel rows/columns (the central part of the bounding box) where the Gaussians' centres project at t."""
    cam = view_camera()
    uv, z = project_normalized(src.frame(t).means, cam.wxyz, cam.position, cam.fov_y, W / H)
    assert (z > 0).all()
    lo, hi = uv.min(0) * [W, H], uv.max(0) * [W, H]
    pad = (hi - lo) * shrink
    (c0, r0), (c1, r1) = np.rint(lo + pad).astype(int), np.rint(hi - pad).astype(int)
    assert 0 <= c0 < c1 <= W * 0.6 and 0 <= r0 < r1 <= H  # clear of the control panel on the right
    return slice(r0, r1), slice(c0, c1)


def _drawn(img: np.ndarray, region: tuple[slice, slice], background: np.ndarray) -> float:
    """Fraction of the region's pixels that are not background."""
    patch = img[region].astype(np.int32)
    return float((np.abs(patch - background).max(-1) > INK).mean())


def _wait_for(tab, region, background, want_drawn: bool, timeout: float = 120.0) -> np.ndarray:
    """Screenshots until the region is (mostly) drawn / empty; returns the last one."""
    deadline = time.monotonic() + timeout
    while True:
        tab.dismiss_notifications()  # viser's "software WebGL" toast
        img = tab.screenshot()
        f = _drawn(img, region, background)
        if (f > 0.6) if want_drawn else (f < 0.02):
            return img
        if time.monotonic() > deadline:
            return img
        time.sleep(1.0)


def test_browser_draws_the_scene_at_two_times(browser, tmp_path):
    from dyngauss.viewer.web import WebViewer

    src = ModelSource(slide_model(n=600, all_move=True), [view_camera()], label="slide")
    viewer = WebViewer(src, port=0, start_time=0.0, export_dir=tmp_path)
    try:
        tab = browser.open(viewer.url)
        deadline = time.monotonic() + 60
        while viewer.client_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert viewer.client_count() == 1, "the page did not connect to the viewer"
        assert viewer.wait_shown(0.0, timeout=30)
        at0, at1 = _footprint(src, 0.0), _footprint(src, 1.0)
        assert at0[0].stop <= at1[0].start  # the cube moves down the image: the footprints do not overlap
        # the background: the page's top-left corner region below the toasts (nothing is drawn there)
        first = tab.screenshot()
        bg = np.median(first[H - 120:H - 80, 100:200].reshape(-1, 3), axis=0)

        img0 = _wait_for(tab, at0, bg, want_drawn=True)
        assert _drawn(img0, at0, bg) > 0.6, "the scene at t=0 is not drawn where it projects"
        assert _drawn(img0, at1, bg) < 0.02, "something is drawn where the scene is only at t=1"

        viewer.set_time(1.0)
        assert viewer.wait_shown(1.0, timeout=30)
        img1 = _wait_for(tab, at1, bg, want_drawn=True)
        assert _drawn(img1, at1, bg) > 0.6, "the scene at t=1 is not drawn where it projects"
        img1 = _wait_for(tab, at0, bg, want_drawn=False)
        assert _drawn(img1, at0, bg) < 0.02, "the scene still shows at its t=0 place after moving the slider"
        diff = np.abs(img0.astype(np.int32) - img1.astype(np.int32)).max(-1) > INK
        assert diff[at0].mean() > 0.5 and diff[at1].mean() > 0.5
        tab.close()
    finally:
        viewer.close()


def test_view_command_screenshot_of_a_ply_sequence(browser, tmp_path, capsys):
    """`dyngauss view SEQ_DIR --screenshot`: an exported sequence alone (no model) drawn in the browser."""
    from dyngauss.cli.main import main
    from dyngauss.export.sequence import export_sequence

    seq = export_sequence(slide_model(n=400, all_move=True), [0.0, 0.5, 1.0], tmp_path / "run" / "ply",
                          log=lambda *a: None)
    out = tmp_path / "shot.png"
    assert main(["view", str(seq), "--port", "0", "--time", "0.5", "--screenshot", str(out),
                 "--size", "640", "480", "--wait", "8"]) == 0
    assert "wrote" in capsys.readouterr().out
    import cv2

    img = cv2.imread(str(out))[..., ::-1].astype(np.int32)
    assert img.shape == (480, 640, 3)
    left = img[:, :380]  # left of the control panel (its buttons are blue too)
    r, g, b = left[..., 0], left[..., 1], left[..., 2]
    red = (r > 150) & (g < 110) & (b < 110)     # the cube's two colours (0.9, 0.1, 0.1) and (0.1, 0.2, 0.9)
    blue = (b > 150) & (r < 110) & (g < 130)
    assert red.sum() > 500 and blue.sum() > 500, (red.sum(), blue.sum())

"""DIS optical-flow priors: accuracy on a known shift, forward-backward occlusion mask, pair selection, cache."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from dyngauss.data.camera import Camera, look_at_viewmat
from dyngauss.data.flow import (FlowParams, FlowPriorCache, compute_flow_pair, default_flow_cache_dir, dis_flow,
                                fb_consistency_mask, select_flow_pairs, to_gray_u8)

H = W = 128


def _noise(rng, sigma: float) -> np.ndarray:
    x = cv2.GaussianBlur(rng.random((H, W)).astype(np.float32), (0, 0), sigma)
    return (x - x.min()) / (x.max() - x.min())


def _shifted_pair(dx=2.5, dy=-1.25, seed=0):
    img = _noise(np.random.default_rng(seed), 2.0)
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    img2 = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return img, img2


def test_dis_recovers_known_shift():
    img, img2 = _shifted_pair()
    flow = dis_flow(img, img2)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16]
    err = np.linalg.norm(inner - np.array([2.5, -1.25]), axis=-1)
    assert err.mean() < 0.2, err.mean()
    # colour input and torch input give the same flow as grey numpy input
    rgb = torch.from_numpy(np.repeat(img[..., None], 3, -1))
    rgb2 = torch.from_numpy(np.repeat(img2[..., None], 3, -1))
    assert np.allclose(dis_flow(rgb, rgb2), flow, atol=1e-4)
    # the pair helper: backward flow is the opposite shift, and both masks mostly valid inside
    r = compute_flow_pair(img, img2)
    assert np.linalg.norm(r["bwd"][16:-16, 16:-16] + np.array([2.5, -1.25]), axis=-1).mean() < 0.2
    assert r["valid_fwd"][16:-16, 16:-16].mean() > 0.98 and r["valid_bwd"][16:-16, 16:-16].mean() > 0.98
    # pixels whose target leaves the image are invalid (shift +2.5 px in x: the last 2 columns)
    assert not r["valid_fwd"][:, -2:].any()


def test_fb_mask_flags_occlusion():
    rng = np.random.default_rng(1)
    bg = _noise(rng, 2.0)
    tex = _noise(rng, 3.0)
    a, b = bg.copy(), bg.copy()
    y0, x0, sq, dx = 40, 30, 48, 10
    a[y0:y0 + sq, x0:x0 + sq] = tex[:sq, :sq]               # a textured square moves 10 px right
    b[y0:y0 + sq, x0 + dx:x0 + dx + sq] = tex[:sq, :sq]     # over a static background
    r = compute_flow_pair(a, b)
    v = r["valid_fwd"]
    occluded = np.zeros((H, W), bool)                      # background of frame 1 hidden in frame 2
    occluded[y0 + 4:y0 + sq - 4, x0 + sq + 2:x0 + sq + dx - 1] = True
    assert v[occluded].mean() < 0.3, v[occluded].mean()
    assert v[100:, :].mean() > 0.95                         # far background: consistent
    sq_in = (slice(y0 + 4, y0 + sq - 4), slice(x0 + 4, x0 + sq - 4))
    assert v[sq_in].mean() > 0.95
    assert np.abs(r["fwd"][sq_in] - np.array([dx, 0])).mean() < 0.3
    # the explicit check on synthetic flows: consistent -> valid, inconsistent -> invalid
    f = np.zeros((H, W, 2), np.float32)
    f[..., 0] = 3.0
    bk = -f.copy()
    assert fb_consistency_mask(f, bk)[:, :100].all()
    bk[:, 50:60] = 5.0
    m = fb_consistency_mask(f, bk)
    assert not m[:, 48:55].any()
    # a target mask restricts the valid region
    m2 = np.zeros((H, W), np.float32)
    m2[:, :64] = 1
    assert not fb_consistency_mask(f, -f, mask2=m2)[:, 64:].any()


def _orbit_cams(angles_deg, times, radius=4.0):
    K = torch.tensor([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
    cams = []
    for a, t in zip(angles_deg, times):
        r = math.radians(a)
        cams.append(Camera(K, look_at_viewmat((radius * math.cos(r), radius * math.sin(r), 0.5)), 64, 64, time=t))
    return cams


def test_select_flow_pairs():
    n = 10
    times = [i / (n - 1) for i in range(n)]
    # fixed camera video: consecutive pairs (and the next one) only
    cams = _orbit_cams([0.0] * n, times)
    pairs = select_flow_pairs(cams, max_angle_deg=5, max_dt=0.12, max_per_frame=1)
    assert pairs == [(i, i + 1) for i in range(n - 1)]
    pairs2 = select_flow_pairs(cams, max_angle_deg=5, max_dt=0.25, max_per_frame=2)
    assert (0, 2) in pairs2 and (0, 3) not in pairs2
    # slow orbit (3 degrees per frame): kept; teleporting cameras (large jumps): skipped
    cams = _orbit_cams([3.0 * i for i in range(n)], times)
    assert select_flow_pairs(cams, max_angle_deg=5, max_dt=0.12, max_per_frame=1) == [(i, i + 1) for i in range(n - 1)]
    cams = _orbit_cams([(97.0 * i) % 360 for i in range(n)], times)
    assert select_flow_pairs(cams, max_angle_deg=15, max_dt=0.12) == []
    # explicit times override camera times; identical times never pair
    assert select_flow_pairs(cams, times=[0.5] * n, max_angle_deg=360, max_dt=1.0) == []


def test_flow_cache_round_trip(tmp_path):
    img, img2 = _shifted_pair()
    data_dir = tmp_path / "dataset"
    data_dir.mkdir()
    cdir = tmp_path / "cache"
    cache = FlowPriorCache(cdir, data_dir, FlowParams(preset="fast"))
    r1 = cache.pair(img, img2, tag="r_000-r_001")
    assert cache.misses == 1 and cache.hits == 0
    files = list(cdir.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("r_000-r_001_")
    assert not list(cdir.glob(".*tmp*"))  # atomic write left no temporary file
    r2 = FlowPriorCache(cdir, data_dir, FlowParams(preset="fast")).pair(img, img2, tag="r_000-r_001")
    for k in r1:
        assert np.array_equal(r1[k], r2[k])
    # different params or images -> a different key (recomputed, new file)
    c3 = FlowPriorCache(cdir, data_dir, FlowParams(preset="fast", fb_tau=0.7))
    c3.pair(img, img2, tag="r_000-r_001")
    assert c3.misses == 1 and len(list(cdir.glob("*.npz"))) == 2
    c4 = FlowPriorCache(cdir, data_dir, FlowParams(preset="fast"))
    c4.pair(img2, img, tag="r_000-r_001")
    assert c4.misses == 1
    # a corrupt cache file is recomputed, not trusted
    files[0].write_bytes(b"garbage")
    c5 = FlowPriorCache(cdir, data_dir, FlowParams(preset="fast"))
    r5 = c5.pair(img, img2, tag="r_000-r_001")
    assert c5.misses == 1 and np.array_equal(r5["fwd"], r1["fwd"])
    # directed priors for a list of pairs
    imgs = torch.from_numpy(np.stack([np.repeat(x[..., None], 3, -1) for x in (img, img2)]))
    pri = c5.priors(imgs, [(0, 1)], names=["a", "b"])
    assert [(p.src, p.dst) for p in pri] == [(0, 1), (1, 0)]
    assert pri[0].flow.shape == (H, W, 2) and pri[0].valid.dtype == torch.bool
    # never next to the dataset
    with pytest.raises(ValueError):
        FlowPriorCache(data_dir / "flow_cache", data_dir)


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNGAUSS_CACHE", str(tmp_path / "c"))
    d1 = default_flow_cache_dir(tmp_path / "data1")
    d2 = default_flow_cache_dir(tmp_path / "data2")
    assert d1 != d2 and d1.parent == tmp_path / "c" / "flow"
    assert default_flow_cache_dir(tmp_path / "data1", tmp_path / "run") .parent == tmp_path / "run" / "flow"


def test_to_gray_u8():
    a = np.zeros((4, 5, 3), np.float32)
    a[..., :] = 1.0
    g = to_gray_u8(a)
    assert g.dtype == np.uint8 and g.shape == (4, 5) and (g == 255).all()
    with pytest.raises(ValueError):
        to_gray_u8(np.zeros((2, 2, 2, 2)))


@pytest.mark.parametrize("preset", ["ultrafast", "medium"])
def test_presets_run(preset):
    img, img2 = _shifted_pair(1.0, 0.0, seed=3)
    f = dis_flow(img, img2, FlowParams(preset=preset))
    assert np.isfinite(f).all()
    with pytest.raises(ValueError):
        dis_flow(img, img2, FlowParams(preset="nope"))


def test_upsample_factor_rule():
    p = FlowParams()
    assert p.upsample_factor(128, 128) == 4      # 512 / 128
    assert p.upsample_factor(200, 300) == 3      # ceil(512 / 200)
    assert p.upsample_factor(96, 400) == 4       # capped at 4
    assert p.upsample_factor(800, 800) == 1
    assert FlowParams(upsample=2).upsample_factor(800, 800) == 2
    with pytest.raises(ValueError, match="upsample"):
        FlowParams(upsample=-1).upsample_factor(64, 64)


def test_upsampled_dis_is_more_accurate_on_small_images():
    """Rotation + zoom + shift of a fine texture on a 96^2 image (exact flow from the affine map): DIS on the
    4x enlarged images is closer to the truth than DIS at the native size, and its flow is in native pixels."""
    h = w = 96
    rng = np.random.default_rng(0)
    x = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.0)
    img = (x - x.min()) / (x.max() - x.min())
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 6.0, 1.05)
    M[:, 2] += [1.5, -0.8]
    img2 = cv2.warpAffine(img, M.astype(np.float32), (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    gt = np.stack([M[0, 0] * xs + M[0, 1] * ys + M[0, 2] - xs, M[1, 0] * xs + M[1, 1] * ys + M[1, 2] - ys], -1)
    err = {}
    for up in (1, 0):
        f = dis_flow(img, img2, FlowParams(upsample=up))
        assert f.shape == (h, w, 2) and f.dtype == np.float32
        err[up] = np.linalg.norm(f - gt, axis=-1)[12:-12, 12:-12].mean()
    assert err[0] < 0.08 and err[0] < 0.6 * err[1], err

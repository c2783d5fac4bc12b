"""dyngauss.io.video: the one video writer (mp4 through imageio-ffmpeg, gif through Pillow), atomic."""
from __future__ import annotations

import numpy as np
import pytest

iio = pytest.importorskip("imageio.v3")

from dyngauss.io.video import VideoError, VideoWriter, write_video  # noqa: E402


def _frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """A bright square that moves right, on a dark background (frames clearly differ)."""
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 20, np.uint8)
        x = 2 + 3 * i
        img[h // 4: h // 4 + 8, x: x + 8] = (250, 200, 40)
        out.append(img)
    return out


def _leftovers(d) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("name", ["v.mp4", "v.gif"])
def test_writes_and_reads_back(tmp_path, name):
    frames = _frames(6, 48, 32)
    out = tmp_path / "sub" / name  # the folder is created
    assert write_video(iter(frames), out, fps=12) == 6  # a generator is consumed lazily
    back = iio.imread(out, index=None)
    assert back.shape == (6, 32, 48, 3)
    # lossy codecs: compare where the moving square is, not exact values
    for f, b in zip(frames, back):
        assert np.abs(b.astype(int) - f.astype(int)).mean() < 12
    xs = [float(np.nonzero(b[:, :, 0] > 150)[1].mean()) for b in back]  # the square's centre column
    np.testing.assert_allclose(xs, [5.5 + 3 * i for i in range(6)], atol=1.0)  # moves 3 px per frame, in order
    assert _leftovers(out.parent) == []  # no temporary file left behind


def test_odd_size_padded_for_mp4_kept_for_gif(tmp_path):
    frames = _frames(3, 33, 25)
    write_video(frames, tmp_path / "odd.mp4", fps=5)
    mp4 = iio.imread(tmp_path / "odd.mp4", index=None)
    assert mp4.shape[:3] == (3, 26, 34)  # yuv420p: one replicated edge row and column
    assert np.abs(mp4[0, 25].astype(int) - mp4[0, 24].astype(int)).max() < 20  # the pad repeats the edge
    write_video(frames, tmp_path / "odd.gif", fps=5)
    assert iio.imread(tmp_path / "odd.gif", index=None).shape[:3] == (3, 25, 33)


def test_streaming_writer_context(tmp_path):
    out = tmp_path / "s.mp4"
    with VideoWriter(out, fps=10) as w:
        for f in _frames(4, 32, 32):
            w.append(f)
        assert not out.exists()  # still a temporary file until the writer closes
    assert w.count == 4 and w.size == (32, 32) and out.exists()
    assert iio.imread(out, index=None).shape[0] == 4


def test_bad_extension_and_fps(tmp_path):
    with pytest.raises(VideoError, match=r"x\.png.*unknown video extension"):
        VideoWriter(tmp_path / "x.png", fps=10)
    with pytest.raises(VideoError, match="unknown video extension"):
        write_video(_frames(1, 8, 8), tmp_path / "noext", fps=10)
    with pytest.raises(VideoError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(VideoError, match=r"file/out\.mp4: cannot write here"):
        write_video(_frames(2, 8, 8), blocker / "out.mp4", fps=10)


def test_bad_frames_keep_the_old_file(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"old video")
    with pytest.raises(VideoError, match="all frames must have one size"):
        write_video(_frames(2, 16, 16) + _frames(1, 18, 16), out, fps=10)
    with pytest.raises(VideoError, match=r"uint8 \[H, W, 3\]"):
        write_video([np.zeros((16, 16), np.float32)], out, fps=10)
    with pytest.raises(VideoError, match="no frames"):
        write_video([], out, fps=10)

    def failing():
        yield from _frames(2, 16, 16)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(failing(), out, fps=10)
    assert out.read_bytes() == b"old video"  # atomic: the destination is untouched
    assert _leftovers(tmp_path) == []

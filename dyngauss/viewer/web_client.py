"""A viewer client without a browser: connects to a viser server as a browser tab would, counts what it receives.

viser registers a websocket connection as a client once it has sent its first camera message (what the page
does on load), and then streams every scene update to it. :class:`ProbeClient` does exactly that and drains the
stream on a thread, counting messages and bytes: tests use it to play "someone is watching", and
tools/bench_viewer.py to measure the data sent per time step without a browser's rendering cost.
Uses viser's own message classes for the camera message (plain msgpack, as the page sends).
"""
from __future__ import annotations

import threading
import time


class ProbeClient:
    """Connect to the viser server at `url` (http://... or ws://...), announce a camera looking at the origin.

    Attributes: messages, bytes (received so far). Use as a context manager or call :meth:`close`."""

    def __init__(self, url: str, timeout: float = 30.0):
        import msgspec
        import viser
        from viser import _messages
        from websockets.sync.client import connect

        ws_url = "ws" + url[4:] if url.startswith("http") else url
        self._ws = connect(ws_url, subprotocols=[f"viser-v{viser.__version__}"], max_size=None,
                           open_timeout=timeout)
        self.messages = 0
        self.bytes = 0
        self._lock = threading.Lock()
        cam = _messages.ViewerCameraMessage(wxyz=(1.0, 0.0, 0.0, 0.0), position=(0.0, 0.0, -3.0), fov=0.9,
                                            near=0.01, far=100.0, image_height=480, image_width=640,
                                            look_at=(0.0, 0.0, 0.0), up_direction=(0.0, -1.0, 0.0))
        self._ws.send(msgspec.msgpack.encode(cam.as_serializable_dict()))
        self._thread = threading.Thread(target=self._drain, name="viser-probe-client", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while True:
                raw = self._ws.recv()
                with self._lock:
                    self.messages += 1
                    self.bytes += len(raw)
        except Exception:  # closed
            return

    def counts(self) -> tuple[int, int]:
        """(messages, bytes) received so far."""
        with self._lock:
            return self.messages, self.bytes

    def wait_quiet(self, quiet_s: float = 0.3, timeout: float = 30.0) -> tuple[int, int]:
        """Wait until nothing arrived for `quiet_s` seconds (or `timeout`); returns :meth:`counts`."""
        deadline = time.monotonic() + timeout
        last = self.counts()
        still = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.counts()
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still >= quiet_s:
                break
        return last

    def close(self) -> None:
        self._ws.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ProbeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

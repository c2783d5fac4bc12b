"""Headless Chromium through the DevTools protocol: open a page, take screenshots, measure the frame rate.

Used by the browser test (tests/test_viewer_browser.py), ``dyngauss view --screenshot`` and the README
picture. It starts the ``chromium`` executable (Debian's package; ``$DYNGAUSS_CHROMIUM`` overrides) headless
with software WebGL (SwiftShader through ANGLE, so no GPU or display is needed), opens one tab through the
``/json/new`` endpoint and talks to it over a websocket (the ``websockets`` package, a dependency of viser).
Protocol reference: https://chromedevtools.github.io/devtools-protocol/ (Page.captureScreenshot,
Runtime.evaluate).

:class:`BrowserUnavailable` says why Chromium could not start (not installed, crashed, no DevTools endpoint).
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0", "--remote-allow-origins=*")

# frames per second of requestAnimationFrame over `ms` milliseconds (the page's render loop rate)
_FPS_JS = ("new Promise(r => {let n = 0; const t0 = performance.now(); function f() {n++; "
           "if (performance.now() - t0 < %d) requestAnimationFrame(f); else r(n * 1000 / (performance.now() - t0));}"
           " requestAnimationFrame(f);})")


class BrowserUnavailable(RuntimeError):
    """Chromium is not installed or could not start headless (the message says which and why)."""


def chromium_executable() -> str | None:
    """Path of the Chromium executable ($DYNGAUSS_CHROMIUM, else chromium / chromium-browser / google-chrome on
    PATH), None when there is none."""
    env = os.environ.get("DYNGAUSS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class HeadlessBrowser:
    """One headless Chromium with a window of `width` x `height` CSS pixels; use as a context manager.

    Raises :class:`BrowserUnavailable` when it cannot start within `timeout` seconds."""

    def __init__(self, width: int = 960, height: int = 640, timeout: float = 60.0):
        exe = chromium_executable()
        if exe is None:
            raise BrowserUnavailable("no chromium executable found (install Debian's `chromium` package or set "
                                     "DYNGAUSS_CHROMIUM)")
        self.width, self.height = int(width), int(height)
        self._profile = tempfile.mkdtemp(prefix="dyngauss-chromium-")
        args = [exe, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, errors="replace")
        except OSError as e:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserUnavailable(f"{exe} could not be started: {e}") from None
        self.port = self._devtools_port(timeout)

    def _devtools_port(self, timeout: float) -> int:
        found: list[int] = []
        lines: list[str] = []

        def read() -> None:
            for line in self._proc.stderr:
                lines.append(line.rstrip())
                m = re.search(r"DevTools listening on ws://[^\s:]+:(\d+)/", line)
                if m and not found:
                    found.append(int(m.group(1)))

        threading.Thread(target=read, daemon=True).start()  # keeps draining stderr afterwards
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline and self._proc.poll() is None:
            time.sleep(0.05)
        if not found:
            rc = self._proc.poll()
            self.close()
            tail = " | ".join(lines[-5:])
            why = f"exited with code {rc}" if rc is not None else f"gave no DevTools endpoint in {timeout:.0f} s"
            raise BrowserUnavailable(f"chromium {why}: {tail}")
        return found[0]

    def open(self, url: str, timeout: float = 30.0) -> "Tab":
        """A new tab showing `url`."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            info = json.loads(r.read())
        tab = Tab(info["webSocketDebuggerUrl"], timeout)
        # the viewport exactly width x height (the window size includes the browser's frame)
        tab.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                 mobile=False)
        tab.call("Page.navigate", url=url)
        return tab

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "HeadlessBrowser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Tab:
    """One page: :meth:`call` sends a DevTools command and returns its result."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=timeout)
        self._id = 0
        self.timeout = timeout

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str, await_promise: bool = False):
        """The JSON value of a JavaScript expression in the page."""
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=await_promise, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JavaScript error: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def screenshot(self):
        """The page as an RGB image [H,W,3] uint8 (numpy)."""
        import cv2
        import numpy as np

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return img[..., ::-1].copy()

    def frame_rate(self, seconds: float = 3.0) -> float:
        """The page's requestAnimationFrame rate over `seconds` (frames per second)."""
        self.timeout = max(self.timeout, seconds + 30)
        return float(self.evaluate(_FPS_JS % int(seconds * 1000), await_promise=True))

    def dismiss_notifications(self) -> int:
        """Close the page's notification toasts (e.g. viser's "Software WebGL rendering detected"); returns how
        many close buttons were clicked."""
        return int(self.evaluate("(() => {const b = document.querySelectorAll("
                                 "'.mantine-Notification-root button'); b.forEach(x => x.click()); "
                                 "return b.length;})()") or 0)

    def close(self) -> None:
        self._ws.close()

"""Headless Chromium driven over the DevTools protocol on a pipe (stdlib only, no driver).

``chromium --headless --screenshot --virtual-time-budget=N`` shoots when *virtual* time runs
out, and virtual time does not wait for WebSocket traffic: on a busy machine a Streamlit page
is often shot before its first script run reaches the browser (measured here: 0 of 8 loads
rendered under load, each done in under a second). Driving the same binary over
``--remote-debugging-pipe`` lets a test wait for a condition in the page, then shoot.

Protocol: commands go to the browser's fd 3 and replies come from its fd 4, as JSON messages
each ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-pipe",
)
_TRAMPOLINE = (
    "import os, sys; r, w = map(int, sys.argv[1:3]); os.dup2(r, 3); os.dup2(w, 4); "
    "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])"
)


class ChromiumError(RuntimeError):
    """The browser answered a command with an error, or went away."""


class Chromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, binary: Path, profile: Path, size: tuple[int, int] = (1400, 1800)) -> None:
        self.binary, self.profile, self.size = binary, profile, size
        self._ids = itertools.count(1)
        self._buffer = b""
        self._session: str | None = None

    def __enter__(self) -> Chromium:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser reads commands on fd 3 and writes replies on fd 4: a small Python
        # trampoline moves the child's pipe ends there and execs it (thread-safe, unlike a
        # preexec_fn; dash cannot redirect fds above 9). The ends are first moved to fds >= 10
        # so that none of them is already 3 or 4.
        to_browser_r, from_browser_w = (_above_9(to_browser_r), _above_9(from_browser_w))
        self.process = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w),
             str(self.binary), *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.send("Target.attachToTarget",
                                  {"targetId": page["targetId"], "flatten": True})["sessionId"]
        width, height = self.size
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._session = None
            self.send("Browser.close", timeout=10)
        except (ChromiumError, OSError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)

    def send(self, method: str, params: dict[str, Any] | None = None,
             timeout: float = 60) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        message: dict[str, Any] = {"id": next(self._ids), "method": method,
                                   "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next_message(deadline)
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def _next_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not readable:
                raise ChromiumError("no reply from the browser in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise ChromiumError("the browser closed its pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def goto(self, url: str) -> None:
        """Start loading ``url`` (returns at once; poll with :meth:`evaluate`)."""
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (None while it navigates)."""
        try:
            reply = self.send("Runtime.evaluate",
                              {"expression": expression, "returnByValue": True})
        except ChromiumError:
            return None
        return reply.get("result", {}).get("value")

    def screenshot(self, path: Path) -> None:
        """Save the viewport as a PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def dom(self) -> str:
        """The page's current DOM as HTML (what ``--dump-dom`` prints)."""
        return str(self.evaluate("document.documentElement.outerHTML") or "")


def _above_9(fd: int) -> int:
    """``fd`` moved to a descriptor number of at least 10 (the old one is closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved

"""The dashboard in a real browser: headless Chromium loads every page of a running app.

A short-lived process seeds an embedded-engine path and exits (the engine allows one process
per path, and exiting is what releases it); then ``streamlit run`` serves the app on a free
port of 127.0.0.1, reading that path. Debian's Chromium, driven over the DevTools pipe (see
:mod:`tests.dashboard.chromium` for why not ``--screenshot``), opens each page, waits until
Streamlit has finished the run and every chart is drawn, saves the DOM check's verdict and a
screenshot to ``artifacts/screenshots/``. A page fails if it shows an exception or an error
box, stays on the loading skeleton, or its screenshot is blank.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.dashboard.chromium import Chromium
from tests.dashboard.harness import APP

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
DATABASE = "computewatch"
PAGE_DEADLINE_S = 90.0
SETTLE_S = 0.5
FATAL_TESTIDS = ("stException", "stAlertContentError")
EXCEPTION_TEXT = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b")
PAGE_STATE = """JSON.stringify({
  headings: [...document.querySelectorAll('h1')].map(h => h.innerText.trim()),
  text: document.body ? document.body.innerText : '',
  running: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
  skeleton: !!document.querySelector('[data-testid*="Skeleton"]'),
  charts: document.querySelectorAll('[data-testid="stVegaLiteChart"]').length,
  drawn: document.querySelectorAll(
    '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg.marks').length,
})"""


@dataclass(frozen=True)
class PageCheck:
    """A page's URL path, screenshot name, its heading and text only the rendered page has."""

    path: str
    name: str
    heading: str
    content: str


PAGES = (
    PageCheck("", "overview", "computewatch", "new alerts in the last 24 hours"),
    PageCheck("alerts", "alerts", "Alerts", "Alerts shown"),
    PageCheck("efficiency", "efficiency", "Compute efficiency", "GPU-ms per 1k tokens"),
    PageCheck("usage", "usage", "Usage & cost", "Download CSV"),
    PageCheck("health", "health", "Pipeline health", "Events stored"),
)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; skipped with a message when absent, except under CI=true."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install Debian's chromium package to run browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: browser tests must run)")
        pytest.skip(message)
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running app on a seeded store; the server is stopped afterwards."""
    tmp = tmp_path_factory.mktemp("browser")
    store_url = f"chdb://{tmp / 'engine'}"
    subprocess.run([sys.executable, "-m", "tests.dashboard.seeding", store_url, DATABASE],
                   cwd=REPO, check=True, timeout=600, capture_output=True)
    port = free_port()
    env = {**os.environ, "COMPUTEWATCH_CLICKHOUSE_URL": store_url,
           "COMPUTEWATCH_CLICKHOUSE_DATABASE": DATABASE}
    log = tmp / "streamlit.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
             "--client.toolbarMode", "minimal"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log, timeout=120)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def fatal(dom: str, text: str) -> str | None:
    """Why the page is broken (an exception or an error box), or None."""
    for testid in FATAL_TESTIDS:
        if f'data-testid="{testid}"' in dom:
            return f"the page shows {testid}"
    match = EXCEPTION_TEXT.search(text)
    return f"the page shows {match.group(0)!r}" if match else None


def unfinished(state: dict[str, object], page: PageCheck) -> str | None:
    """Why the page is not fully rendered yet, or None."""
    if page.heading not in state["headings"]:  # type: ignore[operator]
        return "still on the loading skeleton" if state["skeleton"] else "no heading yet"
    if state["running"]:
        return "the script is still running"
    if page.content not in str(state["text"]):
        return f"no {page.content!r} yet"
    if int(state["drawn"]) < int(state["charts"]):  # type: ignore[call-overload]
        return f"{state['drawn']} of {state['charts']} charts drawn"
    return None


def blank(png: Path) -> str | None:
    """Why the screenshot is empty (one colour, or little right of the sidebar), or None."""
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        extrema: tuple[tuple[int, int], ...] = rgb.getextrema()  # type: ignore[assignment]
        if all(lo == hi for lo, hi in extrema):
            return "a single colour"
        colours = rgb.crop((400, 0, rgb.width, rgb.height)).getcolors(maxcolors=1 << 16)
        if colours is not None and len(colours) < 64:
            return f"only {len(colours)} colours right of the sidebar"
    return None


def shoot(browser: Chromium, url: str, page: PageCheck) -> float:
    """Open a page, wait until it is rendered, check it and save its screenshot."""
    png = SHOTS / f"{page.name}.png"
    started = time.monotonic()
    browser.goto(f"{url}/{page.path}")
    problem: str | None = "not loaded"
    while time.monotonic() - started < PAGE_DEADLINE_S:
        raw = browser.evaluate(PAGE_STATE)
        state = json.loads(raw) if raw else None
        problem = unfinished(state, page) if state else "navigating"
        if problem is None:
            break
        time.sleep(0.25)
    time.sleep(SETTLE_S)
    browser.screenshot(png)
    dom = browser.dom()
    broken = fatal(dom, str(browser.evaluate("document.body.innerText") or ""))
    problem = broken or problem or blank(png)
    failed_dom = SHOTS / f"{page.name}.html"  # kept only for a failed page
    if problem is not None:
        failed_dom.write_text(dom)
        pytest.fail(f"/{page.path}: {problem} (see {png})")
    failed_dom.unlink(missing_ok=True)
    return time.monotonic() - started


def test_every_page_renders_in_chromium(
    chromium: Path, app_url: str, tmp_path: Path
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with Chromium(chromium, tmp_path / "profile") as browser:
        for page in PAGES:
            seconds = shoot(browser, app_url, page)
            print(f"/{page.path}: rendered and shot in {seconds:.1f} s")

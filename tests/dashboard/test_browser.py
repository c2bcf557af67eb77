"""The dashboard in a real browser, after the demo has run: what a reader sees on every page.

``computewatch demo`` runs on a fresh embedded-engine path and a free port of 127.0.0.1 (a small
fleet: six hours of history fast-forwarded, then live traffic). Debian's Chromium, driven over
the DevTools pipe (see :mod:`tests.dashboard.chromium` for why not ``--screenshot``), opens the
overview while the history is still loading, then, once the demo has been live for a few
minutes, every page at 1400 and 800 px wide. It waits until Streamlit has finished the run and
every chart is drawn, saves a full-page screenshot per page and width to the folder named by
``COMPUTEWATCH_SCREENSHOTS`` (default: the test's tmp path; printed), and checks what a reader
needs from the rendered page itself (Vega-Lite draws the charts as SVG, so their text is in the
DOM):

- no exception or error box, no loading skeleton left, no blank screenshot;
- no chart title, axis label, legend entry or number cut short with "…", and no legend entry
  outside its chart's box (a legend cut off at the bottom);
- no axis with the same tick label twice (``2, 2, 1, 1, 0``), no tick with an SI suffix
  (``800m`` for 0.8);
- no metric label or value cut short, and at 1400 px no table wider than its place on the
  page (but the raw events behind an alert);
- the latency headline and the latency chart in the same unit.
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from tests.dashboard.chromium import Chromium

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
WIDTHS = (1400, 800)
HEIGHT = 1000
DEMO_ARGS = ("--rate", "3", "--tenants", "12", "--backfill-hours", "6")
DEMO_BUDGETS = """[[budget]]
tenant = "tenant-01"
period = "day"
usd = 5

[[budget]]
tenant = "tenant-02"
period = "month"
gpu_hours = 40
"""  # six hours of history: spend shown, no projection yet (it needs three days)
LIVE_S = 150.0
"""How long the demo runs live before the pages are read (a few live minutes to compare with
the minute the history was stored in)."""
FIRST_PAINT_S = 20.0
PAGE_DEADLINE_S = 120.0
SETTLE_S = 1.0
FATAL_TESTIDS = ("stException", "stAlertContentError")
EXCEPTION_TEXT = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b")
SI_SUFFIX = re.compile(r"^[-−]?[\d.,]+\s?[yzafpnµumkMGTPEZY]$")
WIDE_TABLES = ("Events behind it",)
"""Tables of raw events: as many columns as an event has, scrolled sideways on purpose."""

PAGE_STATE = """JSON.stringify({
  headings: [...document.querySelectorAll('h1')].map(h => h.innerText.trim()),
  text: document.body ? document.body.innerText : '',
  running: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
  skeleton: !!document.querySelector('[data-testid*="Skeleton"]'),
  charts: document.querySelectorAll('[data-testid="stVegaLiteChart"]').length,
  drawn: document.querySelectorAll(
    '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg.marks').length,
})"""

READING = r"""JSON.stringify((() => {
  const inside = (r, box) => r.width === 0 || (r.left >= box.left - 1 && r.right <= box.right + 1
    && r.top >= box.top - 1 && r.bottom <= box.bottom + 1);
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].map(el => {
    const svg = el.querySelector('svg.marks');
    const box = el.getBoundingClientRect();
    const texts = svg ? [...svg.querySelectorAll('text')] : [];
    const titles = [...(svg ? svg.querySelectorAll('.role-title-text text') : [])]
      .map(t => t.textContent);
    const axes = [...(svg ? svg.querySelectorAll('g.role-axis') : [])].map(a => ({
      aria: a.getAttribute('aria-label') || '',
      title: [...a.querySelectorAll('.role-axis-title text')].map(t => t.textContent).join(' '),
      labels: [...a.querySelectorAll('.role-axis-label text')].map(t => t.textContent),
    }));
    return {
      svg: !!svg, title: titles.join(' / '), axes,
      texts: texts.map(t => t.textContent),
      outside: [...(svg ? svg.querySelectorAll('.role-legend-label text') : [])]
        .filter(t => !inside(t.getBoundingClientRect(), box)).map(t => t.textContent),
    };
  });
  const metrics = [...document.querySelectorAll('[data-testid="stMetric"]')].map(m => {
    const parts = [m, ...m.querySelectorAll('*')];
    return {
      label: (m.querySelector('[data-testid="stMetricLabel"]') || m).innerText.trim(),
      value: (m.querySelector('[data-testid="stMetricValue"]') || m).innerText.trim(),
      cut: parts.some(p => p.scrollWidth > p.clientWidth + 1 && p.clientWidth > 0),
    };
  });
  const tables = [...document.querySelectorAll('[data-testid="stDataFrame"]')].map(t => {
    const scroller = t.querySelector('.dvn-scroller');
    let heading = '';
    for (let el = t.closest('[data-testid="stElementContainer"]'); el && !heading;
         el = el.previousElementSibling) {
      heading = el.innerText ? el.innerText.trim().split('\n')[0] : '';
    }
    return {heading, wide: scroller ? scroller.scrollWidth > scroller.clientWidth + 1 : false,
            scroll: scroller ? [scroller.scrollWidth, scroller.clientWidth] : []};
  });
  return {charts, metrics, tables};
})())"""


@dataclass(frozen=True)
class PageCheck:
    """A page's URL path, screenshot name, heading, text only the rendered page has, and pairs
    of (metric label, title of the chart that must show it in the same unit)."""

    path: str
    name: str
    heading: str
    content: str
    same_unit: tuple[tuple[str, str], ...] = field(default=())


PAGES = (
    PageCheck("", "overview", "computewatch", "new alerts in the last 24 hours"),
    PageCheck("alerts", "alerts", "Alerts", "Alerts shown"),
    PageCheck("efficiency", "efficiency", "Compute efficiency", "GPU-ms per 1k tokens",
              (("p95 latency", "Latency percentiles"),)),
    PageCheck("allocation", "allocation", "Allocation", "Savings found"),
    PageCheck("usage", "usage", "Usage & cost", "Download CSV"),
    PageCheck("budgets", "budgets", "Budgets", "On course to run out"),
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


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The screenshot folder: ``COMPUTEWATCH_SCREENSHOTS`` or one under pytest's tmp path."""
    chosen = os.environ.get("COMPUTEWATCH_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the demo exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the demo's dashboard not healthy after {timeout:.0f} s:\n"
                f"{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class Demo:
    url: str
    started: float


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``computewatch demo`` on a fresh store; stopped (by its pid) afterwards."""
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    budgets = tmp / "budgets.toml"
    budgets.write_text(DEMO_BUDGETS)
    env = {**os.environ, "COMPUTEWATCH_CLICKHOUSE_URL": f"chdb://{tmp / 'engine'}",
           "COMPUTEWATCH_CLICKHOUSE_DATABASE": "computewatch",
           "COMPUTEWATCH_BUDGETS_FILE": str(budgets)}
    log = tmp / "demo.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "demo", "--port", str(port), *DEMO_ARGS],
            cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log, timeout=120)
        yield Demo(url, started)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


# -- what the page must not show ----------------------------------------------------------------

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
        colours = rgb.crop((rgb.width // 3, 0, rgb.width, rgb.height)).getcolors(
            maxcolors=1 << 16)
        if colours is not None and len(colours) < 64:
            return f"only {len(colours)} colours right of the sidebar"
    return None


def unreadable(
    reading: dict[str, list[dict[str, object]]], page: PageCheck, width: int
) -> list[str]:
    """Everything on the rendered page that a reader cannot read right (tables: at full width;
    at 800 px a table of many columns scrolls sideways)."""
    problems = []
    for chart in reading["charts"]:
        name = chart["title"] or "an untitled chart"
        if not chart["svg"]:
            problems.append(f"{name}: drawn on a canvas, its text cannot be checked")
        problems += [f"{name}: {t!r} is cut short" for t in chart["texts"]  # type: ignore[attr-defined]
                     if str(t).endswith("…")]
        if chart["outside"]:
            problems.append(f"{name}: legend entries outside its box: {chart['outside']}")
        for axis in chart["axes"]:  # type: ignore[attr-defined]
            labels = [str(label) for label in axis["labels"] if label]  # '' = an unlabelled tick
            if len(set(labels)) < len(labels):
                problems.append(f"{name}: axis {axis['title']!r} repeats ticks {labels}")
            problems += [f"{name}: axis {axis['title']!r} tick {label!r} has an SI suffix"
                         for label in labels if SI_SUFFIX.match(label)]
    for metric in reading["metrics"]:
        if metric["cut"]:
            problems.append(f"metric {metric['label']!r} ({metric['value']!r}) is cut short")
    for table in reading["tables"]:
        if (width == max(WIDTHS) and table["wide"]
                and not str(table["heading"]).startswith(WIDE_TABLES)):
            problems.append(f"the table after {table['heading']!r} is wider than its place "
                            f"(scroll {table['scroll']})")
    for label, chart_title in page.same_unit:
        values = [str(m["value"]) for m in reading["metrics"] if m["label"] == label]
        charts = [c for c in reading["charts"] if str(c["title"]).startswith(chart_title)]
        axes = [str(a["title"]) for c in charts
                for a in c["axes"] if str(a["aria"]).startswith("Y")]  # type: ignore[attr-defined]
        if len(values) != 1 or not axes:
            problems.append(f"no metric {label!r} or no chart {chart_title!r} to compare")
            continue
        unit = values[0].split()[-1]
        if not any(f"({unit})" in axis for axis in axes):
            problems.append(f"{label} is in {unit!r} ({values[0]}), {chart_title} in {axes}")
    return problems


# -- driving the browser ------------------------------------------------------------------------

def render(browser: Chromium, url: str, page: PageCheck) -> str | None:
    """Open a page and wait until it is rendered; why it is not, if it is not."""
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
    return problem


def full_page(browser: Chromium, width: int, png: Path) -> None:
    """Screenshot the whole page: the window is made as tall as the page's main column."""
    height = int(browser.evaluate(
        "document.querySelector('[data-testid=\"stMain\"]').scrollHeight") or HEIGHT)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": max(height, HEIGHT), "deviceScaleFactor": 1,
                  "mobile": False})
    time.sleep(SETTLE_S)
    browser.screenshot(png)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})


def test_overview_is_not_blank_while_the_demo_loads_history(
    chromium: Path, demo: Demo, shots: Path, tmp_path: Path
) -> None:
    """The first render says something (a loading note, or the cards) within seconds."""
    with Chromium(chromium, tmp_path / "profile", size=(1400, HEIGHT)) as browser:
        browser.goto(demo.url)
        started, text = time.monotonic(), ""
        while time.monotonic() - started < FIRST_PAINT_S:
            text = str(browser.evaluate(
                "(document.querySelector('[data-testid=\"stMain\"]') || {}).innerText || ''"))
            if "Loading history" in text or "new alerts in the last 24 hours" in text:
                break
            time.sleep(0.25)
        browser.screenshot(shots / "overview_first_render.png")
    assert "Loading history" in text or "new alerts in the last 24 hours" in text, text


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_reads_right_after_the_demo_has_run(
    chromium: Path, demo: Demo, shots: Path, tmp_path: Path, width: int
) -> None:
    time.sleep(max(0.0, demo.started + LIVE_S - time.monotonic()))
    problems: dict[str, list[str]] = {}
    with Chromium(chromium, tmp_path / "profile", size=(width, HEIGHT)) as browser:
        for page in PAGES:
            png = shots / f"{page.name}_{width}.png"
            unrendered = render(browser, demo.url, page)
            reading = json.loads(browser.evaluate(READING) or "{}")
            full_page(browser, width, png)
            dom = browser.dom()
            broken = fatal(dom, str(browser.evaluate("document.body.innerText") or ""))
            found = [p for p in (broken, unrendered, blank(png)) if p]
            found += unreadable(reading, page, width)
            if found:
                (shots / f"{page.name}_{width}.html").write_text(dom)
                problems[f"/{page.path} at {width} px (see {png})"] = [str(p) for p in found]
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)

"""Dashboard latency as a user feels it: from an action in Chromium to the updated figure.

For each code version (this checkout, and optionally an older one given with ``--before``)
a fresh server is started, then, in headless Chromium (Debian's, driven by Playwright):

- cold open: the first visitor's page open → first overlay drawn (the still of a session's first overlays, or
  the live figure where there is none) and → the live Plotly figure, on a just-started server, arriving 3 s after
  it answers (the warm start done), and on another arriving the moment it answers (a visitor who comes
  during the warm start sees its progress); each repetition a fresh server and a browser context with nothing
  cached (a visitor's running browser, new to the site);
- warm open: a new page → first overlay drawn and live figure, once the server's caches are warm (the browser's too);
- display changes (compute nothing): hide / show the signed row, change the colormap,
  change the (starting) opacity;
- a class toggle: click a score bar of an unexplained class (its map is computed), and again
  to remove it;
- a layer pick: click a row of the model tree (new maps), then the recommended row again.

Each interaction is repeated ``--reps`` times (median printed) and timed from the click to the
moment the overlay figure in the page has changed as expected, then the script waits until the
app is idle. Ratios are after ÷ before in the same run, so they compare across machines; the
absolute numbers depend on the machine (run it on a quiet one).

Run::

    git worktree add /tmp/camdash-before 5b5a969        # the code before the multipage issue
    python benchmarks/bench_ui.py --before /tmp/camdash-before
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OVERLAY = ".st-key-overlay_gradcam_0 .js-plotly-plot"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
TIMEOUT_MS = 180_000
# A signature of the first overlay figure: what each interaction changes.
SIGNATURE = f"""() => {{
  const gd = document.querySelector({OVERLAY!r});
  if (!gd || !gd.data) return null;
  const heat = gd.data.filter(t => t.type === 'heatmap');
  if (!heat.length) return null;
  return JSON.stringify([heat.length, heat[0].colorscale[heat[0].colorscale.length - 1][1], heat[0].opacity,
                         (gd.layout.annotations || []).map(a => a.text).join('|'), heat[0].meta || heat[0].name,
                         gd.querySelectorAll('g.hm image').length,
                         heat[0].z && heat[0].z.bdata ? heat[0].z.bdata.length + ':' + heat[0].z.bdata.slice(0, 48)
                                                      : JSON.stringify(heat[0].z).slice(0, 96)]);
}}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDidNotStart(RuntimeError):
    """The dashboard's server exited or did not answer in time."""


@contextmanager
def server(checkout: Path, *flags: str, env: dict[str, str] | None = None, output: IO | int = subprocess.DEVNULL,
           start_s: float = 120) -> Iterator[str]:
    """A fresh Streamlit server on the checkout's dashboard, bound to 127.0.0.1; its URL while it runs.

    ``flags``: more options; ``env``: more environment; ``output``: where its output goes (a file for a test's log).
    Raises ServerDidNotStart when it does not answer within ``start_s`` seconds. The browser tests start
    theirs here too (``tests/serve.py``).
    """
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--runner.postScriptGC", "false", *flags],
        cwd=checkout,
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerDidNotStart(f"the server of {checkout} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


VIEWPORT = {"width": 1600, "height": 1100}


# When the first overlay is on screen, from the page's navigation start: its still (plain HTML, the session's first
# overlays until Plotly has drawn them) and the live Plotly figure, each at the first frame after it is in the page.
MARKS = f"""
window.__marks = {{}};
new MutationObserver(() => {{
  const m = window.__marks;
  const mark = name => {{
    m[name] = -1;
    requestAnimationFrame(() => setTimeout(() => {{ m[name] = performance.now(); }}));
  }};
  if (!m.still && document.querySelectorAll('.st-key-still_gradcam_0 .camdash-still img').length >= 3) mark('still');
  if (!m.live && document.querySelectorAll({OVERLAY + " g.hm image"!r}).length >= 3) mark('live');
}}).observe(document, {{subtree: true, childList: true}});
"""


def _open(context, url: str) -> tuple[Page, float, float]:
    """A new page of the browser ``context`` → its first overlay: the page, and the seconds from its navigation
    start until the first overlay was drawn (a still or the live figure) and until the live figure was."""
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script(MARKS)
    page.goto(url)
    page.wait_for_function("window.__marks && window.__marks.live > 0", timeout=TIMEOUT_MS)
    marks = page.evaluate("window.__marks")
    live = marks["live"] / 1000
    seen = min(live, marks["still"] / 1000) if marks.get("still", 0) > 0 else live
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    return page, seen, live


Action = Callable[[], None] | tuple[Callable[[], None], Callable[[], None]]


def _timed(page: Page, action: Action, done: str) -> float:
    """Seconds from ``act()`` until the JS predicate ``done`` (given the signature before) holds.

    ``action`` is ``act`` or ``(prepare, act)``: ``prepare`` (opening a menu, hovering a bar)
    is what the user does before the click that counts.
    """
    prepare, act = action if isinstance(action, tuple) else (None, action)
    if prepare is not None:
        prepare()
    before = page.evaluate(SIGNATURE)
    page.evaluate("s => { window.__before = s; }", before)
    start = time.perf_counter()
    act()
    page.wait_for_function(f"() => {{ const s = ({SIGNATURE})(); const b = window.__before; return {done}; }}",
                           timeout=TIMEOUT_MS, polling=15)
    elapsed = time.perf_counter() - start
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    page.wait_for_timeout(250)
    return elapsed


def _pill(page: Page, key: str, text: str):
    return page.locator(f".st-key-{key} button", has_text=text).first


def _select(page: Page, key: str, option: str) -> Action:
    def prepare() -> None:
        page.locator(f".st-key-{key} input, .st-key-{key} [data-baseweb='select']").first.click()

    def act() -> None:
        page.get_by_role("option", name=option, exact=True).click()

    return prepare, act


def _bar(page: Page, rank: int) -> Action:
    """Click the logit bar of the ``rank``-th class, with the mouse (Plotly's drag layer covers the bars)."""
    where = {}

    def prepare() -> None:
        bars = page.locator("[class*='st-key-scores_'] .js-plotly-plot g.trace.bars").nth(1)
        box = bars.locator("g.point path").nth(rank).bounding_box()
        where["x"], where["y"] = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(where["x"], where["y"])
        page.wait_for_timeout(150)  # let Plotly register the hover that a click selects

    def act() -> None:
        page.mouse.click(where["x"], where["y"])

    return prepare, act


def measure(browser, checkout: Path, reps: int) -> dict[str, float]:
    """Median seconds per interaction on a fresh server of ``checkout``."""
    out: dict[str, list[float]] = {}
    cold_opens = (("cold open, 3 s after the start", 3.0), ("cold open", 0.0))
    # Each cold open: a fresh server and a new visitor, a browser context with nothing cached (its own HTTP and
    # code caches). 3 s after the server answers the warm start is done; at 0 s the visitor sees its progress.
    for _ in range(reps):
        for name, wait_s in cold_opens:
            fresh = browser.new_context(viewport=VIEWPORT)
            with server(checkout) as url:
                time.sleep(wait_s)
                _, seen, live = _open(fresh, url)
                out.setdefault(f"{name} → first overlay drawn", []).append(seen)
                out.setdefault(f"{name} → live figure", []).append(live)
            fresh.close()
    visitor = browser.new_context(viewport=VIEWPORT)  # the warm opens and the interactions share its caches
    with server(checkout) as url:
        _open(visitor, url)[0].close()  # the server's first visitor: the warm opens below are not it
        for _ in range(reps):
            page, seen, live = _open(visitor, url)
            out.setdefault("warm open → first overlay drawn", []).append(seen)
            out.setdefault("warm open → live figure", []).append(live)
            page.close()
        page = _open(visitor, url)[0]
        sidebar_views = page.locator("[data-testid='stSidebar'] .st-key-views").count() > 0
        if sidebar_views:  # the old page kept the display settings in the sidebar
            page.locator("[data-testid='stSidebar']").hover()
        steps: list[tuple[str, Action, str]] = []
        for _ in range(reps):
            steps += [
                # The default layer (ReLU6) starts with the ReLU'd row alone (views_nonneg: the signed row off).
                ("view: show the signed row", lambda: _pill(page, "views_nonneg", "Signed").click(),
                 "s && JSON.parse(s)[0] === 6"),
                ("view: hide the signed row", lambda: _pill(page, "views_nonneg", "Signed").click(),
                 "s && JSON.parse(s)[0] === 3"),
                ("colormap: jet → viridis", _select(page, "cmap", "viridis"), "s && s !== b"),
                ("colormap: viridis → jet", _select(page, "cmap", "jet"), "s && s !== b"),
                ("class toggle: add the 4th class", _bar(page, 3), "s && JSON.parse(s)[0] === 4"),
                ("class toggle: remove it", _bar(page, 3), "s && JSON.parse(s)[0] === 3"),
                ("layer pick: _blocks.15", lambda: page.locator("[data-layer='_blocks.15']").click(),
                 "s && s !== b && JSON.parse(s)[5] >= 6"),
                ("layer pick: back to _head_act", lambda: page.locator("[data-layer='_head_act']").click(),
                 "s && s !== b && JSON.parse(s)[5] >= 3"),
            ]
        missing: set[str] = set()  # kinds ("layer pick") this version does not do: not tried again
        for name, act, done in steps:
            kind = name.split(":")[0]
            if kind in missing:
                continue
            try:
                out.setdefault(name, []).append(_timed(page, act, done))
            except Exception as exc:
                missing.add(kind)
                out.pop(name, None)
                out.pop(next((n for n, _, _ in steps if n.startswith(kind) and n != name), ""), None)
                print(f"  {checkout.name}: {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        page.close()
    visitor.close()
    return {name: statistics.median(v) for name, v in out.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the older code to compare with")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    versions = {"after": ROOT}
    if args.before:
        versions = {"before": args.before.resolve(), **versions}
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        for label, checkout in versions.items():
            print(f"measuring {label}: {checkout} ({args.reps} repetitions) …", file=sys.stderr)
            results[label] = measure(browser, checkout, args.reps)
        browser.close()
    names = list(dict.fromkeys(n for r in results.values() for n in r))
    head = " | ".join(f"{label} (s)" for label in results)
    print(f"| interaction (median of {args.reps}) | {head} |" + (" after ÷ before |" if args.before else ""))
    print("|---|" + "---|" * len(results) + ("---|" if args.before else ""))
    for name in names:
        cells = " | ".join(f"{r[name]:.2f}" if name in r else "–" for r in results.values())
        ratio = ""
        if args.before and name in results["before"] and name in results["after"]:
            ratio = f" {results['after'][name] / results['before'][name]:.2f}× |"
        elif args.before:
            ratio = " – |"
        print(f"| {name} | {cells} |{ratio}")


if __name__ == "__main__":
    main()

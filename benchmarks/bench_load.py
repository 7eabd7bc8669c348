"""Several people on one dashboard at once: correct maps, no hooks left, and each one's latency alone vs under load.

Each browser session (its own Chromium, as each person has, so its own Streamlit session) plays a script of
actions a user would do (different images, classes, layers, fits, methods; one runs Score-CAM),
with think times between them. The scripts run twice, each time on a fresh server: one session
after another (*alone*), then all at once (*under load*). For every action two times are taken:
from the click to the updated overlay (what the person sees), and from the click to the last
message the page got from the server before that update (the server's part; the rest is the
browser drawing). At the end each session's overlay figures (every heatmap's data, as sent) must
be bit-identical between the two passes, and the server must report no hooks left on its models
(``/_camdash/stats``).

The browsers run on the server's machine here, which a real audience's do not: a Chromium page
takes 5-6 CPU-seconds to open (all its processes). ``--browser-nice`` (default 3) runs them below the server's
interactive work (as if they had CPUs of their own, they do not take the server's) and above its
background work (Score-CAM's batches run at nice 5, see ``cam_core.engine.priority``); the end-to-end
times still include the browsers' drawing on the CPU they get. So the bench also measures what each page open
costs alone in CPU-seconds (its browser's, from Chromium's own accounting, and the server's) and prints the
least slow-down those costs force on pages opened together on this machine's CPUs (:func:`open_floor`).

Run: ``python benchmarks/bench_load.py --sessions 6`` (prints p50/p95 per session, alone and under
load, end to end and the server's part). The CI test (tests/test_load.py) runs three sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Page, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ui import ARGS, IDLE, server

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = "[class*='st-key-overlay_'] .js-plotly-plot"
TIMEOUT_MS = 300_000
ERROR = "[data-testid='stException']"

Action = Callable[[Page], Awaitable[None]]


@dataclass
class Session:
    """One user: the page they open (a shared link) and what they do there."""

    name: str
    query: str
    actions: list[tuple[str, Action]]
    latencies: dict[str, float] = field(default_factory=dict)
    server: dict[str, float] = field(default_factory=dict)  # the server's part of each latency
    figures: str = ""
    open_cpu_s: float = 0.0  # CPU-seconds its page open took alone: its browser's and the server's
    browser_cpu_s: float = 0.0  # its browser's CPU-seconds over the whole session
    open_at: float = 0.0  # when its page open began (perf_counter)


async def _idle(page: Page) -> None:
    await page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)


async def _titles(page: Page) -> str:
    return await page.evaluate(
        f"() => [...document.querySelectorAll({OVERLAY!r})].map(g => (g.layout.annotations || [])"
        ".map(a => a.text).join('|')).join('||')"
    )


async def _wait_titles(page: Page, needle: str, present: bool = True) -> None:
    await page.wait_for_function(
        f"() => [...document.querySelectorAll({OVERLAY!r})].some(g => (g.layout.annotations || [])"
        f".some(a => a.text.includes({needle!r}))) === {str(present).lower()}",
        timeout=TIMEOUT_MS,
    )


def add_class(name: str) -> Action:
    async def act(page: Page) -> None:
        box = page.locator(".st-key-class_find input")
        await box.fill(name)
        await box.press("Enter")
        await _wait_titles(page, name)

    return act


def sample(name: str, expect: str) -> Action:
    async def act(page: Page) -> None:
        await page.locator(".st-key-samples button", has_text=name).click()
        await _wait_titles(page, expect)

    return act


def layer(name: str) -> Action:
    async def act(page: Page) -> None:
        await page.locator(f"[data-layer='{name}']").click()
        await page.get_by_text(f"layer {name}").first.wait_for(timeout=TIMEOUT_MS)
        await page.wait_for_function(
            f"() => [...document.querySelectorAll({OVERLAY!r})].every(g => g.data.some(t => t.type === 'heatmap'))",
            timeout=TIMEOUT_MS,
        )

    return act


def fit(label: str, width: float) -> Action:
    async def act(page: Page) -> None:
        await page.locator(".st-key-fit button", has_text=label).click()
        await page.wait_for_function(
            f"() => (document.querySelector({OVERLAY!r})?.layout.xaxis.range || [0, 0])[1] === {width - 0.5}",
            timeout=TIMEOUT_MS,
        )

    return act


def hide_signed() -> Action:
    async def act(page: Page) -> None:
        # At a ReLU-like layer the signed row starts off (views_nonneg), at a signed one on: this toggles it.
        signed_now = await page.evaluate(
            f"() => [...document.querySelectorAll({OVERLAY!r})].some(g => (g.layout.annotations || [])"
            ".some(a => a.text.includes('signed ±')))"
        )
        await page.locator("[class*='st-key-views'] button", has_text="Signed").click()
        await _wait_titles(page, "signed ±", present=not signed_now)

    return act


def scripts(count: int) -> list[Session]:
    """``count`` users (at most 6), each with their own image, classes, layer, fit or method."""
    every = [
        Session("cat, classes", "", [("add goldfish", add_class("goldfish")), ("add lemon", add_class("lemon")),
                                     ("hide signed", hide_signed())]),
        Session("coffee, layer", "?image=coffee&k=2", [("pick _blocks.15", layer("_blocks.15")),
                                                        ("add teapot", add_class("teapot"))]),
        Session("astronaut, fit", "?image=astronaut&k=2", [("switch to rocket", sample("rocket", "missile")),
                                                            ("fit crop", fit("Centre crop", 224))]),
        Session("motorcycle, HiResCAM", "?image=motorcycle&method=gradcam,hirescam&k=2",
                [("pick _blocks.14", layer("_blocks.14")), ("add mountain bike", add_class("mountain bike"))]),
        Session("coffee, crop", "?image=coffee&fit=crop&k=3",
                [("add broccoli", add_class("broccoli")), ("hide signed", hide_signed())]),
        Session("chelsea, Score-CAM", "?image=chelsea&method=scorecam&k=1",
                [("add tiger cat", add_class("tiger cat"))]),
    ]
    return every[:count]


async def _figures(page: Page) -> str:
    """Every overlay heatmap's data as sent (Plotly's typed arrays), to compare two passes bit for bit."""
    return await page.evaluate(
        f"() => JSON.stringify([...document.querySelectorAll({OVERLAY!r})].map(g => g.data.filter(t => "
        "t.type === 'heatmap').map(t => [t.name, t.z && t.z.bdata ? t.z.bdata : JSON.stringify(t.z)])))"
    )


async def play(chromium, executable: str, url: str, session: Session, seed: int, alone: bool) -> Session:
    """In a browser of its own, open the session's link, then do its actions with think times; record latencies
    and the figures. (Six sessions in one browser shared its one compositor: their pages were drawn together.)
    ``alone``: the only session on the server, so the server's CPU time during its page open is its own and
    is added to :attr:`Session.open_cpu_s` (under load nothing is asked of the server but the session's work)."""
    rng = random.Random(seed)
    browser = await chromium.launch(executable_path=executable, args=ARGS)
    cdp = await browser.new_browser_cdp_session()
    page = await browser.new_page(viewport={"width": 1600, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    frames: list[float] = []  # when each message from the server arrived (the browser's network side)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _payload: frames.append(time.perf_counter())))

    def record(name: str, start: float) -> None:
        end = time.perf_counter()
        session.latencies[name] = end - start
        session.server[name] = max((t for t in frames if start <= t <= end), default=end) - start

    cpu_before = await _open_cpu(cdp, url) if alone else 0.0
    start = session.open_at = time.perf_counter()
    await page.goto(url + session.query)
    await page.wait_for_function(
        f"() => document.querySelectorAll({OVERLAY + ' g.hm image'!r}).length >= 2"
        f" || !!document.querySelector({ERROR!r})",
        timeout=TIMEOUT_MS,
    )
    if await page.locator(ERROR).count():  # fail now, with the page's message, not after the timeout
        raise RuntimeError(f"{session.name}: {await page.locator(ERROR).first.inner_text()}")
    record("open", start)
    if alone:
        session.open_cpu_s = await _open_cpu(cdp, url) - cpu_before
    await _idle(page)
    for name, act in session.actions:
        await asyncio.sleep(rng.uniform(0.3, 0.8))  # a person reads, then clicks
        start = time.perf_counter()
        await act(page)
        record(name, start)
        await _idle(page)
    await page.wait_for_timeout(300)
    session.figures = await _figures(page)
    session.browser_cpu_s = await _browser_cpu(cdp)
    await browser.close()
    return session


async def _browser_cpu(cdp) -> float:
    """CPU-seconds used so far by one browser's processes (Chromium's own accounting)."""
    return sum(p["cpuTime"] for p in (await cdp.send("SystemInfo.getProcessInfo"))["processInfo"])


async def _open_cpu(cdp, url: str) -> float:
    """CPU-seconds used so far by the browser and the server together."""
    return await _browser_cpu(cdp) + (await asyncio.to_thread(stats, url))["cpu_ms"] / 1e3


async def _warm(url: str) -> None:
    deadline = time.monotonic() + 300
    while not stats(url)["warm"] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_camdash/stats", timeout=10) as r:
        return json.loads(r.read())


def _niced_chromium(folder: Path, nice: int) -> str:
    """Debian's Chromium started at CPU priority ``nice`` (a two-line wrapper script; 0: Chromium itself)."""
    chromium = shutil.which("chromium")
    if not nice or chromium is None or shutil.which("nice") is None:
        return chromium
    wrapper = folder / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {int(nice)} {chromium} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def _run(count: int, together: bool, nice: int) -> tuple[list[Session], dict]:
    async with async_playwright() as p:
        folder = tempfile.TemporaryDirectory(prefix="bench_load_")  # the wrapper script, removed after the pass
        chromium = _niced_chromium(Path(folder.name), nice)
        with folder, server(ROOT) as url:
            await _warm(url)  # measure people, not the server's start-up
            users = scripts(count)
            server_cpu, start = stats(url)["cpu_ms"], time.perf_counter()
            if together:
                plays = (play(p.chromium, chromium, url, s, i, alone=False) for i, s in enumerate(users))
                users = list(await asyncio.gather(*plays))
            else:
                users = [await play(p.chromium, chromium, url, s, i, alone=True) for i, s in enumerate(users)]
            after = stats(url)
            after["wall_s"] = time.perf_counter() - start
            after["cpu_s"] = (after["cpu_ms"] - server_cpu) / 1e3 + sum(u.browser_cpu_s for u in users)
    return users, after


def open_floor(opens: dict[str, tuple[float, float]], starts: dict[str, float], cores: int) -> tuple[float, list[str]]:
    """The least ratio some session's page open must reach when all open at once, and the sessions that prove it.

    ``opens``: each session's page open alone, (seconds, CPU-seconds of its browser and the server);
    ``starts``: when each began its open in the loaded pass. The last page of a group of sessions opened
    together cannot be drawn before the first began plus the group's CPU-seconds ÷ ``cores`` (the CPUs cannot
    do more), so that session waited at least that minus the spread of the starts, and its open alone took at
    most the group's longest: the ratio below holds whatever the scheduling. Best over every group.
    """
    best, group = 0.0, []
    names = list(opens)
    for size in range(1, len(names) + 1):
        for chosen in itertools.combinations(names, size):
            spread = max(starts[n] for n in chosen) - min(starts[n] for n in chosen)
            need = sum(opens[n][1] for n in chosen) / cores - spread
            ratio = need / max(opens[n][0] for n in chosen)
            if ratio > best:
                best, group = ratio, list(chosen)
    return best, group


def run(count: int, nice: int = 3) -> dict:
    """Both passes; the report the test and the benchmark read."""
    alone, _ = asyncio.run(_run(count, together=False, nice=nice))
    loaded, after = asyncio.run(_run(count, together=True, nice=nice))
    cores = len(os.sched_getaffinity(0))
    floor, group = open_floor({a.name: (a.latencies["open"], a.open_cpu_s) for a in alone},
                              {b.name: b.open_at for b in loaded}, cores)
    report = {"sessions": [], "hooks_on_models": after["hooks_on_models"], "rss_bytes": after["rss_bytes"],
              "cores": cores, "open_floor": floor, "open_floor_sessions": group,
              "loaded_cpu_use": after["cpu_s"] / (cores * after["wall_s"])}
    for a, b in zip(alone, loaded, strict=True):
        report["sessions"].append(
            {
                "name": a.name,
                "alone": a.latencies,
                "loaded": b.latencies,
                "server_alone": a.server,
                "server_loaded": b.server,
                "open_cpu_s": a.open_cpu_s,
                "same_maps": a.figures == b.figures and bool(a.figures),
            }
        )
    return report


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--browser-nice", type=int, default=3, help="CPU priority of the browsers (0: as is)")
    args = parser.parse_args()
    report = run(args.sessions, args.browser_nice)
    for title, alone, loaded in (("end to end", "alone", "loaded"), ("the server's part", "server_alone",
                                                                      "server_loaded")):
        print(f"\n{title}:\n")
        print("| session | actions | alone p50 / p95 (s) | under load p50 / p95 (s) | p95 ratio | maps identical |")
        print("|---|---|---|---|---|---|")
        for s in report["sessions"]:
            a, b = list(s[alone].values()), list(s[loaded].values())
            ratio = _p(b, 0.95) / _p(a, 0.95)
            print(f"| {s['name']} | {len(a)} | {statistics.median(a):.2f} / {_p(a, 0.95):.2f} | "
                  f"{statistics.median(b):.2f} / {_p(b, 0.95):.2f} | {ratio:.2f}× | {s['same_maps']} |")
    print(f"hooks left on the models: {report['hooks_on_models']}; server RSS {report['rss_bytes'] / 2**20:.0f} MB")
    print("page opens alone, CPU-seconds (browser + server): "
          + ", ".join(f"{s['name']} {s['open_cpu_s']:.1f}" for s in report["sessions"]))
    print(f"all pages opened at once on {report['cores']} CPUs: some session's open is at least "
          f"{report['open_floor']:.2f}× its open alone, whatever the scheduling "
          f"({', '.join(report['open_floor_sessions'])}); the CPUs were {report['loaded_cpu_use']:.0%} busy "
          "over the loaded pass")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

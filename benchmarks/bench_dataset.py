"""The Dataset page at 10 k, 100 k and 1 M rows: the DuckDB engine beside the pandas table it replaced.

    python benchmarks/bench_dataset.py                      # 10k, 100k, 1M; both implementations
    python benchmarks/bench_dataset.py --sizes 10000 --no-browser
    python benchmarks/bench_dataset.py --sizes 10000000 --no-browser --no-legacy   # the engine at 10 M rows

A real batch run (EfficientNet-Lite0, Grad-CAM, pred,label, the sample photos) is replicated into results
folders of each size (:mod:`benchmarks.dataset_folders`: many classes, mistakes, blank maps, failed
files; every row's image a hard link to a real photo, so thumbnails decode real files). Then, for each
size and implementation, in the same run:

* **server time** (in a fresh process, what one rerun of the page asks of the results, thumbnails' maps
  included): open (read + the first view's numbers and page), a sort change, a filter change (wrong
  only), a confusion-cell click, a page change; and the process's RSS growth (peak over the start);
* **in Chromium** (a fresh server each, its Dataset page visited once first): open ``/dataset?folder=...`` →
  first thumbnail drawn (the page's own clock from the navigation's start; for today's page the median of
  ``--opens`` fresh servers, with their range: one open varies by a second on two cores shared with the browser),
  then the same four interactions (wall time until the page is idle again, thumbnails built), and the server's
  RSS growth.

The former implementation is today's ``benchmarks/legacy_table.py`` in process, and in the browser the
dashboard as it was before the engine came (extracted from git into a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = 24
TIMEOUT_MS = int(os.environ.get("BENCH_TIMEOUT_MS", "300000"))
CARD = "[data-testid='gallery-card']"
DIAGONAL = ".st-key-ds_confusion [data-testid='matrix-cell'][data-row='0'][data-col='0']"  # never empty
LEGACY_CONFUSION = "[class*='st-key-ds_confusion_'] .js-plotly-plot"  # the former page's Plotly matrix


def _rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- the folders ------------------------------------------------------------------------------------------------


def real_run(base: Path) -> Path:
    """A real batch run (cached in ``base``): Lite0, Grad-CAM, pred,label over 12 sample photos."""
    from cam_core.batch import BatchJob, run_local
    from cam_core.batch.results import RESULTS
    from cam_core.io import write_sample_folder

    out = base / "root" / "runs" / "real"
    if not (out / RESULTS).is_file():
        write_sample_folder(base / "root" / "photos", per_photo=3, seed=5)
        run_local(BatchJob(classes="pred,label", labels=True), base / "root" / "photos", out, workers=0)
    return out


def make_folders(base: Path, sizes: list[int], links: bool = True) -> dict[int, str]:
    """One results folder per size under ``base/root/runs`` (kept between runs), its images hard-linked (without
    ``links``, for the server times alone: no thumbnails are drawn, and ten million links take a while)."""
    from benchmarks.dataset_folders import replicate

    src = real_run(base)
    made = {}
    for n in sizes:
        rel = f"runs/r{n}" if links else f"runs/r{n}-unlinked"
        folder = base / "root" / rel
        if not (folder / "done").is_file():
            start = time.perf_counter()
            replicate(src, folder, n, seed=1, links=base / "root" / "images" / f"r{n}" if links else None)
            (folder / "done").write_text("")
            print(f"made {n:,} rows in {time.perf_counter() - start:.0f} s", flush=True)
        made[n] = rel
    return made


# ---- server time, in process ------------------------------------------------------------------------------------


def _new_engine(folder: Path) -> dict[str, float]:
    from cam_core.batch.query import Filters, ResultsQuery

    times: dict[str, float] = {}
    state = {}

    def rerun(sort: str, filters: Filters, offset: int = 0) -> None:
        q = state["q"]
        q.summary(), q.blank_by_class("gradcam"), q.confusion(), q.per_class("gradcam", "pred")
        q.class_options("label"), q.class_options("pred")
        q.count(filters)
        rows = q.page(sort, filters, offset, PAGE)
        q.maps([r["rid"] for r in rows], "gradcam")

    start = time.perf_counter()
    state["q"] = ResultsQuery.open(folder)
    rerun("wrong", Filters())
    times["open"] = time.perf_counter() - start
    conf = state["q"].confusion()
    cell = Filters(true=(conf.rows[0],), pred=conf.cols[0])  # the first diagonal cell, as the browser clicks
    wrong = Filters(outcome="wrong")
    for name, sort, filters, offset in (("sort", "low_conf", Filters(), 0), ("filter", "low_conf", wrong, 0),
                                        ("page", "low_conf", wrong, PAGE), ("cell", "low_conf", cell, 0)):
        start = time.perf_counter()
        rerun(sort, filters, offset)
        times[name] = time.perf_counter() - start
    return times


def _legacy(folder: Path) -> dict[str, float]:
    from benchmarks import legacy_table as tb

    times: dict[str, float] = {}
    state = {}

    def rerun(sort: str, filters: tb.Filters, offset: int = 0) -> None:  # what the former page did per rerun
        r = state["r"]
        slot = r.remember(("slots", "pred"), lambda: tb.slots(r.frame, "pred"))
        blank = r.remember(("blank", "gradcam", "pred"), lambda: tb.blank_flags(r, "gradcam", slot))
        r.remember(("by_class", "gradcam"), lambda: tb.blank_by_class(r, "gradcam"))
        tb.confusion(r.frame, r.class_names), tb.per_class(r.frame, blank)
        for col in ("label", "pred"):
            r.frame[col].dropna().astype(int).value_counts()
        shown = tb.sort_frame(tb.filter_frame(r.frame, filters), sort, blank)
        for i in shown.index[offset:offset + PAGE]:
            tb.map_of(r, int(i), "gradcam", int(slot[i]))
        tb.export_csv(shown)  # the former page built the CSV on every rerun

    start = time.perf_counter()
    state["r"] = tb.load_results(folder)
    rerun("wrong", tb.Filters())
    times["open"] = time.perf_counter() - start
    conf = tb.confusion(state["r"].frame, state["r"].class_names)
    cell = tb.Filters(true=(conf.rows[0],), pred=conf.cols[0])
    wrong = tb.Filters(outcome="wrong")
    for name, sort, filters, offset in (("sort", "low_conf", tb.Filters(), 0), ("filter", "low_conf", wrong, 0),
                                        ("page", "low_conf", wrong, PAGE), ("cell", "low_conf", cell, 0)):
        start = time.perf_counter()
        rerun(sort, filters, offset)
        times[name] = time.perf_counter() - start
    return times


def server_time(folder: Path, impl: str) -> dict[str, float]:
    """Times and RSS growth of one implementation on one folder, in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", impl, str(folder)], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(impl: str, folder: Path) -> None:
    import numpy  # noqa: F401  (imports before the baseline: the folder's cost is what grows after)
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import benchmarks.legacy_table  # noqa: F401
    import cam_core.batch.query  # noqa: F401

    before = _rss_mb()
    times = (_new_engine if impl == "new" else _legacy)(folder)
    times["rss_mb"] = _rss_mb(field="VmHWM") - before
    print(json.dumps(times))


# ---- in Chromium --------------------------------------------------------------------------------------------------


def legacy_checkout(into: Path) -> Path:
    """The dashboard as it was before the engine (the commit before ``cam_core/batch/query.py`` came), extracted."""
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "cam_core/batch/query.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    commit = f"{added[-1]}^"
    archive = into / "legacy.tar"
    subprocess.run(["git", "archive", "-o", str(archive), commit, "cam_core", "dashboard", "benchmarks"], cwd=ROOT,
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "legacy", filter="data")
    return into / "legacy"


def _server_pid(port: int) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
                return int(proc.name)
    raise RuntimeError(f"no server on port {port}")


# When the first thumbnail is drawn, in the page's own clock (0: the navigation's start), looked for every 20 ms
# through the shadow roots (Playwright's own wait for a selector in a shadow root polls at up to a second).
_FIRST_CARD = """
(() => {
  const deep = (root) => root.querySelector("[data-testid='gallery-card']")
    || [...root.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => deep(e.shadowRoot)).find(Boolean);
  const look = () => deep(document) ? (window.__firstCard = performance.now()) : setTimeout(look, 20);
  look();
})();
"""
_WATCH = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  window.__runs = [];
  new MutationObserver(() => window.__runs.push([performance.now(), app.getAttribute('data-test-script-state')]))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
_SETTLED = """(t0) => {
  const runs = window.__runs.filter(r => r[0] > t0);
  const last = runs[runs.length - 1];
  return runs.some(r => r[1] === 'running') && last && last[1] === 'notRunning' && performance.now() - last[0] > 400;
}"""


def _timed(page, action) -> float:
    """Seconds from ``action`` to the page idle again (its last rerun's end; 400 ms without another)."""
    t0 = page.evaluate("performance.now()")
    action()
    page.wait_for_function(_SETTLED, arg=t0, timeout=TIMEOUT_MS, polling=50)
    end = page.evaluate("(t0) => window.__runs.filter(r => r[0] > t0 && r[1] === 'notRunning').pop()[0]", t0)
    return (end - t0) / 1000


def _click_cell(page) -> None:
    """Click the first diagonal cell: the matrix widget's HTML cell, or on the former page, Plotly's."""
    cell = page.locator(DIAGONAL)
    if cell.count():
        cell.click()
        return
    x, y = page.evaluate(
        """(sel) => {
          const gd = document.querySelector(sel);
          const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
          return [r.left + xa._offset + xa.d2p(0), r.top + ya._offset + ya.d2p(0)];
        }""", LEGACY_CONFUSION)
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


def browser_times(checkout: Path, root: Path, rel: str, shot: Path | None = None,
                  interactions: bool = True) -> dict[str, float]:
    """Open → first gallery and (``interactions``) four interactions in Chromium, on a fresh server of ``checkout``."""
    from playwright.sync_api import sync_playwright

    from benchmarks.bench_ui import ARGS, server

    times: dict[str, float] = {}
    with server(checkout, env={"CAMDASH_DATA_ROOT": str(root), "PYTHONPATH": str(checkout)}) as url, \
            sync_playwright() as p:
        pid = _server_pid(int(url.rsplit(":", 1)[1]))
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{url}/dataset")  # the page warm (imports, the model), no folder yet
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
        page.wait_for_timeout(2000)
        before = _rss_mb(pid)
        page.add_init_script(_FIRST_CARD)
        page.goto(f"{url}/dataset?folder={rel}")
        page.wait_for_selector(CARD)
        times["open"] = page.evaluate("window.__firstCard") / 1000  # from the navigation's start
        if not interactions:
            browser.close()
            return times
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
        page.evaluate(_WATCH)

        def choose(label: str, option: str) -> None:
            page.get_by_role("combobox", name=label).click()
            page.get_by_role("option", name=option, exact=True).click()

        times["sort"] = _timed(page, lambda: choose("Sort", "Least confident first"))
        wrong = page.locator(".st-key-ds_outcome").get_by_role("radio", name="Wrong")
        times["filter"] = _timed(page, wrong.click)
        pager = page.get_by_label("Page (of", exact=False)
        times["page"] = _timed(page, lambda: (pager.fill("2"), pager.press("Enter")))
        times["cell"] = _timed(page, lambda: _click_cell(page))
        if shot is not None:
            page.screenshot(path=shot, full_page=True)
        times["rss_mb"] = _rss_mb(pid) - before
        browser.close()
    return times


# ---- the table ------------------------------------------------------------------------------------------------------


def _row(n: int, impl: str, srv: dict, web: dict | None) -> str:
    def s(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f} s"

    web = web or {}
    opens = sorted(web.get("opens", []))
    spread = f" ({opens[0]:.2f}–{opens[-1]:.2f}, {len(opens)} opens)" if len(opens) > 1 else ""
    cells = [f"{n:,}", impl, s(web.get("open")) + spread, s(srv["open"]),
             *(f"{s(srv[k])} / {s(web.get(k))}" for k in ("sort", "filter", "cell", "page")),
             f"{srv['rss_mb']:.0f} MB / " + (f"{web['rss_mb']:.0f} MB" if "rss_mb" in web else "–")]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--base", type=Path, default=Path(tempfile.gettempdir()) / "bench_dataset")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--no-legacy", action="store_true")
    ap.add_argument("--opens", type=int, default=5, help="fresh-server opens of each folder (now): their median")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    folders = make_folders(args.base, sizes, links=not args.no_browser)
    root = args.base / "root"
    legacy = None if args.no_browser or args.no_legacy else legacy_checkout(Path(tempfile.mkdtemp()))
    lines = ["| rows | implementation | open → gallery (Chromium) | open (server) | sort (server / Chromium) | "
             "filter | confusion cell | page | RSS growth (server process / dashboard) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, rel in folders.items():
        for impl, checkout in (("DuckDB (now)", ROOT), ("pandas (before)", legacy)):
            if impl.startswith("pandas") and args.no_legacy:
                continue
            srv = server_time(root / rel, "new" if checkout is ROOT else "legacy")
            shot = args.base / f"dataset_{n}_{'new' if checkout is ROOT else 'legacy'}.png"
            web = None if args.no_browser or checkout is None else browser_times(checkout, root, rel, shot)
            if web is not None and checkout is ROOT and args.opens > 1:  # one open varies: its median
                web["opens"] = [web["open"], *(browser_times(checkout, root, rel, interactions=False)["open"]
                                               for _ in range(args.opens - 1))]
                web["open"] = statistics.median(web["opens"])
            lines.append(_row(n, impl, srv, web))
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

Starts ``streamlit run dashboard/app.py`` on a free port, then checks what only a
browser can: the zero-click first view, the model-tree component (filter, pick a
layer), a Plotly bar click toggling a class, the in-figure opacity slider
restyling heatmaps with no rerun, and an upload. Screenshots go to a temporary
folder (with ``CAMDASH_UPDATE_SCREENSHOT=1`` the first view also replaces the README's
``assets/screenshot.png``; otherwise a test run never touches tracked files); the time from
page open to the first overlay and from a class toggle to the updated overlay are
printed and saved next to them.

Skipped when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit import file_util

from benchmarks.bench_ui import ARGS as BROWSER_ARGS
from tests.serve import chromium_or_skip, dashboard

pytestmark = pytest.mark.e2e

CHROMIUM, sync_api = chromium_or_skip()

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    *BROWSER_ARGS,
    # A fake webcam (a test pattern) for the camera snapshot, allowed without a prompt.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
VIEWPORT = {"width": 1600, "height": 1100}
TIMEOUT_MS = 90_000
OVERLAY = ".st-key-overlay_gradcam_0 .js-plotly-plot"
HEATMAPS = f"{OVERLAY} g.hm image"
SCORES = "[class*='st-key-scores_'] .js-plotly-plot"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dashboard(tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def timings(shots: Path) -> Iterator[dict[str, float]]:
    found: dict[str, float] = {}
    yield found
    (shots / "timings.json").write_text(json.dumps(found, indent=1))
    print(f"\ntimings (s): {json.dumps(found)}")


def _idle(page) -> None:
    """Wait until the script is not running (as Streamlit's own e2e tests do)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=TIMEOUT_MS)


def _open(browser, server: str, query: str = "", requests: list[str] | None = None, **context):
    """A new visitor's page (its own browser context) → its first overlay; ``requests`` gets the URLs it asks for."""
    page = browser.new_page(viewport=VIEWPORT, **context)
    page.set_default_timeout(TIMEOUT_MS)
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    start = time.perf_counter()
    page.goto(server + query)
    page.wait_for_function(f"document.querySelectorAll({HEATMAPS!r}).length >= 3", timeout=TIMEOUT_MS)
    elapsed = time.perf_counter() - start
    _idle(page)
    # The model tree is a component that mounts on its own, sometimes after the overlays.
    page.wait_for_selector("[data-layer][aria-selected='true']")
    return page, elapsed


def _settled(locator) -> dict:
    """The element's box once it has stayed put for 0.3 s, so a drag is aimed where it is. (The opacity drag missed
    twice in a row here, after a full suite run, and never in 30 runs since; the cause was not found: the figure's
    width and the grip's place were traced through cold opens and did not move.)"""
    box = locator.bounding_box()
    for _ in range(20):
        locator.page.wait_for_timeout(300)
        now = locator.bounding_box()
        if now == box:
            return box
        box = now
    pytest.fail(f"the element kept moving: {box}")


def _count_runs(page) -> None:
    """Count script runs from now on (the app's script-state attribute turning to 'running')."""
    page.evaluate(
        """() => {
        window.__runs = 0;
        const app = document.querySelector('[data-testid=stApp]');
        new MutationObserver(() => {
          if (app.getAttribute('data-test-script-state') === 'running') window.__runs += 1;
        }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
      }"""
    )


def _heat_opacities(page) -> list[float]:
    return page.evaluate(
        f"() => document.querySelector({OVERLAY!r}).data.filter(t => t.type === 'heatmap').map(t => t.opacity)"
    )


def _panel_titles(page) -> list[str]:
    return page.evaluate(f"() => (document.querySelector({OVERLAY!r}).layout.annotations || []).map(a => a.text)")


def test_first_view_is_explained_with_zero_clicks(browser, server, shots, timings) -> None:
    requests: list[str] = []
    page, elapsed = _open(browser, server, requests=requests)
    timings["page_open_to_first_overlay"] = round(elapsed, 2)
    assert page.locator(HEATMAPS).count() == 3  # 3 classes × ReLU'd (the default layer's output is never negative)
    assert page.locator(f"{SCORES} g.trace.bars").count() == 2  # probability and logit
    assert page.get_by_text("EfficientNet-Lite0 (ImageNet)").first.is_visible()
    assert page.locator("[data-layer='_head_act'][aria-selected='true']").count() == 1
    assert page.locator("[data-layer='_head_act'] .mt-rec").count() == 1
    assert page.locator("[data-testid='stException']").count() == 0
    # Streamlit's loading placeholders stand still (the style the server writes into the page): one given a pulse,
    # as Streamlit gives them, has none.
    assert page.evaluate("""() => { const d = document.createElement('div'); d.dataset.testid = 'stSkeleton';
        d.style.animation = 'pulse 750ms infinite'; document.body.appendChild(d);
        const a = getComputedStyle(d).animationName; d.remove(); return a; }""") == "none"
    # Plotly's chunk is asked for from the page's head, before the app connects, and once: the preload is used.
    plotly = [i for i, u in enumerate(requests) if "/static/js/PlotlyChart." in u]
    connect = next(i for i, u in enumerate(requests) if u.endswith("/_stcore/host-config"))
    assert len(plotly) == 1 and plotly[0] < connect, requests
    page.wait_for_timeout(500)
    page.screenshot(path=shots / "01_first_view.png")
    if os.environ.get("CAMDASH_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shots / "01_first_view.png", ROOT / "assets" / "screenshot.png")
    page.close()


def test_streamlits_files_are_sent_again_as_streamlit_sent_them(server) -> None:
    """A static file from the server's memory is Streamlit's own answer, byte for byte and header for header.

    The page has already fetched Plotly's chunk, so plain requests for it come from memory; a request for the
    whole file as a range is always Streamlit's (206, the same bytes, plus its range header).
    """
    static = Path(file_util.get_static_dir())
    name = next((static / "static" / "js").glob("PlotlyChart.*.js")).name

    def fetch(headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{server}/static/js/{name}", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as r:
            kept = {k.lower(): v for k, v in r.headers.items() if k.lower() not in ("date", "content-range")}
            return r.status, kept, r.read()

    plain, again, streamlit = fetch({}), fetch({}), fetch({"Range": "bytes=0-"})
    assert streamlit[0] == 206 and plain[0] == again[0] == 200
    assert plain[1:] == again[1:] == streamlit[1:]
    assert plain[2] == (static / "static" / "js" / name).read_bytes()
    assert "immutable" in plain[1]["cache-control"]


def test_opacity_slider_restyles_in_the_browser_and_the_page_keeps_it(browser, server, shots, timings) -> None:
    page, elapsed = _open(browser, server)
    timings["page_open_to_first_overlay_warm"] = round(elapsed, 2)  # model and maps already cached
    before = _heat_opacities(page)
    assert len(set(before)) == 1
    _count_runs(page)
    fig = page.locator(OVERLAY)
    grip = _settled(fig.locator("rect.slider-grip-rect"))
    target = fig.locator("g.slider-label-group text", has_text="0.2").first.bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(target["x"] + target["width"] / 2, grip["y"] + grip["height"] / 2, steps=8)
    start = time.perf_counter()
    page.mouse.up()
    page.wait_for_function(
        f"document.querySelector({OVERLAY!r}).data.filter(t => t.type === 'heatmap').every(t => t.opacity === 0.2)"
    )
    timings["in_figure_opacity_restyle"] = round(time.perf_counter() - start, 3)  # in the browser, no rerun
    # Then the page learns where the slider was left: one rerun of the overlays alone, which keeps 0.2
    # (it used to snap back on the next rerun) and makes the PNG downloads agree. There is no second opacity
    # control above the figures (one used to rerun the page on its own).
    page.wait_for_function("window.__runs >= 1")
    _idle(page)
    assert page.locator(".st-key-opacity input[type=range]").count() == 0
    assert page.evaluate("window.__runs") == 1
    assert set(_heat_opacities(page)) == {0.2}
    page.screenshot(path=shots / "02_opacity_0.2.png")
    page.close()


def test_pick_a_layer_in_the_tree(browser, server, shots, timings) -> None:
    page, _ = _open(browser, server)
    # Collapsible: the caret folds a module's children away and back.
    assert page.locator("[data-layer='_blocks.3']").count() == 1
    page.locator("[data-toggle='_blocks']").click()
    assert page.locator("[data-layer='_blocks.3']").count() == 0
    page.locator("[data-toggle='_blocks']").click()
    assert page.locator("[data-layer='_blocks.3']").count() == 1
    # Non-CAM-able rows cannot be picked.
    page.locator("[data-layer='_fc']").click()
    page.wait_for_timeout(500)
    assert page.locator("[data-layer='_head_act'][aria-selected='true']").count() == 1
    # Searchable: the filter keeps matches and their ancestors.
    page.locator("[data-testid='model-tree-filter']").fill("_blocks.15")
    row = page.locator("[data-layer='_blocks.15']")
    assert row.is_visible()
    assert page.locator("[data-layer='_blocks.0']").count() == 0  # filtered out
    start = time.perf_counter()
    row.click()
    page.wait_for_selector(".st-key-model_info :text('layer _blocks.15')")
    page.wait_for_function(f"document.querySelectorAll({HEATMAPS!r}).length >= 6")
    _idle(page)
    timings["layer_pick_to_updated_overlay"] = round(time.perf_counter() - start, 2)
    assert page.locator("[data-layer='_blocks.15'][aria-selected='true']").count() == 1
    assert "layer=_blocks.15" in page.url
    page.screenshot(path=shots / "03_layer_blocks15.png")
    page.close()


def _click_bar(page, rank: int) -> None:
    """Click the logit bar of the ``rank``-th class (0 = most probable).

    With the mouse, on the bar itself: Plotly's drag layer sits on top of the bars
    (so an element click is intercepted) and a point's box also spans its text label.
    """
    box = page.locator(f"{SCORES} g.trace.bars").nth(1).locator("g.point path").nth(rank).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(150)  # let Plotly register the hover that a click selects
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_clicking_a_bar_toggles_its_class(browser, server, shots, timings) -> None:
    page, _ = _open(browser, server)
    first_titles = _panel_titles(page)
    start = time.perf_counter()
    _click_bar(page, 3)  # the 4th most probable class: not among the top-3 shown
    page.wait_for_function(f"document.querySelectorAll({HEATMAPS!r}).length === 4")
    timings["class_toggle_to_updated_overlay"] = round(time.perf_counter() - start, 2)
    _idle(page)
    added = [t for t in _panel_titles(page) if t not in first_titles]
    assert len(added) == 1, added
    page.screenshot(path=shots / "04_bar_click_added_class.png")
    # The same bar again removes it (the chart is rebuilt, so no stale selection blocks a second click).
    start = time.perf_counter()
    _click_bar(page, 3)
    page.wait_for_function(f"document.querySelectorAll({HEATMAPS!r}).length === 3")
    timings["class_untoggle_to_updated_overlay"] = round(time.perf_counter() - start, 2)
    page.close()


def test_upload_an_image_and_switch_to_it(browser, server, shots) -> None:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.coffee()).save(buf, format="PNG")
    page, _ = _open(browser, server)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        files=[{"name": "coffee.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
    )
    page.locator(".st-key-current_image").get_by_role("radio", name="coffee.png").click()
    page.wait_for_function(
        f"(document.querySelector({OVERLAY!r})?.layout.annotations || []).some(a => a.text.includes('espresso'))"
    )
    _idle(page)
    page.screenshot(path=shots / "05_uploaded_coffee.png")
    page.close()


def test_camera_snapshot_is_shown_and_explained(browser, server, shots) -> None:
    page, _ = _open(browser, server, permissions=["camera"])
    before = _panel_titles(page)
    page.locator(".st-key-use_camera label").first.click()
    # Take the photo once the (fake) webcam streams; before that the snapshot would be empty.
    page.wait_for_function("document.querySelector(\"[data-testid='stCameraInput'] video\")?.readyState >= 2")
    page.wait_for_timeout(500)
    page.locator("[data-testid='stCameraInput'] button", has_text="Take Photo").click()
    # The snapshot arrives, is switched to at once (a live demo has no time to hunt for it) and explained.
    page.locator(".st-key-current_image").get_by_role("radio", name="camera snapshot", checked=True).wait_for()
    page.wait_for_function(
        f"JSON.stringify((document.querySelector({OVERLAY!r})?.layout.annotations || []).map(a => a.text))"
        f" !== {json.dumps(json.dumps(before, separators=(',', ':')))}"
    )
    _idle(page)
    assert len(page.locator(HEATMAPS).all()) == 3
    assert not page.locator("[data-testid='stException']").all()
    page.screenshot(path=shots / "06_camera_snapshot.png")
    page.close()


_FIND = """(s) => {
  // The first match of a selector "outer >>> inner": inner is looked up in the shadow roots under outer
  // (the model tree's component renders in one).
  const [outer, inner] = s.split(' >>> ');
  const host = document.querySelector(outer);
  if (!host || !inner) return host;
  for (const el of [host, ...host.querySelectorAll('*')]) {
    const found = el.shadowRoot && el.shadowRoot.querySelector(inner);
    if (found) return found;
  }
  return null;
}"""


def _mark(page, selector: str, name: str) -> None:
    """Tag a DOM node, to tell later whether it is the same node (not redrawn) or a new one."""
    page.evaluate(f"([s, n]) => {{ ({_FIND})(s)[n] = true; }}", [selector, name])


def _marked(page, selector: str, name: str) -> bool:
    return page.evaluate(f"([s, n]) => !!(({_FIND})(s) || {{}})[n]", [selector, name])


def test_a_display_change_redraws_only_the_overlays(browser, server, shots, timings) -> None:
    page, _ = _open(browser, server)
    tree, scores = ".st-key-tree_box >>> [data-layer='_head_act']", SCORES
    _mark(page, tree, "__camTree")
    _mark(page, scores, "__camScores")
    start = time.perf_counter()
    page.locator(".st-key-views_nonneg button", has_text="Signed").click()  # off by default at this layer
    page.wait_for_function(f"document.querySelectorAll({HEATMAPS!r}).length === 6")
    timings["show_signed_row_to_updated_overlay"] = round(time.perf_counter() - start, 2)
    _idle(page)
    # Only the overlays' fragment ran: the layer tree and the scores chart are the very same DOM nodes.
    assert _marked(page, tree, "__camTree") and _marked(page, scores, "__camScores")
    assert page.get_by_text("nothing was computed for this view").count() == 1
    rows = page.evaluate(
        f"() => (document.querySelector({OVERLAY!r}).layout.annotations || []).map(a => a.text).filter(t => "
        "t.startsWith('<b>')).map(t => t.replace(/<[^>]+>/g, ''))"
    )
    assert rows == ["ReLU'd", "signed ±"]  # the signed row under the ReLU'd one
    page.locator(".st-key-views_nonneg button", has_text="Signed").click()  # off again
    page.wait_for_function(f"document.querySelectorAll({HEATMAPS!r}).length === 3")
    _idle(page)
    assert _marked(page, tree, "__camTree")
    # A whole-page rerun that changes nothing of the model (another image) does not rebuild the tree either.
    page.locator(".st-key-samples button", has_text="coffee").click()
    page.locator(".st-key-current_image").get_by_role("radio", name="coffee").click()
    page.wait_for_function(
        f"(document.querySelector({OVERLAY!r})?.layout.annotations || []).some(a => a.text.includes('espresso'))"
    )
    _idle(page)
    assert _marked(page, tree, "__camTree") and not _marked(page, scores, "__camScores")
    page.close()


def test_a_wide_photo_is_explained_whole(browser, server, shots) -> None:
    from PIL import Image, ImageOps

    from cam_core.io import load_sample

    photo = Image.new("RGB", (600, 300))
    photo.paste(ImageOps.fit(load_sample("chelsea"), (300, 300)), (0, 0))
    photo.paste(ImageOps.fit(load_sample("coffee"), (300, 300)), (300, 0))
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    page, _ = _open(browser, server)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        files=[{"name": "cat_and_espresso.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
    )
    page.wait_for_function(
        f"(document.querySelector({OVERLAY!r})?.layout.xaxis.range || [0, 0])[1] === 447.5"
    )  # the 600×300 photo at 448×224: both halves, nothing cropped
    _idle(page)
    titles = _panel_titles(page)
    assert any("espresso" in t for t in titles), titles  # the right half's class is among the top-3
    page.wait_for_timeout(500)
    page.locator(".st-key-figures").screenshot(path=shots / "07_cat_and_espresso_whole.png")
    page.close()


STILL = ".st-key-still_gradcam_0"


def _figure_pixels(page, path: Path) -> np.ndarray:
    """The first overlay's place as the user sees it (the still or the live figure), saved and as RGB."""
    page.locator(STILL).screenshot(path=path)
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_a_fresh_visitor_sees_the_overlays_before_plotly_runs(browser, server, shots) -> None:
    """Plotly's script (4.7 MB) runs ~1 s in a fresh browser: until it has drawn the figure, its still is in the
    figure's place. Here Plotly's script never comes: the still alone must show the explanation."""
    requests: list[str] = []
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", lambda r: requests.append(r.url))
    page.route("**/static/js/PlotlyChart.*.js", lambda route: route.abort())
    page.goto(server)
    page.wait_for_function(f"document.querySelectorAll('{STILL} .camdash-still img').length === 3")
    _idle(page)
    page.wait_for_timeout(300)
    assert page.locator(f"{STILL} .camdash-still").is_visible()
    assert page.locator(HEATMAPS).count() == 0  # nothing of Plotly's: what is seen is the still
    assert all(page.evaluate(f"() => [...document.querySelectorAll('{STILL} .camdash-still img')]"
                             ".map(i => i.complete && i.naturalWidth > 0)"))
    # Under each map the photo, the still's own style (what the page's sanitiser keeps of it).
    photos = page.evaluate(f"() => [...document.querySelectorAll('{STILL} .camdash-still .p')]"
                           ".map(d => getComputedStyle(d).backgroundImage.slice(0, 16))")
    assert photos == ['url("data:image/'] * 3, photos  # 3 classes, the ReLU'd row
    # Streamlit's st.html chunk is asked for from the page's head, before the app connects.
    html_chunk = [i for i, u in enumerate(requests) if "/static/js/Html." in u]
    connect = next(i for i, u in enumerate(requests) if u.endswith("/_stcore/host-config"))
    assert len(html_chunk) == 1 and html_chunk[0] < connect, requests
    still_box = page.locator(STILL).bounding_box()
    still = _figure_pixels(page, shots / "02_still.png")
    page.close()

    page, _ = _open(browser, server)  # Plotly there: once it has drawn, the still is gone and nothing moved
    page.wait_for_function(f"getComputedStyle(document.querySelector('{STILL} .camdash-still')).display === 'none'")
    page.wait_for_timeout(300)
    assert page.locator(STILL).bounding_box() == still_box
    live = _figure_pixels(page, shots / "02_live.png")
    assert still.shape == live.shape
    photo = still[:-80]  # above the slider, which the still leaves out
    assert photo.std() > 30  # a photo with maps, not an empty box
    assert np.abs(photo - live[:-80]).mean() < 8, "the still does not look like the figure it stands for"
    page.close()


def test_a_crafted_link_draws_no_link_or_image_in_the_page(browser, server) -> None:
    """The issue's phishing link, rendered by the browser: its text shows as typed, and neither the Markdown link,
    the image nor GFM's bare-URL and e-mail autolinks become an element (the AppTest check reads only Markdown)."""
    requests: list[str] = []
    evil = ("[Your session expired, log in again](https://evil.example/login) ![x](https://evil.example/pixel.png) "
            "www.evil.example me@evil.example")
    page, _ = _open(browser, server, "/?layer=" + urllib.parse.quote(evil), requests=requests)
    alert = page.locator("[data-testid='stAlertContentWarning']", has_text="The link asks for layer").first
    text = alert.inner_text().replace("\u2060", "")
    assert "[Your session expired, log in again](https://evil.example/login)" in text and "me@evil.example" in text
    assert page.locator("a[href*='evil.example'], img[src*='evil.example']").count() == 0
    assert not [u for u in requests if "evil.example" in (urllib.parse.urlparse(u).hostname or "")]
    page.close()

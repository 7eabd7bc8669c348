"""The overlay stills (plain HTML drawn from the figure, shown until Plotly draws it): colours and places
checked against hand-computed values, and when the app sends them (AppTest). The browser test that the still
looks like the live figure and gives way to it is in ``test_dashboard_e2e.py``."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from dashboard.figures import Panel, overlay_figure
from dashboard.views.image.still import heat_image, still_html
from tests.test_dashboard_app import _app

SCALE = [[0.0, "rgba(0,0,0,0)"], [0.5, "rgba(255,0,0,0.5)"], [1.0, "rgba(255,255,0,1)"]]


def test_heat_samples_go_through_the_colour_scale_as_plotly_interpolates_it() -> None:
    z = np.array([[-1.0, 0.0, 1.0, 2.0, 3.0, 9.0]])  # zmin 0, zmax 2: below, 0, ¼, ½, ¾ (clipped), above
    got = heat_image(z, 0.0, 4.0, SCALE)  # units: clipped 0, 0, .25, .5, .75, 1
    expected = [[0, 0, 0, 0], [0, 0, 0, 0], [128, 0, 0, 64], [255, 0, 0, 128], [255, 128, 0, 191], [255, 255, 0, 255]]
    assert got.dtype == np.uint8 and got.shape == (1, 6, 4)
    np.testing.assert_allclose(got[0].astype(int), expected, atol=1)


def test_a_flat_map_takes_the_first_colour_instead_of_dividing_by_zero() -> None:
    got = heat_image(np.full((2, 2), 0.3), 0.3, 0.3, SCALE)
    assert (got == 0).all()


class _Tags(HTMLParser):
    """Every tag of the still with its style parsed into a dict, and the text of every span."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        style = dict(p.split(":", 1) for p in a.get("style", "").split(";") if ":" in p)
        self.tags.append((tag, a, style))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def _figure(names: tuple[str, ...] = ("cat", "dog")) -> tuple:
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    panels = [Panel(name, rng.standard_normal((30, 40)).astype(np.float32), name) for name in names]
    return overlay_figure(background, panels, views=("relu", "signed"), opacity=0.4, panel_height=200), panels


def _decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_the_still_places_photo_maps_titles_and_colorbars_where_the_figure_has_them() -> None:
    fig, _ = _figure()
    parser = _Tags()
    parser.feed(still_html(fig))
    root = parser.tags[0]
    assert root[1]["class"] == "camdash-still"
    # The photo once, as the still's style, under each map: a box for it and an image of the map per panel.
    photo = next(t.source for t in fig.data if t.type == "image")
    assert f'style="height:{fig.layout.height}px;--photo:url({photo})"' in still_html(fig)
    imgs = [t for t in parser.tags if t[0] == "img" or t[1].get("class") == "p"]
    assert len(imgs) == 2 * 2 * 2  # (photo, map) × 2 classes × 2 views
    m, h = fig.layout.margin, fig.layout.height
    plot_h = h - m.t - m.b
    for trace, (_, attrs, style) in zip(fig.data, imgs, strict=True):
        suffix = (trace.xaxis or "x")[1:]
        xdom, ydom = fig.layout[f"xaxis{suffix}"].domain, fig.layout[f"yaxis{suffix}"].domain
        # Top and height by hand: a paper fraction of the plot area under the top margin.
        assert float(style["top"].removesuffix("px")) == pytest.approx(m.t + (1 - ydom[1]) * plot_h, abs=0.06)
        assert float(style["height"].removesuffix("px")) == pytest.approx((ydom[1] - ydom[0]) * plot_h, abs=0.06)
        assert style["left"] == f"calc({m.l}px + {xdom[0]:.5f} * (100% - {m.l + m.r}px))"
        if trace.type == "image":
            assert attrs["class"] == "p" and "src" not in attrs
        else:
            assert float(style["opacity"]) == pytest.approx(0.4)
            heat = _decode(attrs["src"])
            np.testing.assert_array_equal(
                heat, heat_image(np.asarray(trace.z), trace.zmin, trace.zmax, [list(s) for s in trace.colorscale])
            )
    # One colorbar per map with the figure's own tick labels; the titles and row labels of the figure.
    bars = [t for t in parser.tags if t[0] == "div" and "linear-gradient" in t[2].get("background", "")]
    heats = [t for t in fig.data if t.type == "heatmap"]
    assert len(bars) == len(heats) == 4
    plot_w = f"(100% - {m.l + m.r}px)"
    for (_, _, style), trace in zip(bars, heats, strict=True):
        bar, ydom = trace.colorbar, fig.layout[f"yaxis{trace.yaxis[1:]}"].domain
        # Under its subplot (by its pad), as long as its length less Plotly's 10-px pad at either end.
        bottom = m.t + (1 - ydom[0]) * plot_h
        assert float(style["top"].removesuffix("px")) == pytest.approx(bottom + bar.ypad, abs=0.06)
        fill = f"({bar.len:.5f} * {plot_w} - 20.0px)"
        assert style["width"] == f"calc{fill}"
        assert style["left"] == f"calc({m.l + 10.0}px + {bar.x - bar.len / 2:.5f} * {plot_w} + 0.00000 * {fill})"
    # Column titles with their bottom on the paper point of their annotation; row labels right of the margin's edge.
    spans = {t[1].get("class"): [] for t in parser.tags if t[0] == "span"}
    for tag, attrs, style in parser.tags:
        if tag == "span":
            spans[attrs["class"]].append(style)
    titles = [a for a in fig.layout.annotations if a.textangle != -90]
    rows = [a for a in fig.layout.annotations if a.textangle == -90]
    assert len(spans["t"]) == len(titles) == 2 and len(spans["r"]) == len(rows) == 2
    for style, note in zip(spans["t"], titles, strict=True):
        assert style["left"] == f"calc({m.l}px + {note.x:.5f} * {plot_w})"
        assert float(style["top"].removesuffix("px")) == pytest.approx(m.t + (1 - note.y) * plot_h, abs=0.06)
    for style, note in zip(spans["r"], rows, strict=True):
        assert style["left"] == f"{m.l + note.xshift - 8}px"
        assert float(style["top"].removesuffix("px")) == pytest.approx(m.t + (1 - note.y) * plot_h, abs=0.06)
    ticks = re.findall(r'<span class="k"[^>]*>([^<]*)</span>', still_html(fig))
    wanted = [t for trace in fig.data if trace.type == "heatmap" for t in trace.colorbar.ticktext]
    assert ticks == wanted
    texts = " ".join(parser.texts)
    assert "cat" in texts and "dog" in texts and "ReLU" in texts


def test_the_heat_takes_the_scales_first_colour_at_its_floor_and_its_last_at_its_peak() -> None:
    cam = np.full((30, 40), 2.0, np.float32)
    cam[:, :20] = -2.0  # the left half at the floor of either view, the right half at the peak
    fig = overlay_figure(np.zeros((30, 40, 3), np.uint8), [Panel("cat", cam, "cat", top=2.0)], views=("relu", "signed"))
    parser = _Tags()
    parser.feed(still_html(fig))
    heats = [_decode(a["src"]) for tag, a, s in parser.tags if tag == "img" and "opacity" in s]
    for trace, heat in zip([t for t in fig.data if t.type == "heatmap"], heats, strict=True):
        z = np.asarray(trace.z)
        assert heat.shape == (*z.shape, 4)
        first, last = (np.array([float(v) for v in c[c.index("(") + 1 : -1].split(",")]) for _, c in
                       (trace.colorscale[0], trace.colorscale[-1]))
        np.testing.assert_allclose(heat[:, 0], np.tile([*first[:3], first[3] * 255], (len(z), 1)), atol=1)
        np.testing.assert_allclose(heat[:, -1], np.tile([*last[:3], last[3] * 255], (len(z), 1)), atol=1)


def test_markup_in_tick_labels_is_escaped() -> None:
    fig, _ = _figure(("cat",))
    fig.data[1].colorbar.ticktext = ["<b>0</b>", "1 & 2"]
    fig.data[1].colorbar.tickvals = [fig.data[1].zmin, fig.data[1].zmax]
    out = still_html(fig)
    assert "&lt;b&gt;0&lt;/b&gt;" in out and "1 &amp; 2" in out and "<b>0</b>" not in out


def _stills(at) -> list[str]:
    return [h.proto.body for h in at.get("html") if "camdash-still" in h.proto.body and "<img" in h.proto.body]


def test_the_first_run_sends_stills_and_a_changed_figure_comes_without_one() -> None:
    at = _app()
    assert not at.exception
    (first,) = _stills(at)  # one figure (Grad-CAM, three classes): one still
    assert len(re.findall(r"<img ", first)) == len(re.findall(r'class="p"', first)) == 3  # ReLU'd row only
    assert "Egyptian cat (285)" in first
    at.selectbox(key="cmap").set_value("viridis").run()
    assert not at.exception and _stills(at) == []  # Plotly is running by now: no still for a new figure
    at.selectbox(key="cmap").set_value("jet").run()
    assert _stills(at) == [first]  # the figure it opened on: the same still (Streamlit's message cache)


@pytest.mark.parametrize(
    ("view", "cmap"), [("relu", "jet"), ("relu", "inferno"), ("signed", "bwr"), ("signed", "RdBu")]
)
def test_the_overlay_layer_the_colour_scale_and_the_still_agree_on_the_heat_colour(view: str, cmap: str) -> None:
    """One rule (cam_core.render.heat_color): the PNGs' colour layer, the figure's colour scale and the still's
    pixels give the same colour and cover at the scale's stops (between them Plotly interpolates)."""
    from cam_core.render import heat_color, heat_rgba, view_map
    from dashboard.figures import alpha_colorscale

    steps = 17
    # A map whose display values are exactly the stops: 0…1 (ReLU'd), −1…1 (signed: 0.5 is zero).
    stops = np.linspace(0.0, 1.0, steps)
    cam = (stops if view == "relu" else 2.0 * stops - 1.0).astype(np.float32)[None, :]
    np.testing.assert_allclose(view_map(cam, view)[0], stops, atol=1e-6)
    layer = heat_rgba(cam, view=view, cmap=cmap)[0].astype(int)
    scale = alpha_colorscale(cmap, signed=view == "signed", steps=steps)
    zmin, zmax = (-1.0, 1.0) if view == "signed" else (0.0, 1.0)
    still = heat_image(cam, zmin, zmax, scale)[0].astype(int)
    color, cover = heat_color(stops, view=view, cmap=cmap)  # type: ignore[arg-type]
    rule = np.concatenate([color.astype(int), np.rint(cover * 255).astype(int)[:, None]], axis=1)
    np.testing.assert_allclose(layer, rule, atol=1)
    np.testing.assert_allclose(still, rule, atol=1)
    listed = np.array([[float(v) for v in c[c.index("(") + 1 : -1].split(",")] for _, c in scale])
    np.testing.assert_allclose(listed[:, :3], color, atol=0)
    np.testing.assert_allclose(listed[:, 3] * 255, rule[:, 3], atol=1)

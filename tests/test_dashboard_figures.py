"""The overlay figure sends a map at a resolution the browser can interpolate back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dashboard.figures import MAX_SENT_SIDE, Panel, overlay_figure, panel_height, sent_grid


def _smooth_map(side: int, cells: int = 7) -> np.ndarray:
    """A CAM as the engine gives it: a coarse random map upsampled bilinearly to the image."""
    coarse = torch.randn(1, 1, cells, cells, generator=torch.Generator().manual_seed(0))
    return F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()


def test_small_maps_are_sent_whole() -> None:
    cam = _smooth_map(MAX_SENT_SIDE)
    z, step = sent_grid(cam)
    assert step == 1 and z is not None
    np.testing.assert_array_equal(z, cam)


def test_large_maps_are_sampled_at_block_centres() -> None:
    cam = _smooth_map(224)
    z, step = sent_grid(cam)
    assert step == 2 and z.shape == (112, 112)
    np.testing.assert_array_equal(z, cam[1::2, 1::2])  # sample k stands for pixels 2k, 2k+1: its centre is 2k+1
    # What the browser draws between samples (linear interpolation) is the map to within 1% of its range.
    between = (z[:, :-1] + z[:, 1:]) / 2  # the pixels 2k+2 of each row
    err = np.abs(between - cam[1::2, 2:-1:2]).max()
    assert err < 0.01 * np.ptp(cam), err


def test_wide_maps_keep_the_short_sides_density() -> None:
    cam = F.interpolate(torch.randn(1, 1, 7, 11), size=(224, 337), mode="bilinear")[0, 0].numpy()
    z, step = sent_grid(cam)
    assert step == 2 and z.shape == (112, 168)


def test_overlay_places_the_samples_in_pixel_coordinates() -> None:
    cam = _smooth_map(300)
    fig = overlay_figure(np.zeros((300, 300, 3), np.uint8), [Panel("a", cam, "a")], views=("relu",))
    heat = next(t for t in fig.data if t.type == "heatmap")
    z, step = sent_grid(cam)
    assert step == 3 and heat.zsmooth == "fast"
    assert (heat.x0, heat.dx, heat.y0, heat.dy) == (1, 3, 1, 3)
    np.testing.assert_array_equal(np.asarray(heat.z), z)
    assert heat.zmax == float(cam.max())  # the colour range comes from the whole map, not the samples


def test_figures_on_the_same_grid_share_nothing() -> None:
    """The grid's layout is computed once and copied: one figure's titles and ranges never reach another."""
    small, wide = np.zeros((20, 30, 3), np.uint8), np.zeros((20, 60, 3), np.uint8)
    a = overlay_figure(small, [Panel("cat", np.ones((20, 30), np.float32), "cat")])
    b = overlay_figure(wide, [Panel("dog", np.ones((20, 60), np.float32), "dog")])
    assert (a.layout.annotations[0].text, b.layout.annotations[0].text) == ("cat", "dog")
    assert tuple(a.layout.xaxis.range) == (-0.5, 29.5) and tuple(b.layout.xaxis.range) == (-0.5, 59.5)
    assert a.layout.yaxis.domain == b.layout.yaxis.domain  # the same grid


def _drawn(z: np.ndarray, step: int, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[slice, slice]]:
    """What the browser draws from the samples: linear between sample centres (rows, then columns)."""
    ys, xs = step // 2 + step * np.arange(z.shape[0]), step // 2 + step * np.arange(z.shape[1])
    rows = np.array([np.interp(np.arange(shape[1]), xs, r) for r in z])
    full = np.array([np.interp(np.arange(shape[0]), ys, c) for c in rows.T]).T
    return full, (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))


def test_maps_of_a_coarse_layer_are_sent_with_eight_samples_a_cell() -> None:
    """A 7×11 layer's map at 224×337 (cells 32 px apart) goes as 56×84 samples and is drawn back the same."""
    coarse = torch.randn(1, 1, 7, 11, generator=torch.Generator().manual_seed(1))
    cam = F.interpolate(coarse, size=(224, 337), mode="bilinear", align_corners=False)[0, 0].numpy()
    z, step = sent_grid(cam, cells=7)
    assert step == 4 and z.shape == (56, 84)
    drawn, inner = _drawn(z, step, cam.shape)
    err = np.abs(drawn - cam)[inner] / np.ptp(cam)
    assert err.mean() < 0.002 and err.max() < 0.08, (err.mean(), err.max())  # only the kinks between cells differ
    assert sent_grid(cam, cells=14)[1] == 2  # finer layers keep every 2nd pixel
    assert sent_grid(cam)[1] == 2  # and so does a map of unknown origin


def test_each_row_is_as_tall_as_asked_and_fits_the_image_on_a_1600_px_screen() -> None:
    # The overlays' column on a 1600-px screen is 766 px (measured in Chromium): 726 px of plot, 2% between
    # columns, so three cells of 726 × 0.96 / 3 = 232.3 px; a 451×300 image there is 232.3 × 300 / 451 = 154.5 tall.
    assert panel_height((300, 451), 3) == 154
    background = np.zeros((300, 451, 3), np.uint8)
    panels = [Panel(f"c{i}<br>p", np.zeros((300, 451), np.float32), f"c{i}") for i in range(3)]
    for views in (("relu",), ("relu", "signed")):
        layout = overlay_figure(background, panels, views=views, panel_height=154).to_plotly_json()["layout"]
        margin = layout["margin"]
        plot_h = layout["height"] - margin["t"] - margin["b"]
        for r in range(len(views)):
            lo, hi = layout[f"yaxis{r * 3 + 1 if r else ''}"]["domain"]
            assert (hi - lo) * plot_h == pytest.approx(154)  # the row, exactly: the image fills it, no gap
        lo, hi = layout["xaxis"]["domain"]
        assert (hi - lo) * (766 - margin["l"] - margin["r"]) == pytest.approx(726 * 0.96 / 3)


def test_a_wide_photo_gets_fewer_panels_a_row_so_each_is_readable() -> None:
    # A 3:1 photo, three classes side by side, was 67 px tall; its classes now wrap onto more rows.
    from dashboard.figures import MIN_IMAGE_PX, columns_for, panel_height

    assert columns_for((300, 900), 3) == 2
    assert panel_height((300, 900), 2) >= MIN_IMAGE_PX
    assert columns_for((224, 337), 4) == 4  # the sample photo keeps its four panels a row
    assert columns_for((224, 224), 6) == 4  # never more than MAX_COLUMNS
    assert columns_for((10, 10_000), 2) == 1  # one a row at least, however wide

"""explain_clip and the overlay films: maps that follow a moving object, classes (clip, per frame, fixed), the
batched result equal to per-frame explain(), each frame's colour scale or the clip's, smoothing for display only,
and 3-D video models (a hand-built one with a known map, and torchvision's r3d_18 untrained, end to end)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cam_core
from cam_core.engine.clip import Cancelled, explain_clip, parse_clip_classes
from cam_core.errors import CamError
from cam_core.film import clip_scale, display_maps, maps_on_frames, smooth_maps, write_films
from cam_core.io.video import Sampling, probe_video, read_frames
from cam_core.render import overlay
from tests.clips import ColourNet, RedNet, TimeNet, flat_colours, loaded, moving_square, write_clip


@pytest.fixture(scope="module")
def red() -> cam_core.LoadedModel:
    return loaded(RedNet(), ["red thing", "not red"])


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    frames, boxes = moving_square(10, size=(64, 48))
    return write_clip(tmp_path_factory.mktemp("clip") / "square.mp4", frames), boxes


def test_map_peak_lies_on_the_object_and_follows_it(red, square):
    path, boxes = square
    res = explain_clip(red, path, classes=[0], methods=["gradcam"], batch_size=4)
    assert res.frames == 10 and res.place.fit == "whole" and res.place.size == (32, 43)
    maps = res.maps["gradcam"][:, 0]
    assert maps.shape == (10, 32, 43)  # the layer keeps the input's resolution
    ups = maps_on_frames(maps, res.place, res.frame_size)  # back over the 64×48 frames
    peaks = []
    for up, (x0, y0, x1, y1) in zip(ups, boxes, strict=True):
        row, col = np.unravel_index(up.argmax(), up.shape)
        assert x0 <= col < x1 and y0 <= row < y1, (row, col, (x0, y0, x1, y1))
        inside = np.zeros(up.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert np.maximum(up, 0)[inside].sum() > 0.8 * np.maximum(up, 0).sum()
        peaks.append(col)
    assert peaks == sorted(peaks) and peaks[-1] - peaks[0] > 40  # it moves right with the square


def test_batched_maps_equal_per_frame_explain(red, square):
    path, _ = square
    res = explain_clip(red, path, classes=[0, 1], methods=["gradcam", "hirescam"], batch_size=3)
    frames = list(read_frames(path))
    for t in (0, 4, 9):
        x, _ = red.prepare(Image.fromarray(frames[t].rgb), "whole")
        one = cam_core.explain(red, x[None], classes=[0, 1], methods=["gradcam", "hirescam"])
        for m in ("gradcam", "hirescam"):
            np.testing.assert_allclose(res.maps[m][t], one.maps[m][0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.probs[t], one.probs[0].numpy(), rtol=1e-5)
    assert res.class_ids.tolist() == [0, 1] and list(res.class_names()) == ["red thing", "not red"]
    # The map of "not red" is that of "red thing", negated (its fc weight is -1): signed maps are kept.
    np.testing.assert_allclose(res.maps["gradcam"][:, 1], -res.maps["gradcam"][:, 0], atol=1e-6)


# Logits = W @ mean colour. Red frames: class 0 > 1 > 2 > 4 > 3; blue frames: class 3 far ahead.
ROWS = torch.tensor([[5.0, 0, 0], [4.0, 0, 0], [3.0, 0, 0], [0, 0, 10.0], [1.0, 0, 0]])
NAMES = ["zero", "one", "two", "three", "four"]


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory):
    frames = flat_colours([(255, 0, 0)] * 4 + [(0, 0, 255)] * 4)
    return write_clip(tmp_path_factory.mktemp("colours") / "red_then_blue.mp4", frames)


def test_clip_top_k_is_by_mean_probability_and_fills_in_missing_maps(colour_clip):
    model = loaded(ColourNet(ROWS), NAMES)
    res = explain_clip(model, colour_clip, classes="top1", batch_size=4)
    # Class 3 wins on the mean (~0.5) though it is last on the red frames; the first batch (red) did not
    # explain it, so those 4 frames were computed again for it.
    assert res.class_ids.tolist() == [3]
    assert res.probs[:, 3].mean() > res.probs[:, 0].mean()
    assert res.recomputed == 4
    frames = list(read_frames(colour_clip))
    for t in (0, 6):
        x, _ = model.prepare(Image.fromarray(frames[t].rgb), "whole")
        one = cam_core.explain(model, x[None], classes=[3])
        np.testing.assert_allclose(res.maps["gradcam"][t, 0], one.maps["gradcam"][0, 0].numpy(), atol=1e-6)
    top2 = explain_clip(model, colour_clip, classes="top2", batch_size=8)
    assert top2.class_ids.tolist() == np.argsort(-top2.probs.mean(0))[:2].tolist() == [3, 0]
    assert top2.recomputed == 0  # one batch saw every frame


def test_per_frame_top1_and_fixed_classes(colour_clip):
    model = loaded(ColourNet(ROWS), NAMES)
    per = explain_clip(model, colour_clip, classes="per-frame", batch_size=3)
    assert per.per_frame and per.class_ids.shape == (8, 1)
    assert per.class_ids[:, 0].tolist() == [0] * 4 + [3] * 4 == per.top1.tolist()
    assert per.slot_ids(0).tolist() == per.class_ids[:, 0].tolist()
    fixed = explain_clip(model, colour_clip, classes="four, 2", batch_size=8)
    assert fixed.class_ids.tolist() == [4, 2] and not fixed.per_frame
    with pytest.raises(CamError, match="unknown class 'fiv'"):
        parse_clip_classes("fiv", NAMES)
    assert parse_clip_classes("top3", NAMES).k == 3 and parse_clip_classes("per-frame", NAMES).mode == "frame"


def test_npz_and_csv_contract(red, square):
    path, _ = square
    res = explain_clip(red, path, classes="top1", methods=["gradcam", "layercam"], sampling=Sampling(every=2))
    arrays = res.arrays()
    assert arrays["frame_index"].tolist() == [0, 2, 4, 6, 8]
    np.testing.assert_allclose(arrays["times"], [0.0, 0.2, 0.4, 0.6, 0.8], atol=1e-6)
    assert arrays["logits"].shape == arrays["probs"].shape == (5, 2)
    assert arrays["class_ids"].shape == (1,) and arrays["class_names"].tolist() == ["red thing"]
    assert str(arrays["layer"]) == "features.1" and str(arrays["fit"]) == "whole"
    for m in ("gradcam", "layercam"):
        assert arrays[f"maps_{m}"].shape == (5, 1, 32, 43) and arrays[f"maps_{m}"].dtype == np.float32
    lines = res.csv_text().splitlines()
    assert lines[0] == "frame_index,time_s,top1,top1_name,top1_prob,prob_0_red thing"
    assert len(lines) == 6 and lines[2].startswith("2,0.2000,0,red thing,")


def test_cancel_between_batches(red, square):
    path, _ = square
    calls = []
    with pytest.raises(Cancelled, match="stopped after 4 of 10 frames"):
        explain_clip(red, path, batch_size=2, should_stop=lambda: len(calls) >= 2,
                     progress=lambda done, total, s: calls.append((done, total)))
    assert calls == [(2, 10), (4, 10)]


def test_films_use_one_colour_scale_and_decode_back(red, tmp_path):
    # The square fades: full red, then half, then a quarter. One scale for the clip: the film's colour fades too,
    # where a per-frame min-max would paint every frame alike.
    frames, boxes = moving_square(6, size=(160, 120), side=20, strength=[1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    path = write_clip(tmp_path / "fading.mp4", frames)
    res = explain_clip(red, path, classes=[0])
    raw = {m: v.copy() for m, v in res.maps.items()}
    films = write_films(path, res, {("gradcam", 0): tmp_path / "film.mp4"}, scale="clip", alpha=0.8,
                        keep_backgrounds=True)
    assert films.scale == "clip" and np.ptp(films.scales[("gradcam", 0)]) == 0
    scale = float(films.scales[("gradcam", 0)][0])
    assert scale == pytest.approx(float(res.maps["gradcam"].max())) == pytest.approx(clip_scale(raw["gradcam"][:, 0]))
    info = probe_video(tmp_path / "film.mp4")
    assert (info.width, info.height, info.frames, info.codec) == (160, 120, 6, "h264")
    assert len(films.backgrounds) == 6
    back = list(read_frames(tmp_path / "film.mp4"))
    ups = maps_on_frames(res.maps["gradcam"][:, 0], res.place, res.frame_size)
    for t in (0, 2, 4):
        x0, y0, x1, y1 = boxes[t]
        cell = (slice(y0 + 4, y1 - 4), slice(x0 + 4, x1 - 4))
        film = back[t].rgb[cell].astype(float)
        one_scale = overlay(frames[t], ups[t], alpha=0.8, top=scale)[cell].astype(float)
        own_scale = overlay(frames[t], ups[t], alpha=0.8)[cell].astype(float)
        assert np.abs(film - one_scale).mean() < 8  # what the film shows (H.264 adds a little noise)
        if t > 0:
            assert np.abs(film - own_scale).mean() > 30  # and not what a per-frame scale would show
    for m in raw:  # drawing changed nothing
        np.testing.assert_array_equal(res.maps[m], raw[m])


def _heat_visible(path, frames, ups) -> list[float]:
    """Per frame: mean |film − source| (0…255) where the map is high (within 10 % of its peak)."""
    diffs = []
    for frame, back, up in zip(frames, read_frames(path), ups, strict=True):
        hot = up >= 0.9 * up.max()
        diffs.append(float(np.abs(back.rgb.astype(float) - frame.astype(float))[hot].mean()))
    return diffs


def test_films_show_the_heat_in_every_frame_by_default(tmp_path):
    # One half of the clip explains the class 3× more weakly than the other (a cat's frames next to an espresso's).
    # On one clip-wide scale its frames stay nearly bare; each frame on its own scale shows where the model looks.
    # A blue square and RedNet turned to blue (map = relu(b - (r + g) / 2)): jet's dark-red peak stands out on it.
    net = RedNet()
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor([-0.5, -0.5, 1.0]).view(1, 3, 1, 1))
    blue = loaded(net, ["blue thing", "not blue"])
    frames, _ = moving_square(8, size=(160, 120), side=24, strength=[0.33] * 4 + [1.0] * 4)
    frames = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    path = write_clip(tmp_path / "weak_then_strong.mp4", frames)
    res = explain_clip(blue, path, classes=[0])
    ups = maps_on_frames(res.maps["gradcam"][:, 0], res.place, res.frame_size)
    films = write_films(path, res, {("gradcam", 0): tmp_path / "frame.mp4"})
    assert films.scale == "frame"
    np.testing.assert_allclose(films.scales[("gradcam", 0)], res.maps["gradcam"][:, 0].max(axis=(1, 2)), rtol=1e-6)
    assert min(_heat_visible(tmp_path / "frame.mp4", frames, ups)) > 30
    write_films(path, res, {("gradcam", 0): tmp_path / "clip.mp4"}, scale="clip")
    weak = _heat_visible(tmp_path / "clip.mp4", frames, ups)[:4]
    assert max(weak) < 30  # what the clip-wide scale showed: the weak half nearly bare
    with pytest.raises(CamError, match="unknown colour scale"):
        write_films(path, res, {("gradcam", 0): tmp_path / "x.mp4"}, scale="global")


def test_smoothing_is_off_by_default_and_for_display_only(red, square, tmp_path):
    path, _ = square
    res = explain_clip(red, path, classes="per-frame")
    raw = res.maps["gradcam"].copy()
    np.testing.assert_array_equal(display_maps(res, "gradcam", 0), raw[:, 0])  # default: no smoothing
    shown = display_maps(res, "gradcam", 0, smooth=0.5)
    np.testing.assert_allclose(shown[1], 0.5 * raw[1, 0] + 0.5 * raw[0, 0], rtol=1e-6)
    np.testing.assert_allclose(shown[2], 0.5 * raw[2, 0] + 0.25 * raw[1, 0] + 0.25 * raw[0, 0], rtol=1e-5)
    write_films(path, res, {("gradcam", 0): tmp_path / "smooth.mp4"}, smooth=0.7)
    np.testing.assert_array_equal(res.maps["gradcam"], raw)  # the raw maps never change
    # Smoothing restarts where the explained class changes: one class's evidence never bleeds into another's.
    seq = np.stack([np.full((2, 2), v, np.float32) for v in (1.0, 1.0, 5.0)])
    np.testing.assert_allclose(smooth_maps(seq, 0.5, np.array([7, 7, 9]))[:, 0, 0], [1.0, 1.0, 5.0])
    np.testing.assert_allclose(smooth_maps(seq, 0.5)[:, 0, 0], [1.0, 1.0, 3.0])
    with pytest.raises(CamError, match="smoothing strength"):
        smooth_maps(seq, 1.0)


def test_letterboxed_frames_leave_the_pad_out(square):
    path, boxes = square
    model = loaded(RedNet(), ["red thing", "not red"], fit="letterbox")
    res = explain_clip(model, path, classes=[0])
    assert res.place.fit == "letterbox" and res.place.size == (32, 32) and res.place.content == (4, 0, 24, 32)
    maps = res.maps["gradcam"][:, 0]
    assert np.all(maps[:, :4] == 0) and np.all(maps[:, 28:] == 0)  # the pad rows
    ups = maps_on_frames(maps, res.place, res.frame_size)
    x0, y0, x1, y1 = boxes[5]
    row, col = np.unravel_index(ups[5].argmax(), ups[5].shape)
    assert x0 <= col < x1 and y0 <= row < y1


# ---- 3-D video models ------------------------------------------------------------------------------------------


def _time_net(frames: int = 4, size: int = 4) -> tuple[TimeNet, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(2, 2, frames // 2, size, size, generator=gen)
    return TimeNet(V), V


def test_3d_conv_net_gives_the_hand_computed_maps():
    net, V = _time_net()
    model = loaded(net, ["a", "b"], size=4, clip_len=4)
    x = torch.rand(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    res = cam_core.explain(model, x, layer="conv", classes=[0, 1], methods=["gradcam", "hirescam"])
    A = torch.stack([x[0, 0, ::2], -0.5 * x[0, 0, ::2]])  # (2 channels, T'=2, 4, 4)
    for c in (0, 1):
        weights = V[c].mean(dim=(1, 2, 3))  # Grad-CAM: the gradient V[c] averaged over time and space
        expected = torch.einsum("k,kthw->thw", weights, A)
        torch.testing.assert_close(res.maps["gradcam"][0, c], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(res.maps["hirescam"][0, c], (V[c] * A).sum(0), rtol=1e-5, atol=1e-6)
    assert res.maps["gradcam"].shape == (1, 2, 2, 4, 4) and res.frames == 4
    assert res.upsampled("gradcam").shape == (1, 2, 4, 4, 4)
    info = next(i for i in cam_core.list_layers(model) if i.name == "conv")
    assert (info.frames, info.time_dim, info.grid) == (2, 1, (4, 4)) and info.camable
    assert "video map 2×4×4 (time × height × width)" in info.reason
    from cam_core.models.layers import shape_text

    assert shape_text(info.out_shape, info.time_dim) == "2×t2×4×4"


def test_3d_maps_are_interpolated_in_time_to_the_window_frames(tmp_path):
    net, _ = _time_net()
    model = loaded(net, ["a", "b"], size=4, clip_len=4)
    frames = [f.copy() for f in flat_colours([(255, 0, 0)] * 8, (4, 4))]
    for i, f in enumerate(frames):
        f[..., 0] = 40 + 25 * i  # the red level changes frame by frame
    path = write_clip(tmp_path / "ramp.mp4", frames)
    res = explain_clip(model, path, classes=[0], methods=["gradcam"])
    assert (res.window, res.stride, res.frames) == (4, 4, 8)
    decoded = list(read_frames(path))
    for start in (0, 4):  # each window: explain() on its 4 frames, maps (T'=2) interpolated to 4 frames
        x = torch.stack([model.preprocess(Image.fromarray(decoded[start + j].rgb)) for j in range(4)], dim=1)
        one = cam_core.explain(model, x[None], layer="conv", classes=[0]).maps["gradcam"][0, 0]  # (2, 4, 4)
        s0, s1 = one[0].numpy(), one[1].numpy()
        expected = [s0, 0.75 * s0 + 0.25 * s1, 0.25 * s0 + 0.75 * s1, s1]  # linear, frame centres aligned
        for j in range(4):
            np.testing.assert_allclose(res.maps["gradcam"][start + j, 0], expected[j], rtol=1e-4, atol=1e-6)


def test_overlapping_windows_are_averaged_and_short_clips_padded(tmp_path):
    net, _ = _time_net()
    model = loaded(net, ["a", "b"], size=4, clip_len=4)
    frames = [np.full((4, 4, 3), (40 + 20 * i, 0, 0), np.uint8) for i in range(6)]
    path = write_clip(tmp_path / "six.mp4", frames)
    res = explain_clip(model, path, classes=[0], stride=2)  # windows 0-3, 2-5
    decoded = list(read_frames(path))
    x = [model.preprocess(Image.fromarray(f.rgb)) for f in decoded]

    def window_maps(start: int) -> np.ndarray:
        clip = torch.stack(x[start : start + 4], dim=1)[None]
        maps = cam_core.explain(model, clip, layer="conv", classes=[0]).maps["gradcam"]
        return F.interpolate(maps, size=(4, 4, 4), mode="trilinear", align_corners=False)[0, 0].numpy()

    w0, w1 = window_maps(0), window_maps(2)
    np.testing.assert_allclose(res.maps["gradcam"][1, 0], w0[1], rtol=1e-4, atol=1e-6)  # in one window
    np.testing.assert_allclose(res.maps["gradcam"][3, 0], (w0[3] + w1[1]) / 2, rtol=1e-4, atol=1e-6)  # in two
    short = explain_clip(model, write_clip(tmp_path / "two.mp4", frames[:2]), classes=[0])
    assert short.frames == 2 and short.maps["gradcam"].shape == (2, 1, 4, 4)  # padded to the window, then cut
    with pytest.raises(CamError, match="the stride must be between 1 and the window"):
        explain_clip(model, path, stride=9)
    with pytest.raises(CamError, match="Score-CAM and Ablation-CAM"):
        explain_clip(model, path, methods=["scorecam"])


@pytest.mark.slow
def test_r3d_18_untrained_runs_end_to_end(tmp_path):
    model = cam_core.load_model("r3d_18", weights=None)
    assert model.clip_len == 16 and len(model.class_names) == 400 and not model.pretrained
    assert model.class_names[0] == "abseiling"  # Kinetics-400, from the weights' meta
    layers = {i.name: i for i in cam_core.list_layers(model)}
    assert layers["layer4"].recommended and layers["layer4"].time_dim == 1 and layers["layer4"].frames == 2
    frames, _ = moving_square(20, size=(32, 32), side=8)  # square frames: the model's own 112×112 input
    path = write_clip(tmp_path / "r3d.mp4", frames)
    res = explain_clip(model, path, classes="per-frame", methods=["gradcam"], stride=8)
    assert res.frames == 20 and res.window == 16 and res.layer == "layer4"
    assert res.place.fit == "whole" and res.place.size == (112, 112)
    assert res.maps["gradcam"].shape == (20, 1, 7, 7) and np.isfinite(res.maps["gradcam"]).all()
    assert res.class_ids.shape == (20, 1) and set(res.class_names()[:, 0]) <= set(model.class_names)
    films = write_films(path, res, {("gradcam", 0): tmp_path / "r3d_film.mp4"})
    assert probe_video(films.paths[("gradcam", 0)]).frames == 20

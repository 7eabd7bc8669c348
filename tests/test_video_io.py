"""Reading and writing video: formats, container times, rotation, sampling, limits, and one line per bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cam_core.errors import CamError
from cam_core.io import video as vio
from cam_core.io.video import Sampling, VideoError, VideoWriter, even_size, probe_video, read_frames, upright
from tests.clips import moving_square, write_clip


def _encode(path, codec: str, frames, fps=10, fmt=None, pix_fmt="yuv420p", rotation=None):
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    frames, _ = moving_square(8)
    return write_clip(tmp_path_factory.mktemp("v") / "square.mp4", frames), frames


def test_writer_makes_browser_mp4_and_it_reads_back(tmp_path):
    frames, _ = moving_square(7, size=(65, 33))  # odd sizes: cropped to even
    path = write_clip(tmp_path / "odd.mp4", frames, fps=10)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: the index first
    info = probe_video(path)
    assert (info.width, info.height, info.frames, info.codec) == (64, 32, 7, "h264")
    import av

    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    back = list(read_frames(path))
    assert [f.index for f in back] == list(range(7))
    np.testing.assert_allclose([f.time for f in back], np.arange(7) / 10, atol=1e-6)
    # H.264 at the default quality: the picture comes back close to what was written
    assert np.abs(back[3].rgb.astype(int) - frames[3][:32, :64].astype(int)).mean() < 6
    assert even_size(65, 33) == (64, 32)


@pytest.mark.parametrize(
    ("name", "codec", "fmt"),
    [("c.webm", "libvpx-vp9", "webm"), ("c.mkv", "libx264", "matroska"), ("c.avi", "mpeg4", "avi"),
     ("c.mov", "libx264", "mov")],
)
def test_common_containers_decode(tmp_path, name, codec, fmt):
    frames, _ = moving_square(5)
    path = _encode(tmp_path / name, codec, frames, fmt=fmt)
    back = list(read_frames(path))
    assert len(back) == 5 and back[0].rgb.shape == (48, 64, 3)
    np.testing.assert_allclose([f.time for f in back], np.arange(5) / 10, atol=1e-3)


def test_animated_gif_keeps_its_frame_times(tmp_path):
    frames = [Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)) for i in range(4)]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 300, 100, 100], loop=0)
    back = list(read_frames(path))
    np.testing.assert_allclose([f.time for f in back], [0.0, 0.1, 0.4, 0.5], atol=1e-6)
    assert [int(f.rgb[0, 0, 0]) for f in back] == [0, 40, 80, 120]


def test_rotation_metadata_turns_frames_upright(tmp_path):
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:8, :8] = (255, 0, 0)  # a red mark top-left of the stored (landscape) frame
    path = _encode(tmp_path / "phone.mp4", "libx264", [frame] * 3, rotation=90)
    back = next(iter(read_frames(path)))
    assert back.rgb.shape == (64, 32, 3)  # displayed portrait
    red = back.rgb[..., 0] > 128
    rows, cols = np.nonzero(red)
    assert rows.min() >= 54 and cols.max() <= 9  # turned 90° counter-clockwise: top-left → bottom-left
    # The rotation function itself, for every quarter turn
    a = np.arange(6).reshape(2, 3, 1)
    assert upright(a, 0) is a
    np.testing.assert_array_equal(upright(a, 90)[..., 0], np.rot90(a[..., 0]))
    np.testing.assert_array_equal(upright(a, -90)[..., 0], np.rot90(a[..., 0], -1))
    np.testing.assert_array_equal(upright(a, 180)[..., 0], a[::-1, ::-1, 0])


def test_sampling_every_fps_and_max_frames(tmp_path):
    frames, _ = moving_square(30)
    path = write_clip(tmp_path / "thirty.mp4", frames, fps=30)
    assert [f.index for f in read_frames(path, Sampling(every=4))] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert [f.index for f in read_frames(path, Sampling(fps=10))] == list(range(0, 30, 3))
    assert [f.index for f in read_frames(path, Sampling(every=2, max_frames=3))] == [0, 2, 4]
    assert Sampling(fps=10).planned(30, 1.0, 30.0) == 10
    with pytest.raises(VideoError, match="either --every or --fps"):
        Sampling(every=2, fps=5)
    with pytest.raises(VideoError, match="--every must be"):
        Sampling(every=0)


def test_decoder_downscales_large_frames(square):
    path, _ = square
    small = next(iter(read_frames(path, max_short_side=24)))
    assert small.rgb.shape == (24, 32, 3)


def _one_line(exc: CamError) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def _truncated(tmp_path, square_path):
    data = square_path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return cut


def _audio_only(tmp_path):
    import av

    path = tmp_path / "song.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _unknown_codec(tmp_path):
    frames, _ = moving_square(3)
    avi = _encode(tmp_path / "x.avi", "mpeg4", frames, fmt="avi")
    path = tmp_path / "unknown.avi"
    path.write_bytes(avi.read_bytes().replace(b"FMP4", b"ZQZQ"))  # a FourCC no decoder knows
    return path


def _empty(tmp_path, _square_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _text(tmp_path, _square_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video, just notes\n")
    return path


BAD = {
    "truncated": (_truncated, "is truncated or corrupt"),
    "zero-length": (_empty, "is empty (0 bytes)"),
    "audio-only": (lambda tmp, _: _audio_only(tmp), "has no video stream (audio only)"),
    "text-named-mp4": (_text, "is not a video that can be read"),
    "unknown-codec": (lambda tmp, _: _unknown_codec(tmp), "uses a video codec this build of FFmpeg cannot decode"),
    "missing": (lambda tmp, _: tmp / "missing.mp4", "no such video file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_videos_give_one_clear_line(tmp_path, square, case):
    make, needle = BAD[case]
    path = make(tmp_path, square[0])
    with pytest.raises(VideoError) as info:
        list(read_frames(path))
    assert needle in _one_line(info.value)
    assert str(path.name) in str(info.value)


def test_a_truncated_index_is_named_too(tmp_path):
    frames, _ = moving_square(12)
    import av

    path = tmp_path / "plain.mp4"  # the index at the end (no faststart): cutting it loses every stream
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cut = tmp_path / "plain_cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated") as info:
        probe_video(cut)
    _one_line(info.value)


def test_huge_resolution_is_refused_before_decoding(tmp_path):
    frame = np.zeros((2304, 4096, 3), np.uint8)  # 9.4 MP, above 4K UHD
    path = _encode(tmp_path / "huge.mp4", "libx264", [frame])
    with pytest.raises(VideoError, match=r"4096×2304 = 9 MP a frame, more than the 8\.3 MP \(4K\)") as info:
        probe_video(path)
    _one_line(info.value)


def test_limits_on_length_frames_and_size(monkeypatch, square):
    path, _ = square
    monkeypatch.setattr(vio, "MAX_FRAMES", 5)
    with pytest.raises(VideoError, match="would give 8 frames to explain, more than the 5 allowed in one run; sample"):
        probe_video(path)
    assert len(list(read_frames(path, Sampling(every=2)))) == 4  # sampled: within the limit
    monkeypatch.setattr(vio, "MAX_FRAMES", 3000)
    monkeypatch.setattr(vio, "MAX_DURATION_S", 0.5)
    with pytest.raises(VideoError, match=r"lasts 0\.8 s, more than the 0\.5 s allowed; cut it first"):
        probe_video(path)
    monkeypatch.setattr(vio, "MAX_DURATION_S", 600.0)
    monkeypatch.setattr(vio, "MAX_FILE_BYTES", 100)
    with pytest.raises(VideoError, match="MiB, more than the"):
        probe_video(path)


def test_writer_refuses_a_zero_rate(tmp_path):
    with pytest.raises(VideoError, match="frames per second"):
        VideoWriter(tmp_path / "x.mp4", 0, (8, 8))

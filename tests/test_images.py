"""Image decoding: every colour mode, EXIF orientation, animations, corrupt data, size limits; sample photos."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cam_core.errors import CamError
from cam_core.io.images import MAX_PIXELS, SUPPORTED_FORMATS, ImageError, load_image
from cam_core.io.samples import SAMPLE_NAMES, load_sample


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


# ------------------------------------------------------------------------------------------- modes


def test_rgba_is_composited_on_white():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent blue → white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black → mid grey
    out = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out.mode == "RGB"
    assert out.size == (3, 2)
    assert _pixel(out, 0, 0) == (255, 0, 0)
    assert _pixel(out, 1, 0) == (255, 255, 255)
    assert all(abs(v - 127) <= 1 for v in _pixel(out, 2, 0))


def test_la_and_palette_transparency():
    la = Image.fromarray(np.array([[[0, 0], [200, 255]]], np.uint8), "LA")
    out = load_image(_encode(la, "PNG"))
    assert _pixel(out, 0, 0) == (255, 255, 255)
    assert _pixel(out, 1, 0) == (200, 200, 200)

    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 255, 0, 9, 9, 9] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    out = load_image(_encode(palette, "PNG", transparency=1))
    assert _pixel(out, 0, 0) == (0, 255, 0)
    assert _pixel(out, 1, 0) == (255, 255, 255)


def test_sixteen_bit_grey_keeps_its_range():
    values = np.array([[0, 32896, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    out = load_image(_encode(image, "PNG"))
    assert [_pixel(out, x, 0) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_float_tiff_is_scaled():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    out = load_image(_encode(image, "TIFF"))
    assert [_pixel(out, x, 0)[0] for x in range(3)] == [0, 128, 255]


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("1", "PNG"), ("L", "PNG"), ("P", "GIF"), ("CMYK", "JPEG"), ("CMYK", "TIFF"), ("RGB", "BMP"), ("I", "TIFF")],
)
def test_other_modes_become_rgb(mode, fmt):
    source = Image.new("RGB", (8, 6), (200, 30, 60)).convert(mode)
    out = load_image(_encode(source, fmt))
    assert out.mode == "RGB"
    assert out.size == (8, 6)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_supported_formats_round_trip(fmt):
    source = Image.new("RGB", (10, 7), (0, 0, 255))
    out = load_image(_encode(source, fmt))
    assert out.size == (10, 7)
    red, green, blue = _pixel(out, 5, 3)
    assert blue > 200 and red < 40 and green < 40


# ------------------------------------------------------------------------------------ orientation, frames


def test_exif_orientation_is_applied():
    # 40×20: left half red, right half blue; orientation 6 means "rotate 90° clockwise to display".
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(array), "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data)
    assert out.size == (20, 40)
    assert _pixel(out, 10, 5)[0] > 200  # the left (red) half is now on top
    assert _pixel(out, 10, 34)[2] > 200  # the right (blue) half at the bottom


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    out = load_image(path)
    assert _pixel(out, 2, 2) == (255, 0, 0)


# -------------------------------------------------------------------------------------- input kinds


def test_path_str_bytes_and_stream_agree(tmp_path):
    source = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    data = _encode(source, "PNG")
    path = tmp_path / "small.png"
    path.write_bytes(data)
    stream = io.BytesIO(data)
    outputs = [load_image(path), load_image(str(path)), load_image(data), load_image(stream)]
    for out in outputs:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(source))


# ------------------------------------------------------------------------------------------- errors


def test_text_file_names_the_file_and_formats(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not an image\n")
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert "notes.txt" in message
    assert all(fmt in message for fmt in SUPPORTED_FORMATS)
    assert isinstance(info.value, CamError)


def test_missing_file():
    with pytest.raises(ImageError, match="no such image file"):
        load_image("/nonexistent/cat.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_data(fmt):
    rng = np.random.default_rng(0)
    data = _encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageError, match="half-image is truncated or corrupt"):
        load_image(data[: len(data) // 2], name="half-image")


def test_garbage_after_a_valid_header():
    data = bytearray(_encode(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG"))
    data[60:] = bytes(len(data) - 60)  # zero out the compressed pixels and the chunk CRCs
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(bytes(data))


def test_format_outside_the_list_is_refused():
    data = _encode(Image.new("RGB", (4, 4)), "PPM")
    with pytest.raises(ImageError, match="PNG, JPEG, WebP"):
        load_image(data)


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` but holds one empty data chunk: never decodable."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_too_many_pixels_is_refused_before_decoding():
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r"8000×7000 = 56 MP, more than the 50 MP allowed"):
        load_image(_png_header_claiming(8000, 7000), name="huge.png")
    assert MAX_PIXELS == 50_000_000
    with pytest.raises(ImageError, match="more than the 0 MP allowed"):
        load_image(_encode(Image.new("RGB", (30, 20)), "PNG"), max_pixels=500)
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_decompression_bomb_is_an_image_error():
    with pytest.raises(ImageError, match="too large"):
        load_image(_png_header_claiming(20000, 20000))


# ------------------------------------------------------------------------------------------- samples


def test_samples():
    assert SAMPLE_NAMES == ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")
    sizes = {name: load_sample(name).size for name in SAMPLE_NAMES}
    assert sizes["chelsea"] == (451, 300)
    assert sizes["coffee"] == (600, 400)
    assert sizes["motorcycle"] == (741, 500)
    first = load_sample("coffee")
    assert first.mode == "RGB"
    first.paste((0, 0, 0), (0, 0, 50, 50))
    assert _pixel(load_sample("coffee"), 10, 10) != (0, 0, 0)  # each call gets its own copy
    with pytest.raises(CamError, match="chelsea, coffee"):
        load_sample("dog")


def test_samples_are_the_pixels_of_scikit_images_loaders():
    """The page reads the files itself (no ``skimage.io`` import); the pixels must be skimage's own."""
    from skimage import data

    loaders = {
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "astronaut": data.astronaut,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
    }
    for name in SAMPLE_NAMES:
        np.testing.assert_array_equal(np.asarray(load_sample(name)), loaders[name]()[..., :3], err_msg=name)

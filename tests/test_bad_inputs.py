"""The corpus of bad inputs: every one ends in a clear line (or, where it is fine after all, a sound result),
never a traceback, a wrong result or code run behind the user's back.

Images (truncated, empty, mislabelled, bombs, odd modes, animations), checkpoints and models (garbage,
malicious pickles, TorchScript and import paths that would touch files, NaN weights, odd outputs, half
precision), the command line's options, and the Python API's arguments. Markers prove that nothing
malicious ran. The page's side (untrusted visitors, uploads) is in test_dashboard_access.py.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cam_core
from cam_core.cli import main
from cam_core.errors import CamError
from cam_core.io.images import ImageError, load_image
from cam_core.models.load import CheckpointError, CodeNotAllowed, UntrustedCheckpoint
from tests.tiny import gapnet

ROOT = Path(__file__).resolve().parents[1]
FORMATS = {"PNG": "png", "JPEG": "jpg", "WebP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


def _one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text) and "\n" not in text and "Traceback" not in text


def _photo(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


# ---- images --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_image_is_one_line_or_what_could_be_read(fmt: str) -> None:
    data = _photo(fmt, (256, 192))
    cut = data[: len(data) // 3]
    outcome: object
    try:
        outcome = load_image(cut, name=f"photo.{FORMATS[fmt]}")
    except ImageError as exc:
        outcome = exc
    if isinstance(outcome, ImageError):
        assert _one_line(outcome) and f"photo.{FORMATS[fmt]}" in str(outcome)
    else:  # a format whose decoder stops at the cut (GIF, BMP rows): a sound RGB image of the declared size
        assert outcome.mode == "RGB" and outcome.size == (256, 192)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_file_is_one_line(fmt: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"", name=f"empty.{FORMATS[fmt]}")
    assert _one_line(info.value) and "empty." in str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_under_an_image_name_is_one_line(fmt: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(b"hello, I am a text file\n" * 20, name=f"notes.{FORMATS[fmt]}")
    assert _one_line(info.value) and "supported formats" in str(info.value)


@pytest.mark.parametrize(("fmt", "named"), [("JPEG", "png"), ("PNG", "jpg"), ("WebP", "gif")])
def test_a_mislabelled_image_is_read_by_its_content(fmt: str, named: str) -> None:
    image = load_image(_photo(fmt), name=f"photo.{named}")
    assert image.mode == "RGB" and image.size == (64, 48)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` (the pixel data is a few bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_a_pixel_bomb_is_refused_before_decoding() -> None:
    data = _png_header_only(100_000, 100_000)
    assert len(data) < 200
    with pytest.raises(ImageError, match=r"bomb\.png is too large to decode safely") as info:
        load_image(data, name="bomb.png")
    assert _one_line(info.value)
    # Below Pillow's own guard (2 × 89 MP), ours refuses from the header alone.
    with pytest.raises(ImageError, match="100 MP, more than the 50 MP allowed"):
        load_image(_png_header_only(10_000, 10_000), name="big.png")


def test_an_aspect_bomb_is_refused_before_decoding() -> None:
    """The 140-byte 100000×5 PNG that drove the server to 5.4 GB."""
    data = _png_header_only(100_000, 5)
    with pytest.raises(ImageError, match=r"aspect ratio of 20000:1, beyond the 32:1 limit"):
        load_image(data, name="strip.png")


def _transparent_palette() -> Image.Image:
    im = Image.new("P", (64, 48), 0)
    im.info["transparency"] = 0
    return im


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("I;16", lambda: Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16))),
        ("F", lambda: Image.fromarray(np.linspace(-3, 7, 48 * 64, dtype=np.float32).reshape(48, 64))),
        ("I", lambda: Image.fromarray(np.arange(48 * 64, dtype=np.int32).reshape(48, 64) - 1000)),
        ("CMYK", lambda: Image.new("CMYK", (64, 48), (0, 255, 255, 0))),
        ("P", lambda: Image.new("RGB", (64, 48), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)),
        ("P+transparency", lambda: _transparent_palette()),
        ("LA", lambda: Image.new("LA", (64, 48), (128, 64))),
        ("RGBA", lambda: Image.new("RGBA", (64, 48), (255, 0, 0, 0))),
        ("1", lambda: Image.new("1", (64, 48), 1)),
    ],
)
def test_every_colour_mode_becomes_rgb(mode: str, make: Callable[[], Image.Image]) -> None:
    im = make()
    buf = io.BytesIO()
    im.save(buf, format="TIFF" if mode in ("F", "I", "I;16") else "JPEG" if mode == "CMYK" else "PNG")
    image = load_image(buf.getvalue(), name=f"mode_{mode}")
    assert image.mode == "RGB" and image.size == (64, 48)
    pixels = np.asarray(image)
    if mode == "RGBA":  # fully transparent red: composited on white, not drawn red
        assert pixels.min() == 255
    if mode == "F":  # a float ramp keeps its order (min-max scaled), not clipped to black and white
        assert pixels[0, 0, 0] < pixels[-1, -1, 0] and len(np.unique(pixels[..., 0])) > 100


def test_animations_and_pages_give_their_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    for fmt in ("GIF", "TIFF"):
        buf = io.BytesIO()
        frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
        first = np.asarray(load_image(buf.getvalue(), name=f"anim.{fmt}"))
        assert first[..., 0].mean() > 200 and first[..., 2].mean() < 50


# ---- checkpoints and models ---------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data"),
    [("random.pt", os.urandom(4096)), ("empty.pth", b""), ("notes.ckpt", b"weights: none\n" * 10)],
)
def test_garbage_is_not_called_a_pickle(tmp_path: Path, name: str, data: bytes) -> None:
    with pytest.raises(CheckpointError) as info:
        cam_core.load_model(str(_write(tmp_path / name, data)), arch="resnet18")
    assert _one_line(info.value) and "is not a PyTorch checkpoint" in str(info.value)
    assert "Trust" not in str(info.value)  # nothing nudges the user to trust garbage


class _WritesMarker:
    """Unpickling this object writes a marker file (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_malicious_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"model": _WritesMarker(marker)}, path)
    with pytest.raises(UntrustedCheckpoint) as info:  # refused by default
        cam_core.load_model(str(path))
    assert _one_line(info.value)
    with pytest.raises(CodeNotAllowed) as info:  # and where code is not allowed, even when "trusted"
        cam_core.load_model(str(path), trust_checkpoint=True, allow_code=False)
    assert _one_line(info.value) and "not allowed here" in str(info.value)
    assert not marker.exists()


class _ReadsAFile(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leaked = torch.from_file("/etc/hostname", size=4, dtype=torch.uint8)  # reads a server file
        return self.conv(x).mean((2, 3)) + leaked[:1].float()


def test_a_torchscript_that_reads_files_is_refused_where_code_is_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "reader.pt"
    torch.jit.script(_ReadsAFile()).save(str(path))
    with pytest.raises(CodeNotAllowed) as info:
        cam_core.load_model(str(path), allow_code=False)
    assert _one_line(info.value) and "TorchScript" in str(info.value)


def test_a_zip_on_the_import_path_never_runs_where_code_is_not_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("evilmod.py", f"open({str(marker)!r}, 'w').write('pwned')\ndef build():\n    return None\n")
    with pytest.raises(CodeNotAllowed):
        cam_core.load_model("evilmod:build", import_paths=[archive], allow_code=False)
    with pytest.raises(CodeNotAllowed):
        cam_core.load_model("os:getcwd", allow_code=False)  # any factory, with no upload at all
    assert not marker.exists() and "evilmod" not in sys.modules


def _state_dict_file(tmp_path: Path, module: nn.Module, name: str = "w.pt") -> Path:
    path = tmp_path / name
    torch.save(module.state_dict(), path)
    return path


def test_weights_that_do_not_fit_say_why(tmp_path: Path) -> None:
    path = _state_dict_file(tmp_path, gapnet())
    with pytest.raises(CheckpointError) as info:
        cam_core.load_model(str(path), arch="resnet18", allow_code=False)
    assert _one_line(info.value) and "does not fit resnet18" in str(info.value)
    path = tmp_path / "strings.pt"
    torch.save({"note": "no tensors here"}, path)
    with pytest.raises(CheckpointError) as info:
        cam_core.load_model(str(path), arch="resnet18", allow_code=False)
    assert _one_line(info.value)


def test_weights_only_files_still_load_where_code_is_not_allowed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = __import__("torchvision").models.resnet18(weights=None, num_classes=7).eval()
    model = cam_core.load_model(str(_state_dict_file(tmp_path, net)), arch="resnet18", allow_code=False)
    assert model.num_classes == 7


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_named(value: float) -> None:
    model = gapnet()
    with torch.no_grad():
        model.fc.weight.fill_(value)
    assert cam_core.recommended_layer(model) == cam_core.recommended_layer(gapnet())  # the layer tree still works
    with pytest.raises(CamError) as info:
        cam_core.explain(model, torch.randn(1, 3, 16, 16), classes="top1")
    assert (_one_line(info.value) and "NaN" in str(info.value)) or "infinite" in str(info.value)


def test_an_input_that_overflows_is_named() -> None:
    with pytest.raises(CamError, match="outputs are infinite") as info:
        cam_core.explain(gapnet(), torch.full((1, 3, 16, 16), 1e38), classes="top1")
    assert _one_line(info.value)


class _ReturnsAString(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> str:
        self.conv(x)
        return "cat"


class _NoSpatialLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def test_models_with_odd_outputs_or_no_map_are_one_line() -> None:
    with pytest.raises(CamError) as info:
        cam_core.explain(_ReturnsAString(), torch.randn(1, 3, 16, 16), layer="conv")
    assert _one_line(info.value) and "logits" in str(info.value)
    with pytest.raises(CamError) as info:
        cam_core.explain(_NoSpatialLayer(), torch.randn(1, 3, 16, 16))
    assert _one_line(info.value) and "no layer of this model gives a spatial map for a 16×16 input" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_explained_in_their_dtype(dtype: torch.dtype) -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = cam_core.explain(gapnet(), x, classes=[1, 2], methods=["gradcam", "scorecam"], device="cpu")
    res = cam_core.explain(gapnet().to(dtype), x, classes=[1, 2], methods=["gradcam", "scorecam"], device="cpu")
    for m in ("gradcam", "scorecam"):
        assert res.maps[m].dtype == torch.float32
        err = float((res.maps[m] - ref.maps[m]).abs().max() / ref.maps[m].abs().max())
        assert err < 0.05, (m, err)  # the half-precision forward's own rounding, nothing worse


def _factory_module(tmp_path: Path, body: str) -> Path:
    (tmp_path / "badfactory.py").write_text(body)
    return tmp_path


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_factory_that_exits_is_a_message_in_a_server_thread(tmp_path: Path, raised: str) -> None:
    folder = _factory_module(tmp_path, f"def build():\n    raise {raised}\n")
    caught: list[BaseException] = []

    def load() -> None:
        try:
            cam_core.load_model("badfactory:build", import_paths=[folder])
        except BaseException as exc:
            caught.append(exc)

    import threading

    thread = threading.Thread(target=load)
    thread.start()
    thread.join(60)
    sys.modules.pop("badfactory", None)
    assert len(caught) == 1 and isinstance(caught[0], CamError) and _one_line(caught[0])
    assert raised.split("(")[0] in str(caught[0])


def test_a_model_in_training_mode_is_left_as_it_was() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    ).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match="eval mode"):
        first = cam_core.explain(model, x, layer="2", classes=[0], device="cpu")
    second = cam_core.explain(model, x, layer="2", classes=[0], device="cpu")
    torch.testing.assert_close(first.maps["gradcam"], second.maps["gradcam"])  # no dropout noise
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm buffers untouched
    assert model.training and model[1].training and model[3].training


# ---- the Python API's arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"classes": 1.5}, "not an index"),
        ({"classes": True}, "not True"),
        ({"classes": None}, "not a NoneType"),
        ({"classes": [0, "tabbby"]}, "unknown class 'tabbby'"),
        ({"classes": "top0"}, "k must be between 1 and 5"),
        ({"classes": [7]}, "out of range"),
        ({"classes": []}, "no class given"),
        ({"layer": nn.ReLU()}, "not a ReLU"),
        ({"layer": "features.9"}, "unknown layer"),
        ({"methods": []}, "no method given"),
        ({"methods": ["gradkam"]}, "unknown method"),
        ({"batch_size": 0}, "between 1 and"),
        ({"batch_size": -4, "methods": ["scorecam"]}, "between 1 and"),
        ({"batch_size": 2.5}, "whole number"),
        ({"device": "tpu"}, "unknown device"),
        ({"target": "probability"}, "target"),
        ({"region": (0, 0, 99, 99)}, "does not lie inside"),
    ],
)
def test_bad_api_arguments_are_one_line(kwargs: dict, needle: str) -> None:
    with pytest.raises(CamError) as info:
        cam_core.explain(gapnet(), torch.randn(1, 3, 16, 16), **kwargs)
    assert _one_line(info.value) and needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        (torch.randn(3, 16, 16), "(N, 3, H, W)"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "float images"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN or infinite"),
        (np.zeros((1, 3, 16, 16), np.float32), "got a ndarray"),
    ],
)
def test_bad_images_for_the_api_are_one_line(x: object, needle: str) -> None:
    with pytest.raises(CamError) as info:
        cam_core.explain(gapnet(), x)
    assert _one_line(info.value) and needle in str(info.value)


def test_the_ids_numpy_gives_are_classes() -> None:
    model, x = gapnet(), torch.randn(1, 3, 16, 16)
    order = np.argsort(-np.arange(5))  # what np.argsort returns: int64 array
    res = cam_core.explain(model, x, classes=order[:2], device="cpu")
    assert res.class_ids.tolist() == [[4, 3]]
    assert cam_core.explain(model, x, classes=np.int64(2), device="cpu").class_ids.tolist() == [[2]]
    assert cam_core.explain(model, x, classes=[3.0], device="cpu").class_ids.tolist() == [[3]]
    assert cam_core.explain(model, x, methods=None, device="cpu").methods == ("gradcam",)


# ---- the command line ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    return path


CLI_MISTAKES = [
    (["--alpha", "5"], "not between 0 and 1"),
    (["--alpha", "nan"], "not a finite number"),
    (["--std", "nan", "nan", "nan"], "not a finite number"),
    (["--std", "0", "1", "1"], "not above 0"),
    (["--mean", "inf", "0", "0"], "not a finite number"),
    (["--input-size", "0"], "not between 8 and 4096"),
    (["--input-size", "100000"], "not between 8 and 4096"),
    (["--batch-size", "0", "--method", "scorecam"], "not between 1 and"),
    (["--batch-size", "-5"], "not between 1 and"),
    (["--batch-size", "ten"], "not a whole number"),
    (["--cmap", "rainbow"], "unknown colormap 'rainbow'"),
    (["--classes", ""], "no class given"),
    (["--classes", "top0"], "k must be between 1 and"),
    (["--classes", "-1"], "out of range"),
    (["--classes", "tabbby"], "unknown class 'tabbby'"),
    (["--method", "gradkam"], "unknown method 'gradkam'"),
    (["--layer", "layer9"], "unknown layer 'layer9'"),
    (["--device", "cuda"], "no CUDA GPU"),
    (["--device", "tpu"], "unknown device"),
    (["--fit", "zoom"], "invalid choice: 'zoom'"),
    (["--weights", "IMAGENET9"], "unknown weights"),
    (["--model", "resnet5O"], "unknown model 'resnet5O'"),
    (["--labels", "/no/such/labels.txt"], "cannot read labels file"),
    (["--arch", "resnet18"], "--arch is for state-dict files"),
]


@pytest.mark.parametrize(("args", "needle"), CLI_MISTAKES)
def test_cli_mistakes_are_one_line_and_status_2(
    cat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    base = ["explain", "--model", "resnet18", "--weights", "none", "--image", str(cat), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exited:  # argparse's own checks exit, the rest return
        raise SystemExit(main([*base, *args]))
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_cli_out_pointing_at_a_file_and_a_missing_image(cat: Path, tmp_path: Path, capsys) -> None:
    blocker = _write(tmp_path / "out.txt", b"x")
    assert main(["explain", "--image", str(cat), "--out", str(blocker)]) == 2
    assert main(["explain", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: --out {blocker} is a file; give a folder",
        f"error: no such image file: {tmp_path / 'nope.png'}",
    ]


def test_cli_trust_options_are_checked(cat: Path, tmp_path: Path, capsys) -> None:
    base = ["trust", "--model", "tests.tiny:gapnet", "--import-path", str(ROOT), "--image", str(cat)]
    for extra, needle in ((["--steps", "0"], "not between 2 and 256"), (["--randomise-units", "-1"], "not between 0"),
                          (["--baseline", "noise"], "invalid choice")):
        with pytest.raises(SystemExit) as exited:
            main([*base, *extra, "--out", str(tmp_path)])
        assert exited.value.code == 2
        assert needle in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "slowfactory.py").write_text("import time\ntime.sleep(60)\ndef build():\n    pass\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cam_core", "layers", "--model", "slowfactory:build", "--import-path", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(6)  # torch imported, the factory's module sleeping in its import
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted"]


def test_a_closed_pipe_ends_quietly() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m cam_core layers --model resnet18 --weights none | head -2",
        shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert len(proc.stdout.splitlines()) == 2 and "Traceback" not in proc.stderr


def test_a_pickle_in_a_pickle_format_file_is_still_refused(tmp_path: Path) -> None:
    """Legacy (non-zip) torch.save output that would run code: recognised as a pickle, refused."""
    marker = tmp_path / "marker"
    path = tmp_path / "legacy.pt"
    torch.save(_WritesMarker(marker), path, _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpoint):
        cam_core.load_model(str(path))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        cam_core.load_model(str(_write(tmp_path / "proto0.pt", pickle.dumps([1], protocol=0))), arch="resnet18")


# ---- a Hugging Face folder's bad values ("Safe to share, round two", finding 10) ----------------------------------
@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"resample": "abc"}, r"^preprocessor_config.json: resample 'abc' is not one of PIL's codes 0-5$"),
        ({"resample": 17}, r"resample '17' is not one of PIL's codes"),
        ({"image_std": [0.5, 0, 0.5]}, r"image_std \[0.5, 0.0, 0.5\] has a value of 0 or less"),
        ({"image_std": 0}, r"image_std \[0.0, 0.0, 0.0\] has a value of 0 or less"),
        ({"image_mean": ["a", "b", "c"]}, r"image_mean must be three numbers"),
        ({"image_mean": [0.5, 0.5]}, r"image_mean must be three numbers"),
        ({"size": {"shortest_edge": 224}, "crop_pct": 0}, r"crop_pct 0 is not in \(0, 1\]"),
        ({"size": {"shortest_edge": "x"}}, r"^preprocessor_config.json: a value cannot be read \(ValueError\)$"),
    ],
)
def test_a_processor_config_with_a_bad_value_is_one_line(cfg: dict, needle: str) -> None:
    from cam_core.models.sources.hf_folder import preprocess_from_config

    with pytest.raises(CamError, match=needle) as info:
        preprocess_from_config(cfg)
    assert _one_line(info.value)


def test_real_processor_values_still_read() -> None:
    from cam_core.models.sources.hf_folder import preprocess_from_config

    pre, fit, _ = preprocess_from_config({"resample": 3, "image_std": [0.229, 0.224, 0.225], "size": 224})
    assert pre.std == (0.229, 0.224, 0.225) and fit == "squash"
    assert preprocess_from_config({"resample": "2", "image_std": 0.5})[0].std == (0.5, 0.5, 0.5)


def _tiny_vit_bin(folder: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_labels=2)
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):  # the older format instead: pytorch_model.bin, a pickle
        weights.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    return folder


def test_a_pickled_hf_bin_is_refused_where_code_is_not_allowed(tmp_path: Path) -> None:
    folder = _tiny_vit_bin(tmp_path / "vit_bin")
    with pytest.raises(CamError, match=r"weights are a pickle \(pytorch_model.bin or similar\), which is not "
                                       r"loaded here") as info:
        cam_core.load_model(f"hf:{folder}", allow_code=False)
    assert _one_line(info.value) and str(tmp_path) not in str(info.value)
    assert len(cam_core.load_model(f"hf:{folder}").class_names) == 2  # the machine's own user may load it

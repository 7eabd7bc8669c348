"""The hardening issue's attacks, crafted for real, against the blocks that refuse them.

Each bomb runs in a child process whose resident memory is watched (and killed past a cap of a few GB),
and runs the vulnerable step *after* the check: if a block ever stops refusing, the test fails on the
child's memory instead of taking the machine down. The child reports its resident size after its imports
and its high-water mark (``VmHWM``) at the end; the difference is what the attack cost.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import cam_core
from cam_core import budget
from cam_core.budget import (
    Declared,
    InputSizeError,
    ModelTooLarge,
    TensorSpec,
    check_declared,
    check_hf_model,
    check_input_side,
    check_num_classes,
    check_preprocessor_config,
    check_safetensors,
    check_state_dict,
    declared_size,
    safetensors_header,
)
from cam_core.errors import CamError
from cam_core.io import zips
from cam_core.io.video import VideoError, _check_frame_size
from cam_core.io.zips import ZipError, check_zip, extract_zip
from cam_core.limits import (
    MAX_CLASSES,
    MAX_INPUT_SIDE,
    MAX_MODEL_BYTES,
    MAX_MODEL_PARAMS,
    MAX_ZIP_FILES,
    MODEL_CACHE_BYTES,
)

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


# ---- a child process with its memory watched ----------------------------------------------------------------
_PRELUDE = """
import json, sys
def _status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
def _report(**kw):
    print("RESULT " + json.dumps(dict(kw, base=BASE, hwm=_status("VmHWM"))), flush=True)
"""


@dataclass
class Child:
    """What a watched child did: its result line, its memory, whether the watcher killed it."""

    result: dict
    peak: int
    killed: bool
    seconds: float
    stderr: str

    @property
    def cost(self) -> int:
        """Bytes the attack added to the child's resident size (high-water mark minus after-import size)."""
        return self.result["hwm"] - self.result["base"]


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_capped(imports: str, attack: str, cap: int = 3 * 2**30, timeout: float = 120) -> Child:
    """Run ``imports`` then ``attack`` in a fresh Python, killing it once its RSS passes ``cap``.

    ``attack`` must call ``_report(...)`` (a JSON line with the child's memory added) when it ends.
    """
    code = _PRELUDE + textwrap.dedent(imports) + '\nBASE = _status("VmRSS")\n' + textwrap.dedent(attack)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak, killed = 0, False
    while proc.poll() is None:
        rss = _rss(proc.pid)
        peak = max(peak, rss)
        if rss > cap or time.monotonic() - start > timeout:
            proc.kill()
            killed = True
            break
        time.sleep(0.005)
    out, err = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):]) if lines else {}
    assert not killed, f"the child passed {cap / 2**30:.1f} GB of memory (or the time limit) and was killed: {peak=}"
    assert result, f"the child reported nothing: {err[-2000:]}"
    return Child(result, peak, killed, time.monotonic() - start, err)


def _one_line(message: str, *server_paths: Path) -> None:
    assert message and "\n" not in message
    for path in server_paths:
        assert str(path) not in message


# ---- limits ---------------------------------------------------------------------------------------------------
def test_the_limits_hold_the_real_classifiers_people_inspect() -> None:
    vit_h14, convnext_xl = 632_000_000, 350_000_000  # the largest classifiers commonly inspected
    assert vit_h14 < MAX_MODEL_PARAMS and vit_h14 * 4 < MAX_MODEL_BYTES and convnext_xl * 4 < MAX_MODEL_BYTES
    assert MAX_MODEL_BYTES <= MODEL_CACHE_BYTES  # a model the cache cannot keep is not loaded
    assert 21_843 < MAX_CLASSES < 1_000_000  # ImageNet-21k fits; the shape bomb's million rows do not
    check_num_classes(21_843)


def test_input_sides_are_held_to_the_bounds_of_input_size() -> None:
    check_input_side(8, MAX_INPUT_SIDE)
    for bad in [(7, 224), (224, 4097), (12000, 12000), (224.5, 224), (True, 224)]:
        with pytest.raises(InputSizeError, match=r"outside 8\.\.4096 pixels a side"):
            check_input_side(*bad)


@pytest.mark.parametrize(
    "cfg",
    [
        {"size": {"height": 224, "width": 224}},  # ViT
        {"size": {"shortest_edge": 224}, "crop_pct": 0.875},  # ConvNeXt
        {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True},
        {"size": 384, "crop_size": 384},
        {},
    ],
)
def test_real_preprocessor_configs_pass(cfg: dict) -> None:
    check_preprocessor_config(cfg)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"size": {"height": 12000, "width": 12000}}, r"size\.height 12000 is outside 8\.\.4096"),
        ({"size": {"shortest_edge": 224}, "crop_size": 12000}, r"crop_size 12000 is outside"),
        ({"size": {"shortest_edge": 224, "longest_edge": 100000}}, r"size\.longest_edge 100000 is outside"),
        ({"size": {"shortest_edge": 224}, "crop_pct": 0.01}, r"crop_pct must be between 0\.05 and 1"),
        ({"size": {"shortest_edge": 4000}, "crop_pct": 0.5}, r"shortest_edge / crop_pct 8000 is outside"),
        ({"size": {"height": "224", "width": 224}}, "must be a whole number"),
        ({"size": 0}, r"size 0 is outside"),
    ],
)
def test_a_preprocessor_config_asking_for_huge_inputs_is_refused(cfg: dict, needle: str) -> None:
    with pytest.raises(InputSizeError, match=needle) as info:
        check_preprocessor_config(cfg)
    _one_line(str(info.value))


# ---- 1. a Hugging Face folder declaring a 4.8 B-parameter ViT ----------------------------------------------
_VIT_BOMB = {
    "architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": 4096,
    "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 16384,
    "id2label": {"0": "a", "1": "b"}, "label2id": {"a": 0, "b": 1},
}


def _hf_folder(path: Path, config: dict) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config, separators=(",", ":")))
    (path / "model.safetensors").write_bytes(struct.pack("<Q", 8) + b"{}      ")  # a valid file of no tensor
    return path


def test_the_410_byte_hf_folder_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "bomb", _VIT_BOMB)
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 410
    child = run_capped(
        "import transformers, torch\nfrom cam_core.budget import check_hf_model, ModelTooLarge\n",
        f"""
        try:
            check_hf_model({str(folder)!r}, "bomb")
        except ModelTooLarge as exc:
            _report(refused=str(exc))
        else:  # the attack itself: transformers allocates the missing 4.8 B weights (killed at the cap)
            transformers.AutoModelForImageClassification.from_pretrained({str(folder)!r}, local_files_only=True)
            _report(refused=None)
        """,
        cap=4 * 2**30,
    )
    message = child.result["refused"]
    assert message == "bomb declares 4.8 B parameters (19.3 GB); this server's limit is 700 M parameters (3.2 GB)"
    _one_line(message, tmp_path)
    # counted on the meta device: what it costs is transformers' ViT code imported (~230 MB), not 19.3 GB
    assert child.cost < 512 * MB, child.cost / MB


def test_a_small_hf_config_is_counted_exactly(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = {**_VIT_BOMB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 64, "image_size": 32, "patch_size": 8}
    folder = _hf_folder(tmp_path / "tiny", cfg)
    declared = check_hf_model(folder, "tiny")
    real = transformers.AutoModelForImageClassification.from_config(transformers.AutoConfig.from_pretrained(folder))
    tensors = [*real.parameters(), *real.buffers()]
    assert declared == Declared(sum(t.numel() for t in tensors), sum(t.numel() * t.element_size() for t in tensors))


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            {**_VIT_BOMB, "hidden_size": 32, "num_labels": 1_000_000},
            r"^bad has 1 000 000 classes; this server's limit is 100 000$",
        ),
        ({"model_type": "evilnet", "auto_map": {"AutoConfig": "evil.Cfg"}}, r"^cannot read the config of bad: "),
    ],
)
def test_hf_configs_with_too_many_classes_or_odd_code_are_one_line(tmp_path: Path, config: dict, needle: str) -> None:
    folder = _hf_folder(tmp_path / "bad", config)
    with pytest.raises(CamError, match=needle) as info:
        check_hf_model(folder, "bad")
    _one_line(str(info.value), tmp_path)


def test_an_hf_folder_without_config_or_with_a_huge_one_is_one_line(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CamError, match=r"^empty is not a Hugging Face model folder: it has no config.json$"):
        check_hf_model(tmp_path / "empty", "empty")
    folder = _hf_folder(tmp_path / "big", _VIT_BOMB)
    monkeypatch.setattr(budget, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(ModelTooLarge, match=r"^big/config.json is \d+ bytes; at most 100 bytes are read$"):
        check_hf_model(folder, "big")


# ---- 2. shape bombs in weights ----------------------------------------------------------------------------
def _resnet18_shapes(num_classes: int) -> dict[str, torch.Size]:
    import torchvision

    with torch.device("meta"):
        return {k: v.shape for k, v in torchvision.models.resnet18(num_classes=num_classes).state_dict().items()}


def _stride0_state_dict(num_classes: int) -> dict[str, torch.Tensor]:
    """resnet18's keys, every tensor a stride-0 view of one number: tiny on disk, any shape declared."""
    out = {}
    for key, shape in _resnet18_shapes(1000).items():
        if key.startswith("fc."):
            shape = torch.Size([num_classes, *shape[1:]])
        one = torch.zeros((), dtype=torch.long if key.endswith("num_batches_tracked") else torch.float32)
        out[key] = one.expand(shape) if len(shape) else one
    return out


def test_a_36_kb_stride0_state_dict_is_refused_before_the_head_is_built(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    torch.save(_stride0_state_dict(1_000_000), path)
    assert path.stat().st_size < 64 * 1024
    child = run_capped(
        "import torch, torchvision\nfrom cam_core.budget import check_state_dict, ModelTooLarge\n",
        f"""
        state = torch.load({str(path)!r}, map_location="cpu", weights_only=True)
        try:
            classes = check_state_dict(state, head="fc.weight", what="bomb.pt")
        except ModelTooLarge as exc:
            _report(refused=str(exc))
        else:  # the attack: the head sized from the file (+2 GB), then the views copied in
            torchvision.models.resnet18(num_classes=classes).load_state_dict(state)
            _report(refused=None)
        """,
    )
    message = child.result["refused"]
    assert message == "bomb.pt: the head fc.weight has 1 000 000 classes; this server's limit is 100 000"
    _one_line(message, tmp_path)
    assert child.cost < 100 * MB, child.cost / MB


def test_a_head_of_no_class_is_refused() -> None:
    needle = r"^w\.pt: the head fc\.weight has 0 classes: a classifier needs at least one$"
    with pytest.raises(ModelTooLarge, match=needle):
        check_state_dict(_stride0_state_dict(0), head="fc.weight", what="w.pt")


def test_weights_are_counted_by_shape_not_storage() -> None:
    bomb = {"w": torch.zeros(()).expand(800_000_000), "b": torch.zeros(3)}
    assert declared_size(bomb) == Declared(800_000_003, 3_200_000_012)
    assert bomb["w"].untyped_storage().nbytes() == 4
    with pytest.raises(ModelTooLarge, match=r"^x declares 800 M parameters \(3\.2 GB\); this server's limit is 700 M"):
        check_state_dict(bomb, what="x")
    check_declared(Declared(MAX_MODEL_PARAMS, MAX_MODEL_BYTES))


def test_a_real_state_dict_passes_with_its_class_count() -> None:
    import torchvision

    state = torchvision.models.resnet18(num_classes=10).state_dict()
    assert check_state_dict(state, head="fc.weight") == 10
    assert check_state_dict(state) is None and check_state_dict(state, head="absent.weight") is None


def _safetensors_header_only(path: Path, tensors: dict[str, tuple[str, list[int]]], length: int | None = None) -> Path:
    header = json.dumps({k: {"dtype": d, "shape": s, "data_offsets": [0, 0]} for k, (d, s) in tensors.items()})
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw)
    return path


def test_safetensors_are_checked_from_their_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    real = tmp_path / "real.safetensors"
    save_file({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, str(real))
    assert check_safetensors(real, head="fc.weight") == 10
    assert safetensors_header(real) == {"fc.weight": TensorSpec((10, 512), 4), "fc.bias": TensorSpec((10,), 4)}
    bomb = _safetensors_header_only(tmp_path / "bomb.safetensors", {"fc.weight": ("F32", [1_000_000, 512])})
    with pytest.raises(ModelTooLarge, match=r"^bomb\.safetensors: the head fc\.weight has 1 000 000 classes"):
        check_safetensors(bomb, head="fc.weight")
    big = _safetensors_header_only(tmp_path / "big.safetensors", {"w": ("BF16", [2_000_000_000])})
    with pytest.raises(ModelTooLarge, match=r"declares 2\.0 B parameters \(4\.0 GB\)"):
        check_safetensors(big)
    lying = _safetensors_header_only(tmp_path / "h.safetensors", {}, length=2**40)  # a length, not a header
    with pytest.raises(CamError, match=r"^h\.safetensors is not a safetensors file that can be read: its header "
                       r"would run past the end of the file$"):
        check_safetensors(lying)
    monkeypatch.setattr(budget, "MAX_SAFETENSORS_HEADER_BYTES", 32)  # a real header, beyond what is read
    with pytest.raises(ModelTooLarge, match=r"^real\.safetensors has a header of \d+ bytes; at most 32 bytes are read"):
        check_safetensors(real)
    monkeypatch.undo()
    odd = _safetensors_header_only(tmp_path / "odd.safetensors", {"w": ("F32", [-1, 5])})
    with pytest.raises(CamError, match="tensor 'w' has no valid shape and dtype") as info:
        check_safetensors(odd)
    _one_line(str(info.value), tmp_path)


# ---- 3. a video whose frames grow after the header --------------------------------------------------------
_GROWING_AVI = """
import io, sys
from fractions import Fraction
import av, numpy as np
from PIL import Image

path, side = sys.argv[1], int(sys.argv[2])
buf = io.BytesIO()
Image.new("L", (side, side), 128).save(buf, "JPEG", quality=50)  # an MJPEG frame is a JPEG
big = buf.getvalue()
with av.open(path, "w", format="avi") as out:
    stream = out.add_stream("mjpeg", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuvj420p"  # the header: 64×64
    for i in range(3):
        frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 60 * i, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuvj420p")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    for i in range(3, 6):  # then three frames of side × side, muxed as they are
        packet = av.Packet(big)
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 10)
        out.mux(packet)
"""


@pytest.fixture(scope="module")
def growing_avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "grows.avi"
    subprocess.run([sys.executable, "-c", _GROWING_AVI, str(path), "16000"], check=True, timeout=120)
    return path


def test_an_mjpeg_avi_whose_frames_grow_to_16000_px_is_refused_at_the_first_large_frame(growing_avi: Path) -> None:
    child = run_capped(
        "from cam_core.io.video import read_frames, probe_video, VideoError\n",
        f"""
        info = probe_video({str(growing_avi)!r}, name="grows.avi")
        seen = []
        try:
            for frame in read_frames({str(growing_avi)!r}, name="grows.avi"):
                seen.append(frame.rgb.shape)
        except VideoError as exc:
            _report(refused=str(exc), seen=seen, header=[info.width, info.height])
        else:
            _report(refused=None, seen=seen, header=[info.width, info.height])
        """,
    )
    assert child.result["header"] == [64, 64]  # the header passes: only decoding tells
    assert child.result["seen"] == [[64, 64, 3]] * 3
    message = child.result["refused"]
    expected = r"grows\.avi has a frame larger than the 8\.3 MP \(4K\) allowed \(frame [345]\); downscale it first"
    assert re.fullmatch(expected, message), message
    assert child.cost < 120 * MB, child.cost / MB  # a 16000² frame is 256 MB decoded, 768 MB as RGB


def test_every_decoded_frame_size_is_checked_before_conversion() -> None:
    _check_frame_size("c.avi", 3840, 2160)
    with pytest.raises(VideoError, match=r"^c\.avi has a frame of 16000×16000 = 256 MP \(frame 7\), more than the"):
        _check_frame_size("c.avi", 16000, 16000, " (frame 7)")
    with pytest.raises(VideoError, match="0×64 pixels"):
        _check_frame_size("c.avi", 0, 64, " (frame 2)")


def test_frames_that_grow_within_the_limit_still_decode(tmp_path: Path) -> None:
    from cam_core.io.video import read_frames

    path = tmp_path / "small.avi"
    subprocess.run([sys.executable, "-c", _GROWING_AVI, str(path), "96"], check=True, timeout=60)
    assert [f.rgb.shape[:2] for f in read_frames(path)] == [(64, 64)] * 3 + [(96, 96)] * 3


# ---- 4. zips -----------------------------------------------------------------------------------------------
def _hand_zip(entries: int, declared: int | None = None, zip64: bool = False) -> bytes:
    """A zip of ``entries`` empty stored files ``0000000``…, central directory written by hand (1.5 M in ~1 s)."""
    local = [struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 7, 0)]
    head = struct.Struct("<4s6H3L5H2L")
    central = b"".join(
        head.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0) + b"%07d" % i
        for i in range(entries)
    )
    # every entry's local header is the first one's (offset 0): enough for zipfile to parse the directory
    body = local[0] + b"0000000"
    count = entries if declared is None else declared
    out = body + central
    if zip64:
        rec_at = len(out)
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), len(body))
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, rec_at, 1)
        return out + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    small = min(count, 0xFFFF)
    return out + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, small, small, len(central), len(body), 0)


def test_the_hand_built_zip_is_what_zipfile_reads() -> None:
    for zip64 in (False, True):
        data = _hand_zip(5, zip64=zip64)
        assert zipfile.ZipFile(io.BytesIO(data)).namelist() == [f"{i:07d}" for i in range(5)]
        assert check_zip(data).entries == 5 and check_zip(data).zip64 == zip64


def test_a_zip_of_1_5_million_entries_is_refused_from_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    path.write_bytes(_hand_zip(1_500_000, zip64=True))
    child = run_capped(
        "import zipfile\nfrom cam_core.io.zips import check_zip, ZipError\nimport time\n",
        f"""
        start = time.monotonic()
        try:
            check_zip({str(path)!r})
        except ZipError as exc:
            _report(refused=str(exc), seconds=time.monotonic() - start)
        else:  # the attack: zipfile parses 1.5 M entries into objects (+1.2 GB, 42 s)
            zipfile.ZipFile({str(path)!r}).infolist()
            _report(refused=None, seconds=time.monotonic() - start)
        """,
        timeout=60,
    )
    assert child.result["refused"] == "the zip has 1500000 entries; at most 20000 are accepted"
    assert child.result["seconds"] < 1.0
    assert child.cost < 20 * MB, child.cost / MB


def test_a_zip_that_understates_its_entries_is_counted_from_its_directory() -> None:
    lying = _hand_zip(MAX_ZIP_FILES + 5, declared=1)  # the end record says 1: zipfile trusts the directory's size
    assert len(zipfile.ZipFile(io.BytesIO(lying)).infolist()) == MAX_ZIP_FILES + 5
    with pytest.raises(ZipError, match=r"^the zip has more than 20000 entries; at most 20000 are accepted$"):
        check_zip(lying)
    with pytest.raises(ZipError, match=r"^the zip's directory is 1 MB; at most 1000 bytes \(about 20000 entries\)"):
        check_zip(lying, max_directory_bytes=1000)


@pytest.mark.parametrize("how", ["plain", "comment", "prepended", "zip64"])
def test_check_zip_counts_what_zipfile_reads(how: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(7):
            if how == "zip64":
                with zf.open(f"d/{i}.jpg", "w", force_zip64=True) as f:
                    f.write(b"x" * 100)
            else:
                zf.writestr(f"d/{i}.jpg", b"x" * 100)
        zf.comment = b"a comment after the end record" if how == "comment" else b""
    data = (b"#!/bin/sh\nexit 0\n" if how == "prepended" else b"") + buf.getvalue()
    found = check_zip(data)
    assert found.entries == len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 7
    assert found.uncompressed == 700


def test_not_a_zip_is_one_line(tmp_path: Path) -> None:
    for data in (b"", b"hello", b"\x00" * 5000):
        with pytest.raises(ZipError, match=r"^the upload is not a zip archive") as info:
            extract_zip(data, tmp_path / "out")
        _one_line(str(info.value), tmp_path)


def _zip(*members: tuple[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": written on purpose
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buf.getvalue()


def _patch_headers(data: bytes, local_at: int, central_at: int, value: int, field: str = "<H") -> bytes:
    """Set a field (16-bit by default; ``"<I"`` for a CRC or a size) in every local (offset ``local_at``) and central
    (``central_at``) header."""
    out = bytearray(data)
    for sig, at in ((b"PK\x03\x04", local_at), (b"PK\x01\x02", central_at)):
        i = out.find(sig)
        while i >= 0:
            struct.pack_into(field, out, i + at, value)
            i = out.find(sig, i + 4)
    return bytes(out)


JPG = b"\xff\xd8 not really a jpeg \xff\xd9"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_zip(("cat/a.jpg", JPG), ("cat/a.jpg/b.jpg", JPG)), "^the zip holds cat/a.jpg both as a file and as a folder"),
        (_zip(("cat/a.jpg", JPG), ("cat/a.jpg", JPG)), "^the zip holds cat/a.jpg twice$"),
        (_zip(("cat/" + "n" * 296 + ".jpg", JPG)), "has a name of 300 characters; at most 255 a name$"),
        (_zip(("a/" * 2000 + "x.jpg", JPG)), "is 2000 folders deep; at most 32$"),
        (_patch_headers(_zip(("cat/a.jpg", JPG)), 6, 8, 0x1), "^the zip's entry cat/a.jpg is encrypted"),
        (_patch_headers(_zip(("cat/a.jpg", JPG)), 8, 10, 99), "uses compression method 99, which cannot be read"),
        (
            _zip(("cat/a.jpg", JPG)).replace(b"not really", b"NOT really", 1),
            r"^the zip's entry cat/a.jpg is corrupt \(bad CRC-32\)$",
        ),
        (
            _zip(("notes.txt", b"hi"), (".hidden.jpg", JPG), ("../up.jpg", JPG)),
            r"^the zip holds no images \(jpg, png\)$",
        ),
    ],
)
def test_entries_that_cannot_be_unpacked_safely_are_one_line(tmp_path: Path, data: bytes, needle: str) -> None:
    dest = tmp_path / "uploads" / "abc"
    with pytest.raises(ZipError, match=needle) as info:
        extract_zip(data, dest, suffixes=("jpg", "png"), what="images")
    _one_line(str(info.value), tmp_path)
    assert not dest.exists() and not any((tmp_path / "uploads").glob(".*.tmp"))  # nothing half-written is left


def test_a_long_path_is_refused(tmp_path: Path) -> None:
    name = "/".join(["d" * 200] * 6) + "/x.jpg"
    with pytest.raises(ZipError, match=f"has a path of {len(name)} characters; at most 1024$"):
        extract_zip(_zip((name, JPG)), tmp_path / "out", suffixes=("jpg",))


def test_the_quota_bounds_declared_sizes(tmp_path: Path) -> None:
    data = _zip(("a/1.jpg", b"x" * 600), ("a/2.jpg", b"x" * 600), method=zipfile.ZIP_DEFLATED)
    with pytest.raises(ZipError, match=r"^the zip holds more than 1000 bytes uncompressed; upload less$"):
        extract_zip(data, tmp_path / "out", max_bytes=1000)
    assert extract_zip(data, tmp_path / "out", max_bytes=1200) == tmp_path / "out"


def test_the_quota_bounds_the_bytes_written_when_the_directory_lies(tmp_path: Path, monkeypatch) -> None:
    data = _zip(("a/1.jpg", b"x" * 600), ("a/2.jpg", b"x" * 600))
    monkeypatch.setattr(zips, "check_zip", lambda *a, **k: None)  # as if the directory had understated the sizes
    with pytest.raises(ZipError, match=r"^the zip holds more than 1000 bytes uncompressed"):
        extract_zip(data, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists()


def test_images_are_unpacked_like_the_dataset_page_does(tmp_path: Path) -> None:
    data = _zip(
        ("photos/cat/1.jpg", JPG), ("photos/dog/2.PNG", JPG), ("photos/notes.txt", b"x"),
        ("photos/.DS_Store", b"x"), ("__MACOSX/photos/cat/._1.jpg", b"x"), ("photos/../../evil.jpg", JPG),
        ("/abs.jpg", JPG), ("photos/cat/", b""),
    )
    dest = extract_zip(data, tmp_path / "uploads" / "h", suffixes=("jpg", "png"), what="images", strip_single_top=True)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["cat/1.jpg", "dog/2.PNG"]
    assert (dest / "cat" / "1.jpg").read_bytes() == JPG
    assert extract_zip(b"not even read again", dest) == dest  # once per content


def test_two_sessions_unpacking_the_same_zip_at_once_never_collide(tmp_path: Path, monkeypatch) -> None:
    data = _zip(*((f"c{i % 3}/{i}.jpg", JPG * (i + 1)) for i in range(30)))
    dest = tmp_path / "uploads" / "same"
    barrier = threading.Barrier(2, timeout=30)
    folders: list[Path] = []
    real = zips._write

    def both_writing(archive, planned, tmp, max_bytes):
        folders.append(tmp)
        barrier.wait()  # both sessions have their own folder and write at the same time
        real(archive, planned, tmp, max_bytes)
        barrier.wait()  # and both move it into place at the same time

    monkeypatch.setattr(zips, "_write", both_writing)
    results: list[Path | BaseException] = []

    def session() -> None:
        try:
            results.append(extract_zip(data, dest, suffixes=("jpg",)))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=session) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [dest, dest]
    assert len(set(folders)) == 2 and all(f.parent == dest.parent and f.name.startswith(".same.") for f in folders)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["same"]  # the loser's folder is gone
    assert len(list(dest.rglob("*.jpg"))) == 30
    assert (dest / "c2" / "29.jpg").read_bytes() == JPG * 30


def test_the_unpacked_folder_is_readable_by_the_server(tmp_path: Path) -> None:
    dest = extract_zip(_zip(("a/1.jpg", JPG)), tmp_path / "u")
    assert dest.stat().st_mode & 0o777 == 0o755


def test_a_real_zip_with_deflate_bzip2_and_lzma_unpacks(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, method in enumerate((zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)):
            zf.writestr(f"c/{i}.jpg", np.arange(5000, dtype=np.uint8).tobytes(), compress_type=method)
    dest = extract_zip(buf.getvalue(), tmp_path / "out", suffixes=["JPG"])
    assert [(dest / "c" / f"{i}.jpg").stat().st_size for i in range(3)] == [5000] * 3


# ---- the same attacks through the loaders a visitor reaches (cam_core.load_model) ---------------------------
def test_the_hf_bomb_is_refused_by_load_model_before_transformers_allocates(tmp_path: Path) -> None:
    folder = _hf_folder(tmp_path / "bomb", _VIT_BOMB)
    child = run_capped(
        "import cam_core, transformers\nimport cam_core.models\nfrom cam_core.errors import CamError\n",
        f"""
        try:
            cam_core.load_model("hf:" + {str(folder)!r}, allow_code=False)
        except CamError as exc:
            _report(refused=str(exc))
        else:
            _report(refused=None)
        """,
        cap=4 * 2**30,
    )
    assert child.result["refused"] == (
        "bomb declares 4.8 B parameters (19.3 GB); this server's limit is 700 M parameters (3.2 GB)"
    )
    assert child.cost < 512 * MB, child.cost / MB


def test_a_huge_preprocessor_size_is_refused_by_load_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    cfg = {**_VIT_BOMB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 64, "image_size": 32, "patch_size": 8}
    folder = _hf_folder(tmp_path / "tiny", cfg)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 12000, "width": 12000}}))
    with pytest.raises(CamError, match=r"size\.height 12000 is outside 8\.\.4096") as info:
        cam_core.load_model(f"hf:{folder}", allow_code=False)
    _one_line(str(info.value), tmp_path)


@pytest.mark.parametrize(("classes", "needle"), [
    (1_000_000, r"^bomb\.pt: its head has 1 000 000 classes; this server's limit is 100 000$"),
    (0, r"^bomb\.pt: its head has 0 classes: a classifier needs at least one$"),
])
def test_stride0_heads_are_refused_by_load_model(tmp_path: Path, classes: int, needle: str) -> None:
    path = tmp_path / "bomb.pt"
    torch.save(_stride0_state_dict(classes), path)
    child = run_capped(
        "import cam_core, torchvision\nimport cam_core.models\nfrom cam_core.errors import CamError\n",
        f"""
        try:
            cam_core.load_model({str(path)!r}, arch="resnet18", allow_code=False)
        except CamError as exc:
            _report(refused=str(exc))
        else:
            _report(refused=None)
        """,
    )
    assert re.match(needle, child.result["refused"] or ""), child.result
    assert child.cost < 300 * MB, child.cost / MB


def test_a_stride0_body_beyond_the_budget_is_refused_by_load_model(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    state = _stride0_state_dict(1000)
    state["layer4.0.conv1.weight"] = torch.zeros(()).expand(1_000_000, 1000, 1, 1)  # 1 G parameters declared
    torch.save(state, path)
    with pytest.raises(CamError, match=r"^wide\.pt declares 1\.0\d? B parameters") as info:
        cam_core.load_model(str(path), arch="resnet18", allow_code=False)
    _one_line(str(info.value), tmp_path)

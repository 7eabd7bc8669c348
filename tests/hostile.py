"""A hostile visitor's corpus for the dashboard served in untrusted mode, and the runner that plays it.

Each :class:`Case` is declarative: the page a visitor opens (``image`` ``/``, ``video`` ``/video``,
``dataset`` ``/dataset``), the query parameters of the link, and the steps (set a widget, upload files to a
widget key, click a button). Payloads (files) and crafted results folders are named, not inlined: builders in
:data:`BUILDERS` make them inside the child, so the corpus stays small and readable.

Every case runs in a *child* process ("the server": ``CAMDASH_TRUST_VISITORS=no``, a fresh data root per
case, its own ``TMPDIR``) through Streamlit's AppTest. A child plays a batch of cases one after another; the
parent samples the child's resident memory every few milliseconds and kills it past the cap (then the case
in progress fails and the rest of the batch goes on in a new child). Per case, checks:

1. ``traceback``: no exception element (an uncaught error shown to the visitor);
2. ``path``: no absolute server path (the data root, the temp dir, the repository, the virtual environment,
   ``/tmp/``, ``site-packages``, the user's cache) in anything shown: element bodies, labels, help, options,
   table cells, figure specs, and the bytes of download buttons;
3. ``markdown``: no markdown link or image from visitor input rendered (an unescaped ``](https://evil.example``
   outside code spans in any field rendered as markdown: bodies, labels, help, captions), no visitor HTML in
   an element that renders HTML;
4. ``code``: the marker files that malicious pickles, TorchScript and factories would write stay absent (the
   TorchScript canary stays zeros);
5. ``memory``: the child's peak RSS stays under ``CAP`` and it is not killed (nor past the time limit);
6. ``disk``: nothing new is left in the child's temp dir outside the data roots and the upload folder.

The memory cap (see :func:`limit_sum`)::

    CAP = BASELINE + MODEL_CACHE_BYTES + MAP_CACHE_BYTES + IMAGE_CACHE_BYTES + VIDEO_RUN_CACHE_BYTES
                   + FILM_CACHE_BYTES + MAX_SESSION_UPLOAD_BYTES + FIGURE_CACHE_ENTRIES × 1 MB

``BASELINE`` is the child's RSS measured once it has imported Python, torch, Streamlit and the dashboard and
drawn the image page with the offline default model (each child measures its own and reports it). The other
terms are the documented limits of ``cam_core/limits.py``: every cache full plus one session's uploads.

Run: ``python -m tests.hostile [--jobs 2] [--only NAME,...] [--category C] [--sample N]`` (a table and one line
per failing case), or through ``benchmarks/hostile.py`` and ``tests/test_hostile.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
EVIL = "evil.example"
MD = "[x](https://evil.example/login) ![x](https://evil.example/pixel.png)"
HTML = '<script>alert(1)</script><img src=x onerror="alert(1)"><a href="https://evil.example/login">x</a>'
RTL = "\u202egnp.exe\u202c"
LONG = "A" * 100_000
MB = 2**20
CASE_SECONDS = 300.0  # one case's wall-clock limit in the child (the parent kills it past this)


# ---- the corpus ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One thing a hostile visitor does.

    Attributes:
        name: Unique, used for markers and the report.
        category: ``url``, ``image``, ``checkpoint``, ``hf``, ``zip``, ``results``, ``video``.
        page: ``image``, ``video`` or ``dataset``: the page the link opens.
        query: The link's query parameters.
        folder: A builder (:data:`FOLDERS`) that crafts a results folder under the data root; its path
            relative to the root is then the link's ``?folder=``.
        steps: Each ``("set", key, value)``, ``("upload", key, ((filename, builder), ...))`` or
            ``("click", key)``, each followed by a rerun.
        expect_refused: Words one error/warning should contain (informative only, not a check).
    """

    name: str
    category: str
    page: str = "image"
    query: tuple[tuple[str, str], ...] = ()
    folder: str | None = None
    steps: tuple = ()
    expect_refused: str = ""
    cost: float = 1.0  # seconds it takes, roughly: the longest are shared out first between the children


CASES: list[Case] = []


def _add(*cases: Case) -> None:
    CASES.extend(cases)


# -- 1. URL parameters on each page
_URL_ALL_PAGES = {
    "layer_md": ("layer", MD),
    "layer_html": ("layer", HTML),
    "layer_long": ("layer", LONG),
    "layer_nul": ("layer", "features\x00../../etc/passwd"),
    "layer_rtl": ("layer", RTL),
    "classes_300": ("classes", ",".join(str(i) for i in range(300))),
    "classes_negative": ("classes", "-1,-5,-1000"),
    "classes_1e30": ("classes", "1" + "0" * 30),
    "classes_nan": ("classes", "nan,inf,-inf"),
    "classes_md": ("classes", MD),
    "model_factory_os_system": ("model", "os:system"),
    "model_etc_passwd": ("model", "/etc/passwd"),
    "model_hf_etc": ("model", "hf:/etc"),
    "model_timm_traversal": ("model", "timm:../../x"),
    "model_pinned_nope": ("model", "pinned:nope"),
    "model_md": ("model", MD),
    "model_evil_factory": ("model", "tests.hostile:evil_factory"),
    "weights_etc_passwd": ("weights", "/etc/passwd"),
    "method_unknown": ("method", "evil,__import__"),
    "method_1000": ("method", ",".join(["gradcam"] * 1000)),
    "method_md": ("method", MD),
    "image_etc_passwd": ("image", "/etc/passwd"),
    "image_md": ("image", MD),
    "fit_md": ("fit", MD),
    "k_huge": ("k", "9" * 40),
    "html_everywhere": ("layer", HTML),
}
for _page in ("image", "video", "dataset"):
    for _name, (_key, _value) in _URL_ALL_PAGES.items():
        if _page != "image" and _name not in {
            "layer_md", "layer_long", "layer_nul", "classes_300", "classes_1e30", "model_factory_os_system",
            "model_evil_factory", "model_md", "method_1000", "fit_md", "k_huge",
        }:
            continue
        _add(Case(f"url_{_page}_{_name}", "url", _page, query=((_key, _value),)))
_add(
    Case("url_image_everything_md", "url", "image", query=tuple(
        (k, MD) for k in ("model", "weights", "layer", "method", "classes", "image", "k", "fit"))),
    Case("url_image_weights_traversal", "url", "image", query=(("model", "resnet18"), ("weights", "../../../x.pt"))),
    Case("url_image_model_pt_path", "url", "image", query=(("model", "/etc/evil.pt"),)),
    Case("url_image_model_hf_md", "url", "image", query=(("model", "hf:" + MD),)),
    Case("url_image_classes_mixed", "url", "image", query=(("classes", "1,,x,2e5,0x10, 3"),)),
    Case("url_image_k_negative", "url", "image", query=(("k", "-7"),)),
    Case("url_image_image_long", "url", "image", query=(("image", LONG),)),
    Case("url_image_layer_rtl_html", "url", "image", query=(("layer", RTL + HTML),)),
    Case("url_dataset_folder_dotdot", "url", "dataset", query=(("folder", "../../etc"),)),
    Case("url_dataset_folder_absolute", "url", "dataset", query=(("folder", "/etc"),)),
    Case("url_dataset_folder_proc", "url", "dataset", query=(("folder", "/proc/self/cwd"),)),
    Case("url_dataset_folder_symlink_out", "url", "dataset", folder="symlink_out"),
    Case("url_dataset_folder_md", "url", "dataset", query=(("folder", MD),)),
    Case("url_dataset_folder_html", "url", "dataset", query=(("folder", HTML),)),
    Case("url_dataset_folder_nul", "url", "dataset", query=(("folder", "runs\x00/../../etc"),)),
    Case("url_dataset_folder_long", "url", "dataset", query=(("folder", LONG),)),
    Case("url_dataset_folder_rtl", "url", "dataset", query=(("folder", RTL),)),
    Case("url_dataset_folder_home", "url", "dataset", query=(("folder", "~/.ssh"),)),
    Case("url_dataset_folder_empty_results", "url", "dataset", folder="no_results"),
)


# -- 2. image uploads (image page, widget ``uploads``)
def _img(name: str, builder: str) -> tuple:
    return (("upload", "uploads", ((name, builder),)),)


_add(
    Case("img_corrupt_png", "image", steps=_img("corrupt.png", "png_corrupt")),
    Case("img_truncated_jpeg", "image", steps=_img("cut.jpg", "jpeg_truncated")),
    Case("img_zero_bytes", "image", steps=_img("empty.png", "empty")),
    Case("img_bomb_strip_100000x5", "image", steps=_img("strip.png", "png_100000x5")),
    Case("img_bomb_60000x60000", "image", steps=_img("huge.png", "png_60000x60000")),
    Case("img_gif_many_frames", "image", steps=_img("many.gif", "gif_many_frames")),
    Case("img_mode_i16", "image", steps=_img("deep.png", "png_i16")),
    Case("img_mode_cmyk", "image", steps=_img("cmyk.jpg", "jpeg_cmyk")),
    Case("img_mode_la", "image", steps=_img("la.png", "png_la")),
    Case("img_mode_p_transparency", "image", steps=_img("pal.png", "png_p_transparent")),
    Case("img_mode_1bit", "image", steps=_img("bits.png", "png_1bit")),
    Case("img_html_as_png", "image", steps=_img("page.png", "html_bytes")),
    Case("img_svg_as_png", "image", steps=_img("vector.png", "svg_bytes")),
    Case("img_name_md", "image", steps=_img(MD + ".png", "png_small")),
    Case("img_name_html", "image", steps=_img(HTML + ".png", "png_small")),
    Case("img_name_300_chars", "image", steps=_img("n" * 296 + ".png", "png_small")),
    Case("img_name_traversal", "image", steps=_img("../../../../etc/evil.png", "png_small")),
    Case("img_name_rtl", "image", steps=_img(RTL + ".png", "png_small")),
    Case("img_tiff_bomb_header", "image", steps=_img("t.png", "tiff_60000x60000")),
    Case("img_ztxt_bomb", "image", steps=_img("text.png", "png_ztxt_bomb")),
    Case("img_iccp_bomb", "image", steps=_img("icc.png", "png_iccp_bomb")),
    Case("img_many_at_once", "image", steps=(("upload", "uploads", tuple((f"p{i}.png", "png_small")
                                                                       for i in range(60))),)),
)


# -- 3. checkpoint uploads, "Upload weights" (untrusted: weights only)
def _ckpt(name: str, builder: str, arch: str | None = None) -> tuple:
    steps: tuple = (("set", "model_source", "checkpoint"),)
    if arch:
        steps += (("set", "ckpt_arch", arch),)
    return (*steps, ("upload", "ckpt_file", ((name, builder),)))


_add(
    Case("ckpt_pickle_marker", "checkpoint", steps=_ckpt("evil.pt", "pickle_marker")),
    Case("ckpt_pickle_os_system", "checkpoint", steps=_ckpt("evil.pth", "pickle_os_system")),
    Case("ckpt_pickle_in_state_dict", "checkpoint", steps=_ckpt("sd.pt", "pickle_in_state_dict", "resnet18")),
    Case("ckpt_raw_pickle_protocol0", "checkpoint", steps=_ckpt("raw.ckpt", "pickle_raw")),
    Case("ckpt_torchscript_writes", "checkpoint", steps=_ckpt("writer.pt", "torchscript_writer")),
    Case("ckpt_pt2_named_pt", "checkpoint", steps=_ckpt("program.pt", "random_bytes")),
    Case("ckpt_pt2_extension", "checkpoint", steps=_ckpt("program.pt2", "random_bytes")),
    Case("ckpt_stride0_1m_classes", "checkpoint", steps=_ckpt("bomb.pt", "stride0_1m", "resnet18")),
    Case("ckpt_zero_class_head", "checkpoint", steps=_ckpt("none.pt", "stride0_0", "resnet18")),
    Case("ckpt_random_bytes", "checkpoint", steps=_ckpt("noise.pt", "random_bytes")),
    Case("ckpt_empty", "checkpoint", steps=_ckpt("empty.safetensors", "empty")),
    Case("ckpt_safetensors_header_2_40", "checkpoint", steps=_ckpt("h.safetensors", "st_huge_header_len")),
    Case("ckpt_safetensors_huge_tensor", "checkpoint", steps=_ckpt("big.safetensors", "st_huge_tensor", "resnet18")),
    Case("ckpt_safetensors_bad_json", "checkpoint", steps=_ckpt("bad.safetensors", "st_bad_json")),
    Case("ckpt_safetensors_negative_shape", "checkpoint", steps=_ckpt("neg.safetensors", "st_negative_shape")),
    Case("ckpt_wrong_architecture", "checkpoint", steps=_ckpt("resnet.pt", "stride0_7")),
    Case("ckpt_nan_weights", "checkpoint", steps=_ckpt("nan.pt", "stride0_nan", "resnet18")),
    Case("ckpt_name_md", "checkpoint", steps=_ckpt(MD + ".pt", "random_bytes")),
    Case("ckpt_name_traversal", "checkpoint", steps=_ckpt("../../../etc/x.safetensors", "st_bad_json")),
    Case("ckpt_md_state_dict_keys", "checkpoint", steps=_ckpt("keys.pt", "stride0_md_keys", "resnet18")),
    # class names a visitor uploads with real weights: shown wherever the page names a class
    *(Case(f"ckpt_labels_{b.removeprefix('labels_')}", "checkpoint", steps=(
        ("set", "model_source", "checkpoint"), ("set", "ckpt_arch", "efficientnet_lite0"),
        ("upload", "ckpt_labels", ((n, b),)), ("upload", "ckpt_file", (("lite0.pth", "lite0_weights"),))))
      for b, n in (("labels_md", "names.txt"), ("labels_html_json", "names.json"), ("labels_million", "names.txt"),
                   ("labels_json_object", "names.json"), ("labels_long", "names.txt"))),
)


# -- 4. Hugging Face uploads (``hf_files``)
def _hf(*files: tuple[str, str]) -> tuple:
    return (("set", "model_source", "hf"), ("upload", "hf_files", files))


_add(
    Case("hf_vit_bomb_410_bytes", "hf", steps=_hf(("config.json", "hf_bomb_config"),
                                                 ("model.safetensors", "st_empty"))),
    Case("hf_preprocessor_size_12000", "hf", steps=_hf(*(("config.json", "tiny_config"), ("model.safetensors",
                                                        "tiny_weights"), ("preprocessor_config.json", "pre_12000")))),
    Case("hf_preprocessor_resample_abc", "hf", steps=_hf(("config.json", "tiny_config"), ("model.safetensors",
                                                         "tiny_weights"), ("preprocessor_config.json", "pre_abc"))),
    Case("hf_preprocessor_std_0", "hf", steps=_hf(("config.json", "tiny_config"), ("model.safetensors",
                                                  "tiny_weights"), ("preprocessor_config.json", "pre_std0"))),
    Case("hf_pickled_pytorch_model_bin", "hf", steps=_hf(("config.json", "tiny_config"),
                                                         ("pytorch_model.bin", "pickle_marker"))),
    Case("hf_config_is_a_list", "hf", steps=_hf(("config.json", "json_list"), ("model.safetensors", "st_empty"))),
    Case("hf_config_invalid_json", "hf", steps=_hf(("config.json", "html_bytes"), ("model.safetensors", "st_empty"))),
    Case("hf_auto_map_remote_code", "hf", steps=_hf(("config.json", "hf_auto_map"),
                                                    ("model.safetensors", "st_empty"))),
    Case("hf_million_labels", "hf", steps=_hf(("config.json", "hf_million_labels"),
                                              ("model.safetensors", "st_empty"))),
    Case("hf_labels_md", "hf", steps=_hf(("config.json", "tiny_config_md_labels"),
                                         ("model.safetensors", "tiny_weights"))),
    Case("hf_labels_md_loaded", "hf", steps=_hf(("config.json", "tiny_config_md_labels"),
                                                ("model.safetensors", "tiny_weights"),
                                                ("preprocessor_config.json", "tiny_preprocessor"))),
    Case("hf_no_config", "hf", steps=_hf(("model.safetensors", "tiny_weights"),)),
    Case("hf_traversal_names", "hf", steps=_hf(("config.json", "tiny_config"), ("../../model.safetensors",
                                                                               "tiny_weights"))),
)


# -- 5. Dataset page zips (``ds_zip``)
def _zipc(builder: str, name: str = "photos.zip") -> tuple:
    return (("set", "ds_source", "zip"), ("upload", "ds_zip", ((name, builder),)))


_add(*(Case(f"zip_{b}", "zip", "dataset", steps=_zipc(f"zip_{b}"), cost=30 if b == "entries_1_5m" else 1) for b in (
    "name_clash", "file_and_folder", "name_300", "deep_2000", "bad_crc", "encrypted", "method_99",
    "entries_1_5m", "over_quota", "not_a_zip", "slip", "absolute", "symlink_member", "md_names", "html_names",
    "entries_20001", "empty_zip",
)))
_add(Case("zip_upload_name_md", "zip", "dataset", steps=_zipc("zip_good", MD + ".zip")))


# -- 6. crafted results folders opened with ?folder=
_add(*(Case(f"results_{b}", "results", "dataset", folder=b) for b in (
    "nan_ids", "out_of_range_ids", "missing_columns", "unknown_method", "wrong_map_shape", "run_json_list",
    "run_json_invalid", "run_json_huge", "empty_class_names", "md_class_names", "html_class_names", "md_paths",
    "paths_outside_root", "not_parquet", "parquet_symlink_out", "no_run_json", "empty_table",
)))
_add(Case("results_md_class_names_wrong_first", "results", "dataset", folder="md_class_names",
          steps=(("set", "ds_sort", "wrong"),)))


# -- 7. video uploads
def _vid(name: str, builder: str) -> tuple:
    return (("set", "video_clip", "upload"), ("upload", "video_upload", ((name, builder),)), ("click", "video_run"))


_add(
    Case("video_growing_mjpeg_16000", "video", "video", steps=_vid("grows.avi", "avi_growing")),
    Case("video_header_100000", "video", "video", steps=_vid("huge.avi", "avi_header_100000")),
    Case("video_zero_bytes", "video", "video", steps=_vid("empty.mp4", "empty")),
    Case("video_text_as_mp4", "video", "video", steps=_vid("notes.mp4", "html_bytes")),
    Case("video_truncated", "video", "video", steps=_vid("cut.avi", "avi_truncated")),
    Case("video_name_md", "video", "video", steps=_vid(MD + ".avi", "avi_small")),
    Case("video_gif_many_frames", "video", "video", steps=_vid("many.gif", "gif_many_frames"), cost=70),
    Case("video_random_bytes_mkv", "video", "video", steps=_vid("noise.mkv", "random_bytes")),
)


# ---- payload builders (run in the child) ------------------------------------------------------------------
@dataclass
class Ctx:
    """What builders may use: the marker folder, a shared folder of prepared files, the case's data root."""

    markers: Path
    shared: Path
    root: Path
    case: str


def evil_factory():  # a "factory" a link could name: proves code ran if its marker appears
    Path(os.environ["HOSTILE_MARKERS"], "factory.marker").write_text("pwned")
    import torch

    return torch.nn.Identity()


class _Reduce:
    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _png(w: int, h: int, mode: str = "RGB", fmt: str = "PNG", **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.new(mode, (w, h))
    if mode == "RGB":
        import numpy as np

        img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _stride0(classes: int, fill: float = 0.0) -> bytes:
    from tests.test_hardening import _stride0_state_dict

    state = _stride0_state_dict(classes)
    if fill != 0.0:
        state = {k: (v.clone().fill_(fill) if v.dtype.is_floating_point and v.dim() == 0 else
                     (v[(0,) * v.dim()].clone().fill_(fill).expand(v.shape) if v.dtype.is_floating_point else v))
                 for k, v in state.items()}
    return _torch_bytes(state)


def _st(header: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header


def _st_tensors(tensors: dict) -> bytes:
    return _st(json.dumps({k: {"dtype": d, "shape": s, "data_offsets": [0, 0]} for k, (d, s) in tensors.items()})
               .encode())


def _zip(*members: tuple[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    from tests.test_hardening import _zip as zip_

    return zip_(*members, method=method)


def _patch32(data: bytes, local_at: int, central_at: int, value: int) -> bytes:
    from tests.test_hardening import _patch_headers

    return _patch_headers(data, local_at, central_at, value, "<I")


def _good_png() -> bytes:
    return _png(48, 40)


def _zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("cat/link.png")
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
        zf.writestr("cat/a.png", _good_png())
    return buf.getvalue()


def _avi_header_100000(ctx: Ctx) -> bytes:
    """The small MJPEG AVI with its headers claiming 100000×100000 (AVI) and every frame 65000×65000 (JPEG's
    largest): what decoding would allocate is decided by the frames' own headers."""
    data = bytearray((ctx.shared / "small.avi").read_bytes())
    i = data.find(b"avih")
    struct.pack_into("<II", data, i + 8 + 8 * 4, 100_000, 100_000)  # dwWidth, dwHeight
    j = data.find(b"strf")
    struct.pack_into("<ii", data, j + 8 + 4, 100_000, 100_000)  # biWidth, biHeight
    k = data.find(b"\xff\xc0")
    while k >= 0:  # SOF0: marker, length, precision, height, width
        struct.pack_into(">HH", data, k + 5, 65_000, 65_000)
        k = data.find(b"\xff\xc0", k + 2)
    return bytes(data)


def _tiny_hf(ctx: Ctx, name: str) -> bytes:
    return (ctx.shared / "tiny_vit" / name).read_bytes()


def _pre(ctx: Ctx, **changes) -> bytes:
    cfg = json.loads(_tiny_hf(ctx, "preprocessor_config.json"))
    cfg.update(changes)
    return json.dumps(cfg).encode()


def _tiny_config_md(ctx: Ctx) -> bytes:
    cfg = json.loads(_tiny_hf(ctx, "config.json"))
    cfg["id2label"] = {"0": MD, "1": HTML, "2": ""}
    cfg["label2id"] = {MD: 0, HTML: 1, "": 2}
    return json.dumps(cfg).encode()


def _hf_bomb() -> bytes:
    from tests.test_hardening import _VIT_BOMB

    return json.dumps(_VIT_BOMB, separators=(",", ":")).encode()


BUILDERS: dict[str, Callable[[Ctx], bytes]] = {
    "empty": lambda c: b"",
    "random_bytes": lambda c: os.urandom(4096),
    "html_bytes": lambda c: f"<html><body>{HTML}{MD}</body></html>".encode(),
    "svg_bytes": lambda c: (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(1)</script>'
                            b'<image href="https://evil.example/pixel.png"/></svg>'),
    "json_list": lambda c: b'[1, 2, {"model_type": "vit"}]',
    "png_small": lambda c: _good_png(),
    "png_corrupt": lambda c: _good_png()[:60] + os.urandom(200) + _good_png()[-12:],
    "jpeg_truncated": lambda c: _png(200, 160, fmt="JPEG")[:700],
    "png_100000x5": lambda c: _png_header(100_000, 5),
    "png_60000x60000": lambda c: _png_header(60_000, 60_000),
    "tiff_60000x60000": lambda c: (b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 4)
                                   + struct.pack("<HHII", 256, 4, 1, 60_000) + struct.pack("<HHII", 257, 4, 1, 60_000)
                                   + struct.pack("<HHII", 258, 3, 1, 8) + struct.pack("<HHII", 273, 4, 1, 8)
                                   + b"\0\0\0\0"),
    "gif_many_frames": lambda c: _gif_frames(3000),
    "png_i16": lambda c: _png(64, 48, "I;16"),
    "jpeg_cmyk": lambda c: _png(64, 48, "CMYK", "JPEG"),
    "png_la": lambda c: _png(64, 48, "LA"),
    "png_p_transparent": lambda c: _png(64, 48, "P", transparency=0),
    "png_1bit": lambda c: _png(64, 48, "1"),
    # code-bearing files
    "pickle_marker": lambda c: _torch_bytes({"model": _Reduce(Path.write_text, (c.markers / f"{c.case}.marker",
                                                                                 "pwned"))}),
    "pickle_os_system": lambda c: _torch_bytes(_Reduce(os.system, (f"touch {c.markers / (c.case + '.sys')}",))),
    "pickle_in_state_dict": lambda c: _torch_bytes({"conv1.weight": _Reduce(Path.write_text, (
        c.markers / f"{c.case}.marker", "pwned"))}),
    "pickle_raw": lambda c: __import__("pickle").dumps(_Reduce(os.system, (f"touch {c.markers / (c.case + '.raw')}",)),
                                                       protocol=0),
    "torchscript_writer": lambda c: _torchscript(c),
    # shape bombs and broken weights
    "stride0_1m": lambda c: _stride0(1_000_000),
    "stride0_0": lambda c: _stride0(0),
    "stride0_7": lambda c: _stride0(7),
    "stride0_nan": lambda c: _stride0(7, float("nan")),
    "st_empty": lambda c: _st(b"{}      "),
    "st_huge_header_len": lambda c: _st(b"{}", 2**40),
    "st_huge_tensor": lambda c: _st_tensors({"fc.weight": ("F32", [1_000_000, 512]), "w": ("BF16", [2_000_000_000])}),
    "st_bad_json": lambda c: _st(b'{"fc.weight": {"dtype": "F32", "shape": [7, 512], "data_offsets": [0, "x"]'),
    "st_negative_shape": lambda c: _st_tensors({"fc.weight": ("F32", [-1, 512])}),
    # Hugging Face
    "hf_bomb_config": lambda c: _hf_bomb(),
    "hf_auto_map": lambda c: json.dumps({"model_type": "evilnet", "auto_map": {
        "AutoConfig": "evil.Cfg", "AutoModelForImageClassification": "evil.Model"}}).encode(),
    "hf_million_labels": lambda c: json.dumps({**json.loads(_hf_bomb()), "hidden_size": 32,
                                                "num_labels": 1_000_000}).encode(),
    "tiny_config": lambda c: _tiny_hf(c, "config.json"),
    "tiny_config_md_labels": _tiny_config_md,
    "tiny_weights": lambda c: _tiny_hf(c, "model.safetensors"),
    "tiny_preprocessor": lambda c: _tiny_hf(c, "preprocessor_config.json"),
    "lite0_weights": lambda c: Path(__import__("cam_core.models.efficientnet_lite", fromlist=["x"]).weights_path())
    .read_bytes(),
    "labels_md": lambda c: "\n".join(f"{i} {MD}" for i in range(1000)).encode(),
    "labels_html_json": lambda c: json.dumps([f"{HTML} {i}" for i in range(1000)]).encode(),
    "labels_million": lambda c: "\n".join(str(i) for i in range(1_000_000)).encode(),
    "labels_json_object": lambda c: json.dumps({"0": MD, "__class__": "os.system"}).encode(),
    "labels_long": lambda c: "\n".join(f"{i}" + "L" * 10_000 for i in range(1000)).encode(),
    "stride0_md_keys": lambda c: _md_keys(),
    "png_ztxt_bomb": lambda c: _png_chunk_bomb(b"zTXt", b"Comment\0\0"),
    "png_iccp_bomb": lambda c: _png_chunk_bomb(b"iCCP", b"icc\0\0"),
    "pre_12000": lambda c: _pre(c, size={"height": 12000, "width": 12000}),
    "pre_abc": lambda c: _pre(c, resample="abc"),
    "pre_std0": lambda c: _pre(c, image_std=[0.0, 0.0, 0.0]),
    # zips
    "zip_good": lambda c: _zip(("cat/a.png", _good_png()), ("dog/b.png", _good_png())),
    "zip_name_clash": lambda c: _zip(("cat/a.png", _good_png()), ("cat/a.png", _good_png())),
    "zip_file_and_folder": lambda c: _zip(("cat/a.png", _good_png()), ("cat/a.png/b.png", _good_png())),
    "zip_name_300": lambda c: _zip(("cat/" + "n" * 296 + ".png", _good_png())),
    "zip_deep_2000": lambda c: _zip(("a/" * 2000 + "x.png", _good_png())),
    "zip_bad_crc": lambda c: _patch32(_zip(("cat/a.png", _good_png())), 14, 16, 0xDEADBEEF),
    "zip_encrypted": lambda c: _patch16(_zip(("cat/a.png", _good_png())), 6, 8, 1),
    "zip_method_99": lambda c: _patch16(_zip(("cat/a.png", _good_png())), 8, 10, 99),
    "zip_entries_1_5m": lambda c: __import__("tests.test_hardening", fromlist=["_hand_zip"])._hand_zip(1_500_000),
    "zip_entries_20001": lambda c: __import__("tests.test_hardening", fromlist=["_hand_zip"])._hand_zip(20_001),
    "zip_over_quota": lambda c: _patch32(_zip(*((f"cat/{i}.png", _good_png()) for i in range(3))), 22, 24,
                                         0xFFFFFF00),
    "zip_not_a_zip": lambda c: b"PK\x03\x04" + os.urandom(3000),
    "zip_slip": lambda c: _zip(("../../evil.png", _good_png()), ("cat/../../../evil2.png", _good_png())),
    "zip_absolute": lambda c: _zip(("/etc/evil.png", _good_png()), ("C:\\evil.png", _good_png())),
    "zip_symlink_member": lambda c: _zip_symlink(),
    "zip_md_names": lambda c: _zip((MD.replace("/", "_") + "/a.png", _good_png()), ("dog/" + MD.replace("/", "_")
                                                                                     + ".png", _good_png())),
    "zip_html_names": lambda c: _zip((HTML.replace("/", "_") + "/a.png", _good_png())),
    "zip_empty_zip": lambda c: _zip(),
    # video
    "avi_small": lambda c: (c.shared / "small.avi").read_bytes(),
    "avi_growing": lambda c: (c.shared / "grows.avi").read_bytes(),
    "avi_truncated": lambda c: (c.shared / "small.avi").read_bytes()[:1500],
    "avi_header_100000": _avi_header_100000,
}


def _md_keys() -> bytes:
    import torch

    from tests.test_hardening import _stride0_state_dict

    state = _stride0_state_dict(7)
    state[MD] = torch.zeros(1)
    state[HTML] = torch.zeros(1)
    return _torch_bytes(state)


def _png_chunk_bomb(kind: bytes, head: bytes) -> bytes:
    """A small valid PNG with a compressed text/ICC chunk that inflates to 256 MB."""
    import zlib

    png = _png(32, 32)
    body = head + zlib.compress(b"\0" * (256 * MB), 9)
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return png[:33] + chunk + png[33:]  # after the signature and IHDR


def _patch16(data: bytes, local_at: int, central_at: int, value: int) -> bytes:
    from tests.test_hardening import _patch_headers

    return _patch_headers(data, local_at, central_at, value)


def _gif_frames(n: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)) for _ in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)
    return buf.getvalue()


def _torchscript(ctx: Ctx) -> bytes:
    import torch

    from tests.test_dashboard_access import _WritesAFile

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(_WritesAFile(str(ctx.markers / "ts_canary"))), buf)
    return buf.getvalue()


# ---- crafted results folders (run in the child) ------------------------------------------------------------
def _results(ctx: Ctx, name: str, change: Callable | None = None) -> str:
    """Copy the prepared results folder to ``runs/<name>`` under the root, the table changed by ``change``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = ctx.root / "runs" / name
    shutil.copytree(ctx.shared / "results", out)
    # as a run from the page would have it: the images under the data root, their absolute paths in the table
    if not (ctx.root / "shots").is_dir():
        shutil.copytree(ctx.shared / "photos", ctx.root / "shots")
    table = pq.read_table(out / "results.parquet")
    moved = [p.replace(str(ctx.shared / "photos"), str(ctx.root / "shots")) for p in table.column("path").to_pylist()]
    table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(moved, pa.string()))
    if change is not None:
        table = change(table, out)
    if table is not None:
        pq.write_table(table, out / "results.parquet")
    return f"runs/{name}"


def _set_col(name: str, values: Callable[[int], list], typ=None):
    import pyarrow as pa

    def change(table, out):
        i = table.schema.get_field_index(name)
        field_ = table.schema.field(i)
        return table.set_column(i, field_.name if typ is None else pa.field(name, typ), pa.array(
            values(table.num_rows), type=field_.type if typ is None else typ))

    return change


def _md_paths(table, out):
    import pyarrow as pa

    paths = [str(Path(p).parent / f"{MD.replace('/', '_')}{HTML.replace('/', '_')}.png")
             for p in table.column("path").to_pylist()]
    return table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths, pa.string()))


def _outside_paths(table, out):
    import pyarrow as pa

    paths = ["/etc/passwd", str(ROOT / "README.md"), "/proc/self/environ"] * table.num_rows
    return table.set_column(table.schema.get_field_index("path"), "path",
                            pa.array(paths[: table.num_rows], pa.string()))


def _write(rel: str, data: bytes | str):
    def change(table, out):
        path = out / rel
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return None if rel == "results.parquet" else table

    return change


def _symlink_out(ctx: Ctx) -> str:
    (ctx.root / "runs").mkdir(parents=True, exist_ok=True)
    target = ctx.root.parent / f"{ctx.case}_outside"
    shutil.copytree(ctx.shared / "results", target)
    (ctx.root / "runs" / "link").symlink_to(target)
    return "runs/link"


def _parquet_symlink(table, out):
    (out / "results.parquet").unlink()
    (out / "results.parquet").symlink_to("/etc/passwd")
    return None  # nothing more to write


def _huge_run(table, out):
    run = json.loads((out / "run.json").read_text())
    run["pad"] = "x" * (64 * MB)
    (out / "run.json").write_text(json.dumps(run))
    return table


FOLDERS: dict[str, Callable[[Ctx], str]] = {
    "symlink_out": _symlink_out,
    "no_results": lambda c: (c.root / "runs" / "empty").mkdir(parents=True) or "runs/empty",
    "nan_ids": lambda c: _results(c, "nan", _set_col("pred", lambda n: [None] * n)),
    "out_of_range_ids": lambda c: _results(c, "range", _set_col("pred", lambda n: ([2**31 - 1, -5] * n)[:n])),
    "missing_columns": lambda c: _results(c, "missing", lambda t, o: t.select(["path", "pred"])),
    "unknown_method": lambda c: _results(c, "method", lambda t, o: t.rename_columns(
        [("map_evil" if n.startswith("map_") and n != "map_shape" else n) for n in t.column_names])),
    "wrong_map_shape": lambda c: _results(c, "shape", _set_col("map_shape", lambda n: [[1000, 1000, 1000]] * n)),
    "run_json_list": lambda c: _results(c, "runlist", _write("run.json", "[1, 2, 3]")),
    "run_json_invalid": lambda c: _results(c, "runbad", _write("run.json", "{" + MD)),
    "run_json_huge": lambda c: _results(c, "runhuge", _huge_run),
    "empty_class_names": lambda c: _results(c, "emptynames", lambda t, o: _set_col("pred_name", lambda n: [""] * n)(
        _set_col("label_name", lambda n: [""] * n)(t, o), o)),
    "md_class_names": lambda c: _results(c, "mdnames", lambda t, o: _set_col("pred_name", lambda n: [MD] * n)(
        _set_col("label_name", lambda n: [MD + " " + HTML] * n)(t, o), o)),
    "html_class_names": lambda c: _results(c, "htmlnames", _set_col("pred_name", lambda n: [HTML] * n)),
    "md_paths": lambda c: _results(c, "mdpaths", _md_paths),
    "paths_outside_root": lambda c: _results(c, "outside", _outside_paths),
    "not_parquet": lambda c: _results(c, "notparquet", _write("results.parquet", b"PAR1 not really " + os.urandom(64))),
    "parquet_symlink_out": lambda c: _results(c, "pqlink", _parquet_symlink),
    "no_run_json": lambda c: _results(c, "norun", lambda t, o: (o / "run.json").unlink() or t),
    "empty_table": lambda c: _results(c, "empty", lambda t, o: t.slice(0, 0)),
}


# ---- prepared files (once per corpus run, in a child) -------------------------------------------------------
def prepare(shared: Path) -> None:
    """Files the builders copy: a real results folder, small and growing AVIs, a tiny HF ViT."""
    shared.mkdir(parents=True, exist_ok=True)
    if not (shared / "results" / "results.parquet").is_file():
        from cam_core.batch import BatchJob, run_local
        from cam_core.io import write_sample_folder
        from cam_core.models import load_model

        photos = shared / "photos"
        write_sample_folder(photos, per_photo=1, seed=3)
        run_local(BatchJob(classes="pred,label", labels=True), photos, shared / "results", workers=0,
                  model=load_model())
    from tests.test_hardening import _GROWING_AVI

    for name, side in (("small.avi", "96"), ("grows.avi", "16000")):
        if not (shared / name).is_file():
            subprocess.run([sys.executable, "-c", _GROWING_AVI, str(shared / name), side], check=True, timeout=300)
    if not (shared / "tiny_vit" / "config.json").is_file():
        from tests.tiny import save_tiny_vit

        save_tiny_vit(shared / "tiny_vit")


# ---- what the visitor sees -----------------------------------------------------------------------------------
_MD_FIELDS = {"body", "label", "help", "captions", "caption", "message", "text", "title", "placeholder"}
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\\u]+")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)*?\1", re.S)
# the payload's links, even cut, and GFM's autolinks of its bare URL or address (a backslash does not stop those)
_LINK = re.compile(
    r"(?<!\\)\]\(\s*<?(?:https?:)?//evil\.example|(?<!\\)\[x\]\(|https?\\?://evil\.example|www\\?\.evil\.example|\w\\?@evil\.example"
)
_PLOTLY_LINK = re.compile(r"<a\s[^>]*href\s*=\s*[\"']?\s*(?:https?:)?//evil\.example", re.I)  # plotly draws <a href>
_HTML_BAD = re.compile(r"alert\(1\)|evil\.example", re.I)  # the visitor's payloads, not the app's own HTML


def _nodes(node):
    yield node
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for child in children.values():
            yield from _nodes(child)


def _strings(value, field_: str = ""):
    if isinstance(value, str):
        yield field_, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, field_)


@dataclass
class Seen:
    """Texts of one run: (element type, field, text), the markdown-rendered ones apart, and downloads."""

    texts: list[tuple[str, str, str]] = field(default_factory=list)
    markdown: list[tuple[str, str, str]] = field(default_factory=list)
    html: list[tuple[str, str, str]] = field(default_factory=list)
    plotly: list[tuple[str, str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)


def collect(at, media: list) -> Seen:
    from google.protobuf.json_format import MessageToDict

    seen = Seen()
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        kind = str(getattr(node, "type", type(node).__name__))
        if kind == "exception":
            seen.exceptions.append(f"{proto.message}")
        try:
            data = MessageToDict(proto)
        except Exception:
            data = {"repr": str(proto)}
        data.pop("arrowData", None)
        allow_html = bool(data.get("allowHtml")) or kind == "html"
        for name, text in _strings(data):
            if name in {"id", "formId"}:
                continue
            text = _DATA_URI.sub("data:", text)
            seen.texts.append((kind, name, text))
            if name in _MD_FIELDS and kind not in {"code", "text", "json"}:
                seen.markdown.append((kind, name, text))
            if allow_html and name == "body":
                seen.html.append((kind, name, text))
        if kind == "plotly_chart" and isinstance(data.get("spec"), str):
            try:
                spec = json.loads(data["spec"])
            except ValueError:
                spec = {}
            seen.plotly += [(kind, name, text) for name, text in _strings(spec)]
        value = None
        if kind in {"arrow_data_frame", "dataframe", "table", "arrow_table"}:
            try:
                value = node.value.to_csv()
            except Exception:
                value = None
        if value:
            seen.texts.append((kind, "cells", value))
        url = data.get("url") if kind == "download_button" else None
        if url:
            for storage in media:
                try:
                    blob = storage.get_file(url.rsplit("/", 1)[-1]).content
                except Exception:
                    continue
                seen.texts.append((kind, "download", bytes(blob[: 8 * MB]).decode("latin-1")))
                break
    return seen


def server_paths(root: Path) -> list[str]:
    found = [str(root), str(root.resolve()), tempfile.gettempdir(), str(ROOT), sys.prefix,
             str(Path(sys.prefix).resolve()), str(Path.home() / ".cache"), "/tmp/", "site-packages"]
    return sorted({p for p in found if len(p) > 4}, key=len, reverse=True)


def judge(seen: Seen, root: Path) -> list[str]:
    reasons = []
    for message in seen.exceptions:
        reasons.append(f"traceback: {_short(message)}")
    paths = server_paths(root)
    for kind, name, text in seen.texts:
        for p in paths:
            if p in text:
                at = text.find(p)
                reasons.append(f"path: {p!r} in {kind}.{name}: …{_short(text[max(0, at - 60): at + 60])}…")
                break
    for kind, name, text in seen.markdown:
        bare = _CODE_SPAN.sub("", text)
        if _LINK.search(bare):
            at = _LINK.search(bare).start()
            snippet = _short(bare[max(0, at - 40) : at + 40])
            reasons.append(f"markdown: link/image rendered in {kind}.{name}: …{snippet}…")
    uses_meta = any("%{meta" in text for _, _, text in seen.plotly)  # meta is drawn only through a template
    for kind, name, text in seen.plotly:
        if (name != "meta" or uses_meta) and _PLOTLY_LINK.search(text):
            reasons.append(f"markdown: visitor <a href> drawn by plotly in {kind}.{name}: {_short(text)}")
            break
    for kind, name, text in seen.html:
        if _HTML_BAD.search(text):
            reasons.append(f"markdown: visitor HTML in {kind}.{name}: {_short(text)}")
    return reasons


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---- one case, in the child ---------------------------------------------------------------------------------
def _widget(at, key: str):
    for node in _nodes(at._tree):
        if getattr(node, "key", None) == key and hasattr(node, "set_value"):
            return node
    raise LookupError(key)


def _leftovers(tmp: Path, skip: set[str]) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(tmp):
        rel = Path(dirpath).relative_to(tmp)
        if rel.parts and rel.parts[0] in skip:
            dirnames[:] = []
            continue
        out.update(str(rel / f) for f in filenames)
        if not rel.parts:
            dirnames[:] = [d for d in dirnames if d not in skip]
    return out


_SKIP = {"roots", "markers", "cam_dashboard_uploads", "shared"}


_CATCH_ALL = "Something went wrong"  # the generic guard: not a check, a note (the input reached code unguarded)


def play(case: Case, tmp: Path, media: list) -> dict:
    """Run ``case`` through AppTest; return its reasons to fail (empty: it passes) and what it saw."""
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    markers, shared = tmp / "markers", Path(os.environ["HOSTILE_SHARED"])
    root = tmp / "roots" / case.name
    root.mkdir(parents=True)
    (root / "photos" / "tabby").mkdir(parents=True)
    (root / "photos" / "tabby" / "a.png").write_bytes(_good_png())
    os.environ["CAMDASH_DATA_ROOT"] = str(root)
    ctx = Ctx(markers, shared, root, case.name)
    before = _leftovers(tmp, _SKIP)
    reasons: list[str] = []
    shown: list[str] = []
    start = time.monotonic()
    try:
        at = AppTest.from_file(APP, default_timeout=CASE_SECONDS)
        for k, v in case.query:
            at.query_params[k] = v
        if case.folder:
            at.query_params["folder"] = FOLDERS[case.folder](ctx)
        if case.page != "image":
            at._page_hash = calc_hash(case.page)
        runs = [at.run()]
        for step in case.steps:
            if step[0] == "set":
                _widget(at, step[1]).set_value(step[2])
            elif step[0] == "upload":
                files = [(name, BUILDERS[b](ctx), "application/octet-stream") for name, b in step[2]]
                _widget(at, step[1]).set_value(files if len(files) > 1 or step[1] in {"hf_files", "uploads"}
                                               else files[0])
            elif step[0] == "click":  # a button the page may rightly not draw (a refused upload has no Run)
                node = next((n for n in _nodes(at._tree) if getattr(n, "key", None) == step[1]), None)
                if node is None:
                    continue
                node.click()
            runs.append(at.run())
            seen = collect(at, media)
            reasons += judge(seen, root)
            shown += [t for k, n, t in seen.texts if k in {"error", "warning", "exception"} and n == "body"]
        if not case.steps:
            seen = collect(at, media)
            reasons += judge(seen, root)
            shown += [t for k, n, t in seen.texts if k in {"error", "warning", "exception"} and n == "body"]
    except LookupError as exc:
        reasons.append(f"harness: no widget with key {exc.args[0]!r} on the page")
    except Exception as exc:  # AppTest's own timeout, or the app script raising out of AppTest
        reasons.append(f"crash: {type(exc).__name__}: {_short(str(exc))}")
    canary = markers / "ts_canary"
    for marker in sorted(markers.iterdir()):
        if marker.name == "ts_canary":
            if marker.read_bytes() != b"\0" * 4:
                reasons.append("code: the TorchScript canary was written")
                canary.write_bytes(b"\0" * 4)
            continue
        reasons.append(f"code: marker {marker.name} written")
        marker.unlink()
    new = _leftovers(tmp, _SKIP) - before
    if new:
        reasons.append(f"disk: left outside the data root: {sorted(new)[:3]}")
    # A bad input gets one line that says what is wrong; the catch-all's "Something went wrong" means it reached
    # code that did not check it.
    reasons += [f"unclear: the catch-all answered: {_short(t, 200)}" for t in dict.fromkeys(shown) if _CATCH_ALL in t]
    seen_reasons = list(dict.fromkeys(reasons))  # the same finding on several runs is one reason
    return {"name": case.name, "reasons": seen_reasons, "seconds": time.monotonic() - start,
            "shown": [_short(s, 200) for s in dict.fromkeys(shown)][:4]}


def _rss_self() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child_main(names: list[str]) -> None:
    """The server: warm up (baseline), then play ``names`` one after another, a JSON line per case."""
    import logging

    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    media: list = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            media[:] = [self]

    app_test.MemoryMediaFileStorage = Recording
    tmp = Path(tempfile.gettempdir())
    (tmp / "markers").mkdir(exist_ok=True)
    (tmp / "markers" / "ts_canary").write_bytes(b"\0" * 4)
    os.environ["HOSTILE_MARKERS"] = str(tmp / "markers")
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    warm = tmp / "roots" / "_warm"
    warm.mkdir(parents=True, exist_ok=True)
    os.environ["CAMDASH_DATA_ROOT"] = str(warm)
    at = AppTest.from_file(APP, default_timeout=CASE_SECONDS).run()
    at._page_hash = calc_hash("video")  # the sample clip is written once, before any case (not a leftover)
    at.run()
    print("BASE " + str(_rss_self()), flush=True)
    by_name = {c.name: c for c in CASES}
    for name in names:
        print("START " + name, flush=True)
        result = play(by_name[name], tmp, media)
        print("RESULT " + json.dumps(result), flush=True)
        shutil.rmtree(tmp / "roots" / name, ignore_errors=True)


# ---- the parent: children with their memory watched ---------------------------------------------------------
def limit_sum() -> dict[str, int]:
    """The documented limits whose sum (plus the baseline) is the memory cap."""
    from cam_core import limits as L

    return {
        "MODEL_CACHE_BYTES": L.MODEL_CACHE_BYTES,
        "MAP_CACHE_BYTES": L.MAP_CACHE_BYTES,
        "IMAGE_CACHE_BYTES": L.IMAGE_CACHE_BYTES,
        "VIDEO_RUN_CACHE_BYTES": L.VIDEO_RUN_CACHE_BYTES,
        "FILM_CACHE_BYTES": L.FILM_CACHE_BYTES,
        "MAX_SESSION_UPLOAD_BYTES": L.MAX_SESSION_UPLOAD_BYTES,
        "FIGURE_CACHE_ENTRIES x 1 MB": L.FIGURE_CACHE_ENTRIES * MB,
    }


PROVISIONAL_BASELINE = 2 * 2**30  # the cap before the child reports its baseline (while it warms up)


@dataclass
class Outcome:
    name: str
    category: str
    reasons: list[str]
    seconds: float = 0.0
    peak: int = 0
    cap: int = 0
    base: int = 0
    shown: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def _rss(pid: int) -> int:
    """RSS of ``pid`` and its children (video decoding, ffmpeg) together."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _env(tmp: Path, shared: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAMDASH_TRUST_VISITORS": "no", "TMPDIR": str(tmp),
           "HOSTILE_SHARED": str(shared), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    env.pop("CAMDASH_MODELS", None)
    return env


def run_batch(names: list[str], shared: Path, log: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Play ``names`` in children (a new one after a kill), RSS sampled; one :class:`Outcome` per case."""
    by_name = {c.name: c for c in CASES}
    extra = sum(limit_sum().values())
    todo = list(names)
    out: list[Outcome] = []
    while todo:
        tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys, json; from tests.hostile import child_main; "
             "child_main(json.loads(sys.argv[1]))", json.dumps(todo)],
            cwd=ROOT, env=_env(tmp, shared), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        lines: list[str] = []
        errs: list[str] = []
        for stream, sink in ((proc.stdout, lines), (proc.stderr, errs)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True).start()
        base, cap = 0, PROVISIONAL_BASELINE + extra
        current, started, peak, seen = None, time.monotonic(), 0, 0
        killed = ""
        while True:
            rss = _rss(proc.pid)
            peak = max(peak, rss)
            while seen < len(lines):
                line = lines[seen].rstrip("\n")
                seen += 1
                if line.startswith("BASE "):
                    base = int(line.split()[1])
                    cap = base + extra
                elif line.startswith("START "):
                    current, started, peak = line[6:], time.monotonic(), rss
                elif line.startswith("RESULT "):
                    r = json.loads(line[7:])
                    o = Outcome(r["name"], by_name[r["name"]].category, r["reasons"], r["seconds"], peak, cap, base,
                                r.get("shown", []))
                    if peak > cap:
                        o.reasons.append(f"memory: peak RSS {peak / MB:.0f} MB > cap {cap / MB:.0f} MB")
                    out.append(o)
                    todo.remove(r["name"])
                    if log:
                        log(o)
                    current = None
            if proc.poll() is not None and seen >= len(lines):
                break
            if rss > cap:
                killed = f"memory: killed at RSS {rss / MB:.0f} MB > cap {cap / MB:.0f} MB"
            elif time.monotonic() - started > CASE_SECONDS + (240 if current is None else 30):
                killed = f"time: killed after {time.monotonic() - started:.0f} s"
            if killed:
                proc.kill()
                proc.wait()
                time.sleep(0.2)
                break
            time.sleep(0.01)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        if todo:
            victim = current or todo[0]
            why = killed or f"crash: the server died (exit {proc.returncode}): {_short(''.join(errs)[-600:], 300)}"
            o = Outcome(victim, by_name[victim].category, [why], time.monotonic() - started, peak, cap, base)
            out.append(o)
            todo.remove(victim)
            if log:
                log(o)
    return out


def run_corpus(cases: list[Case] | None = None, jobs: int = 2, log: Callable[[Outcome], None] | None = None,
               shared: Path | None = None) -> list[Outcome]:
    """Play ``cases`` (all by default) with at most ``jobs`` children at once; outcomes in corpus order."""
    cases = CASES if cases is None else cases
    shared = shared or Path(tempfile.gettempdir()) / "hostile-shared"
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from tests.hostile import prepare; "
                    "prepare(Path(sys.argv[1]))", str(shared)], cwd=ROOT, env=_env(shared.parent, shared), check=True,
                   timeout=900, capture_output=True)
    queues: list[list[str]] = [[] for _ in range(max(1, jobs))]
    loads = [0.0] * len(queues)
    for c in sorted(cases, key=lambda c: -c.cost):  # longest first, each to the least loaded child
        i = loads.index(min(loads))
        queues[i].append(c.name)
        loads[i] += c.cost
    results: list[Outcome] = []
    lock = threading.Lock()

    def work(q: list[str]) -> None:
        got = run_batch(q, shared, log)
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=work, args=(q,)) for q in queues if q]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order = {c.name: i for i, c in enumerate(cases)}
    return sorted(results, key=lambda o: order[o.name])


def summary(outcomes: list[Outcome]) -> str:
    """The table: per category, cases and failures by kind; then one line per failing case."""
    kinds = ["traceback", "path", "markdown", "unclear", "code", "memory", "time", "crash", "disk", "harness"]
    cats = sorted({o.category for o in outcomes}, key=lambda c: [x.category for x in CASES].index(c))
    head = f"{'category':<11}{'cases':>6}{'pass':>6}" + "".join(f"{k:>10}" for k in kinds)
    head += f"{'peak MB':>9}{'cap MB':>8}"
    rows = [head]
    for cat in [*cats, "all"]:
        group = [o for o in outcomes if cat in ("all", o.category)]
        counts = [sum(any(r.startswith(k) for r in o.reasons) for o in group) for k in kinds]
        rows.append(f"{cat:<11}{len(group):>6}{sum(o.passed for o in group):>6}" + "".join(f"{n:>10}" for n in counts)
                    + f"{max(o.peak for o in group) / MB:>9.0f}{max(o.cap for o in group) / MB:>8.0f}")
    rows.append("")
    for o in outcomes:
        if not o.passed:
            rows.append(f"FAIL {o.name}: " + " | ".join(o.reasons))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated case names")
    p.add_argument("--category", default="")
    p.add_argument("--sample", type=int, default=0, help="every n-th case only")
    p.add_argument("--json", default="", help="write the outcomes to this file")
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    cases = CASES
    if a.only:
        cases = [c for c in cases if c.name in set(a.only.split(","))]
    if a.category:
        cases = [c for c in cases if c.category in set(a.category.split(","))]
    if a.sample:
        cases = cases[:: a.sample]
    if a.list:
        for c in cases:
            print(c.category, c.page, c.name)
        print(len(cases), "cases")
        return 0
    t0 = time.monotonic()
    outcomes = run_corpus(cases, a.jobs, log=lambda o: print(("ok   " if o.passed else "FAIL ") + o.name,
                                                             f"{o.seconds:.1f}s", flush=True))
    print(summary(outcomes))
    print(f"{len(outcomes)} cases in {time.monotonic() - t0:.0f} s; RSS cap = baseline + "
          f"{sum(limit_sum().values()) / MB:.0f} MB ({' + '.join(limit_sum())})")
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The head written into the served HTML page (placeholders that stand still, Plotly preloaded): only HTML,
length kept true."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

from streamlit import file_util

from dashboard.server.page_head import HEAD, PageHead, html_import, plotly_preload, with_head


def _serve(content_type: bytes, chunks: list[bytes], extra: list[tuple[bytes, bytes]] | None = None,
           path: str = "/") -> list[dict]:
    """The messages a client gets from PageHead around an app that answers with ``chunks``."""

    async def app(scope, receive, send) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(sum(map(len, chunks))).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + (extra or [])})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(PageHead(app)({"type": "http", "path": path}, None, send))
    return sent


def _body(sent: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_an_html_page_gets_the_style_before_its_head_ends_and_its_true_length() -> None:
    page = [b"<html><head><title>x</title>", b"</head><body></body></html>"]  # in two chunks, as served
    sent = _serve(b"text/html; charset=utf-8", page)
    body = _body(sent)
    assert body == b"<html><head><title>x</title>" + HEAD + b"</head><body></body></html>"
    lengths = [v for k, v in sent[0]["headers"] if k == b"content-length"]
    assert lengths == [str(len(body)).encode()]


def test_the_dataset_page_gets_no_plotly_preload_the_others_do() -> None:
    page = [b"<html><head></head><body></body></html>"]
    link = plotly_preload()
    for path in ("/", "/video", "/base/video/"):
        assert link in _body(_serve(b"text/html", page, path=path)), path
    for path in ("/dataset", "/base/dataset/"):
        body = _body(_serve(b"text/html", page, path=path))
        assert link not in body and html_import() in body and b"camdash-head" in body, path
        widgets = html_import(stem="BidiComponent")  # the gallery's and the matrix's code, imported early
        assert widgets and widgets in body and widgets not in HEAD, path


def test_a_gzipped_page_is_sent_back_plain_with_the_style() -> None:
    page = b"<html><head></head><body>video</body></html>"
    sent = _serve(b"text/html", [gzip.compress(page)], [(b"content-encoding", b"gzip")])
    assert _body(sent) == b"<html><head>" + HEAD + b"</head><body>video</body></html>"
    assert all(k != b"content-encoding" for k, _ in sent[0]["headers"])


def test_scripts_other_encodings_and_pages_without_a_head_pass_untouched() -> None:
    script = [b"const a = '</head>';"]
    assert _body(_serve(b"application/javascript", script)) == script[0]
    brotli = [b"\x8b compressed </head>"]
    assert _body(_serve(b"text/html", brotli, [(b"content-encoding", b"br")])) == brotli[0]
    assert with_head(b"<p>no head</p>") == b"<p>no head</p>"
    report = [b"<html><head><title>report</title></head><body></body></html>"]  # a download: the user's file
    attachment = [(b"content-disposition", b'attachment; filename="a_report.html"')]
    assert _body(_serve(b"text/html", report, attachment)) == report[0]


def test_the_plotly_preload_names_the_one_plotly_chunk_there_is(tmp_path) -> None:
    js = tmp_path / "static" / "js"
    js.mkdir(parents=True)
    assert plotly_preload(tmp_path) == b""  # a Streamlit without the chunk: no link to a missing file
    (js / "PlotlyChart.Ab12.js").write_text("export {}")
    (js / "Plotly.other.js").write_text("export {}")
    assert plotly_preload(tmp_path) == b'<link rel="modulepreload" crossorigin href="./static/js/PlotlyChart.Ab12.js">'
    (js / "PlotlyChart.Cd34.js").write_text("export {}")
    assert plotly_preload(tmp_path) == b""  # which one Streamlit imports is not known: none


def test_the_head_preloads_this_streamlits_plotly_chunk() -> None:
    link = plotly_preload()
    assert link and link in HEAD
    name = link.split(b"./static/js/")[1].split(b'"')[0].decode()
    assert (Path(file_util.get_static_dir()) / "static" / "js" / name).stat().st_size > 1_000_000  # plotly.js


def test_the_html_import_preloads_and_runs_the_one_html_chunk_there_is(tmp_path) -> None:
    js = tmp_path / "static" / "js"
    js.mkdir(parents=True)
    assert html_import(tmp_path) == b""
    (js / "Html.Zz9.js").write_text("export {}")
    (js / "HtmlTable.Yy8.js").write_text("export {}")  # another element's chunk: not taken for st.html's
    assert html_import(tmp_path) == (
        b'<link rel="modulepreload" crossorigin href="./static/js/Html.Zz9.js">'
        b'<script type="module">import("./static/js/Html.Zz9.js").catch(() => {});</script>'
    )
    (js / "Html.Xx7.js").write_text("export {}")
    assert html_import(tmp_path) == b""


def test_the_head_imports_this_streamlits_html_chunk_after_streamlits_own_script() -> None:
    part = html_import()
    assert part and part in HEAD
    name = part.split(b"./static/js/")[1].split(b'"')[0].decode()
    assert (Path(file_util.get_static_dir()) / "static" / "js" / name).is_file()
    page = (Path(file_util.get_static_dir()) / "index.html").read_bytes()
    served = with_head(page)
    assert served.index(b'<script type="module" crossorigin src="./static/js/index.') < served.index(part)

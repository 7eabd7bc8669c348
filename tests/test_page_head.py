"""The style written into the served HTML page (placeholders that stand still): only HTML, length kept true."""

from __future__ import annotations

import asyncio
import gzip

from dashboard.page_head import HEAD_STYLE, HeadStyle, with_head_style


def _serve(content_type: bytes, chunks: list[bytes], extra: list[tuple[bytes, bytes]] | None = None) -> list[dict]:
    """The messages a client gets from HeadStyle around an app that answers with ``chunks``."""

    async def app(scope, receive, send) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(sum(map(len, chunks))).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + (extra or [])})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(HeadStyle(app)({"type": "http", "path": "/"}, None, send))
    return sent


def _body(sent: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_an_html_page_gets_the_style_before_its_head_ends_and_its_true_length() -> None:
    page = [b"<html><head><title>x</title>", b"</head><body></body></html>"]  # in two chunks, as served
    sent = _serve(b"text/html; charset=utf-8", page)
    body = _body(sent)
    assert body == b"<html><head><title>x</title>" + HEAD_STYLE + b"</head><body></body></html>"
    lengths = [v for k, v in sent[0]["headers"] if k == b"content-length"]
    assert lengths == [str(len(body)).encode()]


def test_a_gzipped_page_is_sent_back_plain_with_the_style() -> None:
    page = b"<html><head></head><body>video</body></html>"
    sent = _serve(b"text/html", [gzip.compress(page)], [(b"content-encoding", b"gzip")])
    assert _body(sent) == b"<html><head>" + HEAD_STYLE + b"</head><body>video</body></html>"
    assert all(k != b"content-encoding" for k, _ in sent[0]["headers"])


def test_scripts_other_encodings_and_pages_without_a_head_pass_untouched() -> None:
    script = [b"const a = '</head>';"]
    assert _body(_serve(b"application/javascript", script)) == script[0]
    brotli = [b"\x8b compressed </head>"]
    assert _body(_serve(b"text/html", brotli, [(b"content-encoding", b"br")])) == brotli[0]
    assert with_head_style(b"<p>no head</p>") == b"<p>no head</p>"

"""Streamlit's static files kept in memory: the same answer as Streamlit's, only for what may be sent again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dashboard.server.static_cache import StaticCache

IMMUTABLE = (b"cache-control", b"public, immutable, max-age=31536000")


class Streamlit:
    """A stand-in for Streamlit's static handler: answers from a folder, counting the requests it answers."""

    def __init__(self, root: Path, extra: list[tuple[bytes, bytes]] | None = None, status: int = 200) -> None:
        self.root, self.extra, self.status, self.calls = root, extra if extra is not None else [IMMUTABLE], status, 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        body = (self.root / scope["path"].split("/", 2 if scope["path"].startswith("/app/") else 1)[-1]).read_bytes()
        headers = [(b"content-type", b"text/javascript"), (b"content-length", str(len(body)).encode()),
                   (b"etag", b'"e1"'), *self.extra]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        half = len(body) // 2  # in two chunks, as a file is streamed
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body[half:]})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    js = tmp_path / "static" / "js"
    js.mkdir(parents=True)
    (js / "index.Ab12.js").write_bytes(b"console.log('streamlit');" * 100)
    (tmp_path / "index.html").write_bytes(b"<html></html>")
    return tmp_path


def _get(app, path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> tuple[dict, bytes]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    asyncio.run(app(scope, None, send))
    return sent[0], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_static_file_is_answered_by_streamlit_once_then_from_memory_byte_for_byte(root: Path) -> None:
    inner = Streamlit(root)
    app = StaticCache(inner, root=root, base_url="")
    first = _get(app, "/static/js/index.Ab12.js")
    again = _get(app, "/static/js/index.Ab12.js")
    assert inner.calls == 1
    assert again == first
    assert again[1] == (root / "static/js/index.Ab12.js").read_bytes()
    head, body = _get(app, "/static/js/index.Ab12.js", "HEAD")
    assert (head["headers"], body, inner.calls) == (first[0]["headers"], b"", 1)  # the length of the whole file


def test_under_a_base_url_path_the_same_file_is_kept(root: Path) -> None:
    inner = Streamlit(root)
    app = StaticCache(inner, root=root, base_url="/app/")
    _get(app, "/app/static/js/index.Ab12.js")
    _get(app, "/app/static/js/index.Ab12.js")
    assert inner.calls == 1
    _get(app, "/static/js/index.Ab12.js")  # outside the base path: Streamlit's, every time
    _get(app, "/static/js/index.Ab12.js")
    assert inner.calls == 3


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([(b"cache-control", b"no-cache")], 200),  # not immutable (the HTML page, the manifest)
        ([IMMUTABLE, (b"content-encoding", b"gzip")], 200),  # compressed for one browser: not for every one
        ([IMMUTABLE], 206),  # a part
    ],
)
def test_answers_that_may_not_be_sent_again_go_to_streamlit_each_time(root: Path, extra, status) -> None:
    inner = Streamlit(root, extra, status)
    app = StaticCache(inner, root=root, base_url="")
    _get(app, "/static/js/index.Ab12.js")
    _get(app, "/static/js/index.Ab12.js")
    assert inner.calls == 2 and not app.kept


def test_other_paths_conditional_requests_and_heads_first_are_streamlits(root: Path) -> None:
    inner = Streamlit(root)
    app = StaticCache(inner, root=root, base_url="")
    _get(app, "/index.html")  # not under static/: never kept
    _get(app, "/static/js/index.Ab12.js", "HEAD")  # no body to keep
    _get(app, "/static/js/index.Ab12.js", headers=[(b"if-none-match", b'"e1"')])  # Streamlit's 304 to give
    assert inner.calls == 3 and not app.kept
    _get(app, "/static/js/index.Ab12.js")
    _get(app, "/static/js/index.Ab12.js", headers=[(b"Range", b"bytes=0-9")])  # kept, but a range is Streamlit's
    assert inner.calls == 5 and list(app.kept) == ["static/js/index.Ab12.js"]

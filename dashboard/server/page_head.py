"""What the server writes into the head of the page Streamlit serves, there before any of its browser code runs.

- A style that stops Streamlit's placeholders (``stSkeleton``) pulsing: drawn in software (a VM, a browser
  without a GPU) the pulse costs CPU the page's own work needs while every element waits for Plotly's script.
  A style sent with the script's messages comes too late (its element's code loads with the rest).
- A ``modulepreload`` of Streamlit's Plotly chunk: otherwise the browser asks for it only when the first chart's
  message comes; asked for from the head, it is fetched and parsed while Streamlit's own code starts (not on the
  Dataset page, whose first view has no chart: there, the code of its widgets, ``st.components.v2``, instead).
- Streamlit's ``st.html`` chunk, fetched and run as soon as Streamlit's own code has run: the overlays' stills
  (:mod:`dashboard.views.image.still`) are ``st.html`` elements, and left to Streamlit their code waited behind
  Plotly's start, so the still came hardly before the chart it stands in for.

- Where the server is (``window.__streamlit.BACKEND_BASE_URL``, Streamlit's own setting for an embedded app): opened
  at ``/video`` without it, Streamlit's browser code first tries ``/video`` as the server's base path and asks for
  ``/video/_stcore/health`` and ``/video/_stcore/host-config`` (two 404s in the console, streamlit#7074) before it
  tries ``/``. The base path is the server's (``server.baseUrlPath``), on the page's own origin.

This ASGI middleware writes them into the HTML document itself: ``/`` comes uncompressed, the other pages'
(``/video``) gzipped by Streamlit; each is sent back uncompressed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import streamlit as st
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit import file_util

__all__ = ["HEAD", "PageHead", "base_url", "head_for", "html_import", "plotly_preload", "with_head"]


def _chunk(stem: str, static_dir: Path | None) -> str | None:
    """The file name of Streamlit's one browser chunk ``stem.*.js`` (None when this Streamlit has none or several:
    which one it imports is then not known)."""
    js = (Path(file_util.get_static_dir()) if static_dir is None else static_dir) / "static" / "js"
    found = sorted(js.glob(f"{stem}.*.js"))
    return found[0].name if len(found) == 1 else None


def plotly_preload(static_dir: Path | None = None) -> bytes:
    """A ``modulepreload`` link to Streamlit's Plotly chunk (none when this Streamlit has no single such file).

    Relative, as Streamlit's own script tags are (it resolves under a base URL path), and ``crossorigin`` as
    they are, so the browser uses the preloaded module instead of fetching it again.
    """
    name = _chunk("PlotlyChart", static_dir)
    return b"" if name is None else f'<link rel="modulepreload" crossorigin href="./static/js/{name}">'.encode()


def html_import(static_dir: Path | None = None, stem: str = "Html") -> bytes:
    """Streamlit's ``st.html`` chunk (or another, ``stem``) preloaded and imported by the page itself (none when
    there is no single one).

    A module runs once per page whoever imports it first, so Streamlit's own import of it later finds it done.
    A module script runs after the document's earlier ones (Streamlit's own), and a failed import changes nothing.
    """
    name = _chunk(stem, static_dir)
    if name is None:
        return b""
    src = f"./static/js/{name}"
    return (f'<link rel="modulepreload" crossorigin href="{src}">'
            f'<script type="module">import("{src}").catch(() => {{}});</script>').encode()


def base_url(base_path: str | None = None) -> bytes:
    """A script that tells Streamlit's browser code the server's base path, so it probes no page path first.

    A plain script in the head runs before Streamlit's module scripts, which read the setting when they load.
    """
    path = str(st.get_option("server.baseUrlPath") if base_path is None else base_path).strip("/")
    where = json.dumps("/" + path if path else "/")
    return (f"<script>window.__streamlit=Object.assign({{}},window.__streamlit,"
            f"{{BACKEND_BASE_URL:location.origin+{where}}});</script>").encode()


_COMMON = base_url() + b'<style id="camdash-head">[data-testid="stSkeleton"]{animation:none!important}</style>'
HEAD = _COMMON + plotly_preload() + html_import()
_NO_CHART_FIRST = frozenset({"dataset"})  # pages whose first view draws no Plotly chart


_WIDGETS_FIRST = _COMMON + html_import() + html_import(stem="BidiComponent")


def head_for(path: str) -> bytes:
    """The head of the page at ``path``: :data:`HEAD`; on a page whose first view draws no chart (the Dataset
    page: its gallery and matrix are HTML widgets), no Plotly preload (fetching and compiling its 4.7 MB there only
    delayed them on the browser's main thread) but the widgets' own code (``st.components.v2``), imported while the
    server reads the results."""
    page = path.rstrip("/").rsplit("/", 1)[-1]
    return _WIDGETS_FIRST if page in _NO_CHART_FIRST else HEAD


def with_head(html: bytes, head: bytes = HEAD) -> bytes:
    """``html`` with ``head`` before its ``</head>`` (unchanged when it has none)."""
    at = html.find(b"</head>")
    return html if at < 0 else html[:at] + head + html[at:]


class PageHead:
    """Adds its head (:func:`head_for` its path) to every HTML page (plain or gzipped); everything else passes
    untouched, downloads too: an HTML file a download button sends (a report, ``Content-Disposition: attachment``)
    is the user's file, and the head's scripts, pointing at this server, would break it where it is opened
    offline."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None  # the held response's start, when it is an HTML page
        gzipped = False
        body: list[bytes] = []

        async def edit(message: Message) -> None:
            nonlocal start, gzipped
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                html = headers.get(b"content-type", b"").startswith(b"text/html") and not headers.get(
                    b"content-disposition", b"").lower().startswith(b"attachment")
                encoding = headers.get(b"content-encoding")
                if html and encoding in (None, b"gzip"):
                    start, gzipped = message, encoding == b"gzip"  # held until the whole body is here
                    return
                await send(message)
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                html = b"".join(body)
                html = with_head(gzip.decompress(html) if gzipped else html, head_for(scope.get("path", "/")))
                dropped = (b"content-length", b"content-encoding")
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]
                await send({**start, "headers": [*headers, (b"content-length", str(len(html)).encode())]})
                await send({"type": "http.response.body", "body": html})
            else:
                await send(message)

        await self.app(scope, receive, edit)

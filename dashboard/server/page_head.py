"""What the server writes into the head of the page Streamlit serves, there before any of its browser code runs.

- A style: Streamlit's placeholders (``stSkeleton``: shown while an element's browser code loads, and every
  element of the page waits for Plotly's 4.7 MB script) pulse at 60 frames a second. Drawn in software, as in a
  VM or a browser without a GPU, that took ~1 CPU-second per page open from the page's own work (a trace of a
  cold open here: 226 frames of 4.6 ms in 4.5 s; 61 with this style). A style sent with the script's messages
  comes too late (its element's code loads with the rest).
- A ``modulepreload`` of Streamlit's Plotly chunk: the browser asked for it only when the first chart's message
  came, ~2 s into a cold open here, then fetched and parsed it for ~0.85 s more before it could run it; asked for
  from the head, it is fetched and parsed (off the page's main thread) while Streamlit's own code starts.
- Streamlit's ``st.html`` chunk (2 KB, and DOMPurify's 29 KB), fetched and run as soon as Streamlit's own code
  has run. The overlays' stills (:mod:`.still`) are ``st.html`` elements: left to Streamlit, their code
  was asked for with the first still and then waited behind Plotly's ~1 s start, asked for a moment later by the
  chart beside it, so the still came 1.4 s after its message, hardly before the chart (cold opens here: the
  first overlay drawn at 2.6-3.0 s without this, 1.3-1.7 s with it).

This ASGI middleware writes both into the HTML document itself: ``/`` comes uncompressed, the other pages'
(``/video``) gzipped by Streamlit; each is sent back uncompressed (8 KB).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit import file_util

__all__ = ["HEAD", "PageHead", "html_import", "plotly_preload", "with_head"]


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


def html_import(static_dir: Path | None = None) -> bytes:
    """Streamlit's ``st.html`` chunk preloaded and imported by the page itself (none when there is no single one).

    A module runs once per page whoever imports it first, so Streamlit's own import of it later finds it done.
    A module script runs after the document's earlier ones (Streamlit's own), and a failed import changes nothing.
    """
    name = _chunk("Html", static_dir)
    if name is None:
        return b""
    src = f"./static/js/{name}"
    return (f'<link rel="modulepreload" crossorigin href="{src}">'
            f'<script type="module">import("{src}").catch(() => {{}});</script>').encode()


HEAD = (b'<style id="camdash-head">[data-testid="stSkeleton"]{animation:none!important}</style>'
        + plotly_preload() + html_import())


def with_head(html: bytes) -> bytes:
    """``html`` with :data:`HEAD` before its ``</head>`` (unchanged when it has none)."""
    at = html.find(b"</head>")
    return html if at < 0 else html[:at] + HEAD + html[at:]


class PageHead:
    """Adds :data:`HEAD` to every HTML response (plain or gzipped); everything else passes untouched."""

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
                html = headers.get(b"content-type", b"").startswith(b"text/html")
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
                html = with_head(gzip.decompress(html) if gzipped else html)
                dropped = (b"content-length", b"content-encoding")
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]
                await send({**start, "headers": [*headers, (b"content-length", str(len(html)).encode())]})
                await send({"type": "http.response.body", "body": html})
            else:
                await send(message)

        await self.app(scope, receive, edit)

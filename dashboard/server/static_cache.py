"""Streamlit's own browser code, kept in memory after Streamlit has served it once.

Why: a page open fetches over a hundred of Streamlit's JavaScript chunks, styles and fonts, and Streamlit's static
handler opens, stats and reads each from disk on every request, server CPU that a small machine's visitor's
browser needs. So each file is served by Streamlit the first time (its path checks, headers and fallbacks
untouched), and when Streamlit answered 200, uncompressed, with an immutable cache header (its hashed bundles),
the answer is kept and sent again byte for byte. Conditional and range requests always go to Streamlit. What is
kept is bounded by Streamlit's static folder.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit import config, file_util

__all__ = ["StaticCache"]

Headers = list[tuple[bytes, bytes]]
# Requests whose answer depends on what the browser already has: Streamlit answers those.
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"range"})


class StaticCache:
    """Serves Streamlit's immutable static files from memory after their first answer; all else passes through.

    Args:
        app: the app it wraps.
        root: Streamlit's static folder (its ``static/`` subfolder holds the hashed bundles).
        base_url: the server's ``server.baseUrlPath`` (read from Streamlit's config when not given).
    """

    def __init__(self, app: ASGIApp, root: Path | None = None, base_url: str | None = None) -> None:
        self.app = app
        root = Path(file_util.get_static_dir()) if root is None else root
        # Only these paths can be kept: Streamlit's own files, never an app's media or uploads.
        self.assets = frozenset(p.relative_to(root).as_posix() for p in (root / "static").rglob("*") if p.is_file())
        base = (config.get_option("server.baseUrlPath") if base_url is None else base_url) or ""
        self.prefix = f"/{base.strip('/')}/" if base.strip("/") else "/"
        self.kept: dict[str, tuple[Headers, bytes]] = {}

    def _asset(self, scope: Scope) -> str | None:
        """The path of one of Streamlit's static files this plain GET or HEAD asks for, else None."""
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            return None
        path: str = scope.get("path", "")
        if not path.startswith(self.prefix) or any(k.lower() in _CONDITIONAL for k, _ in scope.get("headers", [])):
            return None
        rel = path[len(self.prefix):]
        return rel if rel in self.assets else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rel = self._asset(scope)
        if rel is None:
            await self.app(scope, receive, send)
            return
        kept = self.kept.get(rel)
        if kept is not None:
            headers, body = kept
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        await self.app(scope, receive, self._keeping(rel, send, scope["method"] == "GET"))

    def _keeping(self, rel: str, send: Send, get: bool) -> Send:
        """``send``, which also keeps Streamlit's answer for ``rel`` when it may be sent again as it is."""
        headers: Headers | None = None  # the answer's headers, while it may be kept
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal headers
            if message["type"] == "http.response.start":
                found = {k.lower(): v for k, v in message.get("headers", [])}
                keepable = (
                    get
                    and message.get("status") == 200
                    and b"content-encoding" not in found
                    and b"immutable" in found.get(b"cache-control", b"")
                    and b"content-length" in found
                )
                headers = list(message.get("headers", [])) if keepable else None
            elif message["type"] == "http.response.body" and headers is not None:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks)
                    length = next(v for k, v in headers if k.lower() == b"content-length")
                    if str(len(body)).encode() == length:
                        self.kept[rel] = (headers, body)
            await send(message)

        return keep

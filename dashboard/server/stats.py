"""What the server holds right now, as plain numbers: for its operator (``/_camdash/stats``) and the load tests.

Only for its operator: the endpoint answers clients on this machine (loopback, and not relayed by a proxy:
no ``X-Forwarded-For``/``Forwarded`` header), or a request carrying the operator's token
(``CAMDASH_STATS_TOKEN``, ``camdash --stats-token``) as ``Authorization: Bearer <token>`` or ``?token=``.
Anyone else gets 404, as if there were no such page.

Memory (resident set size), the CPU time used so far (all threads), the caches' sizes, the upload
folders on disk, the browser sessions, and the forward hooks left on the cached models (always 0
between calls: hooks live inside one engine call). Nothing here names a file, a model's path or a visitor.
"""

from __future__ import annotations

import hmac
import os
import resource
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from streamlit.runtime import Runtime

from dashboard import model, uploads, warmup
from dashboard.caches import figure_cache
from dashboard.views.image.compute import map_cache
from dashboard.views.video import compute as video_compute

__all__ = ["ENV_TOKEN", "allowed", "endpoint", "rss_bytes", "snapshot"]

ENV_TOKEN = "CAMDASH_STATS_TOKEN"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("token", "")


def allowed(request: Request) -> bool:
    """Whether ``request`` may read the numbers: a client on this machine, or one with the operator's token."""
    token = os.environ.get(ENV_TOKEN, "")
    if token and hmac.compare_digest(_token(request).encode(), token.encode()):
        return True
    host = request.client.host if request.client else ""
    relayed = "x-forwarded-for" in request.headers or "forwarded" in request.headers
    return (host in _LOOPBACK or host.startswith("127.")) and not relayed


async def endpoint(request: Request) -> Response:
    """``/_camdash/stats``: :func:`snapshot` as JSON for the operator (:func:`allowed`), 404 for anyone else."""
    if not allowed(request):
        return PlainTextResponse("Not Found", status_code=404)
    return JSONResponse(snapshot())


def rss_bytes() -> int:
    """The process's resident set size now (Linux /proc), else its peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _hooks() -> int:
    total = 0
    for bundle in model.cached_bundles():
        for m in bundle.model.module.modules():
            total += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
    return total


def _disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0


def _folders(folder: Path) -> int:
    return sum(1 for f in folder.iterdir() if f.is_dir()) if folder.is_dir() else 0


def snapshot() -> dict[str, int]:
    """The server's numbers (see the module docstring)."""
    runtime = Runtime.instance() if Runtime.exists() else None
    sessions = len(runtime._session_mgr.list_active_sessions()) if runtime is not None else 0
    maps = map_cache()
    return {
        "rss_bytes": rss_bytes(),
        "cpu_ms": round(time.process_time() * 1000),
        "models": len(model.cached_bundles()),
        "model_bytes": model.model_cache_bytes(),
        "map_bytes": maps.nbytes,
        "figures": len(figure_cache()),
        "image_bytes": model.image_cache_bytes(),
        "video_run_bytes": video_compute.run_cache_bytes(),
        "film_bytes": video_compute.film_cache_bytes(),
        "upload_folders": _folders(uploads.server_folder()),  # this server's sessions with uploads
        "upload_bytes": _disk(uploads.server_folder()),
        "sessions": sessions,
        "hooks_on_models": _hooks(),
        "warm": int(warmup.status().done),
    }

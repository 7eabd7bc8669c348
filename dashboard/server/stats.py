"""What the server holds right now, as plain numbers: for its operator (``/_camdash/stats``) and the load tests.

Memory (resident set size), the CPU time used so far (all threads), the caches' sizes, the upload
folders on disk, the browser sessions, and the forward hooks left on the cached models (always 0
between calls: hooks live inside one engine call). Nothing here names a file, a model's path or a visitor.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from streamlit.runtime import Runtime

from dashboard import model, uploads, warmup
from dashboard.caches import figure_cache
from dashboard.views.image.compute import map_cache
from dashboard.views.video import compute as video_compute

__all__ = ["rss_bytes", "snapshot"]


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
        "upload_folders": sum(1 for f in uploads.UPLOAD_ROOT.iterdir()) if uploads.UPLOAD_ROOT.is_dir() else 0,
        "upload_bytes": _disk(uploads.UPLOAD_ROOT),
        "sessions": sessions,
        "hooks_on_models": _hooks(),
        "warm": int(warmup.status().done),
    }

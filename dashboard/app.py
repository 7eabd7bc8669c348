"""The CAM dashboard: ``streamlit run dashboard/app.py`` (or ``camdash``).

Navigation over the pages in :mod:`dashboard.views` (each a short ``main()``), after the part
every page shares: the model in the sidebar (:mod:`dashboard.shell`). The image page is ``/``, the video
page ``/video``, the dataset page ``/dataset``. (The folder is ``views``, not ``pages``: Streamlit runs the
files of a ``pages/`` folder beside the entry script as pages of its own, older multipage mode, and a fresh
server's first visit to ``/video`` ran ``pages/video.py`` alone, without the app around it.)

Started by ``streamlit run``, this file is also an ASGI app (``app = st.App(...)``, found by
Streamlit's launcher): importing it starts the warm start (:mod:`dashboard.warmup`) as the server
starts, before any visitor. Each session then runs it as a script, which draws the pages.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware
from starlette.routing import Route
from streamlit.runtime.scriptrunner import get_script_run_ctx

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard import shell, uploads, warmup
from dashboard.access import is_loopback
from dashboard.feedback import boundary
from dashboard.server import stats
from dashboard.server.page_head import PageHead
from dashboard.server.static_cache import StaticCache
from dashboard.views.dataset import page as dataset
from dashboard.views.image import page as image
from dashboard.views.video import page as video


def main() -> None:
    """Draw the shared sidebar, then the page the URL names."""
    st.set_page_config(page_title="CAM dashboard", page_icon="🔥", layout="wide")
    pages = {"image": image.page(), "video": video.page(), "dataset": dataset.page()}
    shell.register_pages(pages)
    nav = st.navigation(list(pages.values()))
    drawn = []
    with_fit = nav is not pages["video"]  # the video page scales its frames with its own control
    charts_first = nav is not pages["dataset"]  # its gallery and matrix are HTML: no Plotly to warm up
    boundary(lambda: drawn.append(shell.shared_sidebar(with_fit, charts_first)), "drawing the sidebar")()
    if drawn:  # else the sidebar said what failed (one line); the page needs its model
        nav.run()


@asynccontextmanager
async def _lifespan(_app: object) -> AsyncIterator[None]:
    uploads.sweep(everything=True)  # the leftovers of servers that no longer run (never a running one's)
    sweeper = asyncio.create_task(uploads.sweep_forever())  # ended sessions' uploads, even with no visitor
    try:
        yield
    finally:
        sweeper.cancel()
        uploads.release()


if get_script_run_ctx() is None:  # imported by the server at start-up (not a session's run)
    if not is_loopback(str(st.get_option("server.address") or "")):
        st.set_option("client.showErrorDetails", "none")  # visitors never see a traceback; the log keeps it
    warmup.start()  # now rather than in the lifespan: it overlaps the server's own start (0.3 s)
    app = st.App(__file__, lifespan=_lifespan, routes=[Route("/_camdash/stats", stats.endpoint)],
                 middleware=[Middleware(StaticCache), Middleware(PageHead)])
else:
    main()

"""Errors as messages: a failing engine call never takes the page down with a traceback.

``CamError`` (a user mistake: unknown layer, unreadable image, bad checkpoint)
becomes ``st.error`` with its one-line message (shown as text, never Markdown).
Anything else is a bug: one line with a short error id; the traceback goes to the
server's log under that id, and is shown in the page only to the machine's own
user (a server on loopback that trusts its visitors): it holds server and
virtualenv paths. Each page's ``main`` runs inside :func:`boundary`, so nothing
unexpected reaches Streamlit's own traceback box. Upload paths never reach a message (the
file's name stands for them), nor, for visitors, any other server path.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import streamlit as st

from cam_core.errors import CamError
from dashboard import access
from dashboard.text import plain
from dashboard.uploads import redact

__all__ = ["boundary", "bounded", "error_id", "guarded", "message", "show_error"]

_LOG = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


_PATH = re.compile(r"(?<![\w.])/(?:[^/\s'\"():,;]+/)+([^/\s'\"():,;]+)")


def message(text: str, *, trusted: bool) -> str:
    """``text`` fit for the page: upload paths become file names; for visitors, every path does."""
    text = redact(text)
    return text if trusted else _PATH.sub(lambda m: m.group(1), text)


def error_id() -> str:
    """A short id for one unexpected error: the page shows it, the server's log has it with the traceback."""
    return secrets.token_hex(4)


def show_error(exc: Exception, what: str) -> None:
    """Show ``exc`` as the page's answer to a failed ``what`` (e.g. "loading the model")."""
    rights = access.current()
    trusted = rights.trust_visitors
    if isinstance(exc, CamError):
        st.error(plain(message(str(exc), trusted=trusted)), icon=":material/error:")
        return
    eid = error_id()
    _LOG.error("error %s while %s", eid, what, exc_info=exc)
    if not (trusted and rights.loopback):  # a visitor: the id only (the exception's text may name server paths)
        st.error(
            f"Something went wrong while {plain(what)} (error {eid}; its operator finds the details in the "
            "server's log under that id). The rest of the page still works.",
            icon=":material/bug_report:",
        )
        return
    first = str(exc).splitlines()[0] if str(exc) else ""
    st.error(
        f"Something went wrong while {plain(what)} ({type(exc).__name__}: {plain(message(first, trusted=trusted))}; "
        f"error {eid}). The rest of the page still works.",
        icon=":material/bug_report:",
    )
    with st.expander("Details for a bug report"):  # the machine's own user, on loopback
        st.code("".join(traceback.format_exception(exc)), language="text")


def boundary(fn: Callable[P, None], what: str) -> Callable[P, None]:
    """``fn`` (a page's ``main``, a fragment) behind an error boundary: anything unexpected becomes one line with
    an error id.

    Streamlit's own flow (``st.rerun``, ``st.stop``, ``st.switch_page``) raises ``BaseException``s and passes.
    The traceback goes to the server's log under the id; the page never shows it to a visitor. A fragment
    reruns without its page's ``main``, so each fragment has a boundary of its own (:func:`bounded`).
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            show_error(exc, what)

    return run


def bounded(what: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """:func:`boundary` as a decorator, under ``@st.fragment``: ``@st.fragment`` then ``@bounded("drawing …")``."""
    return lambda fn: boundary(fn, what)


def guarded(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Call ``fn``; on failure show the error (see :func:`show_error`) and return ``None``."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the page must survive anything; BaseException (st.rerun/stop) passes
        show_error(exc, what)
        return None

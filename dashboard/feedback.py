"""Errors as messages: a failing engine call never takes the page down with a traceback.

``CamError`` (a user mistake: unknown layer, unreadable image, bad checkpoint)
becomes ``st.error`` with its one-line message. Anything else is a bug: a short
message; the traceback goes to the server's log, and is shown in the page only
to the machine's own user (a server that trusts its visitors, i.e. on loopback):
it holds server and virtualenv paths. Upload paths never reach a message (the
file's name stands for them), nor, for visitors, any other server path.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import streamlit as st

from cam_core.errors import CamError
from dashboard import access
from dashboard.uploads import redact

__all__ = ["guarded", "message", "show_error"]

_LOG = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


_PATH = re.compile(r"(?<![\w.])/(?:[^/\s'\"():,;]+/)+([^/\s'\"():,;]+)")


def message(text: str, *, trusted: bool) -> str:
    """``text`` fit for the page: upload paths become file names; for visitors, every path does."""
    text = redact(text)
    return text if trusted else _PATH.sub(lambda m: m.group(1), text)


def show_error(exc: Exception, what: str) -> None:
    """Show ``exc`` as the page's answer to a failed ``what`` (e.g. "loading the model")."""
    trusted = access.current().trust_visitors
    if isinstance(exc, CamError):
        st.error(message(str(exc), trusted=trusted), icon=":material/error:")
        return
    _LOG.error("error while %s", what, exc_info=exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    st.error(
        f"Something went wrong while {what} ({type(exc).__name__}: {message(first, trusted=trusted)}). "
        "The rest of the page still works.",
        icon=":material/bug_report:",
    )
    if trusted:
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(exc)), language="text")
    else:
        st.caption("The details are in the server's log, for its operator.")


def guarded(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Call ``fn``; on failure show the error (see :func:`show_error`) and return ``None``."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the page must survive anything; BaseException (st.rerun/stop) passes
        show_error(exc, what)
        return None

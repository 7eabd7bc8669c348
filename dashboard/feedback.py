"""Errors as messages: a failing engine call never takes the page down with a traceback.

``CamError`` (a user mistake: unknown layer, unreadable image, bad checkpoint)
becomes ``st.error`` with its one-line message. Anything else is a bug: a short
message, with the details folded into an expander for a bug report.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import streamlit as st

from cam_core.errors import CamError

__all__ = ["guarded", "show_error"]

P = ParamSpec("P")
T = TypeVar("T")


def show_error(exc: Exception, what: str) -> None:
    """Show ``exc`` as the page's answer to a failed ``what`` (e.g. "loading the model")."""
    if isinstance(exc, CamError):
        st.error(str(exc), icon=":material/error:")
        return
    st.error(
        f"Something went wrong while {what} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        "The rest of the page still works.",
        icon=":material/bug_report:",
    )
    with st.expander("Details for a bug report"):
        st.code("".join(traceback.format_exception(exc)), language="text")


def guarded(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Call ``fn``; on failure show the error (see :func:`show_error`) and return ``None``."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the page must survive anything; BaseException (st.rerun/stop) passes
        show_error(exc, what)
        return None

"""Visitor-controlled text shown as text: never as Markdown or HTML.

File, folder, model and class names, and the values of a link's query (``?layer=``), come from
whoever made them. Streamlit renders the body of ``st.markdown``, ``st.caption``, ``st.warning``,
``st.error``, ``st.info``, ``st.success`` and the ``help=`` of widgets as Markdown, so a name like
``[Your session expired](https://evil.example/login)`` would become a link in the app's own message box.
:func:`plain` escapes every Markdown and HTML special, so the string shows as typed (and on one line).

Plotly draws a few HTML tags in titles, hover texts, legends and annotations (``<a href>`` among them):
:func:`plotly_text` escapes a name for those.
"""

from __future__ import annotations

import html
import re

__all__ = ["plain", "plotly_text"]

# CommonMark lets any ASCII punctuation be backslash-escaped. Escaped: what makes links, images and HTML
# ([ ] < >, and GFM's bare-URL and e-mail autolinks), code, emphasis and strikethrough (` * ~, and _ except
# inside a word), maths ($), entities (&), Streamlit's directives (:red[...]: their bracket), the backslash, and
# a heading, quote or list marker at the start. Other punctuation (. , - ' ( )) means nothing inside one line of
# text and stays as it is, so messages keep reading (and matching) as written.
_SPECIAL = re.compile(r"([\\`*\[\]<>~$&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")  # a_b is no emphasis
_AUTOLINK = re.compile(r"(?i)(://|\bwww\.|@)")
_LEADING = re.compile(r"^(\d*)([#>+\-=|.)])")  # a heading, quote, list or table at the start of the body
_SPACE = re.compile(r"\s+")


def plain(value: object, limit: int = 300) -> str:
    """``value`` as text for a Markdown body: specials escaped, whitespace folded, at most ``limit`` characters.

    Args:
        value: Any value; ``str()`` of it is shown.
        limit: Longer strings are cut (with "…"), so a crafted name cannot fill the page.

    Returns:
        The escaped text, safe inside Markdown (not inside a code span: use it instead of one).
    """
    text = _SPACE.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(_unlink, text)
    return _LEADING.sub(r"\1\\\2", text)


_JOINER = "\u2060"  # a word joiner: invisible, and no autolink runs across it


def _unlink(match: re.Match[str]) -> str:
    """Break a bare URL or e-mail address so GFM does not turn it into a link (a backslash does not stop it)."""
    found = match.group(1)
    return found[:3] + _JOINER + found[3:] if found.lower() == "www." else found[0] + _JOINER + found[1:]


def plotly_text(value: object) -> str:
    """``value`` for a Plotly title, hover text, legend or annotation: its tags (``<a href=...>``) as text."""
    return html.escape(str(value), quote=False)

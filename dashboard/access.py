"""Who may do what on this dashboard: the operator's choices at start-up, the same for every visitor.

``camdash`` on 127.0.0.1 is a person's own tool: every model source is theirs to use. A dashboard
served to others must not let a visitor run code or read the server's files, so the *code-bearing*
sources (Python factories, import paths, full pickles, TorchScript archives) are the operator's
choice, never a visitor's checkbox:

- ``CAMDASH_TRUST_VISITORS=yes|no`` (``camdash --trust-visitors``): default ``yes`` when the server
  listens on loopback only, ``no`` otherwise. With ``no``, visitors may still upload images and
  weights-only files for architectures the server knows.
- ``CAMDASH_MODELS=FILE`` (``camdash --models``): a TOML file pinning the models visitors may
  choose (the usual way to run a demo); the operator's entries may be any source, code included.

The settings are read from the environment (``camdash`` sets it from its options), so a test can
force them on a loopback server.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import streamlit as st

from cam_core.errors import CamError
from dashboard.model import ModelSpec

__all__ = ["ENV_MODELS", "ENV_TRUST", "Access", "PinnedModel", "current", "is_loopback", "read_pinned"]

ENV_TRUST = "CAMDASH_TRUST_VISITORS"
ENV_MODELS = "CAMDASH_MODELS"
_YES, _NO = {"yes", "true", "1", "on"}, {"no", "false", "0", "off"}


@dataclass(frozen=True)
class PinnedModel:
    """One model of the operator's list: what visitors see (``title``) and how it loads (``spec``)."""

    title: str
    spec: ModelSpec


@dataclass(frozen=True)
class Access:
    """The operator's settings for this server.

    Attributes:
        address: The address the server listens on (``""``: every interface).
        loopback: Whether that is loopback only (127.0.0.1, ::1, localhost).
        trust_visitors: Whether visitors may use code-bearing model sources.
        pinned: The operator's models, when visitors may choose only among them.
    """

    address: str
    loopback: bool
    trust_visitors: bool
    pinned: tuple[PinnedModel, ...] = ()

    @property
    def shared_with_code(self) -> bool:
        """Served beyond this machine with code allowed: every visitor is told."""
        return self.trust_visitors and not self.loopback


def is_loopback(address: str) -> bool:
    """Whether ``address`` reaches this machine only ("" and 0.0.0.0 mean every interface)."""
    host = (address or "").strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise CamError(f"{ENV_TRUST}={value!r}: use yes or no")


@cache
def _pinned_file(path: str, mtime: float) -> tuple[PinnedModel, ...]:
    return read_pinned(Path(path))


def read_pinned(path: Path) -> tuple[PinnedModel, ...]:
    """The operator's model list, a TOML file of ``[[model]]`` tables.

    Each table has a ``title`` and the ``model`` spec (as on the command line: a torchvision name,
    ``efficientnet_lite0``, a checkpoint file, ``package.module:function``), and optionally ``weights``,
    ``arch``, ``checkpoint``, ``labels``, ``import_path``, ``trust_checkpoint``. Paths are the
    operator's and are never shown to visitors.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CamError(f"{ENV_MODELS}: cannot read the model list {path}: {exc}") from exc
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise CamError(f"{ENV_MODELS}: {path} has no [[model]] tables")
    out = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("model") or not entry.get("title"):
            raise CamError(f"{ENV_MODELS}: model {i} of {path} needs a title and a model")

        def near(key: str, entry: dict = entry) -> str | None:
            """A path of the entry, relative to the list's folder."""
            return str((path.parent / str(entry[key])).resolve()) if entry.get(key) else None

        spec = str(entry["model"])
        is_file = spec.lower().endswith((".pt", ".pth", ".ckpt", ".safetensors", ".pt2"))
        out.append(
            PinnedModel(
                title=str(entry["title"]),
                spec=ModelSpec(
                    source="pinned",
                    name=near("model") if is_file else spec,
                    weights=entry.get("weights", "DEFAULT"),
                    arch=entry.get("arch"),
                    checkpoint=near("checkpoint"),
                    labels=near("labels"),
                    trust=bool(entry.get("trust_checkpoint", False)),
                    import_path=near("import_path"),
                    title=str(entry["title"]),
                ),
            )
        )
    return tuple(out)


def current() -> Access:
    """This server's settings (cheap: read on every run, so a test can change the environment)."""
    address = str(st.get_option("server.address") or "")
    loopback = is_loopback(address)
    trust = _flag(os.environ.get(ENV_TRUST), default=loopback)
    models = os.environ.get(ENV_MODELS)
    pinned: tuple[PinnedModel, ...] = ()
    if models:
        path = Path(models).expanduser().resolve()
        mtime = path.stat().st_mtime if path.is_file() else -1.0
        pinned = _pinned_file(str(path), mtime)
    return Access(address=address, loopback=loopback, trust_visitors=trust, pinned=pinned)

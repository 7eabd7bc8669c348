"""``package.module:function``: a Python factory returning an ``nn.Module``, with an optional state dict.

Importing the module and calling the function run the user's code, so this source is code-bearing;
``import_paths`` are added to ``sys.path`` while it runs (the factory may import its neighbours).
Whatever the user's code raises becomes one :class:`~cam_core.errors.CamError` line.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import nn

from ...errors import CamError
from ..built import Built, CheckpointError, UnknownModel, adopted, first_line
from ..checkpoints import load_state, read_checkpoint, unwrap
from ..registry import Ask, ModelRequest, ModelSource
from .asks import IMPORT_PATH, LABELS, OUTPUT, TRUST

__all__ = ["FACTORY", "SOURCE", "load"]

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@contextlib.contextmanager
def _on_sys_path(folders: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
    added = [os.fspath(Path(f).resolve()) for f in folders]
    for folder in reversed(added):
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


@contextlib.contextmanager
def _users_code(spec: str, doing: str) -> Iterator[None]:
    """Whatever the user's module does while ``doing`` (importing, building) becomes one CamError.

    ``SystemExit`` and ``KeyboardInterrupt`` included: raised by the user's code in a server thread
    they would end the page's run without a word. A real Ctrl-C reaches only the main thread (the CLI),
    where it keeps its meaning.
    """
    try:
        yield
    except CamError:
        raise
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            raise
        raise CamError(f"factory {spec!r} raised KeyboardInterrupt while {doing}") from None
    except (Exception, SystemExit) as exc:
        raise CamError(f"factory {spec!r} raised {type(exc).__name__} while {doing}: {first_line(exc)}") from exc


def _call_factory(spec: str, import_paths: Sequence[str | os.PathLike[str]]) -> object:
    """Import the factory's module and call the function (the user's code: errors become one line)."""
    module_name, _, attr = spec.partition(":")
    with _users_code(spec, "being imported"):
        try:
            target: object = importlib.import_module(module_name)
        except ImportError as exc:
            where = f" (also searched {', '.join(map(os.fspath, import_paths))})" if import_paths else ""
            raise UnknownModel(
                f"cannot import {module_name!r} for factory {spec!r}: {first_line(exc)}{where}; "
                "add the folder that contains it with --import-path"
            ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UnknownModel(f"{module_name!r} has no attribute {attr!r} (factory {spec!r})")
        target = getattr(target, part)
    if not callable(target):
        raise UnknownModel(f"{spec!r} is not callable; a factory is a function that returns an nn.Module")
    with _users_code(spec, "building the model"):
        return target()


def load(request: ModelRequest) -> Built:
    """The factory's module, with ``checkpoint``'s state dict loaded into it when one is given."""
    spec, checkpoint, import_paths, trust = request.spec, request.checkpoint, request.import_paths, request.trust
    with _on_sys_path(import_paths):  # also while the factory runs: it may import its neighbours
        module = _call_factory(spec, import_paths)
    if not isinstance(module, nn.Module):
        raise CamError(f"factory {spec!r} returned a value of type {type(module).__name__}, not an nn.Module")
    built = adopted(module, spec)
    if checkpoint is None:
        built.notes.append(f"no checkpoint given: the weights are whatever {spec} returns")
        return built
    found = unwrap(read_checkpoint(checkpoint, trust), checkpoint)
    if isinstance(found, nn.Module):
        raise CheckpointError(f"{checkpoint} holds a whole model, not a state dict for {spec}; load it directly")
    load_state(built.module, found, checkpoint, spec)
    built.name = f"{spec} + {checkpoint.name}"
    return built


SOURCE = ModelSource(
    key="factory",
    label="Python factory",
    form="a factory 'package.module:function'",
    code_bearing=True,
    load=load,
    asks=(
        Ask("spec", "text", "Factory", required=True, help="package.module:function returning an nn.Module"),
        IMPORT_PATH,
        Ask("checkpoint", "file", "State dict (optional)", suffixes=("safetensors", "pt", "pth", "ckpt")),
        TRUST,
        LABELS,
        OUTPUT,
    ),
    recognise=lambda spec: FACTORY.match(spec) is not None,
)

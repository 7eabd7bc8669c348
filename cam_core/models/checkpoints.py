"""Reading checkpoint files and loading state dicts: what every file-taking source shares.

Files are read with ``torch.load(weights_only=True)``: unpickling anything else can run arbitrary
code, so full modules need ``trust`` (and ``allow_code``). safetensors files are weights by format.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..budget import ModelTooLarge, check_safetensors, check_state_dict
from ..errors import CamError
from .built import CheckpointError, CodeNotAllowed, UntrustedCheckpoint, first_line
from .registry import ModelRequest
from .safetensors_file import is_safetensors, read_safetensors

__all__ = ["file_alone", "fit_prefix", "is_torchscript", "load_state", "read_checkpoint", "unwrap"]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def _looks_like_checkpoint(path: Path) -> bool:
    """torch.save writes a zip archive (since 1.6) or, in the legacy format, a pickle (first byte 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as f:
        return f.read(1) == b"\x80"


def read_checkpoint(path: Path, trust: bool, allow_code: bool = True) -> object:
    """The object stored in ``path``: a ScriptModule, a dict, or (trusted only) anything pickled."""
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    if is_safetensors(path):  # before the checks below: safetensors is neither a zip nor a pickle
        try:
            check_safetensors(path, name=path.name)  # shapes from the header, before any tensor is made
            return read_safetensors(path)
        except ModelTooLarge:
            raise
        except CamError as exc:
            raise CheckpointError(str(exc)) from exc
    if not _looks_like_checkpoint(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive (or a legacy pickle), and this "
            "file is neither"
        )
    if is_torchscript(path):
        if not allow_code:
            raise CodeNotAllowed(
                f"{path} is a TorchScript archive: its graph is code that can read and write files on this "
                "machine, so it is not loaded here; upload the model's state dict (model.state_dict()) with its "
                "architecture instead"
            )
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise CheckpointError(f"{path} looks like TorchScript but could not be loaded: {first_line(exc)}") from exc
    unreadable = f"{path} is not a PyTorch checkpoint that can be read"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"{unreadable}: {first_line(exc)}") from exc
        if not allow_code:
            raise CodeNotAllowed(
                f"{path} holds pickled Python objects (e.g. a whole nn.Module), not just weights; unpickling runs "
                "code from the file, which is not allowed here; upload model.state_dict() with its architecture"
            ) from exc
        if not trust:
            raise UntrustedCheckpoint(
                f"{path} holds pickled Python objects (e.g. a whole nn.Module), not just weights; unpickling "
                "runs code from the file, so it is refused by default. If you trust its source, allow it with "
                "--trust-checkpoint (dashboard: 'Trust this checkpoint'), or save model.state_dict() instead"
            ) from exc
    except Exception as exc:  # the restricted unpickler fails on garbage in many ways (IndexError, KeyError, …)
        raise CheckpointError(f"{unreadable}: {first_line(exc)}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # user code ran inside unpickling: anything can fail there
        raise CheckpointError(f"{path} could not be unpickled: {first_line(exc)}") from exc


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _within_budget(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``state`` if the model its shapes declare fits the budget: stride-0 views cost nothing on disk but their
    full size once copied into a model."""
    check_state_dict(state, what=path.name)
    return state


def unwrap(obj: object, path: Path) -> nn.Module | dict[str, torch.Tensor]:
    """A module, or a state dict found at the top level or under a usual wrapper key."""
    if isinstance(obj, nn.Module):
        return obj
    if _is_state_dict(obj):
        return _within_budget(dict(obj), path)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module) or _is_state_dict(inner):
                return inner if isinstance(inner, nn.Module) else _within_budget(dict(inner), path)
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(
            f"{path} holds a dict with keys ({keys}) but no state dict of tensors at the top level or "
            f"under {', '.join(_WRAPPER_KEYS)}"
        )
    raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a model")


def fit_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Strip prefixes every key shares (``module.`` from DataParallel, ``_orig_mod.``, ``model.``) while it helps."""
    while set(state) != model_keys and all("." in k for k in state):
        if len({k.split(".", 1)[0] for k in state}) != 1:
            break
        stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
        if len(stripped.keys() & model_keys) <= len(state.keys() & model_keys):
            break
        state = stripped
    return state


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    state = fit_prefix(state, set(module.state_dict()))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        result = set(module.state_dict())
        missing = sorted(result - set(state))
        unexpected = sorted(set(state) - result)
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} keys, e.g. {', '.join(missing[:3])}")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} keys, e.g. {', '.join(unexpected[:3])}")
        if not detail:  # same keys, different shapes
            lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
            detail.append(lines[0] if lines else first_line(exc))
        raise CheckpointError(f"{path} does not fit {what}: {'; '.join(detail)}") from exc


def file_alone(request: ModelRequest, holds: str | None = None) -> Path:
    """The spec's file, refusing a ``checkpoint`` beside it (and ``arch``, when the file ``holds`` a whole model)."""
    path = Path(request.spec)
    if request.checkpoint is not None:
        raise CamError(f"a checkpoint goes with a factory or an architecture name, not with the file {request.spec}")
    if holds is not None and request.arch is not None:
        raise CheckpointError(f"{path} holds {holds}, not a state dict; load it without --arch")
    return path

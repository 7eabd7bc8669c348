"""Where a computation runs: the device ``auto`` picks, moving a model there, and running out of its memory
turned into a message that says what to reduce."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import torch
from torch import nn

from .errors import CamError

__all__ = ["OutOfMemory", "memory_errors", "one_intraop_thread", "place_model", "resolve_device"]


@contextmanager
def one_intraop_thread() -> Iterator[int]:
    """Torch's intra-op thread count set to 1 for the block (and put back); yields the count it had.

    Why: many small operators spread over OpenMP threads run in lock-step, each waiting for the slowest core (on a
    busy machine a 224² resampling took 150 ms instead of 1); threads of one's own, each running one stream of work
    on one intra-op thread, do not wait for each other. The count is process-wide: a shared server leaves it alone.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise CamError(f"unknown device {device!r}; choose from: auto, cpu, cuda, mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CamError("device 'cuda' asked for but no CUDA GPU is available; use --device auto or cpu")
    return dev



_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")



class OutOfMemory(CamError):
    """The device ran out of memory: a passing condition (fewer classes, another time), not a property of the input."""



@contextmanager
def memory_errors(dev: torch.device, what: str = "computing the maps") -> Iterator[None]:
    """Turn running out of (GPU or CPU) memory into a CamError that says what to reduce."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError | MemoryError) and not any(
            m in str(exc).lower() for m in _OOM_MARKERS
        ):
            raise
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemory(
            f"out of memory on {dev.type} while {what}: explain fewer classes or images, lower the batch size of "
            "Score-/Ablation-CAM, pick a deeper (smaller) layer, or use another device"
        ) from exc



def place_model(module: nn.Module, device: str | torch.device) -> torch.device:
    """Resolve ``device`` and move the model there if it is elsewhere; call under the model's lock."""
    dev = resolve_device(device)
    current = next((t.device for t in chain(module.parameters(), module.buffers())), None)
    if current not in (None, dev):
        module.to(dev)
    return dev


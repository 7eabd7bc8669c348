"""Compute streams for a folder on a CPU: one thread per core, each with its own copy of the model.

Why: one forward on 2 cores with 2 OpenMP threads runs its many small operators in lock-step (each
waits for the slower core), and the files are decoded while no core computes. Two threads, each
with one intra-op thread and its own copy of the model, decode and compute side by side (torch
and Pillow release the GIL), which ``benchmarks/bench_batch.py`` measures against one stream.

Each stream needs its own model because ``explain()`` hooks the model it is given (hooks are per
module, and calls on one module are serialised). The copies are kept per model (and rebuilt when
its weights change), so their layer analysis and fast copy are made once. The process's intra-op
thread count is set to 1 for the run and put back after it: a shared server (the dashboard) runs
one stream instead, leaving the count alone.
"""

from __future__ import annotations

import copy
import queue
import threading
import weakref
from collections.abc import Iterator, Sequence

import torch

from ..devices import one_intraop_thread, resolve_device
from ..engine.fused import signature
from ..models.load import LoadedModel
from ..models.preprocess import Fit
from .files import ImageFile
from .job import BatchJob, Row, decode, explain_items

__all__ = ["default_streams", "stream_rows"]

_copies: weakref.WeakKeyDictionary[LoadedModel, tuple[tuple, list[LoadedModel]]] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def default_streams(device: str) -> int:
    """Streams for ``device``: one per intra-op thread on a CPU, one beside a GPU (which batches already)."""
    return max(1, torch.get_num_threads()) if resolve_device(device).type == "cpu" else 1


def _models(model: LoadedModel, n: int) -> list[LoadedModel]:
    """``model`` and ``n - 1`` kept copies of it (made again when its weights changed)."""
    key = signature(model.module)
    with _guard:
        kept = _copies.get(model)
        if kept is None or kept[0] != key or len(kept[1]) < n - 1:
            kept = (key, [copy.deepcopy(model) for _ in range(n - 1)])
            _copies[model] = kept
    return [model, *kept[1][: n - 1]]


def stream_rows(
    model: LoadedModel,
    files: Sequence[ImageFile],
    batches: Sequence[Sequence[int]],
    job: BatchJob,
    layer: str,
    fit: Fit,
    streams: int,
) -> Iterator[tuple[int, list[Row]]]:
    """(files done, their rows) per batch of ``files`` (indices in ``batches``), from ``streams`` threads.

    Leaving the loop early (an error, Ctrl-C) stops the threads after their current batch.
    """
    todo = iter(batches)
    taking = threading.Lock()
    stop = threading.Event()
    results: queue.Queue[tuple[str, object]] = queue.Queue()

    def work(stream_model: LoadedModel) -> None:
        try:
            while not stop.is_set():
                with taking:
                    idx = next(todo, None)
                if idx is None:
                    break
                items = [decode(files[i], model.preprocess, fit) for i in idx]
                results.put(("rows", (len(items), explain_items(stream_model, items, job, layer))))
        except BaseException as exc:  # handed to the caller, raised in its thread
            results.put(("error", exc))
        finally:
            results.put(("done", None))

    threads = [threading.Thread(target=work, args=(m,), name=f"cam-batch-{k}", daemon=True)
               for k, m in enumerate(_models(model, streams))]
    with one_intraop_thread():
        try:
            for t in threads:
                t.start()
            running = len(threads)
            while running:
                kind, value = results.get()
                if kind == "done":
                    running -= 1
                elif kind == "error":
                    raise value  # type: ignore[misc]
                else:
                    yield value  # type: ignore[misc]
        finally:
            stop.set()
            for t in threads:
                t.join()

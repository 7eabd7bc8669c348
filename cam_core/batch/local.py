"""The local engine: on a CPU, compute streams (:mod:`.streams`); else a torch ``DataLoader``'s workers decode.

Workers read and preprocess files (``load_image`` + ``Preprocess.prepare``: only the small,
picklable recipe travels to them, never the model); the main process runs one
:func:`~cam_core.explain` per batch of equal input size (see :func:`.job.plan_batches`) and writes
the rows every :data:`WRITE_EVERY_S` seconds and when the run stops for any reason (an error, Ctrl-C),
so an interrupted run loses at most the batch it was computing (a killed process: that second's work).
A Parquet part per batch cost 7% of a run on 2 CPU cores, in writing and in compacting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Sequence

from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..errors import CamError
from ..models.load import LoadedModel
from ..models.preprocess import Fit, Preprocess
from .files import ImageFile
from .job import BatchJob, Decoded, decode, explain_items, plan_batches
from .results import rows_table
from .run import Summary, open_run
from .streams import default_streams, stream_rows

__all__ = ["WRITE_EVERY_S", "FileDataset", "default_workers", "run_local"]

WRITE_EVERY_S = 1.0

Progress = Callable[[int, int], None]


class FileDataset(Dataset):
    """Files → :class:`~.job.Decoded` (a model input, or the reason there is none)."""

    def __init__(self, files: Sequence[ImageFile], preprocess: Preprocess, fit: Fit) -> None:
        self.files = list(files)
        self.preprocess = preprocess
        self.fit = fit

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Decoded:
        return decode(self.files[i], self.preprocess, self.fit)


def default_workers(device: str) -> int:
    """Decoding processes for ``device``: none on a CPU, whose cores the model's own threads already use (extra
    processes only compete with them: ``benchmarks/bench_batch.py``), 2 beside a GPU."""
    return 0 if resolve_device(device).type == "cpu" else 2


def run_local(
    job: BatchJob,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    model: LoadedModel | None = None,
    within: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    bar: bool = False,
    mp_context: str | None = None,
    streams: int | None = None,
    redo: Collection[str] = (),
) -> Summary:
    """Explain every image under ``images`` into ``out`` (resuming what a previous run there did).

    Args:
        job: What to compute (model, layer, methods, classes, batch size, device).
        images: A folder (walked recursively), an image file, or a glob.
        out: The output folder: ``results.parquet``, ``run.json``.
        workers: Decoding processes (0: decode in this process; default :func:`default_workers`).
        model: The model, if loaded already (it must be the one ``job.model`` describes).
        within: Leave out files that resolve outside this folder.
        progress: Called with (files done, files to do) after every batch.
        bar: Show a progress bar with rate and time left on stderr.
        mp_context: The workers' start method (``forkserver`` from a threaded server; default: torch's).
        streams: Threads that decode and compute side by side, each with its own copy of the model and one
            intra-op thread (see :mod:`.streams`; default: one per core on a CPU when there are no workers, else
            1). A shared server passes 1: the run changes the process's thread count.
        redo: Paths computed again even when done (see :func:`.run.open_run`).

    Returns:
        What was done, with the files that failed.

    Raises:
        CamError: A user mistake (see :func:`.run.open_run`), or one the engine reports (an unknown method
            at this layer, out of memory).
    """
    workers = default_workers(job.device) if workers is None else workers
    streams = (default_streams(job.device) if workers == 0 else 1) if streams is None else streams
    if streams > 1 and workers:
        raise CamError("decoding workers and compute streams do not mix: give one of them (streams decode too)")
    with open_run(
        job, images, out, engine="local", workers=workers, model=model, within=within, redo=redo
    ) as plan:
        if plan.todo:
            batches = plan_batches(plan.todo, plan.model.preprocess, plan.fit, plan.batch_size)
            if streams > 1:
                source = stream_rows(plan.model, plan.todo, batches, job, plan.layer, plan.fit, streams)
            else:
                loader = DataLoader(
                    FileDataset(plan.todo, plan.model.preprocess, plan.fit),
                    batch_sampler=batches,
                    num_workers=workers,
                    collate_fn=list,
                    multiprocessing_context=mp_context if workers else None,
                )
                source = ((len(items), explain_items(plan.model, items, job, plan.layer)) for items in loader)
            names = plan.model.class_names
            with tqdm(total=len(plan.todo), unit="img", desc="explaining", disable=not bar, smoothing=0.1) as pbar:
                done, rows, written = 0, [], time.monotonic()
                try:
                    for n, batch_rows in source:
                        rows += batch_rows
                        if time.monotonic() - written >= WRITE_EVERY_S:
                            plan.store.write_part(rows_table(rows, job.methods, names, job.boxes is not None))
                            rows, written = [], time.monotonic()
                        done += n
                        pbar.update(n)
                        if progress is not None:
                            progress(done, len(plan.todo))
                finally:  # what is done is kept, also when a batch fails or the run is interrupted (Ctrl-C)
                    if rows:
                        plan.store.write_part(rows_table(rows, job.methods, names, job.boxes is not None))
    return plan.summary

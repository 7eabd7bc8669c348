"""What both engines do around the computing: find the files, load the model, resume, describe the run.

:func:`open_run` yields a :class:`Plan` (the model, the resolved layer, the files still to do, the
store to write to) while holding the output folder; the engine computes ``plan.todo`` and writes
parts; on a normal exit the parts are compacted into ``results.parquet`` and ``run.json`` is
completed. An exception leaves the parts where they are: the next run into the folder picks them up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..devices import resolve_device
from ..io.folders import output_folder
from ..models.layers import recommended_layer
from ..models.load import DEFAULT_MODEL, LoadedModel, load_model
from ..modules import get_layer
from ..versions import versions
from .files import Found, ImageFile, discover, labels_from_folders
from .job import BatchJob
from .results import RESULTS, ResultStore
from .truth import load_truth

__all__ = ["Plan", "Summary", "model_identity", "open_run"]

_LOAD_DEFAULTS = {"spec": DEFAULT_MODEL, "weights": "DEFAULT", "trust_checkpoint": False}
_NOT_THE_MODEL = ("fit", "allow_code")  # the job's fit is its own field; allow_code is a permission


def model_identity(args: dict[str, Any]) -> dict[str, Any]:
    """``load_model`` arguments as a run records them: defaults filled in, then unset ones left out (and the
    fit, the job's own, and ``allow_code``, a permission), so one model given two ways compares equal."""
    merged = {**_LOAD_DEFAULTS, **{k: v for k, v in args.items() if k not in _NOT_THE_MODEL}}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items() if v not in (None, [], (), False)}


@dataclass
class Summary:
    """How a run went: ``files`` in the run, ``computed`` now, ``reused`` from before, and the files that failed."""

    out: Path
    files: int
    computed: int
    reused: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """One line for the command line."""
        rate = f", {self.computed / self.seconds:.1f} images/s" if self.computed and self.seconds > 0 else ""
        parts = [f"{self.files} files: {self.computed} explained now{rate}, {self.reused} already done"]
        if self.skipped:
            parts.append(f"{self.skipped} non-image files skipped")
        if self.failed:
            names = ", ".join(Path(p).name for p, _ in self.failed[:5]) + (" …" if len(self.failed) > 5 else "")
            parts.append(f"{len(self.failed)} failed ({names}; see the error column)")
        return "; ".join(parts) + f" → {self.out / RESULTS}"


@dataclass
class Plan:
    """A run ready to compute: ``todo`` are the files not done yet (new, or changed since)."""

    job: BatchJob
    model: LoadedModel
    layer: str
    fit: str
    found: Found
    files: list[ImageFile]
    todo: list[ImageFile]
    store: ResultStore
    info: dict[str, Any]
    summary: Summary | None = None  # set when the run is complete

    @property
    def batch_size(self) -> int:
        """Images per batch here (the local engine's device)."""
        return int(self.info["batch_size"])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _describe(
    job: BatchJob, model: LoadedModel, layer: str, fit: str, found: Found, engine: str, workers: int
) -> dict[str, Any]:
    pre = model.preprocess
    return {
        # What a rerun must match to resume (anything else may change between runs).
        "job": {
            "model": model_identity(job.model),
            "model_name": model.name,
            "layer": layer,
            "methods": list(job.methods),
            "classes": job.classes,
            "labels_from_folders": job.labels,
            "fit": fit,
        },
        "model": model.name,
        "pretrained": bool(model.pretrained),
        "layer": layer,
        "methods": list(job.methods),
        "classes": job.classes,
        "labels_from_folders": job.labels,
        "class_names": list(model.class_names),
        "preprocessing": {
            "fit": fit,
            "description": pre.describe(fit),  # type: ignore[arg-type]
            "crop_size": list(pre.crop_size),
            "resize_size": pre.resize_size,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "interpolation": pre.interpolation.value,
        },
        "images": found.source,
        "root": str(found.root),
        "engine": engine,
        "workers": workers,
        "batch_size": job.batch_for(on_gpu=resolve_device(job.device).type == "cuda") if engine == "local" else None,
        "device": str(resolve_device(job.device)) if engine == "local" else job.device,
        "versions": versions(("ray",) if engine == "ray" else ()),
        "started": _now(),
        "finished": None,
    }


@contextmanager
def open_run(
    job: BatchJob,
    images: str | os.PathLike[str] | Found,
    out: str | os.PathLike[str],
    *,
    engine: str,
    workers: int,
    model: LoadedModel | None = None,
    within: str | os.PathLike[str] | None = None,
    redo: Collection[str] = (),
) -> Iterator[Plan]:
    """Find the files, load the model, resume from ``out``; yield the plan; then compact and describe the run.

    Args:
        job: What to compute.
        images: A folder, a file or a glob (or what :func:`.files.discover` found there).
        out: The output folder (created).
        engine: ``local`` or ``ray`` (for ``run.json``).
        workers: Decoding workers or actors (for ``run.json``).
        model: The model, if loaded already (it must be the one ``job.model`` describes).
        within: Leave out files that resolve outside this folder (a server's data root).
        redo: Paths computed again even when done (a comparison adds the other model's classes to them).

    Raises:
        CamError: No images, an unknown layer or label folder, an output folder of another job, or one in use.
    """
    found = images if isinstance(images, Found) else discover(images, within=within)
    model = model or load_model(**job.model)
    layer = job.layer or recommended_layer(model)
    get_layer(model.module, layer)
    fit = model.check_fit(job.fit)
    files = labels_from_folders(found, model.class_names) if job.labels else found.files
    info = _describe(job, model, layer, fit, found, engine, workers)
    if job.boxes is not None:  # ground truth travels with each file; the run records its source
        truth = load_truth(job.boxes, found, model.class_names)
        files = truth.attach(files)
        info["job"]["boxes"] = truth.identity()
        info["boxes"] = truth.describe()
    out = output_folder(out)
    store = ResultStore(out, job.methods, job.boxes is not None)
    with store.locked():
        store.check_job(info["job"])
        store.compact()  # the parts an interrupted run left
        done = store.done()
        todo = [f for f in files if done.get(f.path) != (f.size, f.mtime_ns) or f.path in redo]
        store.write_run(info)
        start = time.perf_counter()
        plan = Plan(job, model, layer, fit, found, files, todo, store, info)
        yield plan
        store.compact()
        seconds = time.perf_counter() - start
        table = pq.read_table(out / RESULTS, columns=["path", "error"])
        ours = {f.path for f in files}
        failed = [(p, e) for p, e in zip(table.column("path").to_pylist(), table.column("error").to_pylist(),
                                         strict=True) if e is not None and p in ours]
        info.update(finished=_now(), seconds=round(seconds, 3), files=len(files), computed=len(todo),
                    failed=len(failed), skipped_non_images=found.skipped)
        store.write_run(info)
        store.finished = True
    plan.summary = Summary(out, len(files), len(todo), len(files) - len(todo), failed, found.skipped, seconds)

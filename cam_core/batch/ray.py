"""The Ray engine: the same job on ``ray.data`` actors, for a folder that outgrows one machine.

Pipeline: the files still to do (ordered by predicted input size, as the local engine orders
them) → ``ray.data.from_items`` → ``map_batches(CamWorker, compute=ActorPoolStrategy(size=N),
batch_size=B, num_gpus=G)`` (each actor loads the model once, decodes its batch with
``load_image`` + ``Preprocess.prepare`` and runs :func:`~.job.explain_items`, so rows are those of
the local engine) → ``write_parquet`` into the run's parts folder → the same compaction into
``results.parquet``. Ray writes one part per output block as it goes, so an interrupted run loses
the batches in flight (about one per actor) and a rerun resumes.

``ray.init()`` starts a local cluster unless one is running or ``address`` names one; the
package travels to the workers as a ``py_modules`` runtime environment (:func:`runtime_env`), so a
cluster needs only ``torch``, ``torchvision``, ``pyarrow`` and ``ray[data]`` installed. A caller
that starts Ray itself passes :func:`runtime_env` to ``ray.init``. Ray is imported only here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import CamError
from ..io.boxes import Truth
from ..models.load import LoadedModel, load_model
from .files import Found, ImageFile
from .job import BatchJob, decode, explain_items, plan_batches
from .results import rows_table
from .run import Summary, open_run

__all__ = ["CamWorker", "import_ray", "run_ray", "runtime_env"]


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`CamError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise CamError("--engine ray needs Ray Data: pip install 'ray[data]' (or pip install '.[ray]')") from exc
    return ray


def runtime_env() -> dict[str, Any]:
    """What ``ray.init(runtime_env=...)`` needs for the actors to import this very ``cam_core`` (shipped to them).

    Pass it when starting Ray yourself (a notebook, a test); :func:`run_ray` does when it starts Ray.
    """
    import cam_core

    return {"py_modules": [str(Path(cam_core.__file__).parent)]}


class CamWorker:
    """A Ray Data actor: loads the model once, then turns batches of file records into result rows."""

    def __init__(self, job: BatchJob, layer: str, fit: str) -> None:
        self.job, self.layer, self.fit = job, layer, fit
        self.model: LoadedModel = load_model(**job.model)

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols = batch.to_pydict()
        files = [
            ImageFile(p, s, m, None if lab < 0 else lab, truth=_truth_from(t), extra=tuple(extra))
            for p, s, m, lab, t, extra in zip(
                cols["path"], cols["size"], cols["mtime_ns"], cols["label"], cols["truth"], cols["extra"], strict=True
            )
        ]
        items = [decode(f, self.model.preprocess, self.fit) for f in files]
        rows = explain_items(self.model, items, self.job, self.layer)
        return rows_table(rows, self.job.methods, self.model.class_names, self.job.boxes is not None)


def _label(f: ImageFile) -> int:
    return -1 if f.label is None else f.label  # Arrow columns of records: one type, no None


def _truth_json(truth: Truth | None) -> str:
    """A file's ground truth as one string (a record's column: one type whatever the file holds)."""
    return "" if truth is None else json.dumps(dataclasses.asdict(truth))


def _truth_from(text: str) -> Truth | None:
    if not text:
        return None
    d = json.loads(text)
    return Truth(tuple(tuple(b) for b in d["boxes"]), tuple(d["labels"]), d["labelled"], d["mask"],
                 tuple(d["size"]) if d["size"] else None)


def _gpus(ray: Any, device: str) -> int:
    """GPUs per actor: one where the cluster has GPUs (unless the job asks for the CPU)."""
    have = ray.cluster_resources().get("GPU", 0)
    if device.startswith("cuda") and not have:
        raise CamError("--device cuda asked for, but the Ray cluster has no GPUs; use --device auto or cpu")
    wants = device.startswith("cuda") or device == "auto"
    return 1 if have and wants else 0


def run_ray(
    job: BatchJob,
    images: str | os.PathLike[str] | Found,
    out: str | os.PathLike[str],
    *,
    workers: int = 2,
    address: str | None = None,
    model: LoadedModel | None = None,
    redo: Collection[str] = (),
) -> Summary:
    """Explain every image under ``images`` into ``out`` with ``workers`` Ray actors (resuming, like the local engine).

    Args:
        job: What to compute.
        images: A folder, an image file, a glob, or what :func:`.files.discover` found.
        out: The output folder (must be reachable from every node: a shared filesystem, for a real cluster).
        workers: Actors in the pool (each with one GPU where the cluster has GPUs).
        address: An existing cluster (``ray://host:10001`` or ``host:6379``); default: the running one, or a
            new local cluster.
        model: The model, if loaded already (used for planning; the actors load their own).
        redo: Paths computed again even when done (see :func:`.run.open_run`).

    Raises:
        CamError: Ray is not installed, a user mistake (see :func:`.run.open_run`), or ``workers`` < 1.
    """
    ray = import_ray()
    if workers < 1:
        raise CamError(f"--workers must be at least 1 with --engine ray (actors), got {workers}")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, configure_logging=False, runtime_env=runtime_env())

    try:
        with open_run(job, images, out, engine="ray", workers=workers, model=model, redo=redo) as plan:
            if plan.todo:
                gpus = _gpus(ray, job.device)
                size = job.batch_for(on_gpu=gpus > 0)
                plan.info["batch_size"] = size
                order = [i for batch in plan_batches(plan.todo, plan.model.preprocess, plan.fit, size) for i in batch]
                records = [
                    {"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "label": _label(f),
                     "truth": _truth_json(f.truth), "extra": list(f.extra)}
                    for f in (plan.todo[i] for i in order)
                ]
                ds = ray.data.from_items(records).map_batches(
                    CamWorker,
                    fn_constructor_kwargs={"job": job, "layer": plan.layer, "fit": plan.fit},
                    compute=ray.data.ActorPoolStrategy(size=workers),
                    batch_size=size,
                    batch_format="pyarrow",
                    num_gpus=gpus,
                )
                ds.write_parquet(str(plan.store.parts / f"ray-{time.time_ns()}"))
    finally:
        if started:
            ray.shutdown()
    return plan.summary

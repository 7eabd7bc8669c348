"""Two models over one folder: each model's ordinary batch run, the same classes explained by name, then a join.

Which classes to explain depends on both models' predictions, and each model's prediction costs its own forward.
So the runs go A → B → A again: A explains its own classes (``--classes``); B explains its own plus A's (matched
by name: :func:`cam_core.analysis.compare.match_classes`); then A is run again only on the images where B
explained a class A has and has not explained yet (mostly the flipped predictions), with B's classes added. Each
step is an ordinary batch run into ``OUT/a`` or ``OUT/b`` (resumable, local or Ray), and the third step finds its
images from the two results alone, so a rerun after an interruption resumes wherever it stopped. The join
(:mod:`.compare_table`) then writes ``OUT/compare.parquet`` and ``OUT/compare.json``; it is redone on every run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..analysis.compare import PHOTO_SIDE, match_classes
from ..errors import CamError
from ..io.folders import output_folder
from ..models.load import LoadedModel, load_model
from .compare_table import COMPARE, COMPARE_JSON, CompareCounts, join_runs
from .files import Found, ImageFile, discover, labels_from_folders
from .job import BatchJob
from .local import run_local
from .results import RESULTS, read_run
from .run import Summary, model_identity

__all__ = ["COMPARE", "COMPARE_JSON", "CompareSummary", "run_compare"]


@dataclass
class CompareSummary:
    """How a comparison went: the batch runs' summaries (A, B, A's added classes) and the join's counts."""

    out: Path
    runs: list[Summary]
    counts: CompareCounts
    seconds: float = 0.0
    join_seconds: float = 0.0

    def line(self) -> str:
        """One line for the command line."""
        c = self.counts
        again = self.runs[2].computed
        ways = f" (A right → B wrong {c.a_right_b_wrong}, A wrong → B right {c.a_wrong_b_right})"
        labelled = ways if c.labelled else ""
        return (
            f"{_many(c.images, 'image')} compared" + (f" (A again for {_many(again, 'image')})" if again else "")
            + f": {_many(c.flipped, 'prediction')} flipped{labelled}, median map shift {c.median_shift:.3f}"
            + f" → {self.out / COMPARE}"
        )


def _many(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@contextmanager
def _engine(engine: str, workers: int | None, address: str | None, bar: bool) -> Iterator[Callable[..., Summary]]:
    """The batch engine each step runs with: (job, found, out, model, redo) → Summary. Ray starts once for all
    three steps (unless it runs already)."""
    if engine == "local":
        yield lambda job, found, out, model, redo: run_local(job, found, out, workers=workers, model=model,
                                                            redo=redo, bar=bar)
        return
    if engine != "ray":
        raise CamError(f"--engine {engine!r}: choose local or ray")
    from .ray import import_ray, run_ray, runtime_env

    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, configure_logging=False, runtime_env=runtime_env())
    try:
        yield lambda job, found, out, model, redo: run_ray(job, found, out, workers=2 if workers is None else workers,
                                                          model=model, redo=redo)
    finally:
        if started:
            ray.shutdown()


def _classes_by_path(out: Path) -> dict[str, list[int]]:
    """path → explained class ids, for the files a run explained without error."""
    table = pq.read_table(out / RESULTS, columns=["path", "class_ids", "error"])
    return {p: ids for p, ids, e in zip(*(table.column(c).to_pylist() for c in ("path", "class_ids", "error")),
                                        strict=True) if e is None and ids is not None}


def _with_b_classes(found: Found, ids_a: dict[str, list[int]], ids_b: dict[str, list[int]],
                    b_to_a: list[int | None]) -> tuple[list[ImageFile], set[str]]:
    """A's files, those where B explained a class A has but has not explained carrying B's classes; their paths."""
    files, redo = [], set()
    for f in found.files:
        want = tuple(dict.fromkeys(i for c in ids_b.get(f.path, ()) if (i := b_to_a[c]) is not None))
        if f.path in ids_a and not set(want) <= set(ids_a[f.path]):
            f = replace(f, extra=want)
            redo.add(f.path)
        files.append(f)
    return files, redo


def _named(model: LoadedModel, which: str, action: Any) -> Any:
    """Run ``action``; a user mistake it raises says which model it is about."""
    try:
        return action()
    except CamError as exc:
        raise CamError(f"model {which} ({model.name}): {exc}") from exc


def run_compare(
    job_a: BatchJob,
    job_b: BatchJob,
    images: str | os.PathLike[str] | Found,
    out: str | os.PathLike[str],
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    model_a: LoadedModel | None = None,
    model_b: LoadedModel | None = None,
    photo_side: int = PHOTO_SIDE,
    bar: bool = False,
) -> CompareSummary:
    """Explain every image under ``images`` with two models into ``out/a`` and ``out/b``, and join them.

    Args:
        job_a, job_b: Each model's batch job (one method, the same for both; their own layers and fits).
        images: A folder (walked recursively), an image file, a glob, or what :func:`.files.discover` found.
        out: The output folder: ``a/``, ``b/`` (ordinary batch results), ``compare.parquet``, ``compare.json``.
        engine: ``local`` or ``ray``.
        workers: Decoding workers (local) or actors (Ray), as for ``batch``.
        address: A Ray cluster's address.
        model_a, model_b: The models, if loaded already.
        photo_side: The longer side of the photo grid the maps are compared on.
        bar: Show progress bars.

    Raises:
        CamError: Another method for A and B, or more than one; folder names one of the models lacks; anything
            ``batch`` refuses.
    """
    if job_a.methods != job_b.methods or len(job_a.methods) != 1:
        raise CamError("compare takes one CAM method for both models (--method M)")
    if job_a.labels != job_b.labels or job_a.classes != job_b.classes:
        raise CamError("compare explains the same --classes, with or without labels, for both models")
    start = time.perf_counter()
    found = images if isinstance(images, Found) else discover(images)
    out = output_folder(out)
    model_a = model_a or load_model(**job_a.model)
    model_b = model_b or load_model(**job_b.model)
    if job_a.labels:  # both label sets must name the folders: checked before the first run starts
        for which, model in (("A", model_a), ("B", model_b)):
            _named(model, which, lambda m=model: labels_from_folders(found, m.class_names))
    a_to_b = match_classes(model_a.class_names, model_b.class_names)
    b_to_a = match_classes(model_b.class_names, model_a.class_names)
    out_a, out_b = out / "a", out / "b"
    with _engine(engine, workers, address, bar) as run:
        first = _named(model_a, "A", lambda: run(job_a, found, out_a, model_a, set()))
        ids_a = _classes_by_path(out_a)
        files_b = [replace(f, extra=tuple(j for c in ids_a.get(f.path, ()) if (j := a_to_b[c]) is not None))
                   for f in found.files]
        second = _named(model_b, "B", lambda: run(job_b, replace(found, files=files_b), out_b, model_b, set()))
        files_a, redo = _with_b_classes(found, ids_a, _classes_by_path(out_b), b_to_a)
        third = _named(model_a, "A", lambda: run(job_a, replace(found, files=files_a), out_a, model_a, redo))

    joined = time.perf_counter()
    table, counts = join_runs(out_a, out_b, job_a.methods[0], photo_side=photo_side)
    pq.write_table(table, out / f".{COMPARE}.tmp", row_group_size=1024)
    os.replace(out / f".{COMPARE}.tmp", out / COMPARE)
    info = _describe(out, job_a, job_b, model_a, model_b, a_to_b, photo_side, counts)
    (out / COMPARE_JSON).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    done = time.perf_counter()
    return CompareSummary(out, [first, second, third], counts, done - start, done - joined)


def _describe(out: Path, job_a: BatchJob, job_b: BatchJob, model_a: LoadedModel, model_b: LoadedModel,
              a_to_b: list[int | None], photo_side: int, counts: CompareCounts) -> dict[str, Any]:
    """``compare.json``: both models' identities, the method, the class matching and the counts."""
    names_a, names_b = model_a.class_names, model_b.class_names
    matched = [(i, j) for i, j in enumerate(a_to_b) if j is not None]
    only_b = sorted(set(range(len(names_b))) - {j for _, j in matched})
    return {
        "a": _model_info(job_a, model_a, out / "a"),
        "b": _model_info(job_b, model_b, out / "b"),
        "method": job_a.methods[0],
        "classes": job_a.classes,
        "labels_from_folders": job_a.labels,
        "photo_side": photo_side,
        "class_matching": {
            "by": "normalised name (case, _, -, spaces ignored)",
            "matched": len(matched),
            "same_order": all(i == j for i, j in matched) and len(names_a) == len(names_b) == len(matched),
            "only_in_a": [names_a[i] for i, j in enumerate(a_to_b) if j is None][:50],
            "only_in_b": [names_b[j] for j in only_b][:50],
        },
        "counts": counts.to_dict(),
    }


def _model_info(job: BatchJob, model: LoadedModel, folder: Path) -> dict[str, Any]:
    """One model as ``compare.json`` names it: its identity, name, layer, fit and results folder."""
    run = read_run(folder)
    return {"model": model_identity(job.model), "model_name": model.name, "layer": run["layer"],
            "fit": run["preprocessing"]["fit"], "classes": len(model.class_names), "results": folder.name}

"""Explain a whole folder: the results as one Parquet table, locally or on a Ray cluster.

:func:`run_local` decodes in ``DataLoader`` workers and batches images of equal input size into
one forward and one batched backward; :func:`cam_core.batch.ray.run_ray` runs the same job on
``ray.data`` actors (Ray is imported only there). Both write ``OUT/results.parquet`` (columns in
:mod:`.results`) and ``OUT/run.json``, and a rerun into the same folder resumes.
"""

from .files import Found, ImageFile, discover, labels_from_folders
from .job import BatchJob, check_classes
from .local import run_local
from .results import RESULTS, RUN, map_column, read_results, read_run, results_schema
from .run import Summary, model_identity

__all__ = [
    "RESULTS",
    "RUN",
    "BatchJob",
    "Found",
    "ImageFile",
    "Summary",
    "check_classes",
    "discover",
    "labels_from_folders",
    "map_column",
    "model_identity",
    "read_results",
    "read_run",
    "results_schema",
    "run_local",
]

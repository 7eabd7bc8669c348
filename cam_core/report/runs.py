"""A batch run's maps, read back for a report: one row's map of one class, drawn over its photo as the run's
model saw it (the run's own preprocessing and fit, from ``run.json``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from torchvision.transforms import InterpolationMode

from ..batch.results import map_column, read_results, read_run
from ..errors import CamError
from ..models.preprocess import Preprocess
from ..render import View
from .pictures import map_on_file

__all__ = ["RunMaps", "run_preprocess"]


def run_preprocess(run: dict[str, Any]) -> Preprocess:
    """The run's preprocessing, rebuilt from ``run.json``, so a map lands on the photo where the model saw it."""
    try:
        p = run["preprocessing"]
        return Preprocess(
            crop_size=tuple(p["crop_size"]), resize_size=int(p["resize_size"]), mean=tuple(p["mean"]),
            std=tuple(p["std"]), interpolation=InterpolationMode(p["interpolation"]), fit=p["fit"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CamError(f"run.json's preprocessing cannot be read ({exc}): not what `batch` writes") from exc


@dataclass
class RunMaps:
    """One results folder's ``run.json`` and table, for the maps a report draws."""

    folder: Path
    run: dict[str, Any]
    table: pa.Table

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> RunMaps:
        """Read ``folder`` (``results.parquet`` and ``run.json``).

        Raises:
            CamError: Not a results folder, or unreadable.
        """
        return cls(Path(folder), read_run(folder), read_results(folder))

    @property
    def methods(self) -> list[str]:
        return [str(m) for m in self.run.get("methods", [])]

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.run.get("class_names", [])]

    @cached_property
    def preprocess(self) -> Preprocess:
        return run_preprocess(self.run)

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.table.column("path").to_pylist())}

    def method(self, wanted: str | None) -> str:
        """``wanted`` if the run has it (default its first method)."""
        if wanted is None:
            if not self.methods:
                raise CamError(f"{self.folder}'s run.json names no method")
            return self.methods[0]
        if wanted not in self.methods:
            raise CamError(f"{self.folder} has no maps of {wanted!r}; it has: {', '.join(self.methods)}")
        return wanted

    def class_id(self, name: str) -> int | None:
        """The id of the class called ``name`` in this run's model (``None``: it has no such class)."""
        return self._ids.get(name)

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.class_names)}

    def map_of(self, path: str, method: str, class_id: int | None) -> np.ndarray | None:
        """The raw signed map (h, w) of ``class_id`` in ``path``'s row; ``None`` when that class was not
        explained there (or the file failed)."""
        row = self._rows.get(path)
        column = map_column(method)
        if row is None or class_id is None or column not in self.table.column_names:
            return None
        ids, shape = self.table.column("class_ids")[row].as_py(), self.table.column("map_shape")[row].as_py()
        values = self.table.column(column)[row]
        if not ids or not shape or not values.is_valid or class_id not in ids:
            return None
        flat = values.values.to_numpy(zero_copy_only=False)
        # a copy: arrow buffers are read-only, and the maps go on to torch
        return np.array(flat, dtype=np.float32).reshape(shape)[ids.index(class_id)]

    def overlay(self, path: str, cam: np.ndarray | None, *, side: int, alt: str, view: View = "relu") -> str:
        """``cam`` over ``path``'s photo as this run's model saw it (:func:`~.pictures.map_on_file`)."""
        return map_on_file(path, cam, self.preprocess, side=side, alt=alt, view=view)

"""A batch run's maps, read back for a report: one row's map of one class, drawn over its photo as the run's
model saw it (the run's own preprocessing and fit, from ``run.json``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..analysis.compare import normalise_class_name
from ..batch.results import map_column, read_results, read_run
from ..batch.scan import preprocess_of
from ..errors import CamError
from ..models.preprocess import Preprocess
from ..render import View
from .pictures import map_on_file

__all__ = ["RunMaps", "pick_method"]


def pick_method(methods: Sequence[str], wanted: str | None, folder: object) -> str:
    """``wanted`` if the run in ``folder`` has its maps (default its first method).

    Raises:
        CamError: It has none, or not that one.
    """
    if not methods:
        raise CamError(f"{folder}'s run.json names no method")
    if wanted is None:
        return methods[0]
    if wanted not in methods:
        raise CamError(f"{folder} has no maps of {wanted!r}; it has: {', '.join(methods)}")
    return wanted


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
        try:
            return preprocess_of(self.run)
        except (KeyError, TypeError, ValueError) as exc:
            raise CamError(f"{self.folder}/run.json's preprocessing cannot be read ({exc})") from exc

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.table.column("path").to_pylist())}

    def method(self, wanted: str | None) -> str:
        """``wanted`` if the run has its maps (default its first method)."""
        return pick_method(self.methods, wanted, self.folder)

    def class_id(self, name: str) -> int | None:
        """The id of the class called ``name`` in this run's model, matched as a comparison matches two models'
        classes (:func:`~cam_core.analysis.compare.normalise_class_name`); ``None``: it has no such class."""
        return self._ids.get(normalise_class_name(name))

    @cached_property
    def _ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        for i, n in enumerate(self.class_names):
            ids.setdefault(normalise_class_name(n), i)
        return ids

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

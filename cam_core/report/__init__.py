"""Reports a stakeholder can open: one self-contained HTML file (pictures embedded, no script, nothing fetched)
for an image (:mod:`.image`), a batch run over a folder (:mod:`.dataset`) or a comparison of two models
(:mod:`.compare`). The pieces they share are in :mod:`.html`, :mod:`.pictures` and :mod:`.runs`."""

from __future__ import annotations

from .compare import compare_report
from .dataset import dataset_report
from .image import ImageReport, diagnose_maps, explain_image, image_report
from .image_compare import SecondModel

__all__ = [
    "ImageReport",
    "SecondModel",
    "compare_report",
    "dataset_report",
    "diagnose_maps",
    "explain_image",
    "image_report",
]

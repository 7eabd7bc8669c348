"""One batch job, engine-independent: what to compute, how a file becomes a model input, and a batch → rows.

The local engine (:mod:`.local`) and the Ray engine (:mod:`.ray`) run the same three steps, so
their rows agree: :func:`decode` (``load_image`` + ``Preprocess.prepare``, exactly what
``LoadedModel.prepare`` does, in a worker), :func:`explain_items` (images of equal input size
stacked: one forward and one batched backward per stack) and :func:`~.results.rows_table`.

Under the ``whole`` fit (the default for CNNs) images of different aspect ratios get different
input sizes and cannot share a tensor. :func:`plan_batches` therefore orders the files by the
input size their header predicts and cuts batches within each size, so a batch is normally one
stack; a file whose header misled (or failed) still works: :func:`explain_items` groups by the
actual size.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..analysis.diagnose import blank_after_relu, positive_area, positive_share
from ..analysis.localisation import class_objects, localise, visible_window
from ..engine.explainer import explain
from ..engine.methods import check_methods
from ..engine.result import ExplainResult, region_mask
from ..errors import CamError
from ..io.boxes import Truth
from ..io.images import load_image
from ..models.preprocess import Fit, Placement, Preprocess
from .files import ImageFile

__all__ = [
    "CPU_BATCH",
    "GPU_BATCH",
    "BatchJob",
    "Decoded",
    "Row",
    "check_classes",
    "decode",
    "explain_items",
    "input_size_hint",
    "photo_size",
    "plan_batches",
]

_TOPK = re.compile(r"^top(\d+)$")
# Batch sizes by device. On a CPU, large batches overflow the caches: EfficientNet-Lite0 on 2 cores costs
# 27 ms per image at batch 4, 34 ms at 1 and 46 ms at 16 (benchmarks/bench_batch.py); a GPU wants many.
CPU_BATCH = 4
GPU_BATCH = 32
TOP_N = 5  # top5_ids / top5_probs
_ORIENTATION = 0x0112  # EXIF tag; values 5..8 swap width and height


def check_classes(text: str, labels: bool) -> str:
    """``pred``, ``label``, ``pred,label`` or ``topK``, normalised; a :class:`CamError` for anything else.

    Args:
        text: What the user asked for.
        labels: Whether the run reads labels (``label`` needs them).
    """
    spec = ",".join(p.strip() for p in text.lower().split(",") if p.strip())
    if spec == "label,pred":
        spec = "pred,label"
    match = _TOPK.match(spec)
    if spec not in ("pred", "label", "pred,label") and not (match and int(match.group(1)) >= 1):
        raise CamError(f"--classes {text!r}: choose pred, label, pred,label or topK (e.g. top3)")
    if "label" in spec and not labels:
        raise CamError(f"--classes {spec} explains each image's true class: add --labels-from-folders")
    return spec


@dataclass(frozen=True)
class BatchJob:
    """What decides a row's numbers (the run's identity for resuming), plus where to compute.

    Attributes:
        model: Keyword arguments of :func:`cam_core.load_model` (``spec``, ``weights``, …, ``fit``):
            plain values, so a Ray actor can load the same model.
        layer: Dotted layer name; ``None`` for the model's recommended layer.
        methods: CAM methods.
        classes: ``pred``, ``label``, ``pred,label`` or ``topK`` (see :func:`check_classes`).
        labels: Whether labels come from the class folders.
        fit: How images meet the model's size; ``None`` for the model's default (``whole`` for CNNs).
        device: ``auto``, ``cpu``, ``cuda``…
        batch_size: Images per forward/backward; ``None``: :data:`GPU_BATCH` on a GPU, :data:`CPU_BATCH` on a CPU.
        boxes: Ground truth (``batch --boxes``: a COCO JSON, VOC XML, CSV or mask folder): rows then carry the
            localisation columns (the files carry their truth, :mod:`.truth`).
    """

    model: dict[str, Any] = field(default_factory=dict)
    layer: str | None = None
    methods: tuple[str, ...] = ("gradcam",)
    classes: str = "pred"
    labels: bool = False
    fit: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    boxes: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", check_methods(self.methods))
        object.__setattr__(self, "classes", check_classes(self.classes, self.labels))
        if self.batch_size is not None and self.batch_size < 1:
            raise CamError(f"--batch-size must be at least 1, got {self.batch_size}")

    def batch_for(self, on_gpu: bool) -> int:
        """The batch size to use: the job's, else the default for the device."""
        return self.batch_size or (GPU_BATCH if on_gpu else CPU_BATCH)

    def class_spec(self, labels: Tensor, extra: Sequence[tuple[int, ...]] = ()) -> str | Callable[[Tensor], Tensor]:
        """The ``classes`` argument of :func:`explain` for a stack whose labels are ``labels`` (−1: none).

        An image without a label explains its prediction in place of the label. ``extra`` (per image, may be
        empty) adds classes after the job's; a shorter list is padded with the image's first class, which the
        rows drop as a repeat.
        """
        if not any(extra) and (self.classes == "pred" or self.classes.startswith("top")):
            return "top1" if self.classes == "pred" else self.classes
        k = int(self.classes[3:]) if self.classes.startswith("top") else 0

        def ids(logits: Tensor) -> Tensor:
            pred = logits.argmax(1)
            if k:
                base = logits.topk(min(k, logits.shape[1]), dim=1).indices
            else:
                label = torch.where(labels.to(pred.device) >= 0, labels.to(pred.device), pred)
                base = {"pred": pred[:, None], "label": label[:, None], "pred,label": torch.stack([pred, label], 1)}
                base = base[self.classes]
            width = max((len(e) for e in extra), default=0)
            if not width:
                return base
            more = torch.tensor([[*e, *[-1] * (width - len(e))] for e in extra], device=pred.device)
            return torch.cat([base, torch.where(more >= 0, more, base[:, :1])], 1)

        return ids


@dataclass
class Decoded:
    """A file after decoding: the model input ``x`` (3, H, W), the image's box in it when padded, or ``error``;
    with ground truth, also where the image lies in the input, its size (width, height) and its mask, if any."""

    file: ImageFile
    x: Tensor | None = None
    region: tuple[int, int, int, int] | None = None
    error: str | None = None
    place: Placement | None = None
    size: tuple[int, int] | None = None
    mask: np.ndarray | None = None


def _truth_mask(truth: Truth | None, size: tuple[int, int]) -> np.ndarray | None:
    """The truth's mask (bool (H, W): any non-black pixel), after checking that truth and image agree in size."""
    if truth is None:
        return None
    if truth.size is not None and tuple(truth.size) != size:
        raise CamError(
            f"its boxes were drawn on a {truth.size[0]}×{truth.size[1]} image, but the file is {size[0]}×{size[1]} "
            "(resized or rotated since?)"
        )
    if truth.mask is None:
        return None
    mask = load_image(truth.mask)
    if mask.size != size:
        raise CamError(f"its mask {truth.mask} is {mask.width}×{mask.height}, the image {size[0]}×{size[1]}")
    return np.asarray(mask).any(axis=2)


def decode(file: ImageFile, preprocess: Preprocess, fit: Fit) -> Decoded:
    """Read and preprocess one file as ``LoadedModel.prepare`` does; a failure becomes ``error``, not an exception."""
    try:
        image = load_image(file.path)
        x, place = preprocess.prepare(image, fit)
        mask = _truth_mask(file.truth, image.size)
    except CamError as exc:  # unreadable, too large, extreme aspect for the fit, truth of another size: its row says
        return Decoded(file, error=str(exc))
    return Decoded(file, x, place.content if place.padded else None, place=place, size=image.size, mask=mask)


def photo_size(path: str) -> tuple[int, int] | None:
    """A photo's upright (width, height) from its header alone (``None`` when the header cannot tell)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_ORIENTATION) in (5, 6, 7, 8):
                w, h = h, w
        return w, h
    except Exception:  # any header problem: decode() reports the real error; here it only means "unknown size"
        return None


def input_size_hint(path: str, preprocess: Preprocess, fit: Fit) -> tuple[int, int] | None:
    """The input size a file will get, from its header alone (``None`` when the header cannot tell)."""
    size = photo_size(path)
    try:
        return None if size is None else preprocess.place(*size, fit).size
    except CamError:  # an extreme aspect: decode() reports it
        return None


def plan_batches(files: Sequence[ImageFile], preprocess: Preprocess, fit: Fit, batch_size: int) -> list[list[int]]:
    """Indices into ``files`` cut into batches of at most ``batch_size``, each of one predicted input size."""
    by_size: dict[tuple[int, int] | None, list[int]] = defaultdict(list)
    for i, f in enumerate(files):
        by_size[input_size_hint(f.path, preprocess, fit)].append(i)
    order = sorted(by_size, key=lambda s: (s is None, s or (0, 0)))
    return [idx[j : j + batch_size] for s in order for idx in [by_size[s]] for j in range(0, len(idx), batch_size)]


@dataclass
class Row:
    """One file's results before they become a Parquet row (see :mod:`.results` for the columns)."""

    file: ImageFile
    error: str | None = None
    pred: int | None = None
    prob_pred: float | None = None
    prob_label: float | None = None
    top_ids: list[int] = field(default_factory=list)
    top_probs: list[float] = field(default_factory=list)
    entropy: float | None = None
    class_ids: list[int] = field(default_factory=list)
    class_probs: list[float] = field(default_factory=list)  # the probability of each explained class
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method → (K, h, w) float32
    pos_mass: list[float] = field(default_factory=list)  # per method, then per class
    relu_survival: list[float] = field(default_factory=list)
    blank: list[bool] = field(default_factory=list)
    boxes: list[float] | None = None  # ground truth (batch --boxes): x0, y0, x1, y1 per object; None: the file has none
    box_labels: list[int] | None = None
    point_hit: list[bool | None] | None = None  # laid out like pos_mass; None inside: the class has no object
    box_energy: list[float | None] | None = None
    box_cut: bool | None = None


def _localise(row: Row, item: Decoded, methods: Sequence[str]) -> None:
    """Fill the row's ground-truth columns: its boxes (a mask's bounding box) and each map's pointing game and
    energy (:mod:`cam_core.analysis.localisation`), on the original image's pixels."""
    truth, place, size = item.file.truth, item.place, item.size
    if truth is None or place is None or size is None:
        return
    boxes = list(truth.boxes)
    if item.mask is not None:
        ys, xs = np.nonzero(item.mask)
        boxes = [(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))] if len(ys) else []
    row.boxes = [float(v) for box in boxes for v in box]
    row.box_labels = list(truth.labels) if item.mask is None else [-1] * len(boxes)
    objects, row.box_cut = class_objects(truth.boxes, truth.labels, truth.labelled, row.class_ids, size,
                                         visible_window(place, size), item.mask)
    maps = np.concatenate([row.maps[m] for m in methods])
    row.point_hit, row.box_energy = localise(maps, place, size, objects * len(methods))


def _row(res: ExplainResult, i: int, item: Decoded) -> Row:
    probs = res.probs[i]
    top = probs.topk(min(TOP_N, probs.numel()))
    ids = res.class_ids[i].tolist()
    keep = [k for k, c in enumerate(ids) if c not in ids[:k]]  # pred,label: one map when they agree
    label = item.file.label
    row = Row(
        file=item.file,
        pred=int(probs.argmax()),
        prob_label=float(probs[label]) if label is not None else None,
        top_ids=top.indices.tolist(),
        top_probs=top.values.tolist(),
        entropy=float(torch.special.entr(probs.double()).sum()),
        class_ids=[ids[k] for k in keep],
        class_probs=[float(probs[ids[k]]) for k in keep],
    )
    row.prob_pred = float(probs[row.pred])
    for m in res.methods:
        maps = res.maps[m][i, keep]
        valid = None
        if item.region is not None:  # a letterbox: explain(region=...) zeroes the pad and leaves it out of stats
            valid = region_mask(item.region, res.input_size, tuple(maps.shape[-2:]))[0, 0]
            maps = maps * valid
        row.maps[m] = maps.numpy().astype(np.float32, copy=False)
        for cam in maps:
            cells = cam[valid] if valid is not None else cam
            row.pos_mass.append(positive_share(cells))
            row.relu_survival.append(positive_area(cells))
            row.blank.append(blank_after_relu(cells))
    _localise(row, item, res.methods)
    return row


def explain_items(model: object, items: Sequence[Decoded], job: BatchJob, layer: str) -> list[Row]:
    """Rows for decoded files: one :func:`explain` call per stack of equal input size, error rows as they are."""
    rows = [Row(item.file, error=item.error) for item in items if item.x is None]
    stacks: dict[tuple[int, ...], list[Decoded]] = defaultdict(list)
    for item in items:
        if item.x is not None:
            stacks[tuple(item.x.shape)].append(item)
    for stack in stacks.values():
        labels = torch.tensor([-1 if it.file.label is None else it.file.label for it in stack])
        res = explain(
            model, torch.stack([it.x for it in stack]), layer=layer,
            classes=job.class_spec(labels, [it.file.extra for it in stack]),
            methods=job.methods, device=job.device, throughput=True,  # many images, one model: the fused copy pays
        )
        rows += [_row(res, i, it) for i, it in enumerate(stack)]
    return rows

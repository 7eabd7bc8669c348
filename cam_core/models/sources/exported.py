"""``.pt2`` files: programs saved by ``torch.export.save``, unflattened back into a module tree.

``torch.export.load`` gives a flat graph; ``torch.export.unflatten`` rebuilds the original module
hierarchy (``layer4.1.conv2`` keeps its name), each module an ``InterpreterModule`` that runs its
part of the graph when called, so forward hooks work on every layer, unlike TorchScript's. The
original class of each module (``Conv2d``, ``Bottleneck``) is read from the graph's
``nn_module_stack`` and shown in the layer tree as :attr:`ORIGINAL_TYPE`.

An exported program runs only at the shapes it was exported with, unless they were declared
dynamic. Its input size becomes the model's input size; a fixed batch is said in the notes, and
a call with another batch (Score-CAM and the other methods that run batches of images, the
trust curves) fails with one line saying how to re-export, instead of a shape traceback.

``torch.export.load`` falls back to full unpickling for objects it cannot read as plain weights,
so a ``.pt2`` file can run code: it loads only with ``trust_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import CamError
from ..built import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Built,
    CheckpointError,
    CodeNotAllowed,
    UntrustedCheckpoint,
    assumed_preprocess,
)
from ..checkpoints import file_alone
from ..outputs import Classifier
from ..preprocess import Preprocess
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT, TRUST

__all__ = ["ORIGINAL_TYPE", "PT2_SUFFIX", "SOURCE", "ExportedModel", "build_exported", "is_pt2", "load"]

PT2_SUFFIX = ".pt2"
ORIGINAL_TYPE = "original_type"  # attribute of an unflattened module: the class name it was exported from
_META_DROPPED = ("val", "example_value", "tensor_meta", "unbacked_bindings")
_REEXPORT = (
    "re-export with dynamic_shapes, e.g. torch.export.export(model, (x,), dynamic_shapes=({0: "
    "torch.export.Dim('batch')},))"
)


def is_pt2(path: Path) -> bool:
    """Whether ``path`` is named as an exported program."""
    return path.name.lower().endswith(PT2_SUFFIX)


class ExportedModel(Classifier):
    """An unflattened exported program: the logits as a tensor, and inputs of shapes it was not exported
    for refused in one clear line (the program's own check reads graph metadata that is dropped here)."""

    def __init__(self, model: nn.Module, output: Any = None, shape: tuple[int | None, ...] = ()) -> None:
        super().__init__(model, output)
        self.shape = shape

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        for dim, (want, got) in enumerate(zip(self.shape, x.shape, strict=False)):
            if want is not None and want != got:
                what = "batch" if dim == 0 else "channel count" if dim == 1 else "input size"
                raise CamError(
                    f"this exported program takes a {what} of {want} only (got {got}): it was exported with a "
                    f"fixed {what}; {_REEXPORT}"
                )
        return super().forward(x, *args, **kwargs)

    def with_output(self, output: Any) -> ExportedModel:
        return ExportedModel(self.wrapped, output, self.shape)


def _original_types(program: Any) -> dict[str, str]:
    """Dotted module name → class name, from the graph's ``nn_module_stack``."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            if path:
                types.setdefault(str(path), str(kind).rsplit(".", 1)[-1])
    return types


def _input_shape(program: Any) -> tuple[tuple[int | None, ...], int]:
    """The first user input's shape (``None`` where dynamic) and the number of user inputs."""
    names = list(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and names and node.name == names[0]:
            val = node.meta.get("val")
            if isinstance(val, Tensor):
                return tuple(d if isinstance(d, int) else None for d in val.shape), len(names)
    return (), len(names)


def _prepare(module: nn.Module, types: dict[str, str]) -> None:
    """Name each module's original class, and drop the graphs' fake-tensor metadata (it blocks deep copies,
    which the randomisation check makes, and is not needed to run)."""
    for name, mod in module.named_modules():
        if name in types:
            mod.__dict__[ORIGINAL_TYPE] = types[name]
        graph = getattr(mod, "graph", None)
        for node in getattr(graph, "nodes", ()):
            for key in _META_DROPPED:
                node.meta.pop(key, None)


def build_exported(path: Path, trust: bool, allow_code: bool = True) -> Built:
    """The program in ``path`` as a hookable module tree (see the module docstring)."""
    if not path.is_file():
        raise CheckpointError(f"no such exported program: {path}")
    if not allow_code:
        raise CodeNotAllowed(
            f"{path} is an exported program (.pt2): torch.export.load may unpickle code from it, which is not "
            "allowed here; upload the model's state dict (.safetensors) with its architecture instead"
        )
    if not trust:
        raise UntrustedCheckpoint(
            f"{path} is an exported program (.pt2): torch.export.load falls back to unpickling what it cannot read "
            "as weights, which runs code from the file, so it is refused by default. If you trust its source, allow "
            "it with --trust-checkpoint (dashboard: 'Trust this checkpoint'), or save a state dict (.safetensors)"
        )
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # a damaged or foreign archive fails in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not an exported program that can be loaded: {first}") from exc
    shape, inputs = _input_shape(program)
    if inputs != 1 or len(shape) != 4:
        raise CheckpointError(
            f"{path} takes {inputs} input(s) of shape {shape}; an image classifier takes one (N, 3, H, W) batch"
        )
    try:
        module = torch.export.unflatten(program)
    except Exception as exc:
        raise CheckpointError(f"{path} could not be unflattened into modules: {exc}") from exc
    _prepare(module, _original_types(program))
    notes = []
    batch, _, height, width = shape
    if batch is not None:
        notes.append(f"exported for a batch of {batch}: methods that run batches of images need a dynamic batch; "
                     f"{_REEXPORT}")
    if height is not None and width is not None:
        preprocess = Preprocess((height, width), min(height, width), IMAGENET_MEAN, IMAGENET_STD)
    else:
        preprocess = assumed_preprocess()
    return Built(
        module=ExportedModel(module.eval(), shape=shape),
        name=f"{path.name} (exported program)",
        pretrained=True,
        preprocess=preprocess,
        notes=notes,
        assumed_preprocessing=True,
    )



def load(request: ModelRequest) -> Built:
    """The ``.pt2`` file named by the spec."""
    path = file_alone(request, holds="an exported program")
    return build_exported(path, request.trust, request.allow_code)


SOURCE = ModelSource(
    key="exported",
    label="Exported program",
    form="an exported program (a .pt2 file from torch.export)",
    code_bearing=True,  # torch.export.load may unpickle
    load=load,
    asks=(Ask("spec", "file", "Exported program", required=True, suffixes=("pt2",)), TRUST, LABELS, OUTPUT),
    suffixes=(PT2_SUFFIX,),
)

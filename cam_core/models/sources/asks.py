"""The questions several sources share (a page asks each the same way whatever the source)."""

from __future__ import annotations

from ..registry import Ask

__all__ = ["IMPORT_PATH", "LABELS", "OUTPUT", "TRUST", "WEIGHTS"]

WEIGHTS = Ask(
    "weights", "choice", "Weights", choices=("DEFAULT", "none"),
    help="the pretrained weights (DEFAULT), a named set, or none for random, untrained weights",
)
LABELS = Ask(
    "labels", "file", "Class names (optional)", suffixes=("txt", "json"),
    help="a text file with one class name per line, or a JSON list; its length must match the model's outputs",
)
OUTPUT = Ask(
    "output", "text", "Output holding the logits (optional)",
    help="for a model returning a tuple or dict: the key or index of its logits",
)
TRUST = Ask(
    "trust_checkpoint", "flag", "Trust this checkpoint (allow full unpickling)",
    help="unpickling runs code from the file: only for files you trust",
)
IMPORT_PATH = Ask(
    "import_paths", "text", "Import path (optional)", help="a folder added to sys.path while the factory is imported"
)

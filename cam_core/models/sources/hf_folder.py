"""``hf:PATH``: a Hugging Face image classifier saved in a folder, loaded offline.

The folder is what ``model.save_pretrained(folder)`` and ``processor.save_pretrained(folder)``
write: ``config.json`` (architecture, ``id2label``), the weights (``model.safetensors``, or
``pytorch_model.bin`` read with ``weights_only``) and ``preprocessor_config.json``. ``PATH`` may
also be a hub id already in the local Hugging Face cache. Nothing is downloaded and no code
from the folder runs (``trust_remote_code`` is never set).

- Class names: ``config.id2label`` in id order (the default ``LABEL_3`` becomes ``class 3``).
- Preprocessing: from ``preprocessor_config.json``: ``size`` (``height``/``width`` means the
  processor resizes to exactly that size: the *squash* fit is then the default, as it is the
  model's own recipe; ``shortest_edge`` plus ``crop_size`` or ``crop_pct`` is our centre crop),
  ``resample``, ``image_mean``/``image_std`` (``do_normalize``), ``rescale_factor`` 1/255.
- The model returns a ``ModelOutput``; the loader's output rule picks ``.logits``
  (:mod:`cam_core.models.outputs`). Attention runs in the eager implementation, so that its
  probabilities are tensors in the graph (LeGrad reads them).

transformers is an optional extra: ``pip install 'cam-dashboard[hf]'``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torchvision.transforms import InterpolationMode

from ...budget import InputSizeError, ModelTooLarge, check_hf_model, check_preprocessor_config, read_config
from ...errors import CamError
from ..built import Built, CheckpointError, UnknownModel
from ..outputs import Classifier
from ..preprocess import Preprocess
from ..registry import Ask, ModelRequest, ModelSource
from .asks import LABELS, OUTPUT

__all__ = ["INSTALL_HINT", "PREFIX", "SOURCE", "build_hf", "class_names_from", "load", "preprocess_from_config"]

PREFIX = "hf:"
INSTALL_HINT = "transformers is not installed: pip install 'cam-dashboard[hf]' (or pip install transformers)"
# PIL's resampling codes, as image processors store them.
_RESAMPLE = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
}


def class_names_from(id2label: dict[Any, str] | None, count: int) -> list[str] | None:
    """Names in id order; ``LABEL_i`` (transformers' placeholder) becomes ``class i``."""
    if not id2label:
        return None
    names = {int(k): str(v) for k, v in id2label.items()}
    if sorted(names) != list(range(count)):
        return None
    return [f"class {i}" if names[i] == f"LABEL_{i}" else names[i] for i in range(count)]


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise CamError(f"preprocessor_config.json: cannot read {what} {value!r}")


def _resample(value: Any) -> InterpolationMode:
    """PIL's resampling code (0-5; ``"3"`` as text too) as torchvision's mode."""
    try:
        code = int(value)
    except (TypeError, ValueError):
        code = -1
    if isinstance(value, bool) or code not in _RESAMPLE:
        raise CamError(f"preprocessor_config.json: resample {str(value)[:40]!r} is not one of PIL's codes 0-5")
    return _RESAMPLE[code]


def _channels(cfg: dict[str, Any], key: str, default: tuple[float, ...], *, positive: bool) -> tuple[float, ...]:
    """``image_mean`` or ``image_std``: one finite number per channel (one number: the same for all three)."""
    value = cfg.get(key, default)
    values = [value] if isinstance(value, int | float) else value
    try:
        numbers = tuple(float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise CamError(f"preprocessor_config.json: {key} must be three numbers, not {str(value)[:60]!r}")
    if positive and min(numbers) <= 0:
        raise CamError(f"preprocessor_config.json: {key} {list(numbers)} has a value of 0 or less (it divides)")
    return numbers


def preprocess_from_config(cfg: dict[str, Any]) -> tuple[Preprocess, str | None, list[str]]:
    """Our preprocessing for an image processor's config: (recipe, default fit or None, notes).

    Raises:
        CamError: A value that cannot be read (a ``resample`` that is no PIL code, a ``image_std`` of 0, a size
            or ratio that is not a number), in one line naming it.
    """
    try:
        return _preprocess_from_config(cfg)
    except CamError:
        raise
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise CamError(f"preprocessor_config.json: a value cannot be read ({type(exc).__name__})") from exc


def _preprocess_from_config(cfg: dict[str, Any]) -> tuple[Preprocess, str | None, list[str]]:
    notes: list[str] = []
    size = cfg.get("size") or {"height": 224, "width": 224}
    interpolation = _resample(cfg.get("resample", 2))
    if cfg.get("do_normalize", True):
        mean = _channels(cfg, "image_mean", (0.5, 0.5, 0.5), positive=False)
        std = _channels(cfg, "image_std", (0.5, 0.5, 0.5), positive=True)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    factor = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if not math.isclose(factor, 1 / 255, rel_tol=1e-6):
        notes.append(f"the processor rescales pixels by {factor:g}, not 1/255; inputs here are scaled to [0, 1]")
    fit: str | None = None
    if isinstance(size, dict) and "shortest_edge" in size:
        short = int(size["shortest_edge"])
        if cfg.get("do_center_crop") and cfg.get("crop_size"):
            crop = _pair(cfg["crop_size"], "crop_size")
            resize = short
        elif cfg.get("crop_pct") is not None:  # ConvNeXt's processor: shorter side → size / crop_pct, centre crop
            pct = float(cfg["crop_pct"])
            if not 0 < pct <= 1:
                raise CamError(f"preprocessor_config.json: crop_pct {pct:g} is not in (0, 1]")
            crop, resize = (short, short), int(short / pct)
        else:
            crop, resize = (short, short), short
    else:
        resized = _pair(size, "size")
        if cfg.get("do_center_crop") and cfg.get("crop_size"):
            crop = _pair(cfg["crop_size"], "crop_size")
            resize = min(resized)
            if resized[0] != resized[1]:
                notes.append(f"the processor resizes to {resized[0]}×{resized[1]} before its crop; approximated")
        else:  # resized to exactly (height, width): the squash fit is the model's own recipe
            crop, resize, fit = resized, min(resized), "squash"
    return Preprocess(crop, resize, mean, std, interpolation), fit, notes  # type: ignore[arg-type]


def _folder(spec: str) -> str:
    where = spec[len(PREFIX) :].strip() if spec.startswith(PREFIX) else spec.strip()
    if not where:
        raise CamError("hf: needs a folder (hf:/path/to/model) or a hub id in the local cache")
    return where


def _refuse_pickled_weights(folder: Path, where: str) -> None:
    """Where code is not allowed: weights only as safetensors (``pytorch_model.bin`` is a pickle)."""
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        raise CamError(
            f"the Hugging Face model {Path(where).name}'s weights are a pickle (pytorch_model.bin or similar), which "
            "is not loaded here (a pickle can run code); save them as model.safetensors "
            "(model.save_pretrained(folder) does)"
        )


def build_hf(spec: str, *, allow_pickles: bool = True) -> Built:
    """The classifier in the folder (or cached hub id) named by ``hf:PATH`` (see the module docstring).

    With ``allow_pickles=False`` (a server whose visitors may not run code) only safetensors weights load.
    """
    try:
        import transformers
    except ImportError as exc:
        raise CamError(INSTALL_HINT) from exc
    where = _folder(spec)
    folder = Path(where).expanduser()
    if folder.exists() and not (folder / "config.json").is_file():
        raise UnknownModel(f"{where} is not a Hugging Face model folder: it has no config.json")
    if not folder.exists() and ("/" not in where or where.startswith((".", "/", "~"))):
        raise UnknownModel(f"no such folder {where!r} (hf: takes a saved model folder or a hub id in the local cache)")
    source = str(folder) if folder.exists() else where
    try:  # before transformers allocates what the config declares
        check_hf_model(source, name=Path(where).name)
        processor = _processor_config(transformers, source, folder)
        check_preprocessor_config(processor)
    except (ModelTooLarge, InputSizeError):
        raise
    except CamError as exc:
        raise CheckpointError(f"cannot load the Hugging Face model {where}: {exc}") from exc
    if not allow_pickles:
        _refuse_pickled_weights(folder, where)
    pre, fit, notes = preprocess_from_config(processor)  # a bad value is one line before the weights are read
    progress = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            source, local_files_only=True, attn_implementation="eager",
            **({} if allow_pickles else {"use_safetensors": True}),
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "trust_remote_code" in str(exc):
            first = "the model needs custom code from the folder (trust_remote_code), which is never run here"
        raise CheckpointError(f"cannot load the Hugging Face model {where}: {first}") from exc
    finally:
        if progress:
            transformers.utils.logging.enable_progress_bar()
    config = model.config
    count = int(getattr(config, "num_labels", 0) or len(getattr(config, "id2label", {}) or {}))
    if not processor:
        notes.append("no preprocessor_config.json: preprocessing assumed (224×224, mean and std 0.5)")
    return Built(
        module=Classifier(model.eval()),
        name=f"{Path(where).name or where} ({type(model).__name__})",
        pretrained=True,
        preprocess=pre,
        class_names=class_names_from(getattr(config, "id2label", None), count),
        num_classes=count or None,
        notes=notes,
        fit=fit,
    )


def _processor_config(transformers: Any, source: str, folder: Path) -> dict[str, Any]:
    """The image processor's settings: the folder's preprocessor_config.json (or the cached hub copy)."""
    local = folder / "preprocessor_config.json"
    if local.is_file():
        return read_config(local)
    try:
        path = transformers.utils.cached_file(source, "preprocessor_config.json", local_files_only=True)
    except OSError:
        return {}
    return read_config(path) if path else {}


def load(request: ModelRequest) -> Built:
    """``hf:PATH`` (the folder holds everything: weights, arguments such as ``weights`` do not apply)."""
    return build_hf(request.spec, allow_pickles=request.allow_code)


SOURCE = ModelSource(
    key="hf",
    label="Hugging Face model",
    form="'hf:FOLDER'",
    code_bearing=False,  # trust_remote_code is never set: no code from the folder runs
    load=load,
    asks=(
        Ask("spec", "files", "Model folder", required=True, suffixes=("json", "safetensors", "bin", "txt"),
            help="what save_pretrained writes: config.json, the weights and preprocessor_config.json"),
        LABELS,
        OUTPUT,
    ),
    prefix=PREFIX,
)

"""The model's inputs in the sidebar, shared by every page: which source (read from cam_core's registry, see
:mod:`dashboard.page_sources`), then what that source asks. Widgets in, a :class:`~dashboard.model.ModelSpec` out.

The built-in sources have forms of their own (a searchable list of timm's models, an upload that takes every
checkpoint format); any other registered source gets a form drawn from its declared questions
(:func:`_asked_ui`), so a new source needs no change here.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from contextvars import ContextVar

import streamlit as st

from cam_core.models import DEFAULT_MODEL, list_torchvision_models
from cam_core.models.registry import Ask, ModelSource, source_for
from cam_core.models.sources.hf_folder import INSTALL_HINT as HF_INSTALL
from cam_core.models.sources.timm_models import INSTALL_HINT as TIMM_INSTALL
from dashboard.access import Access, PinnedModel
from dashboard.model import ModelSpec
from dashboard.page_sources import asks_for, page_sources, registered, shareable_spec
from dashboard.state import K, UrlView
from dashboard.uploads import save_folder, save_upload

__all__ = ["model_ui", "request_model"]

# The form drawn now: "" for the page's model, another prefix for a second one (the image page's model B), so the
# same widgets can be drawn twice with their own state. A context variable: each session's script runs in its own
# thread, and the form's helpers need not pass it along.
_PREFIX: ContextVar[str] = ContextVar("model_form_prefix", default="")


def _k(name: str) -> str:
    """The session-state key of the form drawn now."""
    return _PREFIX.get() + name


def _suffixes(*keys: str) -> list[str]:
    """The file endings the registry's sources under ``keys`` take for their spec, in order, once each."""
    found = [s for key in keys if (ask := asks_for(key, "spec")) is not None for s in ask.suffixes]
    return list(dict.fromkeys(found))


CHECKPOINT_TYPES = _suffixes("state_dict", "exported", "torchscript", "pickle")
STATE_DICT_TYPES = _suffixes("state_dict")
HF_FILES = _suffixes("hf")
# The model's widgets keep their values when a page sends the user to another (``st.switch_page`` drops the
# state of every widget that is not kept so; file uploads cannot be kept: see ``ModelSpec.has_uploads``).
KEEP = "session"
NO_ARCH = "(none: exported program, TorchScript or whole model)"
TRUST_HELP = (
    "A checkpoint that holds a whole pickled model (not just a state dict of tensors), or an exported program "
    "(.pt2: torch.export.load unpickles what it cannot read as weights), can only be read by unpickling it, and "
    "unpickling runs whatever code the file contains, with your permissions. Tick this only for files you made "
    "yourself or got from a source you trust. State dicts (.safetensors above all) never need it."
)
OUTPUT_HELP = (
    "Only for a model whose forward returns a tuple or a dict: the key or index of its logits. By default: "
    "an attribute or key 'logits', else the first (N, classes) tensor."
)


@functools.cache
def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@functools.cache
def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def _output_ui(key: str) -> str | None:
    return st.text_input("Output holding the logits (optional)", key=key, help=OUTPUT_HELP).strip() or None


def _labels_ui(key: str) -> str | None:
    up = st.file_uploader(
        "Class names (optional)",
        type=["txt", "json"],
        key=key,
        help="A text file with one class name per line, or a JSON list; its length must match the model's outputs.",
    )
    return save_upload(up.getvalue(), up.name) if up is not None else None


def _trust_ui(key: str) -> bool:
    trust = st.checkbox("Trust this checkpoint (allow full unpickling)", key=key, help=TRUST_HELP, persist_state=KEEP)
    st.caption(
        ":material/warning: Only needed for a whole pickled model. Unpickling runs code from the file with "
        "your permissions: tick it only for files you trust."
    )
    return trust


def _pinned_ui(url: UrlView, pinned: Sequence[PinnedModel]) -> ModelSpec:
    """The operator's models (a demo): visitors choose among them only."""
    titles = [m.title for m in pinned]
    if _k(K.PINNED) not in st.session_state and url.model and url.model.removeprefix("pinned:") in titles:
        st.session_state[_k(K.PINNED)] = url.model.removeprefix("pinned:")
    title = st.selectbox(
        "Model", titles, key=_k(K.PINNED), help="The models this dashboard's operator made available.",
        persist_state=KEEP,
    )
    return pinned[titles.index(title)].spec


def _sources_ui(trusted: bool) -> str:
    entries = {entry.key: entry for entry in page_sources(trusted)}
    if st.session_state.get(_k(K.SOURCE)) not in entries:
        st.session_state.pop(_k(K.SOURCE), None)
    return st.radio(
        "Model source",
        list(entries),
        format_func=lambda key: entries[key].shown_label(trusted),
        captions=[entry.shown_caption(trusted) for entry in entries.values()],
        key=_k(K.SOURCE),
        persist_state=KEEP,
    )


def _from_link(url: UrlView, names: Sequence[str]) -> None:
    """Point the widgets at a shared link's model: any data-only source named by text (a timm or torchvision
    name, a plug-in's spec); uploads and code cannot travel in a URL."""
    source = source_for(url.model)
    if not shareable_spec(source) or (source.key == "torchvision" and url.model not in names):
        return
    _point_widgets(source, url.model.removeprefix(source.prefix or ""), pretrained=url.weights != "none")


def _point_widgets(source: ModelSource, name: str, pretrained: bool) -> None:
    """Set the source's widgets to ``name`` (before they are drawn)."""
    if source.key == "timm":
        st.session_state[_k(K.TIMM_NAME)] = name
        st.session_state[_k(K.TIMM_PRETRAINED)] = pretrained
    elif source.key == "torchvision":
        st.session_state[_k(K.TV_NAME)] = name
        st.session_state[_k(K.TV_PRETRAINED)] = pretrained
    elif source.key != "default":
        st.session_state[_ask_key(source.key, "spec")] = name
        if asks_for(source.key, "weights") is not None:
            st.session_state[_ask_key(source.key, "weights")] = "DEFAULT" if pretrained else "none"
    st.session_state[_k(K.SOURCE)] = source.key


def _ask_key(source: str, field: str) -> str:
    return _k(f"src_{source}_{field}")


def _ask_ui(source: ModelSource, ask: Ask, trusted: bool) -> object:
    """One question of a registered source, as the widget its kind calls for; its answer as a plain value."""
    key, help_text = _ask_key(source.key, ask.field), ask.help or None
    if ask.kind == "flag":  # the flags a source asks unlock code (trusting a pickle): the operator's alone
        return trusted and st.checkbox(ask.label, key=key, help=help_text, persist_state=KEEP)
    if ask.kind == "choice" and ask.choices:
        return st.selectbox(ask.label, ask.choices, key=key, help=help_text, persist_state=KEEP)
    if ask.kind in ("text", "choice"):
        return st.text_input(ask.label, key=key, help=help_text, persist_state=KEEP).strip() or None
    types = list(ask.suffixes) or None
    if ask.kind == "file":
        return _saved(st.file_uploader(ask.label, type=types, key=key, help=help_text), list(ask.suffixes))
    files = st.file_uploader(ask.label, type=types, key=key, help=help_text, accept_multiple_files=True)
    return save_folder([(f.name, f.getvalue()) for f in files]) if files else None


def _asked_ui(source: ModelSource, trusted: bool) -> ModelSpec | None:
    """A registered source without a form of its own: each of its questions in order; ``None`` until every
    required one is answered."""
    answers = {ask.field: _ask_ui(source, ask, trusted) for ask in source.asks}
    missing = [ask.label for ask in source.asks if ask.required and not answers[ask.field]]
    if missing:
        st.info(f"{source.label}: fill in {', '.join(missing)}.", icon=":material/edit:")
        return None
    return ModelSpec(
        source=source.key,
        name=str(answers.get("spec") or ""),
        weights="DEFAULT" if answers.get("weights", "DEFAULT") == "DEFAULT" else None,
        arch=answers.get("arch"),
        checkpoint=answers.get("checkpoint"),
        labels=answers.get("labels"),
        trust=bool(answers.get("trust_checkpoint")),
        import_path=answers.get("import_paths") if trusted else None,
        allow_code=trusted,
        output=answers.get("output"),
    )


def model_ui(url: UrlView, access: Access, prefix: str = "") -> ModelSpec | None:
    """The model the user asks for, or ``None`` while a custom model is incomplete.

    What a visitor may ask for follows the server's :class:`~dashboard.access.Access`: the operator's
    list only, when there is one; no code-bearing source (factory, pickle, TorchScript) unless the
    operator trusts visitors. ``prefix``: the form's widget keys start with it (a second model's form).
    """
    token = _PREFIX.set(prefix)
    try:
        return _model_ui(url, access)
    finally:
        _PREFIX.reset(token)


def _model_ui(url: UrlView, access: Access) -> ModelSpec | None:
    if access.pinned:
        return _pinned_ui(url, access.pinned)
    trusted = access.trust_visitors
    names = list_torchvision_models()
    if _k(K.SOURCE) not in st.session_state and url.model:
        _from_link(url, names)
    source = _sources_ui(trusted)
    if source == "default":
        return ModelSpec()
    if source == "timm":
        return _timm_ui(trusted)
    if source == "hf":
        return _hf_ui(trusted)
    if source == "torchvision":
        st.session_state.setdefault(_k(K.TV_NAME), "resnet50")
        st.session_state.setdefault(_k(K.TV_PRETRAINED), True)
        if st.session_state.pop(_k(K.TV_PRETRAINED_OFF), False):
            st.session_state[_k(K.TV_PRETRAINED)] = False
        name = st.selectbox("Architecture", names, key=_k(K.TV_NAME), persist_state=KEEP)
        pretrained = st.toggle(
            "Pretrained ImageNet weights",
            key=_k(K.TV_PRETRAINED),
            persist_state=KEEP,
            help="Downloaded from download.pytorch.org the first time. Offline, the page says so and switches "
            "this off: random weights, flagged as untrained wherever results show.",
        )
        return ModelSpec(
            source="torchvision", name=name, weights="DEFAULT" if pretrained else None,
            labels=_labels_ui(_k("tv_labels")),
        )
    if source == "checkpoint":
        return _checkpoint_ui(names, trusted)
    if source == "factory":
        return _factory_ui()
    return _asked_ui(registered(source), trusted)


def _checkpoint_ui(names: Sequence[str], trusted: bool) -> ModelSpec | None:
    """A checkpoint upload; on a server that does not trust visitors, weights only, for a known architecture."""
    # Every checkpoint ending is taken, for visitors too: Streamlit refuses another ending with an exception before
    # the page runs, and the loader refuses what carries code with a clear line (the real guard).
    types = CHECKPOINT_TYPES
    what = (
        "Checkpoint (.safetensors, .pt, .pth, .ckpt, .pt2)" if trusted
        else "Weights: a state dict (.safetensors, .pt, .pth, .ckpt)"
    )
    ckpt = st.file_uploader(what, type=types, key=_k("ckpt_file"))
    archs = [NO_ARCH, DEFAULT_MODEL, *names] if trusted else [DEFAULT_MODEL, *names]
    arch = st.selectbox(
        "Architecture of a state dict" if trusted else "Architecture",
        archs,
        key=_k("ckpt_arch"),
        persist_state=KEEP,
        help="A state dict (.safetensors, .pt) holds only weights: name the torchvision architecture they fit "
        "(for a timm model's weights, use the timm source)."
        + (" Not needed for exported programs or TorchScript." if trusted else ""),
    )
    trust = _trust_ui(_k("ckpt_trust")) if trusted else False
    labels = _labels_ui(_k("ckpt_labels"))
    output = _output_ui(_k("ckpt_output"))
    if ckpt is None:
        st.info("Upload a checkpoint to load it.", icon=":material/upload_file:")
        return None
    return ModelSpec(
        source="checkpoint",
        name=ckpt.name,
        weights=None,
        arch=None if arch == NO_ARCH else arch,
        checkpoint=_saved(ckpt, types),
        labels=labels,
        trust=trust,
        allow_code=trusted,
        output=output,
    )


def _factory_ui() -> ModelSpec | None:
    factory = st.text_input(
        "Factory",
        placeholder="package.module:function",
        key=_k("factory_spec"),
        persist_state=KEEP,
        help="A function that returns an nn.Module (called with no arguments).",
    ).strip()
    folder = st.text_input(
        "Folder to add to the import path", placeholder="/path/to/your/code", key=_k("factory_path"), persist_state=KEEP
    ).strip()
    ckpt = st.file_uploader("State dict for it (optional)", type=STATE_DICT_TYPES, key=_k("factory_ckpt"))
    trust = _trust_ui(_k("factory_trust"))
    labels = _labels_ui(_k("factory_labels"))
    output = _output_ui(_k("factory_output"))
    if not factory:
        st.info("Name a factory such as `seed_net:build` to load it.", icon=":material/code:")
        return None
    return ModelSpec(
        source="factory",
        name=factory,
        weights=None,
        checkpoint=_saved(ckpt, STATE_DICT_TYPES),
        labels=labels,
        trust=trust,
        import_path=folder or None,
        output=output,
    )


def _saved(upload, types: list[str]) -> str | None:  # upload: UploadedFile | None
    return save_upload(upload.getvalue(), upload.name, tuple(f".{t}" for t in types)) if upload is not None else None


def _timm_ui(trusted: bool) -> ModelSpec | None:
    """A timm model by name: pretrained (downloaded once), random, or with the user's own weights."""
    if not _installed("timm"):
        st.info(TIMM_INSTALL, icon=":material/download:")
        return None
    names = _timm_names()
    st.session_state.setdefault(_k(K.TIMM_NAME), "convnext_tiny")
    st.session_state.setdefault(_k(K.TIMM_PRETRAINED), True)
    if st.session_state.pop(_k(K.TIMM_PRETRAINED_OFF), False):
        st.session_state[_k(K.TIMM_PRETRAINED)] = False
    if st.session_state[_k(K.TIMM_NAME)].split(".")[0] not in names:
        st.session_state[_k(K.TIMM_NAME)] = "convnext_tiny"
    name = st.selectbox(
        "timm architecture",
        names,
        key=_k(K.TIMM_NAME),
        help="Type to search timm's models (timm.list_models()).",
        persist_state=KEEP,
    )
    ckpt = st.file_uploader(
        "Your weights for it (optional: .safetensors, .pt, .pth)",
        type=STATE_DICT_TYPES,
        key=_k("timm_ckpt"),
        help="A state dict of this architecture (a fine-tuned checkpoint); the head is sized from the file.",
    )
    pretrained = st.toggle(
        "Pretrained weights",
        key=_k(K.TIMM_PRETRAINED),
        persist_state=KEEP,
        disabled=ckpt is not None,
        help="timm's pretrained weights, from the Hugging Face cache or downloaded once. Offline, the page says so "
        "and switches this off: random weights, flagged as untrained wherever results show.",
    )
    labels = _labels_ui(_k("timm_labels"))
    return ModelSpec(
        source="timm",
        name=name,
        weights="DEFAULT" if pretrained and ckpt is None else None,
        checkpoint=_saved(ckpt, STATE_DICT_TYPES),
        labels=labels,
        allow_code=trusted,
    )


def _hf_ui(trusted: bool) -> ModelSpec | None:
    """A Hugging Face image classifier: a folder on this machine (not for the visitors of a server that does
    not trust them: they may not name the server's folders), or its files uploaded together."""
    if not _installed("transformers"):
        st.info(HF_INSTALL, icon=":material/download:")
        return None
    folder = "" if not trusted else st.text_input(
        "Folder on this machine",
        key=_k("hf_folder"),
        persist_state=KEEP,
        placeholder="/path/to/model (what save_pretrained wrote)",
        help="A folder with config.json, model.safetensors (or pytorch_model.bin) and preprocessor_config.json; "
        "or a hub id already in the local Hugging Face cache. Nothing is downloaded and no code from it runs.",
    ).strip()
    files = st.file_uploader(
        "… or upload its files" if trusted else "The model's files",
        type=HF_FILES,
        accept_multiple_files=True,
        key=_k("hf_files"),
        help="config.json, model.safetensors and preprocessor_config.json, together.",
    )
    if files:
        names = {f.name for f in files}
        if "config.json" not in names:
            st.warning("The upload needs the folder's config.json too.", icon=":material/description:")
            return None
        folder = save_folder([(f.name, f.getvalue()) for f in files])
    if not folder:
        st.info("Give the folder of a saved transformers image classifier.", icon=":material/folder_open:")
        return None
    return ModelSpec(source="hf", name=folder, weights=None, allow_code=trusted)


def request_model(spec: ModelSpec) -> bool:
    """Point the model widgets at ``spec`` (from a widget callback, before they are drawn); False if they cannot
    name it (an upload or a factory: the user picks those again)."""
    source = registered(spec.source)
    if spec.source != "default" and (spec.url_model is None or spec.labels is not None or source is None):
        return False
    _point_widgets(source, spec.name, pretrained=spec.weights is not None)
    return True

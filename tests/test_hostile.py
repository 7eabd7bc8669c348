"""The hostile visitor's corpus (tests/hostile.py) against the dashboard in untrusted mode.

The judge and the watcher are tested first, on their own (cheap: they must flag what they exist to
flag, or a passing corpus proves nothing). Then the corpus: each case is a test of its own, played in
children of at most 2 at a time (one child plays many cases; its memory is watched and capped).
The whole corpus runs (about 2 minutes with 2 children on 2 cores); ``HOSTILE_SAMPLE=3`` plays every third
case only (a representative sample of every category, 54 cases). ``benchmarks/hostile.py`` plays the whole
corpus and prints the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashboard.text import plain
from tests import hostile
from tests.hostile import CASES, Seen, judge

ROOT = Path("/srv/data")


# ---- the judge flags what it must, and only that ---------------------------------------------------------------
def test_the_corpus_is_large_and_its_names_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 110 and len(set(names)) == len(names)
    cats = {c.category for c in CASES}
    assert cats == {"url", "image", "checkpoint", "hf", "zip", "results", "video"}
    for case in CASES:
        for step in case.steps:
            if step[0] == "upload":
                assert all(b in hostile.BUILDERS for _, b in step[2]), case.name
        assert case.folder is None or case.folder in hostile.FOLDERS, case.name


def test_a_rendered_link_is_flagged_and_an_escaped_one_is_not() -> None:
    raw = Seen(markdown=[("warning", "body", f"The link asks for layer '{hostile.MD}'")])
    assert any(r.startswith("markdown:") for r in judge(raw, ROOT))
    brackets_only = hostile.MD.replace("[", "\\[").replace("]", "\\]").replace("!", "\\!")
    assert any(r.startswith("markdown:") for r in judge(Seen(markdown=[("warning", "body", brackets_only)]), ROOT))
    # the bare URL left behind is still autolinked by GFM: only the page's own escape (its URLs broken) passes
    assert not judge(Seen(markdown=[("warning", "body", f"layer '{plain(hostile.MD)}'")]), ROOT)
    assert not judge(Seen(markdown=[("warning", "body", f"layer `{hostile.MD}`")]), ROOT)  # a code span
    html = Seen(html=[("html", "body", f"<div>{hostile.HTML}</div>")])
    assert any("visitor HTML" in r for r in judge(html, ROOT))
    assert not judge(Seen(html=[("html", "body", "<style>.x img { }</style><img src='data:'>")]), ROOT)
    drawn = Seen(plotly=[("plotly_chart", "text", f"Grad-CAM · {hostile.HTML}")])
    assert any("plotly" in r for r in judge(drawn, ROOT))
    assert not judge(Seen(plotly=[("plotly_chart", "text", "Grad-CAM · &lt;a href=https://evil.example&gt;")]), ROOT)


def test_server_paths_and_tracebacks_are_flagged() -> None:
    for text in (f"cannot read {ROOT}/runs/a", "/tmp/cam_dashboard_uploads/x/w.pt", f"{hostile.ROOT}/dashboard",
                 "lib/python3.11/site-packages/torch/serialization.py"):
        assert any(r.startswith("path:") for r in judge(Seen(texts=[("error", "body", text)]), ROOT)), text
    assert not judge(Seen(texts=[("error", "body", "'../../etc' is outside the data root")]), ROOT)
    assert judge(Seen(exceptions=["ValueError: boom"]), ROOT) == ["traceback: ValueError: boom"]


def test_the_evil_factory_and_pickles_write_their_markers(tmp_path: Path, monkeypatch) -> None:
    """The payloads really run code when loaded unsafely: a marker absent after a case means something."""
    import pickle

    import torch

    monkeypatch.setenv("HOSTILE_MARKERS", str(tmp_path))
    hostile.evil_factory()
    assert (tmp_path / "factory.marker").exists()
    ctx = hostile.Ctx(tmp_path, tmp_path, tmp_path, "c")
    import io

    torch.load(io.BytesIO(hostile.BUILDERS["pickle_marker"](ctx)), weights_only=False)
    assert (tmp_path / "c.marker").read_text() == "pwned"
    pickle.loads(hostile.BUILDERS["pickle_raw"](ctx))
    assert (tmp_path / "c.raw").exists()


def test_the_watcher_kills_a_child_past_the_cap(monkeypatch, tmp_path: Path) -> None:
    """A case whose server balloons is killed at the cap and fails with 'memory'; the batch goes on."""
    monkeypatch.setattr(hostile, "limit_sum", lambda: {"tiny": 0})
    monkeypatch.setattr(hostile, "PROVISIONAL_BASELINE", 400 * 2**20)
    monkeypatch.setattr(hostile, "child_main", None)  # not used: the child below is a stand-in
    code = ("import sys,time; print('BASE 0', flush=True); print('START url_image_layer_md', flush=True); "
            "x = bytearray(2**30); time.sleep(5)")
    real = hostile.subprocess.Popen

    def fake(args, **kw):
        return real([args[0], "-c", code], **{k: v for k, v in kw.items() if k != "cwd"})

    monkeypatch.setattr(hostile.subprocess, "Popen", fake)
    (out,) = hostile.run_batch(["url_image_layer_md"], tmp_path)
    assert out.reasons and out.reasons[0].startswith("memory: killed at RSS"), out.reasons


# ---- the corpus ----------------------------------------------------------------------------------------------
def _selected() -> list:
    step = int(os.environ.get("HOSTILE_SAMPLE") or 1)
    return CASES[::step]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    shared = tmp_path_factory.mktemp("hostile-shared")
    return {o.name: o for o in hostile.run_corpus(_selected(), jobs=2, shared=shared)}


@pytest.mark.slow
@pytest.mark.parametrize("case", _selected(), ids=lambda c: c.name)
def test_a_hostile_visitor_gets_one_line_and_nothing_more(outcomes: dict, case) -> None:
    out = outcomes[case.name]
    assert out.passed, f"{case.name}: " + " | ".join(out.reasons)

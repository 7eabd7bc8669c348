"""A dashboard served to untrusted visitors ("Safe to share, round two"): what they see when something breaks,
what they can inject, what they can ask for, and what one server or session can do to another.

Each test reproduces one finding of the issue: a clear one-line message, no traceback (no ``exception``
element in AppTest), no absolute server path in anything shown or downloaded, nothing left on disk.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from cam_core.batch import BatchJob, run_local
from cam_core.errors import CamError
from cam_core.io import write_sample_folder
from cam_core.limits import MAX_CLASSES_PER_REQUEST
from dashboard import dataroot
from dashboard.text import plain
from dashboard.views.dataset import table as tb

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 180
EVIL = "[Your session expired, log in again](https://evil.example/login) ![x](https://evil.example/pixel.png)"


def _no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _shown(at: AppTest) -> list[str]:
    """Every text the page shows in a message, Markdown or caption."""
    kinds = ("error", "warning", "info", "success", "markdown", "caption", "subheader", "title")
    return [str(e.value) for kind in kinds for e in getattr(at, kind)]


def _renders_a_link(body: str) -> bool:
    """Whether Markdown would make a link or image of ``body`` (an unescaped ``](`` or ``![``)."""
    return bool(re.search(r"(?<!\\)\]\(|(?<!\\)!\[", body))


# ---- 6: Markdown injection ------------------------------------------------------------------------------------
def test_plain_escapes_markdown_and_html() -> None:
    text = plain(EVIL)
    assert not _renders_a_link(text)
    assert text.startswith("\\[Your session expired, log in again\\](https\\://evil.example/login) !\\[x\\]")
    assert plain("<img src=x onerror=alert(1)>") == "\\<img src=x onerror=alert(1)\\>"
    assert plain("a\nb\r\n  c") == "a b c" and len(plain("x" * 5000)) < 400
    assert plain(":red[big] **bold** `code` $x$ _em_") == ":red\\[big\\] \\*\\*bold\\*\\* \\`code\\` \\$x\\$ \\_em\\_"
    assert plain("cat_001.jpg") == "cat_001.jpg" and plain("1. x") == "1\\. x" and plain("www.x.io") == "www\\.x.io"


def test_a_link_whose_layer_is_markdown_shows_it_as_text(monkeypatch) -> None:
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["layer"] = EVIL
    at.run()
    _no_failure(at)
    (note,) = [w.value for w in at.warning if "The link asks for layer" in w.value]
    assert plain(EVIL) in note and not _renders_a_link(note)
    assert not any(_renders_a_link(b) for b in _shown(at))


# ---- 3 and 5: results folders crafted to break the Dataset page ------------------------------------------------
@pytest.fixture(scope="module")
def results_root(tmp_path_factory, lite0) -> Path:
    """A data root with ``photos/<class>/`` and one good results folder ``runs/good``."""
    base = tmp_path_factory.mktemp("shared_root").resolve()
    write_sample_folder(base / "photos", per_photo=1, seed=3)
    run_local(BatchJob(classes="pred,label", labels=True), base / "photos", base / "runs" / "good", workers=0,
              model=lite0)
    return base


def _craft(root: Path, name: str, *, run=None, table=None) -> str:
    """A copy of ``runs/good`` as ``runs/<name>`` with ``run`` (a function of run.json) and ``table`` changed."""
    good, bad = root / "runs" / "good", root / "runs" / name
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir(parents=True)
    info = json.loads((good / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps(run(info) if run else info))
    t = pq.read_table(good / "results.parquet")
    pq.write_table(table(t) if table else t, bad / "results.parquet")
    return f"runs/{name}"


def _set(t: pa.Table, name: str, values, typ=None) -> pa.Table:
    i = t.column_names.index(name)
    return t.set_column(i, name, pa.array(values, typ or t.schema.field(name).type))


def _edit(info: dict, **changes) -> dict:
    return {**info, **changes}


CRAFTED = {
    "nan_label": (None, lambda t: _set(t, "label", [float("nan")] * t.num_rows, pa.float64()), "class ids"),
    "pred_out_of_range": (None, lambda t: _set(t, "pred", [5000] * t.num_rows), "outside"),
    "negative_class_id": (None, lambda t: _set(t, "class_ids", [[-3]] * t.num_rows), "outside"),
    "missing_columns": (None, lambda t: t.drop_columns(["pred", "map_shape"]), "lacks the columns pred, map_shape"),
    "unknown_method": (lambda r: _edit(r, methods=["nosuchcam"]), None, "unknown method"),
    "wrong_map_shape": (None, lambda t: _set(t, "map_shape", [[2, 99, 99]] * t.num_rows), "map_shape"),
    "run_not_an_object": (lambda r: [1, 2, 3], None, "not a JSON object"),
    "empty_class_names": (lambda r: _edit(r, class_names=[]), None, "class_names"),
    "blank_class_names": (lambda r: _edit(r, class_names=[""] * len(r["class_names"])), None, "class_names"),
    "no_preprocessing": (lambda r: _edit(r, preprocessing="x"), None, "preprocessing"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_results_are_refused_in_one_line_when_opened(results_root: Path, case: str) -> None:
    run, table, needle = CRAFTED[case]
    rel = _craft(results_root, case, run=run, table=table)
    with pytest.raises(CamError, match=needle) as err:
        tb.load_results(results_root / rel)
    assert "\n" not in str(err.value) and str(results_root) not in str(err.value)


def test_the_good_results_pass_the_check(results_root: Path) -> None:
    results = tb.load_results(results_root / "runs" / "good")
    assert len(results.frame) == 4


def _dataset_page(root: Path, monkeypatch, folder: str) -> AppTest:
    """The Dataset page as ``/dataset?folder=...`` opens it (drawn as app.py draws it, behind its boundary)."""
    monkeypatch.setenv(dataroot.ENV, str(root))
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_function(_dataset_app, default_timeout=TIMEOUT)
    at.query_params["folder"] = folder
    return at.run()


def _dataset_app() -> None:
    from dashboard import shell
    from dashboard.feedback import boundary
    from dashboard.views.dataset import page as dataset
    from dashboard.views.image import page as image

    shell.register_pages({"image": image.page()})
    shell.shared_sidebar()
    boundary(dataset.main, "drawing the Dataset page")()


@pytest.mark.parametrize("case", ["nan_label", "wrong_map_shape", "run_not_an_object", "unknown_method",
                                  "missing_columns", "empty_class_names"])
def test_the_dataset_page_says_one_line_for_crafted_results(results_root: Path, monkeypatch, case: str) -> None:
    run, table, needle = CRAFTED[case]
    rel = _craft(results_root, case, run=run, table=table)
    at = _dataset_page(results_root, monkeypatch, rel)
    _no_failure(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and needle in errors[0], errors
    assert not any(str(results_root) in b for b in _shown(at))


def test_paths_on_the_dataset_page_and_in_its_csv_are_relative_to_the_data_root(results_root: Path,
                                                                              monkeypatch) -> None:
    def one_fails(t: pa.Table) -> pa.Table:
        errors = t.column("error").to_pylist()
        errors[0] = f"cannot read {t.column('path')[0].as_py()}: broken"
        return _set(t, "error", errors)

    rel = _craft(results_root, "one_failed", table=one_fails)
    at = _dataset_page(results_root, monkeypatch, rel)
    _no_failure(at)
    (csv,) = [b for b in at.get("download_button") if "CSV" in b.proto.label]
    shown = [*_shown(at), *(str(w.proto.help) for w in at.selectbox), *(str(d.value) for d in at.dataframe)]
    assert not any(str(results_root) in s for s in shown)
    results = tb.load_results(results_root / rel)
    text = tb.export_csv(results.frame, results_root)
    assert str(results_root) not in text and "photos/" in text
    failed = tb.failed_files(results.frame[results.frame.error.notna()], results_root)
    assert failed.file.iloc[0].startswith("photos/") and str(results_root) not in failed.error.iloc[0]
    assert csv is not None


# ---- 3: one error boundary per page ---------------------------------------------------------------------------
@pytest.mark.parametrize("trust", ["no", "yes"])
def test_an_unexpected_error_is_one_line_with_an_id_in_the_log(monkeypatch, caplog, trust: str) -> None:
    from dashboard.views.image import panels

    def broken() -> None:
        raise RuntimeError("/srv/secret/site-packages/thing.py exploded")

    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", trust)
    monkeypatch.setattr(panels, "show_header", broken)
    caplog.set_level(logging.ERROR, logger="dashboard.feedback")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _no_failure(at)
    (error,) = [e.value for e in at.error if "Something went wrong" in e.value]
    eid = re.search(r"error ([0-9a-f]{8})", error).group(1)
    assert "\n" not in error
    logged = [r for r in caplog.records if eid in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the operator's log has the traceback, under the id
    if trust == "no":
        assert "/srv/secret" not in error and "RuntimeError" not in error and not at.expander


def test_visitors_of_a_server_beyond_loopback_get_no_error_details(monkeypatch) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.argv=['x']\n"
        "from streamlit import config\n"
        "config.set_option('server.address', '0.0.0.0')\n"
        "import streamlit as st\n"
        "import runpy; runpy.run_path('dashboard/app.py', run_name='dashboard_app')\n"
        "print('DETAILS', st.get_option('client.showErrorDetails'))\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
           "CAMDASH_WARMUP": "0"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "DETAILS none" in out.stdout, out.stderr[-2000:]


# ---- 8: how many classes one request may ask for ---------------------------------------------------------------
def test_a_link_asking_for_300_classes_explains_20_and_says_so(monkeypatch) -> None:
    import time

    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["classes"] = ",".join(str(i) for i in range(300))
    start = time.perf_counter()
    at.run()
    _no_failure(at)
    assert time.perf_counter() - start < 60
    assert at.multiselect(key="class_picker").value == list(range(MAX_CLASSES_PER_REQUEST))
    (note,) = [i.value for i in at.info if "classes were asked for" in i.value]
    assert note.startswith(f"300 classes were asked for; the first {MAX_CLASSES_PER_REQUEST} are explained")
    assert "\n" not in note
    assert at.query_params["classes"] == ",".join(str(i) for i in range(MAX_CLASSES_PER_REQUEST))


def test_typing_top300_is_cut_to_the_limit_with_a_notice(monkeypatch) -> None:
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _no_failure(at)
    at.text_input(key="class_find").set_value("top300").run()
    _no_failure(at)
    assert len(at.multiselect(key="class_picker").value) == MAX_CLASSES_PER_REQUEST
    assert [i.value for i in at.info if "300 classes were asked for" in i.value]
    assert at.number_input(key="top_k").max == MAX_CLASSES_PER_REQUEST


def test_set_classes_never_keeps_more_than_the_limit() -> None:
    def page() -> None:
        import streamlit as st

        from dashboard import state

        state.set_classes(("m", "i"), range(100))
        st.write(str(len(st.session_state[state.K.CLASSES][("m", "i")])))
        st.write(state.classes_cut_note() or "")

    at = AppTest.from_function(page).run()
    assert at.markdown[0].value == str(MAX_CLASSES_PER_REQUEST) and "100 classes" in at.markdown[1].value

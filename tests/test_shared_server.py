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
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from cam_core.batch import BatchJob, run_local
from cam_core.batch.query import ResultsQuery
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
    """Whether Markdown would make a link or image of ``body``: an unescaped ``](`` or ``![``, or what GFM autolinks
    (a bare ``http(s)://`` URL, ``www.`` or an e-mail address: a backslash does not stop those)."""
    return bool(re.search(r"(?<!\\)\]\(|(?<!\\)!\[|https?\\?://|\bwww\\?\.|\w\\?@\w", body))


# ---- 6: Markdown injection ------------------------------------------------------------------------------------
def test_plain_escapes_markdown_and_html() -> None:
    text = plain(EVIL)
    assert not _renders_a_link(text)
    assert text.startswith("\\[Your session expired, log in again\\](https:\u2060//evil.example/login) !\\[x\\]")
    assert plain("<img src=x onerror=alert(1)>") == "\\<img src=x onerror=alert(1)\\>"
    assert plain("a\nb\r\n  c") == "a b c" and len(plain("x" * 5000)) < 400
    assert plain(":red[big] **bold** `code` $x$ _em_") == ":red\\[big\\] \\*\\*bold\\*\\* \\`code\\` \\$x\\$ \\_em\\_"
    assert plain("cat_001.jpg") == "cat_001.jpg" and plain("1. x") == "1\\. x" and plain("www.x.io") == "www\u2060.x.io"
    assert plain("me@evil.example") == "me@\u2060evil.example"  # no GFM e-mail autolink


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


def _craft(root: Path, name: str, *, run=None, table=None, statistics: bool = True) -> str:
    """A copy of ``runs/good`` as ``runs/<name>`` with ``run`` (a function of run.json) and ``table`` changed."""
    good, bad = root / "runs" / "good", root / "runs" / name
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir(parents=True)
    info = json.loads((good / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps(run(info) if run else info))
    t = pq.read_table(good / "results.parquet")
    pq.write_table(table(t) if table else t, bad / "results.parquet", write_statistics=statistics)
    return f"runs/{name}"


def _set(t: pa.Table, name: str, values, typ=None) -> pa.Table:
    i = t.column_names.index(name)
    return t.set_column(i, name, pa.array(values, typ or t.schema.field(name).type))


def _edit(info: dict, **changes) -> dict:
    return {**info, **changes}


CRAFTED = {
    "nan_label": (None, lambda t: _set(t, "label", [float("nan")] * t.num_rows, pa.float64()), "class ids"),
    "pred_out_of_range": (None, lambda t: _set(t, "pred", [5000] * t.num_rows), "outside"),
    "null_pred": (None, lambda t: _set(t, "pred", [None] * t.num_rows), "no prediction and no error"),
    "negative_class_id": (None, lambda t: _set(t, "class_ids", [[-3]] * t.num_rows), "outside"),
    "top5_out_of_range": (None, lambda t: _set(t, "top5_ids", [[1, 0, 9000]] * t.num_rows), "top5_ids holds"),
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
        ResultsQuery.open(results_root / rel)
    assert "\n" not in str(err.value) and str(results_root) not in str(err.value)


def test_top5_ids_are_checked_by_a_scan_where_the_files_keep_no_statistics(results_root: Path) -> None:
    """The top-5 lists stay in the files: their range comes from the footers' statistics, or else a scan."""
    bad = _craft(results_root, "top5_no_stats", statistics=False,
                 table=lambda t: _set(t, "top5_ids", [[1, 0, 9000]] * t.num_rows))
    with pytest.raises(CamError, match="top5_ids holds class ids outside"):
        ResultsQuery.open(results_root / bad)
    good = _craft(results_root, "good_no_stats", statistics=False)
    assert ResultsQuery.open(results_root / good).rows == 4


def test_the_good_results_pass_the_check(results_root: Path) -> None:
    results = ResultsQuery.open(results_root / "runs" / "good")
    assert results.rows == 4


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


@pytest.mark.parametrize("case", ["nan_label", "null_pred", "wrong_map_shape", "run_not_an_object", "unknown_method",
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
    results = ResultsQuery.open(results_root / rel)
    text = tb.export_csv(results.table("path"), results_root)
    assert str(results_root) not in text and "photos/" in text
    failed = tb.failed_files(results.failed(), results_root).to_pylist()
    assert failed[0]["file"].startswith("photos/") and str(results_root) not in failed[0]["error"]
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
@pytest.fixture
def fresh_maps():
    """Forget the maps these tests computed (20 classes each): other tests count what they compute."""
    from dashboard.views.image.compute import map_cache

    yield
    map_cache.clear()


@pytest.mark.usefixtures("fresh_maps")
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


@pytest.mark.usefixtures("fresh_maps")
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


# ---- 11: /_camdash/stats only for the operator -----------------------------------------------------------------
def _stats_request(host: str, headers: dict[str, str] | None = None, query: str = ""):
    from starlette.requests import Request

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/_camdash/stats", "headers": raw,
                    "query_string": query.encode(), "client": (host, 50000)})


def test_stats_answer_this_machine_or_the_operators_token(monkeypatch) -> None:
    import asyncio

    from dashboard.server import stats

    monkeypatch.delenv(stats.ENV_TOKEN, raising=False)
    assert stats.allowed(_stats_request("127.0.0.1")) and stats.allowed(_stats_request("::1"))
    assert not stats.allowed(_stats_request("10.1.2.3"))
    assert not stats.allowed(_stats_request("127.0.0.1", {"X-Forwarded-For": "10.1.2.3"}))  # through a proxy
    assert not stats.allowed(_stats_request("10.1.2.3", query="token="))
    response = asyncio.run(stats.endpoint(_stats_request("10.1.2.3")))
    assert response.status_code == 404 and b"rss" not in response.body
    monkeypatch.setenv(stats.ENV_TOKEN, "s3cret-token")
    assert stats.allowed(_stats_request("10.1.2.3", {"Authorization": "Bearer s3cret-token"}))
    assert stats.allowed(_stats_request("10.1.2.3", query="token=s3cret-token"))
    assert not stats.allowed(_stats_request("10.1.2.3", {"Authorization": "Bearer wrong"}))
    assert not stats.allowed(_stats_request("10.1.2.3", query="token=s3cret"))
    ok = asyncio.run(stats.endpoint(_stats_request("10.1.2.3", query="token=s3cret-token")))
    assert ok.status_code == 200 and "rss_bytes" in json.loads(ok.body)


def test_camdash_passes_the_operators_new_options() -> None:
    from dashboard.launch import own_options

    env, rest = own_options(["--stats-token", "t", "--upload-quota", "20G", "--shared-uploads", "no", "--x"])
    assert env == {"CAMDASH_STATS_TOKEN": "t", "CAMDASH_UPLOAD_QUOTA": "20G", "CAMDASH_SHARED_UPLOADS": "no"}
    assert rest == ["--x"]
    with pytest.raises(SystemExit):
        own_options(["--upload-quota", "lots"])


# ---- 9: two servers on one machine ----------------------------------------------------------------------------
_OTHER_SERVER = """
import os, sys, time
from pathlib import Path
from dashboard import uploads
uploads.UPLOAD_ROOT = Path(sys.argv[1])
folder = uploads.server_folder()
(folder / "its-session" / "0123456789abcdef").mkdir(parents=True)
(folder / "its-session" / "0123456789abcdef" / "w.pt").write_bytes(b"weights")
print(folder, flush=True)
if sys.argv[2] == "run":
    time.sleep(120)
os._exit(0)  # as a killed server ends: no clean-up at exit
"""


def test_a_starting_server_removes_only_the_uploads_of_servers_that_stopped(tmp_path: Path, monkeypatch) -> None:
    import subprocess
    import sys

    from dashboard import uploads

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}

    def other(mode: str) -> tuple[subprocess.Popen, Path]:
        proc = subprocess.Popen([sys.executable, "-c", _OTHER_SERVER, str(tmp_path), mode], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)
        return proc, Path(proc.stdout.readline().strip())

    running, running_folder = other("run")
    stopped, stopped_folder = other("exit")
    stopped.wait(timeout=60)
    try:
        monkeypatch.setattr(uploads, "UPLOAD_ROOT", tmp_path)
        monkeypatch.setattr(uploads, "_SERVER", "server-this-test")
        mine = uploads.server_folder()
        assert mine.name == "server-this-test" and (mine / ".lock").is_file()
        assert uploads.sweep(everything=True) == 1  # at start-up
        assert not stopped_folder.exists()
        assert (running_folder / "its-session" / "0123456789abcdef" / "w.pt").read_bytes() == b"weights"
        assert mine.exists()
    finally:
        running.kill()
        running.wait()
        uploads.release()
    assert not mine.exists()
    assert uploads.sweep(everything=True) == 1 and not running_folder.exists()  # now it stopped too


def test_each_server_saves_uploads_in_its_own_folder(tmp_path: Path, monkeypatch) -> None:
    from dashboard import uploads

    monkeypatch.setattr(uploads, "UPLOAD_ROOT", tmp_path)
    monkeypatch.setattr(uploads, "_SERVER", "server-a")
    path = Path(uploads.save_upload(b"abc", "w.pt"))
    assert path.is_relative_to(tmp_path / "server-a") and path.read_bytes() == b"abc"
    uploads.release()
    assert not (tmp_path / "server-a").exists()


# ---- 4 and 10: zip uploads on the Dataset page -----------------------------------------------------------------
from test_hardening import JPG, _patch_headers, _zip  # noqa: E402 (the hand-built zips of the zip helper's tests)

PHOTOS = _zip(("set/cat/1.jpg", JPG), ("set/dog/2.jpg", JPG))


def test_zip_uploads_are_private_to_their_session(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(dataroot.ENV_SHARED_UPLOADS, raising=False)
    folder = dataroot.extract_zip(PHOTOS, tmp_path, "session-a")
    assert folder.parent == tmp_path / "uploads" / "session-a"
    rel = dataroot.relative(tmp_path, folder)
    assert rel in dataroot.image_folders(tmp_path, "session-a")
    assert not [f for f in dataroot.image_folders(tmp_path, "session-b") if f.startswith("uploads")]
    assert dataroot.visible(rel, "session-a") and not dataroot.visible(rel, "session-b")
    out = dataroot.run_folder(tmp_path, rel, "m", "l", "gradcam", "pred")
    assert out.is_relative_to(tmp_path / "uploads" / "session-a" / "runs")  # its results are the session's too
    (out).mkdir(parents=True)
    (out / "results.parquet").write_bytes(b"x")
    assert dataroot.results_folders(tmp_path, "session-a") == [dataroot.relative(tmp_path, out)]
    assert dataroot.results_folders(tmp_path, "session-b") == []
    monkeypatch.setenv(dataroot.ENV_SHARED_UPLOADS, "yes")  # the operator shares them
    assert dataroot.visible(rel, "session-b") and rel in dataroot.image_folders(tmp_path, "session-b")
    assert dataroot.extract_zip(PHOTOS, tmp_path).parent == tmp_path / "uploads"


def test_zip_uploads_are_held_to_the_data_roots_quota(tmp_path: Path, monkeypatch) -> None:
    big = _zip(("set/cat/1.jpg", b"x" * 3000), ("set/dog/2.jpg", b"y" * 3000))
    monkeypatch.setenv(dataroot.ENV_QUOTA, "8000")
    assert dataroot.upload_quota() == 8000
    dataroot.extract_zip(big, tmp_path, "session-a")
    with pytest.raises(CamError, match=r"^the zip does not fit in the server's space left for zip uploads") as err:
        dataroot.extract_zip(_zip(("set/cat/3.jpg", b"z" * 3000)), tmp_path, "session-b")
    assert "\n" not in str(err.value) and str(tmp_path) not in str(err.value)
    monkeypatch.setenv(dataroot.ENV_QUOTA, "6000")
    with pytest.raises(CamError, match=r"^the server's space for zip uploads is full"):
        dataroot.extract_zip(PHOTOS, tmp_path, "session-b")
    assert not (tmp_path / "uploads" / "session-b").exists() or not any((tmp_path / "uploads" / "session-b").iterdir())
    monkeypatch.setenv(dataroot.ENV_QUOTA, "2G")
    assert dataroot.upload_quota() == 2 * 2**30
    monkeypatch.setenv(dataroot.ENV_QUOTA, "much")
    with pytest.raises(CamError, match="CAMDASH_UPLOAD_QUOTA"):
        dataroot.upload_quota()


def test_zip_uploads_of_ended_sessions_are_swept(tmp_path: Path, monkeypatch) -> None:
    from dashboard import uploads

    monkeypatch.setenv(dataroot.ENV, str(tmp_path))
    monkeypatch.delenv(dataroot.ENV_SHARED_UPLOADS, raising=False)
    alive = dataroot.extract_zip(PHOTOS, tmp_path, "alive-session")
    ended = dataroot.extract_zip(PHOTOS, tmp_path, "ended-session")

    runtime = SimpleNamespace(is_active_session=lambda session_id: session_id == "alive-session")
    monkeypatch.setattr(uploads, "Runtime", SimpleNamespace(exists=lambda: True, instance=lambda: runtime))
    monkeypatch.setattr(uploads.st, "get_option", lambda name: 0)  # no grace period
    monkeypatch.setattr(uploads, "_also", {"zips": dataroot.uploads_place})
    assert uploads.sweep(force=True) >= 1
    assert alive.exists() and not ended.parent.exists()


def _zip_page(root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv(dataroot.ENV, str(root))
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_function(_dataset_app, default_timeout=TIMEOUT).run()
    _no_failure(at)
    at.segmented_control(key="ds_source").set_value("zip").run()
    _no_failure(at)
    return at


BAD_ZIPS = {
    "file_and_folder": (_zip(("cat/a.jpg", JPG), ("cat/a.jpg/b.jpg", JPG)), "both as a file and as a folder"),
    "long_name": (_zip(("cat/" + "n" * 296 + ".jpg", JPG)), "has a name of 300 characters"),
    "deep_path": (_zip(("a/" * 2000 + "x.jpg", JPG)), "folders deep; at most 32"),
    "bad_crc": (_zip(("cat/a.jpg", JPG)).replace(b"not really", b"NOT really", 1), "is corrupt (bad CRC-32)"),
    "encrypted": (_patch_headers(_zip(("cat/a.jpg", JPG)), 6, 8, 0x1), "is encrypted"),
    "compression_99": (_patch_headers(_zip(("cat/a.jpg", JPG)), 8, 10, 99), "uses compression method 99"),
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_a_bad_zip_on_the_dataset_page_is_one_clear_line(tmp_path: Path, monkeypatch, case: str) -> None:
    data, needle = BAD_ZIPS[case]
    at = _zip_page(tmp_path, monkeypatch)
    at.file_uploader(key="ds_zip").set_value((f"{case}.zip", data, "application/zip")).run()
    _no_failure(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert needle.replace("(", "").replace(")", "") in errors[0].replace("\\", "").replace("(", "").replace(")", "")
    assert "Something went wrong" not in errors[0] and str(tmp_path) not in errors[0]
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]  # nothing left on disk


def test_a_good_zip_on_the_dataset_page_is_the_sessions_own(tmp_path: Path, monkeypatch) -> None:
    at = _zip_page(tmp_path, monkeypatch)
    at.file_uploader(key="ds_zip").set_value(("photos.zip", PHOTOS, "application/zip")).run()
    _no_failure(at)
    (owner,) = [p for p in (tmp_path / "uploads").iterdir() if p.is_dir()]  # the session's folder
    (digest,) = [p for p in owner.iterdir() if p.is_dir()]
    assert re.fullmatch(r"[0-9a-f]{16}", digest.name) and not re.fullmatch(r"[0-9a-f]{16}", owner.name)
    assert [c.value for c in at.caption if "Unpacked into" in c.value]


def test_top_k_of_a_model_of_no_class_is_no_traceback() -> None:
    def page() -> None:
        from dashboard.state import UrlView
        from dashboard.views.image import panels

        panels.topk_ui(UrlView(), 0, ("m", "i"), lambda: None)

    at = AppTest.from_function(page).run()
    _no_failure(at)
    assert at.number_input(key="top_k").value == 1


def test_a_missing_data_root_is_one_line_without_its_path(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "no" / "such" / "root"
    monkeypatch.setenv(dataroot.ENV, str(missing))
    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    at = AppTest.from_function(_dataset_app, default_timeout=TIMEOUT).run()
    _no_failure(at)
    (error,) = [e.value for e in at.error]
    assert "is not a folder" in error and str(missing) not in error


def test_class_names_in_charts_are_text_not_links() -> None:
    import numpy as np

    from dashboard.figures import scores_figure

    names = ['<a href="https://evil.example/login">log in</a>', "tabby"]
    fig = scores_figure([0, 1], names, np.array([0.7, 0.3]), np.array([2.0, 1.0]), [0])
    spec = fig.to_json()
    assert "<a href" not in spec and "&lt;a href" in spec


def test_a_fragment_that_fails_is_one_line_and_the_page_stays(monkeypatch) -> None:
    from dashboard.views.image import panels

    def broken(*_args, **_kwargs) -> None:
        raise KeyError("/srv/secret/thing")

    monkeypatch.setenv("CAMDASH_TRUST_VISITORS", "no")
    monkeypatch.setattr(panels, "show_overlays", broken)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _no_failure(at)
    (error,) = [e.value for e in at.error if "Something went wrong while drawing the overlays" in e.value]
    assert re.search(r"error [0-9a-f]{8}", error) and "/srv/secret" not in error
    assert at.multiselect(key="class_picker").value  # the rest of the page is there

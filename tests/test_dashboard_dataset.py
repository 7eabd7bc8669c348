"""The Dataset page's wiring (AppTest, no browser) and its data root (plain functions).

The page is driven as ``app.py`` draws it (the shared sidebar, then the page) through
``AppTest.from_function``; the gallery's items and the confusion matrix are read back from their
components' data, and a click on a matrix cell is its component's trigger sent with the next run. What the
browser draws and a click on a thumbnail: tests/test_dashboard_dataset_e2e.py.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from cam_core import CamError
from cam_core.batch import BatchJob, read_results, run_local
from cam_core.io import write_sample_folder
from dashboard import dataroot
from dashboard.launch import own_options


@pytest.fixture(scope="module")
def root(tmp_path_factory, lite0) -> Path:
    """A data root: ``photos/<class>/`` (2 variants per labelled sample) and ``runs/a`` (pred,label results)."""
    base = tmp_path_factory.mktemp("data_root")
    write_sample_folder(base / "photos", per_photo=2, seed=4)
    run_local(BatchJob(classes="pred,label", labels=True), base / "photos", base / "runs" / "a", workers=0,
              model=lite0)
    return base


@pytest.fixture
def app(dataset_app):
    """The page on this module's data root (conftest's ``dataset_app``)."""
    return dataset_app


def _gallery(at: AppTest) -> dict:
    (data,) = [d for d in (json.loads(c.proto.json) for c in at.get("bidi_component")) if "items" in d]
    return data


def _matrix(at: AppTest) -> dict:
    (data,) = [d for d in (json.loads(c.proto.json) for c in at.get("bidi_component")) if "counts" in d]
    return data


def _click_cell(at: AppTest, i: int, j: int) -> AppTest:
    """Run again as after a click on cell (i, j): the matrix's "cell" trigger with the other widgets' values."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    (matrix,) = [c for c in at.get("bidi_component") if "counts" in json.loads(c.proto.json)]
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=_make_trigger_id(matrix.proto.id, "events"),
                                      json_trigger_value=json.dumps([{"event": "cell", "value": [i, j]}])))
    return at._run(states)


def _no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_a_link_opens_results_with_gallery_summary_and_confusion(app, root) -> None:
    at = app(folder="runs/a")
    _no_failure(at)
    table = read_results(root / "runs" / "a").to_pandas()
    items = _gallery(at)["items"]
    assert len(items) == len(table) == 8
    assert all(i["base"].startswith("data:image/jpeg;base64,") and i["heat"].startswith("data:image/webp")
               for i in items)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "8" and metrics["Failed"] == "0"
    assert metrics["Accuracy"] == f"{table.correct.astype(bool).mean():.1%}"
    matrix = _matrix(at)
    assert matrix["rows"] == sorted(table.label_name.unique(), key=str.lower)
    n_rows, n_cols = len(matrix["rows"]), len(matrix["cols"])
    # Every cell (i, j) is drawn: its count, the count as written in it, its colour (the row share).
    for part in ("counts", "text", "share"):
        assert [len(row) for row in matrix[part]] == [n_cols] * n_rows, part
    counts = np.array(matrix["counts"])
    tabby = matrix["rows"].index("tabby")
    assert counts.sum() == 8 and counts[tabby].sum() == 2
    assert matrix["text"] == [[str(v) if v else "" for v in row] for row in counts]
    assert np.allclose(np.array(matrix["share"]), counts / counts.sum(axis=1, keepdims=True), atol=1e-4)
    assert matrix["selected"] is None
    assert at.query_params["folder"] == "runs/a"


def test_wrong_first_puts_confident_mistakes_on_top(app, root) -> None:
    at = app(folder="runs/a")
    at.selectbox(key="ds_sort").set_value("wrong").run()
    _no_failure(at)
    table = read_results(root / "runs" / "a").to_pandas()
    want = table.assign(right=table.correct.astype(bool)).sort_values(
        ["right", "prob_pred", "path"], ascending=[True, False, True])
    got = [i["title"] for i in _gallery(at)["items"]]
    assert got == [Path(p).name for p in want.path]
    badges = [i["badge"] for i in _gallery(at)["items"]]
    assert badges[: (~want.right).sum()] == ["wrong"] * int((~want.right).sum())
    at.selectbox(key="ds_sort").set_value("low_conf").run()
    assert [i["title"] for i in _gallery(at)["items"]] == [
        Path(p).name for p in table.sort_values(["prob_pred", "path"]).path]


def test_filters_narrow_the_gallery_like_a_confusion_cell(app, root, lite0) -> None:
    """What a click on the cell (true tabby, predicted Egyptian cat) sets: the two class filters."""
    at = app(folder="runs/a")
    at.multiselect(key="ds_true").set_value([281]).run()
    at.multiselect(key="ds_pred").set_value([285]).run()
    _no_failure(at)
    table = read_results(root / "runs" / "a").to_pandas()
    want = table[(table.label == 281) & (table.pred == 285)]
    assert sorted(i["title"] for i in _gallery(at)["items"]) == sorted(Path(p).name for p in want.path)
    assert len(want) >= 1
    at.segmented_control(key="ds_outcome").set_value("correct").run()
    assert _gallery(at)["items"] == []  # tabby is never right here
    csv = at.get("download_button")[0]
    assert "0 rows" in csv.proto.label


def test_a_click_on_a_matrix_cell_filters_the_gallery_to_it(app, root) -> None:
    at = app(folder="runs/a")
    at.segmented_control(key="ds_outcome").set_value("correct").run()
    table = read_results(root / "runs" / "a").to_pandas()
    matrix = _matrix(at)
    i, j = matrix["rows"].index("tabby"), matrix["cols"].index("Egyptian cat")
    for _ in range(2):  # the same cell again: a trigger per click, not a changed value
        _click_cell(at, i, j)
        _no_failure(at)
        assert at.multiselect(key="ds_true").value == [281] and at.multiselect(key="ds_pred").value == [285]
        assert at.segmented_control(key="ds_outcome").value == "all"
        want = table[(table.label == 281) & (table.pred == 285)]
        assert sorted(item["title"] for item in _gallery(at)["items"]) == sorted(Path(p).name for p in want.path)
        assert _matrix(at)["selected"] == [i, j]
        at.multiselect(key="ds_pred").set_value([]).run()  # a filter changed by hand: no cell outlined
        assert _matrix(at)["selected"] is None


def test_a_cells_filters_are_its_true_class_and_its_columns_predictions() -> None:
    from cam_core.batch.query import Confusion
    from dashboard.views.dataset.ui import DS, cell_filters

    conf = Confusion([3, 7], [(3,), (7,), (9, 11)], ["c", "g"], ["c", "g", "2 other classes"], np.ones((2, 3), int))
    assert cell_filters(conf, 1, 2) == {DS.TRUE: [7], DS.PRED: [9, 11], DS.OUTCOME: "all", DS.PAGE: 1,
                                        DS.CELL: (1, 2)}


def test_a_path_outside_the_data_root_is_refused(app, root, tmp_path) -> None:
    for bad in ("..", "/etc", "runs/../../"):
        at = app(folder=bad)
        _no_failure(at)
        assert any("outside the data root" in e.value for e in at.error), bad
        assert not [c for c in at.get("bidi_component") if "items" in json.loads(c.proto.json)]
    # A symlink inside the root that points out of it is refused too.
    outside = tmp_path / "elsewhere"
    run_dir = root / "runs" / "a"
    outside.mkdir()
    for name in ("results.parquet", "run.json"):
        (outside / name).write_bytes((run_dir / name).read_bytes())
    link = root / "sneaky"
    link.symlink_to(outside, target_is_directory=True)
    try:
        at = app(folder="sneaky")
        assert any("outside the data root" in e.value for e in at.error)
    finally:
        link.unlink()


def test_run_a_folder_from_the_page(app, root) -> None:
    at = app()
    _no_failure(at)
    assert at.selectbox(key="ds_folder").value == "photos"
    at.segmented_control(key="ds_classes").set_value("top3").run()
    at.button(key="ds_run").click().run()
    _no_failure(at)
    rel = at.query_params["folder"]
    assert rel.startswith("runs/photos__") and rel.endswith("__top3")
    table = read_results(root / rel).to_pandas()
    assert len(table) == 8 and all(len(ids) == 3 for ids in table.class_ids)
    assert any("8 files: 8 explained now" in s.value for s in at.success)
    assert len(_gallery(at)["items"]) == 8


def test_open_results_opens_nothing_until_a_folder_is_chosen(app, root) -> None:
    """Switching to *Open results* must not start reading the newest folder (a large one takes a while)."""
    at = app()
    at.segmented_control(key="ds_source").set_value("results").run()
    _no_failure(at)
    pick = next(s for s in at.selectbox if s.label == "Results folder")
    assert pick.value is None and "runs/a" in pick.options
    assert not [c for c in at.get("bidi_component") if "items" in json.loads(c.proto.json)]
    assert "folder" not in at.query_params
    pick.set_value("runs/a").run()
    _no_failure(at)
    assert len(_gallery(at)["items"]) == 8 and at.query_params["folder"] == "runs/a"


def test_upload_a_zip_and_run_it(app, root) -> None:
    """A zip of class folders (one top folder, a traversal attempt, a text file) is unpacked under uploads/ and run."""
    photos = sorted((root / "photos").rglob("*.jpg"))[:3]
    data = _zip({**{f"mine/{p.parent.name}/{p.name}": p.read_bytes() for p in photos},
                 "mine/../../escape.jpg": photos[0].read_bytes(), "mine/readme.txt": b"hi"})
    at = app()
    at.segmented_control(key="ds_source").set_value("zip").run()
    at.file_uploader(key="ds_zip").set_value(("mine.zip", data, "application/zip")).run()
    _no_failure(at)
    at.button(key="ds_run").click().run()
    _no_failure(at)
    rel = at.query_params["folder"]
    owner = rel.split("/")[1]  # the upload and its runs are the session's own (tests/test_shared_server.py)
    assert rel.startswith(f"uploads/{owner}/runs/uploads_{owner}_")
    table = read_results(root / rel).to_pandas()
    assert sorted(Path(p).name for p in table.path) == sorted(p.name for p in photos)
    assert all(dataroot.resolve_under(root, p) for p in table.path)  # every file inside the root
    assert set(table.label_name) == {p.parent.name for p in photos}
    assert not list(root.parent.rglob("escape.jpg"))


def test_ten_thousand_rows_build_only_the_thumbnails_on_screen(app, root) -> None:
    """A 10 000-row table (the 8 real rows, each file hard-linked 1 250 times): one page of thumbnails is built."""
    from dashboard.views.dataset.items import thumb_cache
    from dashboard.views.dataset.ui import PAGE_SIZES

    src = root / "runs" / "a"
    big = root / "runs" / "big"
    links = root / "many"
    big.mkdir(parents=True, exist_ok=True)
    links.mkdir(exist_ok=True)
    table = pq.read_table(src / "results.parquet")
    frame = table.to_pandas()
    paths = []
    for k in range(1250):
        for p in frame.path:
            target = links / f"{k:04d}_{Path(p).name}"
            if not target.exists():
                os.link(p, target)
            paths.append(str(target))
    import pyarrow as pa

    rows = pa.concat_tables([table] * 1250)
    rows = rows.set_column(0, "path", pa.array(paths, pa.string()))
    pq.write_table(rows, big / "results.parquet")
    (big / "run.json").write_bytes((src / "run.json").read_bytes())
    before = thumb_cache().built
    at = app(folder="runs/big")
    _no_failure(at)
    assert len(_gallery(at)["items"]) == PAGE_SIZES[0]
    assert thumb_cache().built - before <= 2 * PAGE_SIZES[0]  # a base picture and a heat layer per thumbnail
    assert {m.label: m.value for m in at.metric}["Images"] == "10,000"
    at.number_input(key="ds_page").set_value(417).run()  # the last page
    _no_failure(at)
    assert len(_gallery(at)["items"]) == 10_000 - 416 * PAGE_SIZES[0]


def test_a_folder_of_ray_parts_opens_by_link_without_compaction(app, root) -> None:
    """Parts as Ray writes them (hive-partitioned here), no results.parquet: listed, opened, the gallery drawn."""
    from benchmarks.dataset_folders import replicate
    from cam_core.batch.results import PARTS

    folder = replicate(root / "runs" / "a", root / "runs" / "parts", 60, seed=2, parts=3, hive=True,
                       links=root / "runs" / "parts_images")
    assert not (folder / "results.parquet").exists() and (folder / PARTS / "shard=2").is_dir()
    assert "runs/parts" in dataroot.results_folders(root)
    at = app(folder="runs/parts")
    _no_failure(at)
    items = _gallery(at)["items"]
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Images"]) + int(metrics["Failed"]) == 60 and len(items) == min(24, int(metrics["Images"]))
    assert all(i["base"].startswith("data:image/jpeg") and i["heat"] for i in items)
    assert not (folder / "results.parquet").exists()  # read in place


# ---- the data root -----------------------------------------------------------------------------------------


def test_resolve_under_refuses_what_leaves_the_root(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    assert dataroot.resolve_under(root, "a/b") == (root / "a" / "b").resolve()
    assert dataroot.resolve_under(root, str(root / "a")) == (root / "a").resolve()
    for bad in ("..", "a/../../x", "/", str(tmp_path)):
        with pytest.raises(CamError, match="outside the data root"):
            dataroot.resolve_under(root, bad)
    (root / "out").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(CamError, match="outside the data root"):
        dataroot.resolve_under(root, "out")


def test_listings_offer_image_folders_and_results(root) -> None:
    images = dataroot.image_folders(root)
    assert "photos" in images and "photos/tabby" in images
    assert not any(f.startswith("runs") for f in images)
    assert "runs/a" in dataroot.results_folders(root)


def test_default_root_holds_the_sample_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(dataroot.ENV, raising=False)
    root = dataroot.data_root()
    assert root == (tmp_path / "camdash" / "data").resolve()
    assert sorted(p.name for p in (root / "samples").iterdir()) == ["espresso", "missile", "moped", "tabby"]
    monkeypatch.setenv(dataroot.ENV, str(tmp_path / "absent"))
    with pytest.raises(CamError, match="not a folder"):
        dataroot.data_root()


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symlink
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_zip_extraction_is_safe(tmp_path) -> None:
    jpg = (Path(__file__).parent / "tiny.py").read_bytes()  # content does not matter to the extraction
    data = _zip({
        "set/tabby/a.jpg": jpg, "set/espresso/b.png": jpg, "set/notes.txt": b"x", "set/../../evil.jpg": jpg,
        "/abs.jpg": jpg, "set/.hidden/c.jpg": jpg, "__MACOSX/set/._a.jpg": jpg,
    }, links=("set/tabby/link.jpg",))
    folder = dataroot.extract_zip(data, tmp_path)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["espresso/b.png", "tabby/a.jpg"]  # the single top folder is dropped; the rest refused
    assert not (tmp_path.parent / "evil.jpg").exists() and not list(tmp_path.rglob("evil.jpg"))
    assert dataroot.extract_zip(data, tmp_path) == folder  # once per content
    with pytest.raises(CamError, match="not a zip"):
        dataroot.extract_zip(b"PK nope", tmp_path)
    with pytest.raises(CamError, match="no images"):
        dataroot.extract_zip(_zip({"a.txt": b"x"}), tmp_path)


def test_zip_limits(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(dataroot, "MAX_ZIP_FILES", 3)
    with pytest.raises(CamError, match="at most 3"):
        dataroot.extract_zip(_zip({f"{i}.jpg": b"x" for i in range(4)}), tmp_path)
    monkeypatch.setattr(dataroot, "MAX_ZIP_BYTES", 10)
    with pytest.raises(CamError, match="uncompressed"):
        dataroot.extract_zip(_zip({"a.jpg": b"x" * 11}), tmp_path)


def test_camdash_data_root_option(tmp_path) -> None:
    env, rest = own_options(["--server.port", "1", "--data-root", str(tmp_path), "--x"])
    assert rest == ["--server.port", "1", "--x"] and env == {dataroot.ENV: str(tmp_path.resolve())}
    assert own_options([f"--data-root={tmp_path}"])[0] == {dataroot.ENV: str(tmp_path.resolve())}
    with pytest.raises(SystemExit):
        own_options(["--data-root", str(tmp_path / "absent")])


def test_exported_csv_is_the_filtered_table(root) -> None:
    from cam_core.batch.query import Filters, ResultsQuery
    from dashboard.views.dataset import table as tb

    results = ResultsQuery.open(root / "runs" / "a")
    shown = results.table("wrong", Filters(outcome="wrong"))
    csv = pd.read_csv(io.StringIO(tb.export_csv(shown, root)))
    assert len(csv) == shown.num_rows == results.count(Filters(outcome="wrong")) >= 1
    assert (~csv.correct.astype(bool)).all()
    assert list(csv.columns[:3]) == ["path", "label", "label_name"]
    assert csv.top5.str.count(";").eq(4).all() and csv.path.str.startswith("photos/").all()


def test_the_outcome_control_takes_its_value_from_session_state_only(app, monkeypatch) -> None:
    # A confusion-cell click sets "Show" back to all through session state; given a default as well, the widget
    # made Streamlit log "created with a default value but also had its value set via the Session State API"
    # (a check AppTest skips, having no runtime: so the defaults each widget is given are recorded here).
    from streamlit.elements.lib import policies

    given: dict[str, object] = {}
    original = policies.check_session_state_rules

    def record(default_value, key, writes_allowed=True):
        given[key] = default_value
        return original(default_value, key, writes_allowed)

    monkeypatch.setattr(policies, "check_session_state_rules", record)
    at = app(folder="runs/a")
    _no_failure(at)
    assert "ds_outcome" in given and given["ds_outcome"] is None
    assert at.segmented_control(key="ds_outcome").value == "all"


def test_the_per_class_table_has_headers_that_fit_and_say_the_rest_on_hover(app) -> None:
    at = app(folder="runs/a")
    _no_failure(at)
    (table,) = at.dataframe
    config = json.loads(table.proto.columns)
    labels = {name: c.get("label") for name, c in config.items() if not name.startswith("_")}
    assert labels == {"class": "Class", "images": "Images", "accuracy": "Right", "mean p(true)": "p(true)",
                      "blank maps": "Blank"}  # "blank maps" was cut to "blank m…"
    assert all(len(label) <= 7 and config[name].get("help") for name, label in labels.items())


def test_thumbnails_leave_the_photo_clear_where_there_is_no_evidence() -> None:
    # The image page's rule (cam_core.render.heat_rgba): the low end is transparent, not dark blue over the photo.
    import base64
    import io

    from PIL import Image

    from dashboard.views.dataset.thumbs import Base, build_heat

    cam = np.zeros((7, 7), np.float32)
    cam[3, 3] = 1.0
    uri = build_heat(cam, Base("", (112, 112), (224, 224), None), "relu", "jet")
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA"))
    assert rgba[0, 0, 3] == 0 and rgba[56, 56, 3] > 200  # clear at the low end, covered at the peak


def test_confusion_counts_fit_their_cells_at_a_million_images() -> None:
    from dashboard.views.dataset.figures import _count

    assert [_count(n) for n in (0, 7, 999, 1000, 5606, 12_240, 150_000, 2_500_000)] == [
        "", "7", "999", "1k", "5.6k", "12k", "150k", "2.5M"]

"""The results engine (:mod:`cam_core.batch.query`, DuckDB) against the pandas table it replaced.

The folder is a real batch run (EfficientNet-Lite0 on the sample photos, pred,label) replicated to a few
thousand rows with many classes, mistakes, exact ties, blank maps and failed files
(:mod:`benchmarks.dataset_folders`). The reference is the former implementation
(:mod:`benchmarks.legacy_table`), run on the same folder: counts, accuracy, the per-class table, the
confusion matrix, the blank-map counts and the first pages of every sort under several filters must be
the same. The same rows written as Ray parts (hive-partitioned or not) give the same answers, read in place.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks import legacy_table as legacy
from benchmarks.dataset_folders import replicate
from cam_core import CamError
from cam_core.batch import BatchJob, run_local, scan
from cam_core.batch.query import FILTERS, SORTS, Filter, Filters, ResultsQuery, Sort
from cam_core.batch.results import LIGHT_COPY, NOT_COPIED, PARTS, RESULTS, RUN, light_copy
from cam_core.io import write_sample_folder

ROWS = 3000
PAGE = 24


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, lite0) -> Path:
    base = tmp_path_factory.mktemp("real")
    write_sample_folder(base / "photos", per_photo=2, seed=4)
    run_local(BatchJob(classes="pred,label", labels=True), base / "photos", base / "run", workers=0, model=lite0)
    return base / "run"


@pytest.fixture(scope="module")
def big(real_run, tmp_path_factory) -> Path:
    return replicate(real_run, tmp_path_factory.mktemp("big") / "r", ROWS, seed=3)


@pytest.fixture(scope="module")
def both(big):
    return legacy.load_results(big), ResultsQuery.open(big)


def _legacy_page(ref: legacy.Results, sort: str, filters: Filters, method: str, whose: str) -> list[int]:
    slot = legacy.slots(ref.frame, whose)
    blank = legacy.blank_flags(ref, method, slot)
    f = legacy.Filters(filters.true, filters.pred, filters.outcome)
    return list(legacy.sort_frame(legacy.filter_frame(ref.frame, f), sort, blank).index)


def test_the_folder_is_realistic(both) -> None:
    ref, _ = both
    frame = ref.frame
    assert frame.error.notna().sum() > 10 and frame.label.nunique() > 25  # failed files; more classes than shown
    assert 0.2 < frame.correct.astype(float).mean() < 0.8 and (frame.prob_pred == 0.5).sum() > 10  # mistakes, ties
    assert frame.path.is_unique


def test_counts_and_accuracy_are_the_same(both) -> None:
    ref, q = both
    s = q.summary()
    ok = ref.frame.error.isna()
    labelled = ref.frame[ok & ref.frame.label.notna()]
    assert (s.images, s.failed, s.labelled) == (int(ok.sum()), int((~ok).sum()), len(labelled))
    assert s.accuracy == pytest.approx(float(labelled.correct.astype(bool).mean()), abs=1e-12)
    assert q.rows == ROWS and q.has_labels and q.methods == ["gradcam"]


def test_the_confusion_matrix_is_the_same(both) -> None:
    ref, q = both
    want = legacy.confusion(ref.frame, ref.class_names)
    got = q.confusion()
    assert got.rows == want.rows and got.cols == want.cols and len(got.cols[-1]) > 1  # an "other classes" column
    assert got.row_names == want.row_names and got.col_names == want.col_names
    assert np.array_equal(got.counts, want.counts) and got.hidden_rows == want.hidden_rows > 0


@pytest.mark.parametrize("whose", ["pred", "label"])
def test_the_per_class_table_and_blank_counts_are_the_same(both, whose) -> None:
    ref, q = both
    blank = legacy.blank_flags(ref, "gradcam", legacy.slots(ref.frame, whose))
    want = legacy.per_class(ref.frame, blank)
    got = q.per_class("gradcam", whose).to_pandas()
    assert list(got.columns) == list(want.columns) and list(got["class"]) == list(want["class"])
    for col in ("images", "blank maps"):
        assert list(got[col]) == [int(v) for v in want[col]], col
    for col in ("accuracy", "mean p(true)"):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-6)
    assert int(got["blank maps"].sum()) > 0
    total_blank, total, by_class = q.blank_by_class("gradcam")
    want_blank, want_total, want_by = legacy.blank_by_class(ref, "gradcam")
    assert (total_blank, total) == (want_blank, want_total) and dict(by_class) == dict(want_by)
    assert [n for _, n in by_class] == [n for _, n in want_by]  # most first


def _filters(ref: legacy.Results, conf) -> list[Filters]:
    i, j = 0, len(conf.cols) - 1  # a cell of the matrix, its "other classes" column included
    return [Filters(), Filters(outcome="wrong"), Filters(outcome="correct"), Filters(true=(conf.rows[2],)),
            Filters(true=(conf.rows[i],), pred=conf.cols[j]), Filters(pred=(int(ref.frame.pred.mode()[0]),))]


@pytest.mark.parametrize("sort", [k for k, s in SORTS.items() if not s.needs])  # a run with every column they need
def test_every_sort_gives_the_same_first_pages_under_filters(both, sort) -> None:
    ref, q = both
    for filters in _filters(ref, q.confusion()):
        for whose in ("pred", "label"):
            want = _legacy_page(ref, sort, filters, "gradcam", whose)
            assert q.count(filters, "gradcam", whose) == len(want), filters
            got = [r["rid"] for r in q.page(sort, filters, 0, 2 * PAGE, "gradcam", whose)]
            assert got == want[: 2 * PAGE], (sort, filters, whose)
            last = [r["rid"] for r in q.page(sort, filters, max(0, len(want) - PAGE), PAGE, "gradcam", whose)]
            assert last == want[max(0, len(want) - PAGE):]


def test_page_rows_carry_what_the_gallery_shows(both) -> None:
    ref, q = both
    slot = legacy.slots(ref.frame, "pred")
    blank = legacy.blank_flags(ref, "gradcam", slot)
    rows = q.page("blank", Filters(), 0, PAGE)
    assert rows[0]["shown_blank"] and any(not r["shown_blank"] for r in q.page("wrong", Filters(), 0, PAGE))
    for r in rows:
        i = r["rid"]
        line = ref.frame.loc[i]
        want = (line.path, line.pred_name, slot[i], blank[i])
        assert (r["path"], r["pred_name"], r["slot"], r["shown_blank"]) == want
        np.testing.assert_array_equal(q.map_of(i, "gradcam", r["slot"]), legacy.map_of(ref, i, "gradcam", slot[i]))


def test_maps_are_read_for_the_asked_rows_only(both) -> None:
    ref, q = both
    rids = [5, 1500, 2999, 1024, 1023]
    maps = q.maps(rids, "gradcam")
    for i in rids:
        want = legacy.map_of(ref, i, "gradcam", 0)
        if want is None:
            assert maps[i] is None
        else:
            np.testing.assert_array_equal(maps[i][0], want)


def test_the_export_table_is_the_filtered_sorted_rows(both) -> None:
    ref, q = both
    table = q.table("wrong", Filters(outcome="wrong"))
    want = _legacy_page(ref, "wrong", Filters(outcome="wrong"), "gradcam", "pred")
    assert table.column("path").to_pylist() == list(ref.frame.path[want])
    top5 = table.column("top5").to_pylist()[0].split(";")
    assert len(top5) == 5 and all(":" in t for t in top5)


def test_sorts_and_filters_are_one_entry_each(both, monkeypatch) -> None:
    """A neighbour's sort (by the shown map's positive mass) and filter (confident mistakes) need nothing else."""
    ref, q = both
    monkeypatch.setitem(SORTS, "mass", Sort("Least positive mass first", "pos_mass[shown_index] ASC NULLS LAST"))
    monkeypatch.setitem(FILTERS, "sure_wrong", Filter("Sure and wrong", "NOT correct AND prob_pred > $value"))
    assert "mass" in q.sorts()
    got = q.page("mass", {"sure_wrong": 0.3}, 0, 10_000)
    frame = ref.frame
    keep = frame.error.isna() & (frame.correct == False).fillna(False) & (frame.prob_pred > 0.3)  # noqa: E712
    assert sorted(r["rid"] for r in got) == sorted(frame.index[keep]) and keep.sum() > 10
    mass = pq.read_table(q.files[0], columns=["pos_mass"]).column(0).to_pylist()
    key = [mass[r["rid"]][r["slot"]] for r in got]
    assert key == sorted(key)


@pytest.mark.parametrize(("hive", "chunk"), [(False, None), (True, None), (True, 700), (None, 700)])
def test_ray_parts_open_in_place_with_the_same_answers(real_run, big, tmp_path, monkeypatch, hive, chunk) -> None:
    """``chunk``: loaded a few hundred rows at a time, compressed between (as a very large folder is): parts
    by files, or (``hive`` None) the one ``results.parquet`` itself by row ranges."""
    parts = big if hive is None else replicate(real_run, tmp_path / "parts", ROWS, seed=3, parts=7, hive=hive)
    assert hive is None or (not (parts / RESULTS).exists() and len(list((parts / PARTS).rglob("*.parquet"))) == 7)
    a = ResultsQuery.open(big)
    if chunk:
        monkeypatch.setattr(scan, "CHUNK_ROWS", chunk)
    b = ResultsQuery.open(parts)
    assert a.database is None and (b.database is not None) == bool(chunk)  # beyond a chunk: rows in a file
    assert b.database is None or b.database.is_file()
    assert a.summary() == b.summary() and a.rows == b.rows
    ca, cb = a.confusion(), b.confusion()
    assert ca.rows == cb.rows and ca.cols == cb.cols and np.array_equal(ca.counts, cb.counts)
    assert a.per_class("gradcam").equals(b.per_class("gradcam"))
    for sort in a.sorts():
        pa_, pb = a.page(sort, Filters(outcome="wrong"), 0, PAGE), b.page(sort, Filters(outcome="wrong"), 0, PAGE)
        assert [Path(r["path"]).name for r in pa_] == [Path(r["path"]).name for r in pb], sort  # paths name the folder
    for ra, rb in zip(pa_, pb, strict=True):
        np.testing.assert_array_equal(a.map_of(ra["rid"], "gradcam", 0), b.map_of(rb["rid"], "gradcam", 0))
    file = b.database
    b.close()
    assert file is None or not file.parent.exists()  # closing deletes the database's folder
    if chunk:  # a crashed server's database files go when another folder is opened
        dead = file.parent.with_name("results-999999999-x")
        dead.mkdir()
        ResultsQuery.open(parts).close()
        assert not dead.exists()


def test_a_path_in_several_parts_keeps_its_newest_row(real_run, tmp_path) -> None:
    folder = replicate(real_run, tmp_path / "f", 50, seed=1)
    table = pq.read_table(folder / RESULTS)
    newer = table.slice(0, 1).set_column(table.schema.get_field_index("prob_pred"), "prob_pred",
                                         pa.array([0.123], pa.float32()))
    (folder / PARTS).mkdir()
    time.sleep(0.01)
    pq.write_table(newer, folder / PARTS / "part-1.parquet")
    q = ResultsQuery.open(folder)
    assert q.rows == 50
    first = table.column("path")[0].as_py()
    (row,) = [r for r in q.page("path", Filters(), 0, 50) if r["path"] == first] or [None]
    if row is not None:  # a failed file is not in the gallery
        assert row["prob_pred"] == pytest.approx(0.123)


def test_opening_reports_progress_and_an_estimate(big) -> None:
    seen = []
    ResultsQuery.open(big, progress=lambda share, left: seen.append((share, left)))
    assert seen and seen[-1] == (1.0, 0.0) and all(0 <= s <= 1 for s, _ in seen)


def test_bad_folders_are_one_line(big, tmp_path) -> None:
    with pytest.raises(CamError, match=r"holds no run\.json"):
        ResultsQuery.open(tmp_path)
    (tmp_path / RUN).write_text((big / RUN).read_text())
    with pytest.raises(CamError, match=r"no results\.parquet and no Parquet parts"):
        ResultsQuery.open(tmp_path)
    (tmp_path / RESULTS).write_bytes(b"PAR1 not really")
    with pytest.raises(CamError, match="cannot be read") as err:
        ResultsQuery.open(tmp_path)
    assert "\n" not in str(err.value)
    run = json.loads((big / RUN).read_text())
    (tmp_path / RUN).write_text(json.dumps({**run, "methods": ["nosuchcam"]}))
    with pytest.raises(CamError, match="unknown method"):
        ResultsQuery.open(tmp_path)
    os.remove(tmp_path / RESULTS)


def test_results_are_loaded_from_their_light_copy_while_it_is_current(both, big, tmp_path) -> None:
    """The light copy (no maps, no top-5; large row groups) stands in for results.parquet, same answers; a copy
    that is stale, short or lacks a column is passed over."""
    _, q = both
    assert [p.name for p in q._loaded.sources] == [LIGHT_COPY] and light_copy(big).num_rows == ROWS
    copy = pq.read_metadata(big / LIGHT_COPY)
    assert copy.num_rows == ROWS and copy.num_row_groups == 1 < pq.read_metadata(big / RESULTS).num_row_groups
    names = copy.schema.to_arrow_schema().names
    assert "map_shape" in names and not any(n.startswith(("map_g", "top5")) for n in names)

    def reference(folder: Path) -> tuple:
        r = ResultsQuery.open(folder)
        pages = [[row["path"] for row in r.page(s, Filters(), 0, PAGE)] for s in r.sorts()]
        return r._loaded.sources[0].name, r.summary(), r.confusion().counts.tolist(), pages

    stale = tmp_path / "stale"
    shutil.copytree(big, stale)
    os.utime(stale / RESULTS, ns=(1, 1))  # results.parquet of another version than its copy
    short = tmp_path / "short"
    shutil.copytree(big, short)
    t = pq.read_table(short / LIGHT_COPY)
    pq.write_table(t.slice(0, 10).replace_schema_metadata(t.schema.metadata), short / LIGHT_COPY)
    lacking = tmp_path / "lacking"
    shutil.copytree(big, lacking)
    pq.write_table(t.drop_columns(["blank"]).replace_schema_metadata(t.schema.metadata), lacking / LIGHT_COPY)
    for folder in (short, lacking):  # copies still stamped with the results.parquet there
        os.utime(folder / RESULTS, ns=(os.stat(big / RESULTS).st_atime_ns, os.stat(big / RESULTS).st_mtime_ns))
    want = reference(big)
    assert want[0] == LIGHT_COPY
    for folder in (stale, short, lacking):
        got = reference(folder)
        assert got[0] == RESULTS and got[1:] == want[1:], folder.name


def test_compaction_writes_the_light_copy(lite0, tmp_path) -> None:
    write_sample_folder(tmp_path / "photos", per_photo=1, seed=2)
    out = tmp_path / "run"
    run_local(BatchJob(classes="pred", labels=True), tmp_path / "photos", out, workers=0, model=lite0)
    assert light_copy(out) is not None and light_copy(out).num_rows == pq.read_metadata(out / RESULTS).num_rows
    full, copy = pq.read_table(out / RESULTS), pq.read_table(out / LIGHT_COPY)
    assert copy.column_names == [c for c in full.column_names
                                 if c not in NOT_COPIED and (c == "map_shape" or not c.startswith("map_"))]
    assert copy.equals(full.select(copy.column_names).replace_schema_metadata(copy.schema.metadata))

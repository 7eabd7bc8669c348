"""The Dataset page's Run form with ground truth: a boxes file under the data root or an uploaded CSV goes to the same
batch job the CLI's ``--boxes`` does (AppTest, no browser); a bad file is one line and no run.

The photos and ``boxes.csv`` are those of :mod:`tests.test_dashboard_localisation` (real photos, hand-drawn boxes);
the reference is ``python -m cam_core batch --boxes`` run in this process on the same folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cam_core.batch import read_results
from cam_core.cli import main as cli
from dashboard import dataroot
from tests.test_dashboard_localisation import make_truth_root


@pytest.fixture(scope="module")
def root(tmp_path_factory, lite0) -> Path:
    return make_truth_root(tmp_path_factory.mktemp("truth_run_root"), lite0)


@pytest.fixture(scope="module")
def cli_energy(root) -> dict[str, list]:
    """``box_energy`` by file name, from the CLI on the same folder, job and boxes."""
    out = root.parent / f"{root.name}_cli"
    assert cli(["batch", "--images", str(root / "photos"), "--out", str(out), "--boxes", str(root / "boxes.csv"),
                "--classes", "pred,label", "--labels-from-folders", "--workers", "0"]) == 0
    table = read_results(out).to_pandas()
    return {Path(p).name: list(e) for p, e in zip(table.path, table.box_energy, strict=True)}


def _form(at, truth_upload: tuple[str, bytes] | None = None, truth_pick: str | None = None):
    at.selectbox(key="ds_folder").set_value("photos")
    at.segmented_control(key="ds_classes").set_value("pred,label").run()
    if truth_pick is not None:
        at.selectbox(key="ds_truth").set_value(truth_pick).run()
    if truth_upload is not None:
        at.file_uploader(key="ds_truth_upload").set_value((*truth_upload, "text/csv")).run()
    return at


def _page_energy(root: Path, rel: str) -> dict[str, list]:
    table = read_results(root / rel).to_pandas()
    return {Path(p).name: list(e) for p, e in zip(table.path, table.box_energy, strict=True)}


def _same(page: dict[str, list], ref: dict[str, list]) -> None:
    assert sorted(page) == sorted(ref) and len(ref) == 9
    for name, energies in ref.items():
        got = page[name]
        assert len(got) == len(energies) >= 1  # pred and label (one slot where they agree)
        for a, b in zip(got, energies, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert np.isclose(a, b, atol=1e-6, equal_nan=True), (name, a, b)  # nan: a blank map
    assert sum(np.isfinite(e) for es in ref.values() for e in es if e is not None) >= 6  # real energies compared


def test_uploaded_csv_runs_like_the_cli(dataset_app, root, cli_energy) -> None:
    at = _form(dataset_app(), truth_upload=("boxes.csv", (root / "boxes.csv").read_bytes()))
    assert not at.error and not at.exception
    at.button(key="ds_run").click().run()
    assert not at.error and not at.exception
    rel = at.query_params["folder"]
    assert rel.startswith("runs/photos__") and "__boxes-" in rel
    _same(_page_energy(root, rel), cli_energy)
    assert any("ground truth: 9 boxes on 9 images (csv)" in c.value for c in at.caption)
    assert any("Does the map point at the object?" in m.value for m in at.markdown)  # the results show the truth


def test_a_data_root_file_runs_like_the_cli(dataset_app, root, cli_energy) -> None:
    at = dataset_app()
    options = at.selectbox(key="ds_truth").options
    assert "boxes.csv" in options and not any(o.startswith("runs") for o in options)
    at = _form(at, truth_pick="boxes.csv")
    at.button(key="ds_run").click().run()
    assert not at.error and not at.exception
    _same(_page_energy(root, at.query_params["folder"]), cli_energy)


@pytest.mark.parametrize(("content", "says"), [
    (b"path,x0,y0,x1,y1\ntabby/chelsea_orig.jpg,10,20,oops,40\n", "oops"),
    (b"path,x0,y0,x1,y1\nnowhere/none.jpg,1,2,3,4\n", "none of its 1 entries names an image"),
])
def test_a_bad_boxes_file_is_one_line_and_no_run(dataset_app, root, content, says) -> None:
    before = sorted(p.name for p in (root / "runs").iterdir())
    at = _form(dataset_app(), truth_upload=("bad.csv", content))
    at.button(key="ds_run").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and says in errors[0] and "\n" not in errors[0], errors
    assert "cam_dashboard_uploads" not in errors[0]  # the upload is named by its file name only
    assert not at.success
    made = [p for p in (root / "runs").iterdir() if p.name not in before]
    assert all(not (p / "results.parquet").exists() for p in made)


def test_an_upload_too_big_is_refused_before_it_is_read(dataset_app, root, monkeypatch) -> None:
    from dashboard.views.dataset import truth_ui

    monkeypatch.setattr(truth_ui, "MAX_BOXES_FILE_BYTES", 100)
    at = _form(dataset_app(), truth_upload=("big.csv", (root / "boxes.csv").read_bytes()))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "more than the" in errors[0]
    assert not any(b.key == "ds_run" for b in at.button)  # no Run button while the truth is refused


def test_truth_sources_are_those_of_the_root_this_session_sees(tmp_path) -> None:
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "1.jpg").write_bytes(b"x")
    (tmp_path / "coco.json").write_text("{}")
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "1.xml").write_text("<annotation/>")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "run.json").write_text("{}")
    for owner in ("me", "other"):
        (tmp_path / "uploads" / owner / "z").mkdir(parents=True)
        (tmp_path / "uploads" / owner / "z" / "boxes.csv").write_text("path,x0,y0,x1,y1\n")
    assert dataroot.truth_sources(tmp_path, "me") == ["coco.json", "uploads/me/z/boxes.csv", "voc"]

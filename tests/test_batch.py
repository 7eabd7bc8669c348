"""The batch engine on a small ImageFolder made here: rows, labels, errors, equality with ``explain()``,
resuming (nothing recomputed), an interrupted run completed by a rerun, and the ``batch`` command line.

The folder: three variants of each labelled sample photo (crops of a few aspect ratios, flips,
colour jitter) in ``<class>/`` folders named by ImageNet class, one corrupt JPEG and one text file.
The offline default model gets the cat photos wrong (it says Egyptian cat; the folder says tabby),
which gives ``correct`` both values.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import cam_core
from cam_core import CamError
from cam_core.analysis.diagnose import blank_after_relu, positive_area, positive_share
from cam_core.batch import BatchJob, discover, labels_from_folders, read_results, read_run, run_local
from cam_core.batch import job as job_module
from cam_core.cli import main
from cam_core.io import SAMPLE_CLASSES, load_image, load_sample, write_sample_folder

# The contract's columns for one method (design notes, "batch").
COLUMNS = [
    "path", "label", "label_name", "pred", "pred_name", "prob_pred", "prob_label", "correct", "top5_ids",
    "top5_probs", "entropy", "class_ids", "class_probs", "map_gradcam", "map_shape", "pos_mass", "relu_survival",
    "blank", "error",
]
PER_PHOTO = 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    write_sample_folder(root, per_photo=PER_PHOTO, seed=1)
    (root / "tabby" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "espresso" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def run_a(folder, tmp_path_factory, lite0):
    """One labelled run (pred,label) with decoding workers, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("run_a")
    job = BatchJob(classes="pred,label", labels=True, batch_size=4)
    summary = run_local(job, folder, out, workers=2, model=lite0)
    return out, summary, read_results(out).to_pandas()


class Counter:
    """Wraps ``explain`` where the batch engine calls it: counts calls and images, can fail on call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = self.images = 0
        self.fail_at = fail_at
        self.lock = threading.Lock()

    def __call__(self, model, x, **kwargs):
        with self.lock:  # the compute streams call it from two threads
            self.calls += 1
            if self.fail_at is not None and self.calls == self.fail_at:
                raise KeyboardInterrupt("killed in the middle of the run")
            self.images += x.shape[0]
        return cam_core.explain(model, x, **kwargs)


def test_one_row_per_image_with_the_contract_columns(run_a, folder) -> None:
    out, summary, df = run_a
    n_images = PER_PHOTO * len(SAMPLE_CLASSES) + 1  # + the corrupt one; the text file is skipped
    assert list(df.columns) == COLUMNS
    assert len(df) == n_images and df.path.is_unique
    assert summary.files == n_images and summary.computed == n_images and summary.skipped == 1
    assert list(df.path) == sorted(df.path)
    assert not any(p.endswith(".txt") for p in df.path)
    # One line to load it, as the README says.
    assert len(__import__("pandas").read_parquet(out / "results.parquet")) == n_images
    run = read_run(out)
    assert run["layer"] == "_head_act" and run["methods"] == ["gradcam"] and run["preprocessing"]["fit"] == "whole"
    assert run["files"] == n_images and run["failed"] == 1 and run["finished"]
    assert len(run["class_names"]) == 1000 and "torch" in run["versions"]


def test_the_corrupt_file_is_a_row_with_its_error(run_a) -> None:
    _, summary, df = run_a
    bad = df[df.error.notna()]
    assert len(bad) == 1
    row = bad.iloc[0]
    assert row.path.endswith("broken.jpg") and "broken.jpg" in row.error
    assert row.label_name == "tabby"  # the label is known even when the image is not
    assert row.pred is None or np.isnan(row.pred)
    assert row.map_gradcam is None and row.class_ids is None
    assert [Path(p).name for p, _ in summary.failed] == ["broken.jpg"]
    assert "1 failed (broken.jpg" in summary.line()


def test_labels_and_correct_come_from_the_folders(run_a, lite0) -> None:
    _, _, df = run_a
    ok = df[df.error.isna()]
    for row in ok.itertuples():
        folder = Path(row.path).parent.name
        assert row.label_name == folder and lite0.class_names[int(row.label)] == folder
        assert row.correct == (row.pred == row.label)
        assert row.pred_name == lite0.class_names[int(row.pred)]  # pandas: ints with nulls are floats
        if row.label in row.top5_ids:
            assert row.prob_label == pytest.approx(row.top5_probs[list(row.top5_ids).index(int(row.label))])
        else:
            assert row.prob_label <= row.top5_probs[-1]
    right = ok.correct.astype(bool)
    assert right.any() and not right.all()  # the cats are "Egyptian cat" to this model, "tabby" here
    assert not right[ok.label_name == "tabby"].any()


def test_rows_equal_explain_on_each_image_alone(run_a, lite0) -> None:
    """Three rows of different input sizes (one with two classes: wrong prediction and true label)."""
    _, _, df = run_a
    ok = df[df.error.isna()]
    right = ok.correct.astype(bool)
    picks = [ok[right].iloc[0], ok[~right].iloc[0], ok.iloc[-1]]
    assert len({tuple(r.map_shape) for r in picks}) >= 2
    for row in picks:
        x, _ = lite0.prepare(load_image(row.path))
        row_pred, row_label = int(row.pred), int(row.label)
        ids = [row_pred] if row.correct else [row_pred, row_label]
        res = cam_core.explain(lite0, x[None], classes=ids, methods=["gradcam"])
        assert int(res.probs[0].argmax()) == row_pred
        assert row.prob_pred == pytest.approx(float(res.probs[0, row_pred]), abs=1e-5)
        assert row.prob_label == pytest.approx(float(res.probs[0, row_label]), abs=1e-5)
        assert list(row.class_ids) == ids
        assert list(row.top5_ids) == res.probs[0].topk(5).indices.tolist()
        p = res.probs[0].double()
        assert row.entropy == pytest.approx(float(-(p * p.log()).sum()), abs=1e-4)
        want = res.maps["gradcam"][0]
        assert list(row.map_shape) == list(want.shape)
        got = np.asarray(row.map_gradcam, dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5 * float(want.abs().max()))
        assert list(row.pos_mass) == pytest.approx([positive_share(m) for m in want], abs=1e-5)
        assert list(row.relu_survival) == pytest.approx([positive_area(m) for m in want], abs=1e-6)
        assert list(row.blank) == [blank_after_relu(m) for m in want]


def test_a_rerun_resumes_and_recomputes_nothing(folder, tmp_path, lite0, monkeypatch) -> None:
    job = BatchJob(labels=True, batch_size=4)
    counter = Counter()
    monkeypatch.setattr(job_module, "explain", counter)
    run_local(job, folder, tmp_path, workers=0, model=lite0)
    first = read_results(tmp_path).to_pandas()
    assert counter.images == len(first) - 1  # every decodable image once
    counter.calls = counter.images = 0
    summary = run_local(job, folder, tmp_path, workers=0, model=lite0)
    assert counter.calls == 0 and summary.computed == 0 and summary.reused == len(first)
    again = read_results(tmp_path).to_pandas()
    assert list(again.path) == list(first.path)
    np.testing.assert_array_equal(np.concatenate(again.map_gradcam.dropna().tolist()),
                                  np.concatenate(first.map_gradcam.dropna().tolist()))
    # A file that changed (size and mtime) is computed again and replaces its row.
    changed = Path(first[first.error.isna()].path.iloc[0])
    load_image(changed).transpose(0).save(changed, quality=80)  # mirrored
    summary = run_local(job, folder, tmp_path, workers=0, model=lite0)
    assert (counter.calls, counter.images, summary.computed) == (1, 1, 1)
    final = read_results(tmp_path).to_pandas()
    assert len(final) == len(first) and final.path.is_unique
    assert not np.array_equal(final.set_index("path").loc[str(changed)].map_gradcam,
                              first.set_index("path").loc[str(changed)].map_gradcam)


@pytest.mark.parametrize("streams", [1, 2])
def test_an_interrupted_run_loses_one_batch_and_a_rerun_completes_it(folder, tmp_path, lite0, monkeypatch,
                                                                     streams) -> None:
    job = BatchJob(labels=True, batch_size=3)
    monkeypatch.setattr(job_module, "explain", Counter(fail_at=2))
    with pytest.raises(KeyboardInterrupt):
        run_local(job, folder, tmp_path, workers=0, model=lite0, streams=streams)
    parts = list((tmp_path / ".parts").glob("*.parquet"))
    if streams == 1:
        assert len(parts) == 1  # the first batch was written before the second one was cut short
    else:  # the other stream's batch ends as the failing one does: kept when its rows came in before
        assert len(parts) <= 1
    saved = sum(pq.read_table(p).num_rows for p in parts)
    assert not (tmp_path / "results.parquet").exists()
    assert (tmp_path / ".parts").is_dir() and (tmp_path / ".lock").exists()  # kept, to resume from

    counter = Counter()
    monkeypatch.setattr(job_module, "explain", counter)
    summary = run_local(job, folder, tmp_path, workers=0, model=lite0, streams=streams)
    df = read_results(tmp_path).to_pandas()
    assert summary.reused == saved and summary.computed == len(df) - saved
    assert counter.images == (len(df) - 1) - saved  # the decodable images not saved before; none twice
    assert len(df) == PER_PHOTO * len(SAMPLE_CLASSES) + 1 and df.path.is_unique
    # A finished run leaves only its results in OUT: no lock file, no parts folder.
    assert not (tmp_path / ".parts").exists() and not (tmp_path / ".lock").exists()


def test_letterbox_rows_equal_explain_with_the_region(folder, tmp_path, lite0) -> None:
    """A padded input: the row's map is zero in the pad, and its numbers leave the pad out, as explain(region=)."""
    one = next(p for p in sorted(folder.rglob("*.jpg")) if lite0.place(load_image(p), "letterbox").padded)
    run_local(BatchJob(fit="letterbox"), one, tmp_path, workers=0, model=lite0)
    row = read_results(tmp_path).to_pylist()[0]
    x, place = lite0.prepare(load_image(one), "letterbox")
    res = cam_core.explain(lite0, x[None], classes="top1", region=place.content)
    want = res.maps["gradcam"][0]
    got = np.asarray(row["map_gradcam"], np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    cells = want[0][res.valid[0, 0]]
    assert row["pos_mass"][0] == pytest.approx(positive_share(cells), abs=1e-5)
    assert row["relu_survival"][0] == pytest.approx(positive_area(cells), abs=1e-6)
    assert read_run(tmp_path)["preprocessing"]["fit"] == "letterbox"


def test_topk_and_several_methods(folder, tmp_path, lite0) -> None:
    one = next((folder / "moped").glob("*.jpg"))
    run_local(BatchJob(classes="top3", methods=("gradcam", "hirescam")), one, tmp_path, workers=0, model=lite0)
    row = read_results(tmp_path).to_pylist()[0]
    x, _ = lite0.prepare(load_image(one))
    res = cam_core.explain(lite0, x[None], classes="top3", methods=["gradcam", "hirescam"])
    assert row["class_ids"] == res.class_ids[0].tolist() and row["map_shape"][0] == 3
    for m in ("gradcam", "hirescam"):
        np.testing.assert_allclose(np.asarray(row[f"map_{m}"]).reshape(3, *row["map_shape"][1:]),
                                   res.maps[m][0].numpy(), rtol=1e-4, atol=1e-6)
    # Diagnosis numbers: per method (run order), then per class.
    want = [positive_share(res.maps[m][0, k]) for m in ("gradcam", "hirescam") for k in range(3)]
    assert row["pos_mass"] == pytest.approx(want, abs=1e-5)


def test_explain_takes_per_image_classes(lite0) -> None:
    """A tensor (N, K) or a function of the logits: each image its own classes, one call."""
    x = torch.stack([lite0.prepare(load_sample(name))[0][:, :, :224] for name in ("chelsea", "coffee")])
    ids = torch.tensor([[281], [967]])
    both = cam_core.explain(lite0, x, classes=ids)
    for i in range(2):
        alone = cam_core.explain(lite0, x[i : i + 1], classes=ids[i].tolist())
        torch.testing.assert_close(both.maps["gradcam"][i], alone.maps["gradcam"][0], rtol=1e-4, atol=1e-6)
    fn = cam_core.explain(lite0, x, classes=lambda logits: logits.argmax(1, keepdim=True))
    assert fn.class_ids.tolist() == both.logits.argmax(1, keepdim=True).tolist()
    with pytest.raises(CamError, match="out of range"):
        cam_core.explain(lite0, x, classes=torch.tensor([[1000], [0]]))
    with pytest.raises(CamError, match=r"\(N=2, K\)"):
        cam_core.explain(lite0, x, classes=lambda logits: logits.argmax(1))  # (N,), not (N, K)


# ---- files and labels ---------------------------------------------------------------------------------------


def test_discover_walks_folders_and_globs_and_skips_what_is_not_an_image(folder, tmp_path) -> None:
    found = discover(folder)
    assert len(found.files) == PER_PHOTO * len(SAMPLE_CLASSES) + 1 and found.skipped == 1
    assert len(discover(str(folder / "**" / "*.jpg")).files) == len(found.files)
    assert len(discover(str(folder / "tabby" / "chelsea_*.jpg")).files) == PER_PHOTO
    (folder / ".hidden").mkdir(exist_ok=True)
    write_sample_folder(folder / ".hidden", per_photo=1)
    assert len(discover(folder).files) == len(found.files)  # dot folders are never inputs
    with pytest.raises(CamError, match="no such folder"):
        discover(tmp_path / "absent")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CamError, match="no image files"):
        discover(tmp_path)


def test_discover_within_leaves_out_symlinks_that_leave_the_root(folder, tmp_path) -> None:
    root = tmp_path / "root"
    (root / "tabby").mkdir(parents=True)
    os.symlink(next((folder / "tabby").glob("*.jpg")), root / "tabby" / "outside.jpg")
    (root / "tabby" / "inside.jpg").write_bytes(next((folder / "tabby").glob("*.jpg")).read_bytes())
    found = discover(root, within=root)
    assert [Path(f.path).name for f in found.files] == ["inside.jpg"] and found.outside == 1


def test_labels_by_name_any_case_underscores_or_index(tmp_path, lite0) -> None:
    for name in ("Tiger_Cat", "281", "ESPRESSO"):
        (tmp_path / name).mkdir()
        write_sample_folder(tmp_path / "_tmp", per_photo=1)
        next((tmp_path / "_tmp").rglob("*.jpg")).rename(tmp_path / name / "a.jpg")
    found = discover(str(tmp_path / "[0-9A-Z]*" / "*.jpg"))
    labels = {Path(f.path).parent.name: f.label for f in labels_from_folders(found, lite0.class_names)}
    assert labels == {"Tiger_Cat": 282, "281": 281, "ESPRESSO": 967}


def test_unknown_folder_names_are_one_line_listing_them(tmp_path, lite0) -> None:
    for name in ("tabby", "not a class", "4000"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(b"x")
    with pytest.raises(CamError) as err:
        labels_from_folders(discover(tmp_path), lite0.class_names)
    msg = str(err.value)
    assert "\n" not in msg and "'not a class'" in msg and "'4000'" in msg and "'tabby'" not in msg
    assert "0..999" in msg


def test_an_output_folder_of_another_job_is_refused(run_a, folder, lite0) -> None:
    out, _, _ = run_a
    with pytest.raises(CamError, match=r"another run.*classes"):
        run_local(BatchJob(labels=True, classes="label"), folder, out, workers=0, model=lite0)


# ---- command line ---------------------------------------------------------------------------------------------


def test_cli_batch_runs_and_prints_a_summary(folder, tmp_path, capsys) -> None:
    out = tmp_path / "runs" / "a"
    rc = main(["batch", "--images", str(folder / "mo*" / "*.jpg"), "--labels-from-folders", "--workers", "0",
               "--out", str(out)])  # the glob's fixed part is the root: labels from the folders below it
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{PER_PHOTO} files: {PER_PHOTO} explained now") and str(out / "results.parquet") in line
    df = read_results(out).to_pandas()
    assert (df.label_name == "moped").all()
    assert json.loads((out / "run.json").read_text())["job"]["labels_from_folders"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "label"], "add --labels-from-folders"),
        (["--classes", "sideways"], "choose pred, label, pred,label or topK"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--batch-size", "0"], "--batch-size: 0 is not between 1 and 1024"),
        (["--workers", "-1"], "--workers: -1 is not between 0 and 256"),
        (["--ray-address", "x:1"], "--ray-address goes with --engine ray"),
        (["--images", "/nonexistent/folder"], "no such folder"),
        (["--out", "__FILE__"], "is a file"),
    ],
)
def test_cli_mistakes_exit_2_with_one_line_before_the_model_loads(
    args, message, folder, tmp_path, capsys, monkeypatch
) -> None:
    def no_model(*a, **k):
        raise AssertionError("the model must not load before the arguments are checked")

    monkeypatch.setattr("cam_core.batch.run.load_model", no_model)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    argv = ["batch", "--images", str(folder), "--out", str(tmp_path / "out"), *args]
    argv = [str(a_file) if v == "__FILE__" else v for v in argv]
    try:
        status = main(argv)
    except SystemExit as stop:  # a number out of range is refused as it is parsed
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_compute_streams_give_the_rows_one_stream_gives(folder, tmp_path, lite0) -> None:
    """Two streams (threads, each its own model copy and one intra-op thread): the same predictions and maps."""
    job = BatchJob(classes="pred,label", labels=True, batch_size=3)
    threads = torch.get_num_threads()
    one = run_local(job, folder, tmp_path / "one", workers=0, model=lite0, streams=1)
    two = run_local(job, folder, tmp_path / "two", workers=0, model=lite0, streams=2)
    assert torch.get_num_threads() == threads  # put back after the run
    assert (one.computed, one.files) == (two.computed, two.files)
    a = read_results(tmp_path / "one").to_pandas().set_index("path").sort_index()
    b = read_results(tmp_path / "two").to_pandas().set_index("path").sort_index()
    assert list(a.index) == list(b.index)
    ok = a.error.isna()
    assert (a.pred[ok] == b.pred[ok]).all() and (b.error.isna() == ok).all()
    for x, y in zip(a.map_gradcam[ok], b.map_gradcam[ok], strict=True):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * float(np.abs(x).max()))
    with pytest.raises(CamError, match="do not mix"):
        run_local(job, folder, tmp_path / "three", workers=2, model=lite0, streams=2)

"""``python -m cam_core compare``: two models over one folder (A's and B's batch runs, joined by class name).

The models: :func:`tests.tiny.colour_net` names the colour of a patch on a background at the normalisation's
mean (five classes), so its predictions are known from the folder. Model B is a copy saved as a safetensors
state dict, its head permuted: rows *red* and *green* swapped (exactly the images A calls red or green flip), or
every row permuted along with its class names (the same model under another label order: nothing flips).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import save_file

import cam_core
from cam_core.batch import job as job_module
from cam_core.cli import main
from cam_core.models.load import load_model
from cam_core.render import maps_on_image
from tests.tiny import COLOURS, colour_net, write_colour_folder

NAMES = list(COLOURS)
PER_CLASS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    write_colour_folder(root / "imgs", per_class=PER_CLASS, misfiled={"red": "green"})  # A wrong, B right on it
    (root / "labels.txt").write_text("\n".join(NAMES) + "\n")
    sd = colour_net().state_dict()

    def save(order: list[int], name: str) -> Path:
        head = {k: (v[order] if k.startswith("fc.") else v).contiguous() for k, v in sd.items()}
        save_file(head, root / name)
        return root / name

    save([1, 0, 2, 3, 4], "swapped.safetensors")  # red ↔ green
    order = [3, 0, 4, 2, 1]
    save(order, "reordered.safetensors")
    (root / "reordered.txt").write_text("\n".join(NAMES[i].upper() for i in order) + "\n")  # other case, too
    return {"root": root, "imgs": root / "imgs", "labels": root / "labels.txt"}


def compare(setup, out: Path, *extra: str, b: str | None = None, b_labels: Path | None = None) -> int:
    args = ["compare", "--model", "tests.tiny:colour_net", "--model-b", "tests.tiny:colour_net", "--input-size", "32",
            "--labels", str(setup["labels"]), "--images", str(setup["imgs"]), "--out", str(out), *extra]
    if b is not None:
        args += ["--checkpoint-b", str(setup["root"] / b)]
    if b_labels is not None:
        args += ["--labels-b", str(b_labels)]
    return main(args)


def frame(out: Path):
    return pq.read_table(out / "compare.parquet").to_pandas()


def colour_of(path: str) -> str:
    name = Path(path).stem
    return name.split("_")[1] if name.startswith("misfiled_") else name.split("_")[0]


def test_a_model_against_itself_moves_nothing(setup, tmp_path, capsys) -> None:
    assert compare(setup, tmp_path / "out") == 0
    df = frame(tmp_path / "out")
    assert len(df) == len(NAMES) * PER_CLASS + 1 and df.error.isna().all()
    assert not df.pred_changed.any()
    assert all(max(s) < 1e-6 for s in df.map_shift) and all(max(p) == 0.0 for p in df.peak_shift_px)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(df.prob_a, df.prob_b, strict=True))
    assert [list(c) for c in df.class_names] == [[colour_of(p)] for p in df.path]  # pred only, no labels
    assert "A again for" not in capsys.readouterr().out  # nothing to add: both explained the same classes


def test_a_swapped_head_flips_exactly_the_images_called_red_or_green(setup, tmp_path) -> None:
    assert compare(setup, tmp_path / "out", b="swapped.safetensors") == 0
    df = frame(tmp_path / "out")
    swapped = df.pred_name_a.isin(["red", "green"])
    assert swapped.sum() == 2 * PER_CLASS + 1  # the misfiled red patch too
    assert list(df.pred_changed) == list(swapped)
    assert list(df.pred_name_b[swapped]) == [{"red": "green", "green": "red"}[n] for n in df.pred_name_a[swapped]]
    for _, row in df[~swapped].iterrows():  # the other classes' maps and probabilities did not move
        assert row.map_shift[0] < 1e-6 and row.prob_a[0] == pytest.approx(row.prob_b[0], abs=1e-6)
    for _, row in df[swapped].iterrows():  # both classes explained by both models; B's probabilities swapped
        assert list(row.class_names) == [row.pred_name_a, row.pred_name_b]
        assert row.prob_a[0] == pytest.approx(row.prob_b[1]) and row.prob_a[1] == pytest.approx(row.prob_b[0])
        assert all(s > 1e-4 for s in row.map_shift)
    info = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert info["counts"]["flipped"] == 2 * PER_CLASS + 1 and info["method"] == "gradcam"
    assert info["b"]["model"]["checkpoint"].endswith("swapped.safetensors")


def _on_photo_by_hand(out: Path, path: str, name: str, model) -> np.ndarray:
    """One class's stored map of one run, brought over the photo (the photos are under 224 px: full size)."""
    from PIL import Image

    table = pq.read_table(out / "results.parquet").to_pandas().set_index("path")
    row = table.loc[path]
    k = [model.class_names[c] for c in row.class_ids].index(name)
    cams = np.array(row.map_gradcam, dtype=np.float32).reshape(row.map_shape)
    with Image.open(path) as im:
        size = im.size
    place = model.preprocess.place(*size, "whole")
    return maps_on_image(cams[k : k + 1], place, size)[0]


def test_map_shift_equals_a_hand_computation_from_the_stored_maps(setup, tmp_path) -> None:
    assert compare(setup, tmp_path / "out", b="swapped.safetensors") == 0
    df = frame(tmp_path / "out")
    model_a = load_model("tests.tiny:colour_net", labels=str(setup["labels"]), input_size=32)
    model_b = load_model("tests.tiny:colour_net", labels=str(setup["labels"]), input_size=32,
                         checkpoint=str(setup["root"] / "swapped.safetensors"))
    checked = 0
    for _, row in df[df.pred_changed].iterrows():
        for k, name in enumerate(row.class_names):
            a = np.maximum(_on_photo_by_hand(tmp_path / "out" / "a", row.path, name, model_a), 0).astype(np.float64)
            b = np.maximum(_on_photo_by_hand(tmp_path / "out" / "b", row.path, name, model_b), 0).astype(np.float64)
            r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
            assert row.map_shift[k] == pytest.approx(1 - r, abs=1e-5)
            (ya, xa), (yb, xb) = (np.unravel_index(np.argmax(m), m.shape) for m in (a, b))
            assert row.peak_shift_px[k] == pytest.approx(math.hypot(ya - yb, xa - xb), abs=1e-4)
            checked += 1
    assert checked == 2 * (2 * PER_CLASS + 1)


def test_classes_are_matched_by_name_not_index(setup, tmp_path) -> None:
    """B: every head row moved, and its class names with them (in capitals): the same model, nothing flips."""
    assert compare(setup, tmp_path / "out", "--labels-from-folders", b="reordered.safetensors",
                   b_labels=setup["root"] / "reordered.txt") == 0
    df = frame(tmp_path / "out")
    assert not df.pred_changed.any() and (df.pred_b != df.pred_a).all()
    assert all(max(s) < 1e-6 for s in df.map_shift)
    assert list(df.correct_a) == list(df.correct_b)


def test_labels_from_folders_counts_which_way_predictions_went(setup, tmp_path, capsys) -> None:
    assert compare(setup, tmp_path / "out", "--labels-from-folders", b="swapped.safetensors") == 0
    df = frame(tmp_path / "out")
    assert list(df.label_name) == [Path(p).parent.name for p in df.path]
    assert int((df.correct_a & ~df.correct_b).sum()) == 2 * PER_CLASS  # the red and green patches
    assert int((~df.correct_a & df.correct_b).sum()) == 1  # the red patch filed under green
    counts = json.loads((tmp_path / "out" / "compare.json").read_text())["counts"]
    assert (counts["a_right_b_wrong"], counts["a_wrong_b_right"], counts["labelled"]) == (6, 1, len(df))
    assert "A right → B wrong 6, A wrong → B right 1" in capsys.readouterr().out
    misfiled = df[df.path.str.endswith("misfiled_red.png")].iloc[0]
    assert list(misfiled.class_names) == ["red", "green"]  # A's pred, the label (= B's pred)


def test_a_folder_name_one_model_lacks_is_one_line(setup, tmp_path, capsys) -> None:
    other = tmp_path / "other.txt"
    other.write_text("red\ngreen\nblue\nyellow\nteal\n")
    rc = compare(setup, tmp_path / "out", "--labels-from-folders", b_labels=other)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "model B" in err[0] and "'cyan'" in err[0]
    assert not (tmp_path / "out" / "a").exists()  # refused before any run


class Counter:
    """Wraps ``explain`` where the batch engine calls it: counts images, notes the models, fails on call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = self.images = 0
        self.models: list[str] = []
        self.fail_at = fail_at
        self.lock = threading.Lock()

    def __call__(self, model, x, **kwargs):
        with self.lock:
            self.calls += 1
            self.models.append(model.name)
            if self.fail_at is not None and self.calls == self.fail_at:
                raise KeyboardInterrupt("killed in the middle of the run")
            self.images += x.shape[0]
        return cam_core.explain(model, x, **kwargs)


@pytest.mark.parametrize("step", ["b", "a again"])
def test_an_interrupted_comparison_resumes_and_rejoins(setup, tmp_path, monkeypatch, step) -> None:
    args = ("--labels-from-folders", "--batch-size", "2", "--workers", "0")
    whole = Counter()
    monkeypatch.setattr(job_module, "explain", whole)
    assert compare(setup, tmp_path / "whole", *args, b="swapped.safetensors") == 0
    n = len(NAMES) * PER_CLASS + 1
    assert whole.images == 2 * n + 2 * PER_CLASS  # A, B, then A again for the red and green patches
    first_b = next(i for i, name in enumerate(whole.models) if "swapped" in name)
    assert "swapped" not in whole.models[-1] and whole.models.count(whole.models[-1]) > 1
    fail_at = whole.calls if step == "a again" else first_b + 2  # B's second call, or A's last (its third run)
    monkeypatch.setattr(job_module, "explain", Counter(fail_at=fail_at))
    out = tmp_path / "cut"
    assert compare(setup, out, *args, b="swapped.safetensors") == 130  # Ctrl-C: one line, status 130
    assert not (out / "compare.parquet").exists()
    rest = Counter()
    monkeypatch.setattr(job_module, "explain", rest)
    assert compare(setup, out, *args, b="swapped.safetensors") == 0
    assert rest.images < whole.images  # what was done before is not done again
    cut, ref = frame(out), frame(tmp_path / "whole")
    assert list(cut.path) == list(ref.path) and list(cut.pred_changed) == list(ref.pred_changed)
    assert [list(c) for c in cut.class_names] == [list(c) for c in ref.class_names]
    for s, t in zip(cut.map_shift, ref.map_shift, strict=True):
        np.testing.assert_allclose(s, t, atol=1e-5)
    assert compare(setup, out, *args, b="swapped.safetensors") == 0  # a finished comparison: a rerun only re-joins
    again = Counter()
    monkeypatch.setattr(job_module, "explain", again)
    assert compare(setup, out, *args, b="swapped.safetensors") == 0 and again.images == 0


def test_help_and_mistakes_answer_without_torch(tmp_path, capsys) -> None:
    import subprocess
    import sys

    code = ("import sys; from cam_core.cli import main\ntry:\n    main(['compare', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("False") and "--model-b" in done.stdout
    rc = main(["compare", "--model-b", "x", "--images", str(tmp_path), "--method", "gradcamm", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown method 'gradcamm'" in err[0]

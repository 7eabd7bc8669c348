"""Reports (``cam_core.report``, ``python -m cam_core report``) opened in headless Chromium with the network off.

Each form (an image, a batch run, a comparison) is written here and opened as a file: every picture decodes,
nothing is requested but the file itself (and the page's policy refuses nothing, so it tried nothing), there
is no script, the numbers in the text equal ones computed here from the model or the Parquet files, hostile
file and class names appear as text, the 24-image dataset report stays under 5 MB, and printing gives a page
per section. Screenshots and PDFs go to a temporary folder (printed). Skipped when Chromium is not installed.
"""

from __future__ import annotations

import math
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from benchmarks.bench_ui import ARGS
from cam_core.batch import BatchJob, read_results, read_run, run_local
from cam_core.cli import main
from cam_core.errors import CamError
from cam_core.io import write_sample_folder
from cam_core.io.images import load_image
from cam_core.models import load_model
from cam_core.report import compare_report, dataset_report, explain_image, image_report
from tests.serve import chromium_or_skip

CHROMIUM, sync_api = chromium_or_skip()

TESTS = Path(__file__).resolve().parent
HOSTILE_FILE = "<img src=x onerror=alert(1)> 'q' \"x\".jpg"
HOSTILE_CLASSES = ["<script>alert('c')</script>", '"quoted" & <b>bold</b>', "cat", "dog", "bird"]
FLIPS = 3  # predictions flipped by hand in the comparison fixture


# ---- the browser ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report_shots")
    print(f"\nreport screenshots: {folder}")
    return folder


def _open(browser, path: Path, shots: Path) -> tuple[object, dict[str, object]]:
    """Open ``path`` offline (any other request aborted and counted); its screenshot and PDF saved in ``shots``.
    Returns the page and what was seen: ``leaks`` (requests but the file), ``refused`` (what the page's policy
    blocked), ``images`` (natural widths), ``scripts``, ``pdf_pages``."""
    uri = path.resolve().as_uri()
    page = browser.new_page(viewport={"width": 1200, "height": 900}, offline=True)
    leaks: list[str] = []
    refused: list[str] = []

    def route(r) -> None:
        if r.request.url == uri:
            r.continue_()
        else:
            leaks.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda r: r.url not in (uri,) and not r.url.startswith("data:") and leaks.append(r.url))
    page.on("console", lambda m: "Content Security Policy" in m.text and refused.append(m.text))
    page.goto(uri, wait_until="load")
    page.screenshot(path=str(shots / f"{path.stem}.png"), full_page=True)
    pdf = page.pdf(format="A4", print_background=True)
    (shots / f"{path.stem}.pdf").write_bytes(pdf)
    seen = {
        "leaks": leaks,
        "refused": refused,
        "images": page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : -1)"),
        "scripts": page.evaluate("document.scripts.length + document.querySelectorAll('[onerror],[onload]').length"),
        "pdf_pages": len(re.findall(rb"/Type\s*/Page[^s]", pdf)),
    }
    return page, seen


def _self_contained(html: str, seen: dict[str, object], sections: int) -> None:
    """Offline and whole: pictures embedded and decoded, nothing fetched or refused, no script, a page a section."""
    assert seen["leaks"] == [] and seen["refused"] == [] and seen["scripts"] == 0, seen
    assert seen["images"] and all(w > 0 for w in seen["images"]), seen["images"]
    assert all(src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', html))
    assert "<script" not in html and "<link" not in html and "url(" not in html and "@import" not in html
    assert seen["pdf_pages"] >= sections, seen["pdf_pages"]


def _table(page, heading: str) -> list[list[str]]:
    """The cells of the first table in the section titled ``heading`` (header row first)."""
    return page.evaluate(
        """h => { const s = [...document.querySelectorAll('section')].find(x => x.querySelector('h2')
                   .textContent.startsWith(h));
                  return [...s.querySelector('table').rows].map(r => [...r.cells].map(c => c.textContent)); }""",
        heading,
    )


# ---- an image ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photo")
    write_sample_folder(folder, per_photo=1, seed=3)
    src = next(p for p in sorted(folder.rglob("*.jpg")) if "chelsea" in p.name)
    return src.rename(folder / HOSTILE_FILE)


def test_the_image_report_shows_the_models_numbers_and_escapes_every_name(browser, shots, photo_file, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(HOSTILE_CLASSES) + "\n", encoding="utf-8")
    model = load_model("tiny:gapnet", weights=None, import_paths=[str(TESTS)], labels=str(labels))
    facts = explain_image(model, photo_file, classes="top2", methods=["gradcam", "hirescam"])
    out = tmp_path / "image.html"
    html = image_report(facts)
    out.write_text(html, encoding="utf-8")
    page, seen = _open(browser, out, shots)
    _self_contained(html, seen, sections=4)
    assert len(seen["images"]) == 1 + 2 * 2  # the photo, then 2 classes × 2 methods

    x, _ = model.prepare(load_image(photo_file))
    with torch.no_grad():
        logits = model.module(x[None])[0]
    probs = torch.softmax(logits, 0)
    order = torch.argsort(probs, descending=True).tolist()
    rows = _table(page, "Prediction")
    assert rows[0] == ["rank", "class", "id", "p (softmax)", "logit", "maps"]
    for rank, (row, c) in enumerate(zip(rows[1:], order, strict=True), start=1):
        assert row[:5] == [str(rank), HOSTILE_CLASSES[c], str(c), f"{float(probs[c]):.2%}", f"{float(logits[c]):.4g}"]
        assert row[5] == ("shown" if rank <= 2 else "")
    text = page.inner_text("body")
    assert HOSTILE_FILE in text and all(name in text for name in HOSTILE_CLASSES[:2])
    assert page.evaluate("document.querySelectorAll('b b, img[src=x]').length") == 0  # no name became markup
    assert "Findings" in text and "How this was made" in text
    blank = sum(float(cam.max()) <= 0 for cam in facts.maps.values())  # the fixture has some: a signed layer
    assert blank and text.count("blank: no positive evidence") == blank
    page.close()


# ---- a batch run ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory, lite0) -> Path:
    """A labelled run over 24 photos and one with a hostile name, plus one broken file."""
    root = tmp_path_factory.mktemp("photos")
    write_sample_folder(root, per_photo=6, seed=1)
    shutil.copy(next((root / "tabby").glob("*.jpg")), root / "tabby" / HOSTILE_FILE)
    (root / "tabby" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path_factory.mktemp("run")
    run_local(BatchJob(classes="pred,label", labels=True), root, out, workers=0, model=lite0)
    return out


def test_the_dataset_report_counts_what_the_results_hold(browser, shots, run, tmp_path):
    out = tmp_path / "dataset.html"
    assert main(["report", "--results", str(run), "--top", "24", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    page, seen = _open(browser, out, shots)
    _self_contained(html, seen, sections=5)
    assert len(seen["images"]) >= 24 and out.stat().st_size <= 5_000_000, (len(seen["images"]), out.stat().st_size)

    rows = read_results(run).to_pylist()
    done = [r for r in rows if r["error"] is None]
    right = sum(bool(r["correct"]) for r in done)
    text = page.inner_text("body")
    assert f"{len(done)}\nimages explained" in text and f"{len(rows) - len(done)}\nfailed" in text
    assert f"{right / len(done):.1%}\naccuracy ({right} of {len(done)} labelled)" in text
    blank, maps = sum(sum(r["blank"]) for r in done), sum(len(r["class_ids"]) for r in done)  # one method
    assert f"{blank} of {maps}\nmaps blank after ReLU" in text
    per_class = _table(page, "Per class")
    by_class = Counter(r["label_name"] for r in done)
    right_by = Counter(r["label_name"] for r in done if r["correct"])
    assert [row[:3] for row in per_class[1:]] == [
        [c, str(n), f"{right_by[c] / n:.1%}"] for c, n in sorted(by_class.items())
    ]
    matrix = _table(page, "Confusion matrix")
    cells = Counter((r["label_name"], r["pred_name"]) for r in done)
    shown = {(line[0], col): int(v) for line in matrix[1:] for col, v in zip(matrix[0][1:], line[1:], strict=True)}
    assert shown == {(t, p): cells.get((t, p), 0) for t, p in shown} and sum(shown.values()) == len(done)
    wrong = sorted((r for r in done if not r["correct"]), key=lambda r: (-r["prob_pred"], r["path"]))
    first = page.locator("section h3 + p + .grid figcaption b").first.inner_text()
    assert first == Path(wrong[0]["path"]).name  # the most confident mistake leads the odd predictions
    assert HOSTILE_FILE in text and "broken.jpg" in _table(page, "Files that failed")[1][0]
    page.close()


# ---- a comparison --------------------------------------------------------------------------------------------


def _compare_folder(run: Path, folder: Path) -> tuple[Path, list[str], list[float]]:
    """A comparison folder as ``compare`` writes it (neighbours' contract), made by hand: the run as both A and
    B, with ``FLIPS`` predictions of B changed to the runner-up and made-up map shifts. Returns the folder, the
    flipped files' names and every row's shift."""
    shutil.copytree(run, folder / "a")
    shutil.copytree(run, folder / "b")
    rows = read_results(run).to_pylist()
    shifts = [round(0.05 * i, 2) for i in range(len(rows))]
    flipped = set(range(1, 1 + 2 * FLIPS, 2))
    class_names = read_run(run)["class_names"]
    table = {k: [] for k in ("path", "label", "label_name", "pred_a", "pred_name_a", "prob_pred_a", "pred_b",
                             "pred_name_b", "prob_pred_b", "correct_a", "correct_b", "pred_changed", "class_names",
                             "map_shift", "peak_shift_px", "prob_a", "prob_b", "error")}
    for i, r in enumerate(rows):
        ok = r["error"] is None
        pred_b = (r["top5_ids"][1] if i in flipped else r["pred"]) if ok else None
        prob_b = (r["top5_probs"][1] if i in flipped else r["prob_pred"]) if ok else None
        values = {
            "path": r["path"], "label": r["label"], "label_name": r["label_name"], "pred_a": r["pred"],
            "pred_name_a": r["pred_name"], "prob_pred_a": r["prob_pred"], "pred_b": pred_b,
            "pred_name_b": class_names[pred_b] if ok else None, "prob_pred_b": prob_b,
            "correct_a": r["correct"], "correct_b": (pred_b == r["label"]) if ok else None,
            "pred_changed": (i in flipped) if ok else None, "class_names": [r["pred_name"]] if ok else None,
            "map_shift": [shifts[i]] if ok else None, "peak_shift_px": [3.0 * i] if ok else None,
            "prob_a": [r["prob_pred"]] if ok else None, "prob_b": [r["prob_pred"]] if ok else None,
            "error": r["error"],
        }
        for k, v in values.items():
            table[k].append(v)
    pq.write_table(pa.table(table), folder / "compare.parquet")
    (folder / "compare.json").write_text('{"method": "gradcam"}')
    names = [Path(rows[i]["path"]).name for i in sorted(flipped) if rows[i]["error"] is None]
    return folder, names, [s if r["error"] is None else math.nan for s, r in zip(shifts, rows, strict=True)]


def test_the_comparison_report_lists_the_flips_and_the_largest_shifts(browser, shots, run, tmp_path):
    folder, flipped, shifts = _compare_folder(run, tmp_path / "cmp")
    out = tmp_path / "compare.html"
    html = compare_report(folder, top=4)
    out.write_text(html, encoding="utf-8")
    page, seen = _open(browser, out, shots)
    _self_contained(html, seen, sections=3)
    assert len(seen["images"]) == 2 * 4  # both maps of the 4 largest shifts
    text = page.inner_text("body")
    assert f"{len(flipped)}\npredictions flipped" in text
    flips = _table(page, "Flipped predictions")
    assert sorted(row[0] for row in flips[1:]) == sorted(flipped)
    frame = pq.read_table(folder / "compare.parquet").to_pandas()
    order = np.argsort([-s if not math.isnan(s) else math.inf for s in shifts], kind="stable")[:4]
    captions = page.locator("section:last-of-type figcaption b").all_inner_texts()
    assert captions == [Path(frame.path[i]).name for i in order]
    page.close()


def test_reports_refuse_what_is_not_theirs(tmp_path, run, capsys):
    assert main(["report", "--compare", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert "holds no compare.parquet" in capsys.readouterr().err
    assert main(["report", "--results", str(run), "--method", "scorecam", "--out", str(tmp_path / "r.html")]) == 2
    assert "has no maps of 'scorecam'" in capsys.readouterr().err
    assert dataset_report(run, top=1).count("<img") >= 1
    assert main(["report", "--image", str(TESTS / "tiny.py"), "--out", str(tmp_path / "r.html")]) == 2
    assert "tiny.py" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_a_report_made_where_the_photos_are_not_says_so(run, monkeypatch):
    def gone(path):
        raise CamError(f"no such file: {path}")

    monkeypatch.setattr("cam_core.report.pictures.load_image", gone)
    html = dataset_report(run, top=2)
    assert "<img" not in html and len(re.findall(r"the photo [^<]+ cannot be read here", html)) >= 2
    assert "no such file" not in html  # the error's text names the server's path: left out


def test_a_run_without_labels_reports_what_it_has(tmp_path, lite0):
    write_sample_folder(tmp_path / "photos", per_photo=1, seed=2)
    run_local(BatchJob(), tmp_path / "photos", tmp_path / "run", workers=0, model=lite0)
    html = dataset_report(tmp_path / "run")
    rows = read_results(tmp_path / "run").to_pylist()
    assert f"<b>{len(rows)}</b><span>images explained</span>" in html
    assert "accuracy" not in html and "Confusion matrix" not in html and "Per class" not in html


def test_the_comparison_report_of_a_real_compare_run(browser, shots, tmp_path):
    """``compare`` itself (tiny colour models, B's head with red and green swapped and its class names in another
    case): the flips the report lists are the Parquet's, and B's maps are found by class name."""
    from safetensors.torch import save_file

    from tests.tiny import COLOURS, colour_net, write_colour_folder

    names = list(COLOURS)
    write_colour_folder(tmp_path / "imgs", per_class=2)
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "labels_b.txt").write_text("\n".join(n.upper() for n in names) + "\n")
    sd = colour_net().state_dict()
    swap = [1, 0, 2, 3, 4]
    save_file({k: (v[swap] if k.startswith("fc.") else v).contiguous() for k, v in sd.items()},
              tmp_path / "b.safetensors")
    model = ["--model", "tests.tiny:colour_net", "--input-size", "32", "--labels", str(tmp_path / "labels.txt")]
    assert main(["compare", *model, "--model-b", "tests.tiny:colour_net", "--checkpoint-b",
                 str(tmp_path / "b.safetensors"), "--labels-b", str(tmp_path / "labels_b.txt"),
                 "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "cmp")]) == 0
    out = tmp_path / "real_compare.html"
    assert main(["report", "--compare", str(tmp_path / "cmp"), "--top", "3", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    page, seen = _open(browser, out, shots)
    _self_contained(html, seen, sections=3)
    frame = pq.read_table(tmp_path / "cmp" / "compare.parquet").to_pandas()
    flipped = sorted(Path(p).name for p in frame.path[frame.pred_changed.fillna(False).astype(bool)])
    assert flipped and sorted(row[0] for row in _table(page, "Flipped predictions")[1:]) == flipped
    assert len(seen["images"]) == 2 * 3 and "no map of this class" not in html
    page.close()


def test_the_image_report_with_model_b_beside_it(browser, shots, photo_file, tmp_path):
    """The image page's comparison in the report: B is A with its top two classes' head rows swapped, so the top
    class changes, and each class's line carries compare_classes' own numbers."""
    import copy
    from dataclasses import replace

    from cam_core.analysis.compare_photo import ModelSide, compare_classes
    from cam_core.report import SecondModel

    model = load_model("tiny:gapnet", weights=None, import_paths=[str(TESTS)])
    facts = explain_image(model, photo_file, classes="top2", methods=["gradcam"])
    p, q = facts.class_ids
    module = copy.deepcopy(model.module)
    with torch.no_grad():
        for t in (module.fc.weight, module.fc.bias):
            t[[p, q]] = t[[q, p]].clone()
    other = explain_image(replace(model, module=module), photo_file, classes=[p, q], methods=["gradcam"])

    def side(f) -> ModelSide:
        return ModelSide(f.class_names, f.logits, f.probs, f.place, {c: f.maps[("gradcam", c)] for c in f.class_ids})

    rows = compare_classes(side(facts), side(other), [p, q], facts.photo.size)
    top = (facts.class_names[p], float(facts.probs[p]))
    second = SecondModel("gapnet, swapped", other.layer, "whole", "gradcam", rows, top,
                         (other.class_names[q], float(other.probs[q])))
    out = tmp_path / "image_b.html"
    html = image_report(replace(facts, second=second))
    out.write_text(html, encoding="utf-8")
    page, seen = _open(browser, out, shots)
    _self_contained(html, seen, sections=5)
    assert len(seen["images"]) == 1 + 2 + 3 * 2  # the photo, A's two maps, then A, B and B − A per class
    text = page.inner_text("body")
    assert "the top class changed" in text
    for row in rows:
        assert f"map shift {row.shift.shift:.2f} (r = {row.shift.correlation:.2f})" in text
        assert f"p {row.prob_a:.2%} → {row.prob_b:.2%}" in text
    page.close()

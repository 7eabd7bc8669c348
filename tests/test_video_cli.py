"""``python -m cam_core video``: the files of the contract, and one-line errors with exit status 2 (the video
and the settings are checked before the model loads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cam_core.cli import main
from cam_core.io.video import probe_video, read_frames
from tests.clips import moving_square, write_clip

REPO = Path(__file__).resolve().parents[1]
TESTS = str(Path(__file__).resolve().parent)
TINY = ["--model", "tiny:gapnet", "--import-path", TESTS]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames, _ = moving_square(9, size=(64, 48))
    return write_clip(tmp_path_factory.mktemp("cli") / "walk.mp4", frames, fps=9)


def test_video_writes_films_npz_and_csv(clip, tmp_path):
    out = tmp_path / "out"
    rc = main(["video", *TINY, "--video", str(clip), "--classes", "top2", "--method", "gradcam",
               "--method", "hirescam", "--every", "2", "--smooth", "0.3", "--batch-size", "2", "--out", str(out)])
    assert rc == 0
    z = np.load(out / "walk.npz")
    assert z["frame_index"].tolist() == [0, 2, 4, 6, 8]
    np.testing.assert_allclose(z["times"], np.arange(0, 9, 2) / 9, atol=1e-6)
    assert z["logits"].shape == z["probs"].shape == (5, 5)
    np.testing.assert_allclose(z["probs"].sum(1), 1.0, rtol=1e-5)
    assert z["class_ids"].tolist() == np.argsort(-z["probs"].mean(0))[:2].tolist()
    assert z["class_names"].tolist() == [f"class {c}" for c in z["class_ids"]]
    assert str(z["layer"]) == "features.3" and str(z["fit"]) == "whole"
    for m in ("gradcam", "hirescam"):  # the whole 64×48 frame at 299×224 (assumed 224), GapNet's stride 2
        assert z[f"maps_{m}"].shape == (5, 2, 112, 150) and z[f"maps_{m}"].dtype == np.float32
        for cid in z["class_ids"]:
            film = out / f"walk_{m}_{cid}.mp4"
            info = probe_video(film)
            assert (info.width, info.height, info.frames, info.codec) == (64, 48, 5, "h264")
            assert len(list(read_frames(film))) == 5
    rows = (out / "walk.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[0].startswith("frame_index,time_s,top1,top1_name,top1_prob,prob_")
    report = json.loads((out / "walk.json").read_text())
    assert report["fit"] == "whole" and report["frames"] == 5 and report["smooth"] == 0.3
    assert report["scale"] == "frame"  # each frame on its own colour scale by default
    assert {f["file"] for f in report["films"]} == {p.name for p in out.glob("*.mp4")}
    assert all(len(f["colour_scale"]) == 5 for f in report["films"])


def test_scale_clip_gives_one_colour_scale(clip, tmp_path):
    rc = main(["video", *TINY, "--video", str(clip), "--max-frames", "3", "--scale", "clip", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "walk.json").read_text())
    assert report["scale"] == "clip"
    assert all(len(set(f["colour_scale"])) == 1 for f in report["films"])


def test_per_frame_classes(clip, tmp_path):
    rc = main(["video", *TINY, "--video", str(clip), "--classes", "per-frame", "--max-frames", "4",
               "--out", str(tmp_path)])
    assert rc == 0
    z = np.load(tmp_path / "walk.npz")
    assert z["class_ids"].shape == (4, 1) and z["class_ids"][:, 0].tolist() == z["probs"].argmax(1).tolist()
    assert z["class_names"].shape == (4, 1)
    assert (tmp_path / "walk_gradcam_top1.mp4").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--every", "2", "--fps", "5"], "not allowed with argument"),  # argparse: usage, then one error line
        (["--smooth", "1.5"], "--smooth must be at least 0 and below 1"),
        (["--max-frames", "0"], "--max-frames must be between 1 and"),
        (["--method", "gradkam"], "unknown method 'gradkam'"),
        (["--classes", "clas 9"], "unknown class 'clas 9'"),
        (["--layer", "nope"], "unknown layer 'nope'"),
    ],
)
def test_mistakes_exit_2_with_one_line(clip, tmp_path, capsys, args, needle):
    try:
        rc = main(["video", *TINY, "--video", str(clip), *args, "--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(errors) == 1 and needle in errors[0], errors


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cam_core", "video", *args, "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )


def test_a_bad_video_is_reported_before_the_model_loads(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    # The model spec is wrong too, but the video is checked first (nothing heavy runs for a bad file).
    proc = _run(["--model", "resnet5O", "--video", str(bad)], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "notes.mp4 is not a video that can be read" in lines[0]

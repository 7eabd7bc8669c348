"""The data root's walks shared by every session: served from the last walk, walked again in the background."""

from __future__ import annotations

import time
from pathlib import Path

from dashboard import dataroot


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_survey_serves_its_last_walk_then_the_next_one_walked_in_the_background(tmp_path) -> None:
    _image(tmp_path / "a" / "x.jpg")
    survey = dataroot.Survey(ttl=0.3)
    assert dataroot.image_folders(tmp_path, None, survey.walk) == [".", "a"]
    _image(tmp_path / "b" / "y.PNG")
    assert dataroot.image_folders(tmp_path, None, survey.walk) == [".", "a"]  # within ttl: the last walk
    time.sleep(0.4)
    assert dataroot.image_folders(tmp_path, None, survey.walk) == [".", "a"]  # stale: served while the next walk runs
    deadline = time.monotonic() + 10
    while dataroot.image_folders(tmp_path, None, survey.walk) != [".", "a", "b"]:
        assert time.monotonic() < deadline, "the background walk never landed"
        time.sleep(0.05)
    _image(tmp_path / "c" / "z.jpeg")
    survey.clear()
    assert dataroot.image_folders(tmp_path, None, survey.walk) == [".", "a", "b", "c"]  # cleared: walked at once


def test_a_walked_folder_is_summarised_not_listed(tmp_path) -> None:
    for name in ("p.jpg", "boxes.csv", "coco.JSON", "m.xml", "run.json", "results.parquet", "notes.txt"):
        _image(tmp_path / "f" / name)
    (tmp_path / "f" / ".hidden").mkdir()
    (tmp_path / "f" / "deeper").mkdir()
    walked = {f.path.name: f for f in dataroot.walk(tmp_path, 2)}
    f = walked["f"]
    assert set(walked) == {tmp_path.name, "f", "deeper"}
    assert (f.level, f.images, f.masks) == (1, True, True)
    assert f.marks == {"run.json", "results.parquet"}
    assert sorted(f.tables) == ["boxes.csv", "coco.JSON", "run.json"]
    assert not walked["deeper"].images and walked["deeper"].level == 2


def test_a_folder_gone_since_the_walk_is_not_listed(tmp_path) -> None:
    run = tmp_path / "runs" / "a"
    _image(run / "results.parquet")
    survey = dataroot.Survey(ttl=60)
    assert dataroot.results_folders(tmp_path, None, survey.walk) == ["runs/a"]
    (run / "results.parquet").unlink()
    assert dataroot.results_folders(tmp_path, None, survey.walk) == []


def test_upload_folders_come_from_one_walk_of_uploads_whatever_the_sessions(tmp_path, monkeypatch) -> None:
    """Each session's upload folder, to the same depth as before, out of one cached walk of ``uploads/``."""
    monkeypatch.delenv(dataroot.ENV_SHARED_UPLOADS, raising=False)
    _image(tmp_path / "uploads" / "me" / "z" / "cls" / "deep" / "a.jpg")  # uploads/me/z/cls/deep: depth 3 in me/
    _image(tmp_path / "uploads" / "me" / "z" / "cls" / "deep" / "deeper" / "b.jpg")  # depth 4: beyond
    _image(tmp_path / "uploads" / "you" / "y" / "c.jpg")
    survey = dataroot.Survey(ttl=60)
    mine = dataroot.image_folders(tmp_path, "me", survey.walk)
    assert mine == dataroot.image_folders(tmp_path, "me") == ["uploads/me/z/cls", "uploads/me/z/cls/deep"]
    assert dataroot.image_folders(tmp_path, "you", survey.walk) == ["uploads/you/y"]
    assert {key[0] for key in survey._walks} == {tmp_path, tmp_path / "uploads"}
    _image(tmp_path / "uploads" / "me" / "new" / "d.jpg")
    survey.clear(tmp_path / "uploads")  # a zip just unpacked: uploads/ walked again, the root's walk kept
    assert "uploads/me/new" in dataroot.image_folders(tmp_path, "me", survey.walk)
    assert tmp_path in {key[0] for key in survey._walks}

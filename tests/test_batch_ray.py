"""``--engine ray`` on a local Ray cluster (2 CPUs, started once for the module) gives the local engine's table.

Ray is an optional extra (``pip install .[ray]``, installed by requirements-dev.txt so CI runs this).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import save_file

from cam_core.batch import BatchJob, read_results, read_run, run_local
from cam_core.cli import main
from cam_core.io import write_sample_folder
from tests.tiny import COLOURS, colour_net, write_colour_folder

ray = pytest.importorskip("ray", reason="ray[data] is not installed (pip install '.[ray]')")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    from cam_core.batch.ray import runtime_env

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, runtime_env=runtime_env())
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagefolder")
    write_sample_folder(root, per_photo=2, seed=2)
    (root / "moped" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (root / "moped" / "labels.csv").write_text("a,b\n")
    return root


def test_engine_ray_gives_the_same_table_as_local(cluster, folder, tmp_path, lite0, capsys) -> None:
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    job = BatchJob(classes="pred,label", labels=True, batch_size=3)
    run_local(job, folder, local_out, workers=0, model=lite0)
    rc = main(["batch", "--images", str(folder), "--labels-from-folders", "--classes", "pred,label",
               "--batch-size", "3", "--engine", "ray", "--workers", "2", "--out", str(ray_out)])
    assert rc == 0
    assert "9 files: 9 explained now" in capsys.readouterr().out
    a, b = read_results(local_out).to_pandas(), read_results(ray_out).to_pandas()
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == 9
    for col in ("path", "label", "label_name", "pred", "pred_name", "correct", "error"):
        assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
    ok = a.error.isna()
    assert ok.sum() == 8 and b[~ok].path.iloc[0].endswith("cut.png")
    for col in ("class_ids", "top5_ids", "map_shape", "blank"):
        assert [list(v) for v in a[col][ok]] == [list(v) for v in b[col][ok]], col
    for col in ("prob_pred", "prob_label", "entropy"):
        np.testing.assert_allclose(a[col][ok].astype(float), b[col][ok].astype(float), rtol=1e-5, atol=1e-6)
    for col in ("map_gradcam", "pos_mass", "relu_survival", "top5_probs"):
        np.testing.assert_allclose(np.concatenate(a[col][ok].tolist()), np.concatenate(b[col][ok].tolist()),
                                   rtol=1e-4, atol=1e-6)
    run = read_run(ray_out)
    assert run["engine"] == "ray" and run["workers"] == 2 and "ray" in run["versions"]


def test_engine_ray_resumes(cluster, folder, tmp_path, lite0) -> None:
    from cam_core.batch.ray import run_ray

    job = BatchJob(batch_size=4)
    first = run_ray(job, str(folder / "tabby" / "*.jpg"), tmp_path, workers=1, model=lite0)
    assert first.computed == 2
    again = run_ray(job, folder, tmp_path, workers=1, model=lite0)  # now the whole folder: only the rest runs
    assert (again.reused, again.computed) == (2, 7)
    df = read_results(tmp_path).to_pandas()
    assert len(df) == 9 and df.path.is_unique


def test_engine_ray_carries_the_ground_truth(cluster, folder, tmp_path, lite0) -> None:
    """``--boxes`` on Ray: each file's truth travels in its record; the localisation columns equal the local run's."""
    from cam_core.batch.ray import run_ray

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("path,x0,y0,x1,y1,label\ntabby/" + "\ntabby/".join(
        f"{p.name},10,10,120,90,tabby" for p in sorted((folder / "tabby").glob("*.jpg"))) + "\nmoped.jpg,0,0,50,50\n")
    job = BatchJob(classes="pred,label", labels=True, batch_size=3, boxes=str(boxes))
    run_local(job, folder, tmp_path / "local", workers=0, model=lite0)
    run_ray(job, folder, tmp_path / "ray", workers=1, model=lite0)
    a, b = read_results(tmp_path / "local").to_pandas(), read_results(tmp_path / "ray").to_pandas()
    assert list(a.columns) == list(b.columns)
    for col in ("boxes", "box_labels", "point_hit", "box_cut"):
        assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
    def scored(df) -> list[float]:  # pandas reads a null inside a list of floats as NaN
        return [e for energies in df.box_energy.dropna() for e in energies if not np.isnan(e)]

    assert len(scored(a)) == 2  # the tabby photos' true class; a prediction of another class has no box
    np.testing.assert_allclose(scored(a), scored(b), atol=1e-5)
    assert read_run(tmp_path / "ray")["boxes"]["unmatched_entries"] == 1


def test_compare_on_ray_gives_the_local_comparison(cluster, tmp_path) -> None:
    """``compare --engine ray``: the three runs on actors (each file's added classes in its record), the same join.

    The actors import the tiny model's factory (``tests.tiny``) through the test's ``PYTHONPATH`` (the README's way).
    """
    write_colour_folder(tmp_path / "patches", per_class=1, misfiled={"red": "green"})
    (tmp_path / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    sd = colour_net().state_dict()
    save_file({k: (v[[1, 0, 2, 3, 4]] if k.startswith("fc.") else v).contiguous() for k, v in sd.items()},
              tmp_path / "swapped.safetensors")
    args = ["compare", "--model", "tests.tiny:colour_net", "--model-b", "tests.tiny:colour_net", "--checkpoint-b",
            str(tmp_path / "swapped.safetensors"), "--input-size", "32", "--labels", str(tmp_path / "labels.txt"),
            "--images", str(tmp_path / "patches"), "--labels-from-folders"]
    assert main([*args, "--workers", "0", "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--engine", "ray", "--workers", "1", "--out", str(tmp_path / "ray")]) == 0
    a, b = (pq.read_table(tmp_path / f / "compare.parquet").to_pandas() for f in ("local", "ray"))
    assert list(a.path) == list(b.path) and list(a.pred_changed) == list(b.pred_changed) and a.pred_changed.sum() == 3
    assert [list(c) for c in a.class_names] == [list(c) for c in b.class_names]
    np.testing.assert_allclose(np.concatenate(a.map_shift.tolist()), np.concatenate(b.map_shift.tolist()), atol=1e-5)

"""The atlas of attention: a planted shortcut comes out as its own, flagged cluster; no shortcut, no flag; the grid,
the clustering and the flags against hand-computed values and scikit-learn; the CLI's files and columns."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cam_core.analysis.atlas import ATLAS_JSON, ATLAS_PARQUET, build_atlas, read_atlas, write_atlas
from cam_core.analysis.atlas_cluster import kmeans, pca, silhouette
from cam_core.analysis.atlas_flags import border_mass, cluster_flags, corner_mass
from cam_core.analysis.atlas_grid import area_matrix, read_grid_maps, to_grid
from cam_core.analysis.atlas_sheet import sheet_image
from cam_core.cli import main
from tests.synthetic_results import write_results


def _truth(atlas, planted) -> np.ndarray:
    index = {p: i for i, p in enumerate(planted.paths)}
    return planted.shortcut[np.array([index[p] for p in atlas.paths])]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    return out, write_results(out, n=900, classes=3, shortcut_class=0, share=0.2, seed=1, blank_rows=4)


@pytest.mark.parametrize("clusters", [None, 2])
def test_a_planted_corner_shortcut_is_its_own_flagged_cluster(planted, clusters) -> None:
    out, truth = planted
    atlas = build_atlas(out, clusters=clusters)
    shortcut = _truth(atlas, truth)
    cat = next(c for c in atlas.classes if c.class_id == 0)
    flagged = [k for k in cat.clusters if k.flags]
    assert len(flagged) == 1, [(k.id, k.size, k.flags) for k in cat.clusters]
    members = (atlas.class_ids == 0) & (atlas.cluster == flagged[0].id)
    purity = shortcut[members].mean()
    recall = (shortcut & members).sum() / shortcut.sum()
    assert purity >= 0.9 and recall >= 0.9, (purity, recall)
    assert {f.code for f in flagged[0].flags} >= {"corner"}
    assert "top-left corner" in flagged[0].flags[0].reason
    others = [k for c in atlas.classes if c.class_id != 0 for k in c.clusters]
    assert not any(k.flags for k in others)  # the classes without a shortcut flag nothing


def test_a_run_without_shortcut_flags_nothing_and_auto_keeps_one_cluster(tmp_path) -> None:
    write_results(tmp_path, n=600, classes=3, shortcut_class=None, seed=2)
    atlas = build_atlas(tmp_path)
    assert atlas.flagged() == []
    assert all(len(c.clusters) == 1 and c.chosen.startswith("one cluster") for c in atlas.classes)


def test_blank_maps_are_cluster_minus_one_without_layout(planted) -> None:
    out, truth = planted
    atlas = build_atlas(out)
    blank = atlas.cluster == -1
    assert blank.sum() == 4
    assert set(atlas.paths[blank]) == set(truth.paths[:4])
    assert np.isnan(atlas.xy[blank]).all() and np.isfinite(atlas.xy[~blank]).all()
    assert sum(c.blank for c in atlas.classes) == 4
    # The true class's maps (--of label): here the same maps, so the same clusters.
    np.testing.assert_array_equal(build_atlas(out, whose="label").cluster, atlas.cluster)


def test_the_grid_keeps_mass_shares_and_normalises(tmp_path) -> None:
    # Area averaging: a 3-cell row onto 2 cells splits the middle cell half and half.
    np.testing.assert_allclose(area_matrix(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], atol=1e-6)
    m = np.zeros((1, 7, 10), dtype=np.float32)
    m[0, 0, 0] = 5.0  # all the mass in the top-left cell of a 7×10 map
    g = to_grid(m, 16)[0]
    assert g[:3, :2].sum() > 0 and g[3:, :].sum() == 0 and g[:, 2:].sum() == 0
    # read_grid_maps: ReLU'd, on the grid, each map sums to 1; the first map by hand.
    write_results(tmp_path, n=20, classes=2, shortcut_class=None, seed=3)
    _, maps = read_grid_maps(tmp_path)
    np.testing.assert_allclose(maps.grids.sum(axis=(1, 2)), 1.0, atol=1e-5)
    raw = np.maximum(np.asarray(pq.read_table(tmp_path / "results.parquet").column("map_gradcam")[0].as_py()), 0)
    shape = pq.read_table(tmp_path / "results.parquet").column("map_shape")[0].as_py()
    by_hand = to_grid(raw.reshape(shape).astype(np.float32), 16)[0]
    np.testing.assert_allclose(maps.grids[0], by_hand / by_hand.sum(), rtol=1e-5, atol=1e-7)
    # Upsampling repeats cells, downsampling averages blocks.
    small = np.array([[[1.0, 2.0], [3.0, 4.0]]], dtype=np.float32)
    np.testing.assert_allclose(to_grid(small, 4)[0], np.kron(small[0], np.ones((2, 2))))
    np.testing.assert_allclose(to_grid(np.kron(small, np.ones((1, 2, 2))), 2)[0], small[0])


def test_flags_read_the_mean_map_by_hand() -> None:
    even = np.full((16, 16), 1 / 256)
    assert border_mass(even) == pytest.approx(1 - 144 / 256)  # the ring of 2 cells: 112 of 256 cells
    assert corner_mass(even)[1] == pytest.approx(25 / 256)  # 5 × 5 cells: a third of 16, rounded
    assert cluster_flags(even, np.full(5, np.nan)) == []
    corner = np.zeros((16, 16))
    corner[15, 15] = 1.0
    flags = cluster_flags(corner, np.array([0.1, 0.2, np.nan]))
    assert [f.code for f in flags] == ["corner", "border", "outside_box"]
    assert "bottom-right" in flags[0].reason and flags[2].value == pytest.approx(0.15)
    assert "2 image(s) with a box" in flags[2].reason
    # Too few boxed images: the box rule says nothing.
    assert [f.code for f in cluster_flags(even, np.array([0.1, np.nan, np.nan]))] == []


def test_box_energy_flags_a_cluster_that_looks_outside_the_boxes(tmp_path) -> None:
    rng = np.random.default_rng(4)
    energy = rng.uniform(0.5, 0.9, 300).astype(np.float32)
    truth = write_results(tmp_path, n=300, classes=2, shortcut_class=None, seed=4)
    energy[truth.pred == 1] = 0.1  # class 1's maps are central but miss its (off-centre) boxes
    energy[::7] = np.nan
    write_results(tmp_path, n=300, classes=2, shortcut_class=None, seed=4, box_energy=energy)
    atlas = build_atlas(tmp_path)
    codes = {c.class_id: [f.code for k in c.clusters for f in k.flags] for c in atlas.classes}
    assert codes == {0: [], 1: ["outside_box"]}


def test_clustering_matches_scikit_learn() -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.4, (60, 5)) for c in (0.0, 3.0, -3.0)])
    labels, _, inertia = kmeans(x, 3)
    ref = KMeans(3, n_init=3, random_state=0).fit(x)
    assert adjusted_rand_score(labels, ref.labels_) == 1.0
    assert inertia == pytest.approx(ref.inertia_, rel=1e-6)
    assert silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-9)
    ragged = rng.integers(0, 4, len(x))
    assert silhouette(x, ragged) == pytest.approx(silhouette_score(x, ragged), abs=1e-9)
    ours = pca(x, 3)
    theirs = PCA(3).fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-5)  # equal up to each axis' sign
    assert sklearn.__version__


def test_cli_writes_both_files_with_the_documented_columns(planted, tmp_path, capsys) -> None:
    out, _ = planted
    assert main(["atlas", "--results", str(out), "--clusters", "auto", "--sheet"]) == 0
    printed = capsys.readouterr().out
    assert "1 flagged" in printed and "top-left corner" in printed
    table = pq.read_table(out / ATLAS_PARQUET)
    assert table.column_names == ["path", "method", "class_id", "cluster", "x", "y"]
    assert table.num_rows == 900 and set(table.column("method").to_pylist()) == {"gradcam"}
    doc = json.loads((out / ATLAS_JSON).read_text())
    assert read_atlas(out) == doc
    cls = doc["methods"]["gradcam"]["classes"]
    assert {c["name"] for c in cls} == {"cat", "dog", "bird"}
    cluster = cls[0]["clusters"][0]
    assert {"id", "size", "mean_map", "flags", "examples", "border_mass", "corner_mass"} <= set(cluster)
    assert np.asarray(cluster["mean_map"]).shape == (16, 16)
    assert sum(k["size"] for c in cls for k in c["clusters"]) + sum(c["blank"] for c in cls) == 900
    assert (out / "atlas.png").is_file()
    assert main(["atlas", "--results", str(tmp_path)]) == 2
    assert main(["atlas", "--results", str(out), "--method", "hirescam"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert "holds no results.parquet" in errors[0] and "has no 'hirescam' maps" in errors[1] and len(errors) == 2


def test_a_stale_atlas_is_not_read(tmp_path) -> None:
    write_results(tmp_path, n=40, classes=2, shortcut_class=None)
    write_atlas(tmp_path, [build_atlas(tmp_path)])
    assert read_atlas(tmp_path) is not None
    write_results(tmp_path, n=50, classes=2, shortcut_class=None, seed=9)  # the run grew: a new results file
    assert read_atlas(tmp_path) is None


def test_the_sheet_draws_a_row_per_class_and_marks_the_flagged(planted) -> None:
    out, _ = planted
    write_atlas(out, [build_atlas(out)])
    entry = json.loads((out / ATLAS_JSON).read_text())["methods"]["gradcam"]
    image = np.asarray(sheet_image(entry, "test"))
    assert image.shape[0] >= 46 + 3 * 150
    red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
    frame_tops = red[[46 - 2 + 152 * i for i in range(3)], 190:190 + 112].all(axis=1)  # each row's first tile
    assert frame_tops.tolist() == [True, False, False]  # the flagged class comes first, framed; the others not


def test_a_folder_of_parts_is_read_and_a_paths_newest_row_wins(tmp_path) -> None:
    import os
    import time

    import pyarrow.compute as pc

    truth = write_results(tmp_path, n=120, classes=2, shortcut_class=None, seed=5)
    before = build_atlas(tmp_path)
    parts = tmp_path / ".parts"
    parts.mkdir()
    os.replace(tmp_path / "results.parquet", parts / "part-1.parquet")
    table = pq.read_table(parts / "part-1.parquet")
    again = build_atlas(tmp_path)  # the parts alone, as a run still going leaves them
    np.testing.assert_array_equal(again.cluster, before.cluster)
    time.sleep(0.01)
    newer = table.slice(0, 10)
    negative = pc.list_flatten(newer.column("map_gradcam")).to_numpy() * 0 - 1.0
    offsets = newer.column("map_gradcam").combine_chunks().offsets
    newer = newer.set_column(newer.schema.get_field_index("map_gradcam"), "map_gradcam",
                             pa.ListArray.from_arrays(offsets, pa.array(negative, pa.float32())))
    newer = newer.set_column(newer.schema.get_field_index("blank"), "blank",
                             pa.array([[True]] * 10, pa.list_(pa.bool_())))
    pq.write_table(newer, parts / "part-2.parquet")
    latest = build_atlas(tmp_path)
    assert len(latest.paths) == 120
    blank = set(latest.paths[latest.cluster == -1])
    assert blank == set(truth.paths[:10])


def test_the_query_engines_paths_filter_narrows_to_a_cluster(planted) -> None:
    from cam_core.batch.query import Filters, ResultsQuery

    out, _ = planted
    atlas = build_atlas(out)
    flagged = next(k for c in atlas.classes for k in c.clusters if k.flags)
    paths = sorted(atlas.paths[(atlas.class_ids == 0) & (atlas.cluster == flagged.id)])
    q = ResultsQuery.open(out)
    try:
        assert q.count(Filters(paths=tuple(paths))) == len(paths) == flagged.size
        shown = q.page("path", Filters(paths=tuple(paths)), 0, 1000)
        assert [r["path"] for r in shown] == paths
        assert q.count(Filters(pred=(1,), paths=tuple(paths))) == 0  # with the other filters, not instead
    finally:
        q.close()

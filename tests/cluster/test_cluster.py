"""Tests of cytotrail.cluster: table joins, clustering and cell-type annotation, AnnData output."""

import numpy as np
import pandas as pd
import pytest

from cytotrail.cluster import (
    KnnTransformer,
    auto_umap_epochs,
    cluster,
    embed_umap,
    knn_graph,
    leiden,
    merge_tables,
    score_signatures,
    track_summaries,
    write_anndata,
)
from cytotrail.io import InputError
from cytotrail.quantify import quantify
from cytotrail.synth import make_timelapse


def _ari(a, b):
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(np.asarray(a, str), np.asarray(b, str))


def _tables(data, sample):
    cells = quantify(data.labels, data.image, channel_names=data.channel_names, background="local")
    cells.insert(0, "sample", sample)
    tracks = data.tracks.rename(columns={"cell_type": "truth"})
    tracks = tracks.drop(columns=["y", "x", "area"]).assign(sample=sample)
    return cells, tracks


@pytest.fixture(scope="module")
def _synth():
    data = make_timelapse(n_types=3, seed=5, n_frames=8, shape=(192, 192), n_cells=36)
    other = make_timelapse(n_types=3, seed=6, n_frames=8, shape=(192, 192), n_cells=36)
    (c1, t1), (c2, t2) = _tables(data, "a"), _tables(other, "b")
    return data, pd.concat([c1, c2], ignore_index=True), pd.concat([t1, t2], ignore_index=True)


@pytest.fixture
def synth(_synth):
    data, cells, tracks = _synth
    return data, cells.copy(), tracks.copy()


@pytest.fixture(scope="module")
def _clustered(_synth):
    data, cells, tracks = _synth
    table = merge_tables(cells, tracks)
    markers = [m.name for m in data.panel if m.cell_type]
    return cluster(table, markers=markers, signatures=data.signatures, umap=False, seed=3)


# --------------------------------------------------------------------------------------
# merge_tables


def test_merge_tables_joins_tracks(synth):
    _, cells, tracks = synth
    before = cells.copy()
    merged = merge_tables(cells, tracks)
    pd.testing.assert_frame_equal(cells, before)  # input untouched
    assert len(merged) == len(cells)
    pd.testing.assert_frame_equal(merged[cells.columns], cells)
    for col in ("track_id", "parent_track_id", "lineage_id", "truth"):
        assert col in merged.columns
    # label == track_id in the synthetic ground truth
    np.testing.assert_array_equal(merged["track_id"], merged["label"])
    assert merge_tables(cells) is not cells


def test_merge_tables_errors(synth):
    _, cells, tracks = synth
    with pytest.raises(InputError, match=r"duplicated keys \(sample, frame, label\)"):
        merge_tables(pd.concat([cells, cells.iloc[:2]]), tracks)
    with pytest.raises(InputError, match="tracks table has 2 rows with duplicated keys"):
        merge_tables(cells, pd.concat([tracks, tracks.iloc[:1]]))
    fewer = tracks.iloc[5:]
    with pytest.raises(InputError, match="5 cell row\\(s\\) have no track row"):
        merge_tables(cells, fewer)
    renamed = tracks.assign(sample=tracks["sample"].map({"a": "A", "b": "b"}))
    with pytest.raises(InputError, match=r"samples in cells: \['a', 'b'\], in tracks: \['A', 'b'\]"):
        merge_tables(cells, renamed)
    with pytest.raises(InputError, match="lacks the key column"):
        merge_tables(cells, tracks.drop(columns="label"))
    kept = merge_tables(cells, fewer, unmatched="keep")
    assert len(kept) == len(cells) and kept["track_id"].isna().sum() == 5
    assert len(merge_tables(cells, fewer, unmatched="drop")) == len(cells) - 5


# --------------------------------------------------------------------------------------
# cluster


@pytest.mark.slow  # first cluster() call: scanpy import and numba compilation, ~10 s
def test_cluster_recovers_types(_clustered):
    adata = _clustered
    truth = adata.obs["truth"]
    assert _ari(truth, adata.obs["cell_type"]) >= 0.9
    assert _ari(truth, adata.obs["leiden"]) >= 0.8
    assert (adata.obs["cell_type"] != "unknown").mean() > 0.95
    assert adata.obs["cell_type_confidence"].between(0, 1).all()


@pytest.mark.slow
def test_anndata_layout(_clustered, _synth):
    adata = _clustered
    data, cells, _ = _synth
    markers = [m.name for m in data.panel if m.cell_type]
    assert list(adata.var_names) == markers
    assert adata.n_obs == len(cells)
    np.testing.assert_allclose(
        adata.layers["raw"], cells[[f"{m}_cell_mean" for m in markers]].to_numpy(), rtol=1e-6
    )
    for col in (
        "sample",
        "frame",
        "label",
        "track_id",
        "area",
        "Ki67_cell_mean",
        "leiden",
        "cell_type",
        "cell_type_confidence",
        "cell_type_frame",
        "cell_type_cluster",
    ):
        assert col in adata.obs.columns, col
    assert "CD3_cell_mean" not in adata.obs.columns
    assert adata.obs["leiden"].dtype == "category"
    assert all(isinstance(c, str) for c in adata.obs["leiden"].cat.categories)
    np.testing.assert_allclose(adata.obsm["spatial"], cells[["x", "y"]].to_numpy())
    params = adata.uns["cytotrail"]["params"]
    assert params["markers"] == markers and params["seed"] == 3
    assert adata.uns["leiden"]["params"]["random_state"] == 3
    assert set(adata.uns["cytotrail"]["cofactors"]) == set(markers)
    # X is z-scored per marker
    np.testing.assert_allclose(adata.X.mean(axis=0), 0, atol=1e-4)


@pytest.mark.slow
def test_one_type_per_track(_clustered):
    obs = _clustered.obs
    per_track = obs.groupby(["sample", "track_id"], observed=True)["cell_type"].nunique()
    assert (per_track == 1).mean() > 0.97
    before = obs.groupby(["sample", "track_id"], observed=True)["cell_type_frame"].nunique()
    assert (per_track <= before).all()


def test_track_consensus_keeps_true_switches():
    from cytotrail.cluster.celltypes import _track_consensus

    rng = np.random.default_rng(0)
    rows, types = [], []
    for track in range(30):
        n = 12
        frames = rng.permutation(n)  # rows in any order
        if track < 10:  # one type with 2 wrong frames: majority wins
            seq = np.array(["A"] * n, object)
            seq[rng.choice(n, 2, replace=False)] = "B"
        elif track < 20:  # switches A -> B at frame 5, one noisy frame
            seq = np.where(np.arange(n) < 5, "A", "B").astype(object)
            seq[9] = "C"
        else:  # alternating: no clean switch, majority (ties -> first seen)
            seq = np.array(["A", "B", "A"] * 4, object)
        rows += [{"sample": "s", "track_id": track, "frame": f} for f in frames]
        types += list(seq[frames])
    obs = pd.DataFrame(rows)
    out, conf = _track_consensus(obs, np.array(types), np.ones(len(types)))
    obs["type"] = out
    for track, g in obs.groupby("track_id"):
        g = g.sort_values("frame")
        if track < 10:
            assert (g["type"] == "A").all()
        elif track < 20:
            assert list(g["type"]) == ["A"] * 5 + ["B"] * 7
        else:
            assert (g["type"] == "A").all()
    assert conf[obs["track_id"].to_numpy() < 10] == pytest.approx(10 / 12)


@pytest.mark.slow
def test_graph_excludes_same_lineage(_clustered):
    obs = _clustered.obs
    dist = _clustered.obsp["distances"].tocoo()
    lineage = (obs["sample"].astype(str) + ":" + obs["lineage_id"].astype(str)).to_numpy()
    assert dist.nnz > 0
    assert not np.any(lineage[dist.row] == lineage[dist.col])


def test_other_track_neighbors_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    groups = np.repeat(np.arange(12), 5)
    d = KnnTransformer(n_neighbors=4, groups=groups).fit_transform(x).toarray()
    for i in range(len(x)):
        full = np.linalg.norm(x - x[i], axis=1)
        full[groups == groups[i]] = np.inf
        expected = np.sort(full)[:3]
        np.testing.assert_allclose(np.sort(d[i][d[i] > 0]), expected, rtol=1e-5)


@pytest.mark.slow
def test_seeded_and_deterministic(synth):
    data, cells, tracks = synth
    table = merge_tables(cells, tracks)
    markers = [m.name for m in data.panel]
    a = cluster(table, markers=markers, umap=True, seed=1, resolution=0.3)
    b = cluster(table, markers=markers, umap=True, seed=1, resolution=0.3)
    np.testing.assert_array_equal(a.obs["leiden"], b.obs["leiden"])
    np.testing.assert_allclose(a.obsm["X_umap"], b.obsm["X_umap"])
    assert a.uns["umap"]["params"]["random_state"] == 1 if "random_state" in a.uns["umap"]["params"] else True


def test_threads_give_the_same_clusters(synth):
    data, cells, tracks = synth
    table = merge_tables(cells, tracks)
    markers = [m.name for m in data.panel]
    one = cluster(table, markers=markers, umap=False, resolution=0.3)
    two = cluster(table, markers=markers, umap=False, resolution=0.3, threads=2)
    np.testing.assert_array_equal(one.obs["leiden"], two.obs["leiden"])
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="threads must be a whole number"):
            cluster(table, markers=markers, umap=False, threads=bad)


def test_level_track(synth):
    data, cells, tracks = synth
    table = merge_tables(cells, tracks)
    markers = [m.name for m in data.panel if m.cell_type]
    adata = cluster(table, markers=markers, signatures=data.signatures, level="track", umap=False)
    n_tracks = table.groupby(["sample", "track_id"]).ngroups
    assert adata.n_obs == n_tracks
    assert {"n_frames", "first_frame", "last_frame", "track_id", "sample"} <= set(adata.obs)
    truth = table.groupby(["sample", "track_id"])["truth"].first().to_numpy()
    assert _ari(truth, adata.obs["cell_type"]) >= 0.9
    summary = track_summaries(table, markers=markers)
    one = table[(table["sample"] == "a") & (table["track_id"] == summary.loc[0, "track_id"])]
    assert summary.loc[0, "CD3_cell_mean"] == pytest.approx(one["CD3_cell_mean"].mean())
    assert summary.loc[0, "n_frames"] == len(one)
    trends = track_summaries(table, markers=markers, trends=True)
    for i in (0, 5):
        one = table[
            (table["sample"] == trends.loc[i, "sample"]) & (table["track_id"] == trends.loc[i, "track_id"])
        ]
        if len(one) > 1:
            expected = np.polyfit(one["frame"], one["CD20_cell_mean"], 1)[0]
            assert trends.loc[i, "CD20_cell_mean_slope"] == pytest.approx(expected)


def test_foreign_table_and_transforms():
    rng = np.random.default_rng(2)
    n = 300
    kind = rng.integers(0, 3, n)
    values = rng.lognormal(0, 0.3, (n, 3)) * 5
    values[np.arange(n), kind] *= 20
    table = pd.DataFrame(values, columns=["A", "B", "C"]).assign(
        x=rng.uniform(0, 100, n), y=rng.uniform(0, 100, n), sample="s"
    )
    sigs = {
        "a": {"positive": ["A"], "negative": ["B", "C"]},
        "b": {"positive": ["B"], "negative": ["A", "C"]},
        "c": {"positive": ["C"], "negative": ["A", "B"]},
    }
    for transform in ("arcsinh", "percentile", "log1p", "none"):
        adata = cluster(
            table,
            markers=["A", "B", "C"],
            feature="",
            signatures=sigs,
            transform=transform,
            umap=False,
            resolution=0.2,
        )
        assert _ari(kind, adata.obs["cell_type"]) > 0.95, transform
    fixed = cluster(table, markers=["A", "B", "C"], feature="", cofactor=5.0, umap=False)
    np.testing.assert_allclose(fixed.layers["transformed"], np.arcsinh(values / 5.0), rtol=1e-6)


def test_hierarchy_and_unknown():
    rng = np.random.default_rng(3)
    n = 400
    values = rng.lognormal(0, 0.2, (n, 3))
    values[:100, 0] *= 30  # CD45+ CD3+ : T
    values[:100, 1] *= 30
    values[100:200, 0] *= 30  # CD45+ CD3- : other immune
    values[200:300, 2] *= 30  # PanCK+ : tumour; rows 300.. carry nothing
    sigs = {
        "Immune": {"positive": ["CD45"], "negative": ["PanCK"]},
        "T": {"positive": ["CD3"], "parent": "Immune"},
        "Tumour": {"positive": ["PanCK"], "negative": ["CD45"]},
    }
    types, confidence, scores = score_signatures(
        np.arcsinh(values), ["CD45", "CD3", "PanCK"], sigs, min_score=0.3
    )
    assert (types[:100] == "T").mean() > 0.95
    assert (types[100:200] == "Immune").mean() > 0.95
    assert (types[200:300] == "Tumour").mean() > 0.95
    assert (types[300:] == "unknown").mean() > 0.95
    assert np.all(confidence[types == "unknown"] == 0)
    assert list(scores.columns) == ["Immune", "T", "Tumour"]
    with pytest.raises(InputError, match="parent 'Lymphoid' is not a cell type"):
        score_signatures(values, ["CD45", "CD3", "PanCK"], {"T": {"positive": ["CD3"], "parent": "Lymphoid"}})


def test_bad_input_is_named(synth):
    data, cells, tracks = synth
    with pytest.raises(InputError, match=r"markers \['CD99'\] have no column.*available.*'CD3'"):
        cluster(cells, markers=["CD3", "CD99"])
    with pytest.raises(InputError, match="duplicated marker names \\['CD3'\\]"):
        cluster(cells, markers=["CD3", "CD3", "CD20"])
    nan = cells.copy()
    nan.loc[3, "CD20_cell_mean"] = np.nan
    with pytest.raises(InputError, match="NaN or infinite in 1 row.*'CD20': 1"):
        cluster(nan, markers=["CD3", "CD20"])
    with pytest.raises(InputError, match="no cells"):
        cluster(cells.iloc[:0], markers=["CD3", "CD20"])
    with pytest.raises(InputError, match="signature markers \\['CD68'\\]"):
        cluster(cells, markers=["CD3", "CD20"], signatures={"T": {"positive": ["CD68"]}})
    with pytest.raises(InputError, match="level"):
        cluster(cells, markers=["CD3"], level="lineage")
    with pytest.raises(InputError, match=r"cofactors must be positive, got \{'CD20': 0.0\}$"):
        cluster(cells, markers=["CD3", "CD20"], cofactor={"CD3": 5.0, "CD20": 0.0})


def test_constant_zero_and_negative_markers(synth):
    data, cells, _ = synth
    table = cells.assign(Zero_cell_mean=0.0, Neg_cell_mean=-cells["CD3_cell_mean"])
    markers = ["CD3", "CD20", "CD68", "Zero", "Neg"]
    adata = cluster(table, markers=markers, umap=False)
    assert adata.uns["cytotrail"]["constant_markers"] == ["Zero"]
    assert np.all(adata.X[:, markers.index("Zero")] == 0)
    assert np.all(np.isfinite(adata.X))
    # arcsinh is odd: negative intensities keep their order
    neg = adata.layers["transformed"][:, markers.index("Neg")]
    order = np.argsort(table["Neg_cell_mean"].to_numpy(), kind="stable")
    assert np.all(np.diff(neg[order]) >= 0)


def test_tiny_tables():
    table = pd.DataFrame({"A": [1.0, 2.0], "B": [3.0, 1.0], "sample": ["s", "s"]})
    adata = cluster(table, markers=["A", "B"], feature="", umap=True)
    assert list(adata.obs["leiden"]) == ["0", "0"]


def test_write_anndata_round_trip(tmp_path, _clustered):
    import anndata

    path = tmp_path / "out" / "cells.h5ad"
    write_anndata(path, _clustered)
    assert [p.name for p in path.parent.iterdir()] == ["cells.h5ad"]  # no temp file left
    back = anndata.read_h5ad(path)
    assert back.shape == _clustered.shape
    np.testing.assert_array_equal(back.obs["cell_type"], _clustered.obs["cell_type"])
    assert back.uns["cytotrail"]["params"]["seed"] == 3


def test_cli_cluster(tmp_path, synth):
    import anndata
    import yaml

    from cytotrail import io
    from cytotrail.cli import main

    data, cells, tracks = synth
    io.write_table(tmp_path / "cells.parquet", cells)
    io.write_table(tmp_path / "tracks.csv", tracks.drop(columns="truth"))
    (tmp_path / "types.yaml").write_text(yaml.safe_dump(data.signatures))
    out = tmp_path / "cells.h5ad"
    code = main(
        [
            "cluster",
            str(tmp_path / "cells.parquet"),
            "--tracks",
            str(tmp_path / "tracks.csv"),
            "-o",
            str(out),
            "--markers",
            "CD3",
            "CD20",
            "CD68",
            "--cell-types",
            str(tmp_path / "types.yaml"),
            "--no-umap",
        ]
    )
    assert code == 0
    adata = anndata.read_h5ad(out)
    truth = tracks.set_index(["sample", "frame", "label"])["truth"]
    keys = pd.MultiIndex.from_frame(adata.obs[["sample", "frame", "label"]])
    assert _ari(truth.loc[keys], adata.obs["cell_type"]) >= 0.9
    assert main(["cluster", str(tmp_path / "cells.parquet"), "-o", str(out), "--markers", "CD3", "Nope"]) == 2


# --------------------------------------------------------------------------------------
# leiden and UMAP at scale


def _blobs(n=3000, k=5, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, dims))
    truth = rng.integers(0, k, n)
    return (centres[truth] + rng.normal(0, 1, (n, dims))).astype(np.float32), truth


def _graph(x, seed=0):
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=x)
    adata.obs_names = adata.obs_names.astype(str)
    sc.pp.pca(adata, n_comps=5, random_state=seed)
    sc.pp.neighbors(
        adata,
        n_neighbors=15,
        use_rep="X",
        random_state=seed,
        transformer=KnnTransformer(n_neighbors=15, random_state=seed),
    )
    return adata


def test_leiden_matches_scanpy_igraph_flavour():
    import scanpy as sc

    x, truth = _blobs(seed=2)
    adata = _graph(x)
    leiden(adata, resolution=0.3, seed=4)
    again = adata.copy()
    leiden(again, resolution=0.3, seed=4)
    np.testing.assert_array_equal(adata.obs["leiden"], again.obs["leiden"])  # seeded
    sc.tl.leiden(
        adata,
        resolution=0.3,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        random_state=4,
        key_added="scanpy",
    )
    # the same graph and the same random draws as scanpy: the same labels
    np.testing.assert_array_equal(adata.obs["leiden"], adata.obs["scanpy"])
    assert list(adata.obs["leiden"].cat.categories) == list(adata.obs["scanpy"].cat.categories)
    assert _ari(adata.obs["leiden"], truth) > 0.95
    other = adata.copy()
    leiden(other, resolution=0.3, seed=5)
    sc.tl.leiden(
        other,
        resolution=0.3,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        random_state=5,
        key_added="scanpy",
    )
    np.testing.assert_array_equal(other.obs["leiden"], other.obs["scanpy"])
    assert adata.uns["leiden"]["params"]["resolution"] == 0.3
    assert adata.uns["leiden"]["params"]["random_state"] == 4
    with pytest.raises(InputError, match="connectivities"):
        import anndata as ad

        leiden(ad.AnnData(X=x), resolution=0.3)


def test_knn_graph_matches_scanpys_neighbors():
    import anndata as ad
    import scanpy as sc

    x, truth = _blobs(seed=3)
    x[7] = x[8]  # exact duplicates: a zero distance
    ours, theirs = ad.AnnData(X=x.copy()), ad.AnnData(X=x.copy())
    knn_graph(ours, transformer=KnnTransformer(n_neighbors=15, random_state=0), seed=0)
    sc.pp.neighbors(
        theirs, n_neighbors=15, use_rep="X", random_state=0, transformer=KnnTransformer(15, random_state=0)
    )
    assert ours.uns["neighbors"] == theirs.uns["neighbors"]
    assert (ours.obsp["distances"] != theirs.obsp["distances"]).nnz == 0
    a, b = ours.obsp["connectivities"], theirs.obsp["connectivities"]
    assert a.dtype == b.dtype and (a != 0).nnz == (b != 0).nnz
    assert ((a != 0) != (b != 0)).nnz == 0  # the same edges
    # the same weights up to float32 rounding (umap-learn's parallel bisection rounds a
    # few bandwidths differently), and the same communities
    assert abs(a - b).max() < 1e-5
    for resolution in (0.3, 1.0):
        leiden(ours, resolution=resolution, seed=0)
        leiden(theirs, resolution=resolution, seed=0)
        np.testing.assert_array_equal(ours.obs["leiden"], theirs.obs["leiden"])
    assert _ari(ours.obs["leiden"], truth) > 0.95
    with pytest.raises(ValueError, match="same number of neighbours"):
        knn_graph(ad.AnnData(X=x), transformer=_Ragged())


class _Ragged(KnnTransformer):
    def fit_transform(self, x, y=None):
        graph = super().fit_transform(x)
        graph.data[0] = 0
        graph.eliminate_zeros()  # the first row a neighbour short
        return graph


def test_auto_umap_epochs():
    assert auto_umap_epochs(5_000) == 500  # umap-learn's own defaults up to 10^5
    assert auto_umap_epochs(50_000) == 200
    assert auto_umap_epochs(100_000) == 200
    assert auto_umap_epochs(400_000) == 50
    assert auto_umap_epochs(10**6) == 50
    epochs = [auto_umap_epochs(n) for n in (10**4, 10**5, 2 * 10**5, 10**6, 10**7)]
    assert epochs == sorted(epochs, reverse=True)


@pytest.mark.slow
def test_embed_umap_pca_init_separates_types(monkeypatch):
    import cytotrail.cluster.graph as cl

    x, truth = _blobs(n=1500, seed=3)
    adata = _graph(x)
    monkeypatch.setattr(cl, "UMAP_PCA_INIT_ABOVE", 1000)  # as for a large data set
    used = embed_umap(adata, seed=2, n_epochs=60)
    assert used == {"n_epochs": 60, "init": "pca"}
    assert adata.uns["umap"]["params"]["cytotrail"] == used
    emb = adata.obsm["X_umap"]
    assert emb.shape == (1500, 2) and np.isfinite(emb).all()
    # types stay apart in the layout: each cell's nearest layout neighbours share its type
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(10).fit(emb[::2], truth[::2])
    assert np.mean(knn.predict(emb[1::2]) == truth[1::2]) > 0.95
    again = adata.copy()
    embed_umap(again, seed=2, n_epochs=60)
    np.testing.assert_allclose(again.obsm["X_umap"], emb)  # seeded
    with pytest.raises(InputError, match="init"):
        embed_umap(adata, init="tsne")

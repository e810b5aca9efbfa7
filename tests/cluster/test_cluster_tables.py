"""Tests of cytotrail.cluster on tables from other tools and on bad tables (library and CLI),
of the data-driven Leiden resolution, and of clustering without typing or without markers."""

import numpy as np
import pandas as pd
import pytest

from cytotrail.cluster import cluster, merge_tables
from cytotrail.cluster.resolution import choose_resolution
from cytotrail.cluster.tables import check_marker_columns, resolve_feature, spatial_columns, with_sample
from cytotrail.io import InputError


def _ari(a, b):
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(np.asarray(a, str), np.asarray(b, str))


def _mibi(n=240, seed=0, sample_column="fov"):
    """A MIBI-like table: label, fov, one column per marker, no frame."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    values = rng.lognormal(0, 0.3, (n, 3)) * 4
    values[np.arange(n), kind] *= 25
    table = pd.DataFrame(values, columns=["CD3", "CD20", "PanCK"])
    table.insert(0, "label", np.arange(1, n + 1))
    table.insert(0, sample_column, np.where(np.arange(n) < n // 2, "fov1", "fov2"))
    table["label"] = table.groupby(sample_column).cumcount() + 1
    return table, np.array(["T", "B", "Tumour"])[kind]


SIGS = {"T": {"pos": ["CD3"]}, "B": {"pos": ["CD20"]}, "Tumour": {"pos": ["PanCK"]}}


# --------------------------------------------------------------------------------------
# tables from other tools


def test_with_sample_and_feature_guess():
    table, _ = _mibi()
    assert (with_sample(table)["sample"] == table["fov"]).all()
    scimap = table.rename(columns={"fov": "imageid"})
    assert (with_sample(scimap)["sample"] == table["fov"]).all()
    assert with_sample(table.drop(columns="fov")) is not None
    keren = table.rename(columns={"fov": "SampleID"})  # the published MIBI TNBC table
    assert (with_sample(keren)["sample"] == table["fov"]).all()
    own = table.assign(sample="s", CD3_cell_mean=1.0, CD20_cell_mean=1.0)
    assert resolve_feature(own, ["CD3", "CD20"]) == "cell_mean"  # cytotrail's own columns
    assert resolve_feature(table, ["CD3", "CD20"]) == ""  # named like the markers
    assert resolve_feature(table, ["CD3"], "nucleus_mean") == "nucleus_mean"  # as given


@pytest.mark.slow  # may be the session's first cluster(): scanpy import and numba, ~20 s
def test_foreign_table_without_frame_clusters_and_types():
    table, truth = _mibi()
    merged = merge_tables(table)  # no frame, label repeats across fovs: still one table
    adata = cluster(merged, markers=["CD3", "CD20", "PanCK"], signatures=SIGS, gates="auto", umap=False)
    assert list(adata.obs["sample"].unique()) == ["fov1", "fov2"]
    assert adata.uns["cytotrail"]["params"]["feature"] == ""
    assert np.mean(adata.obs["cell_type"].astype(str) == truth) > 0.97
    assert _ari(truth, adata.obs["leiden"]) > 0.9
    assert "frame" not in adata.obs


def test_marker_columns_checked_per_table():
    a, _ = _mibi(seed=1)
    b, _ = _mibi(seed=2)
    check_marker_columns({"a.csv": a, "b.csv": b}, ["CD3", "CD20"])
    with pytest.raises(
        InputError,
        match=r"table b.csv has no column for markers \['CD3'\].*"
        r"present in \['a.csv'\]",
    ):
        check_marker_columns({"a.csv": a, "b.csv": b.rename(columns={"CD3": "CD3e"})}, ["CD3", "CD20"])
    with pytest.raises(
        InputError,
        match=r"no column for any of the markers \['CD8'\].*"
        r"numeric columns are \['CD3', 'CD20', 'PanCK'\]",
    ):
        check_marker_columns({"a.csv": a}, ["CD8"])
    with pytest.raises(InputError, match="name their marker columns differently"):
        check_marker_columns(
            {"a.csv": a, "own.parquet": b.assign(CD3_cell_mean=1.0, CD20_cell_mean=2.0)}, ["CD3", "CD20"]
        )
    # a bad value is found in its own table, counted in its rows (not the merged table's)
    text = b.astype({"CD3": object})
    text.loc[5, "CD3"] = "abc"
    with pytest.raises(
        InputError, match=r"table b.csv: marker column 'CD3' holds text, not numbers: 'abc' in row 5"
    ):
        check_marker_columns({"a.csv": a, "b.csv": text}, ["CD3", "CD20"])
    nan = b.copy()
    nan.loc[[4, 6], "CD20"] = np.inf
    with pytest.raises(InputError, match=r"table b.csv: .*infinite in 2 row\(s\) \(the first: row 4\)"):
        check_marker_columns({"a.csv": a, "b.csv": nan}, ["CD3", "CD20"])
    check_marker_columns({"a.csv": a, "b.csv": nan}, ["CD3", "CD20"], drop_na=True)


def test_text_nan_and_drop_na():
    table, _ = _mibi()
    text = table.astype({"CD20": object})
    text.loc[7, "CD20"] = "n/a"
    with pytest.raises(InputError, match=r"marker column 'CD20' holds text, not numbers: 'n/a' in row 7"):
        cluster(text, markers=["CD3", "CD20"])
    nan = table.copy()
    nan.loc[[3, 9], "CD3"] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinite in 2 row.*'CD3': 2.*--drop-na"):
        cluster(nan, markers=["CD3", "CD20"])
    adata = cluster(nan, markers=["CD3", "CD20"], drop_na=True, umap=False)
    assert adata.n_obs == len(table) - 2 and adata.uns["cytotrail"]["dropped_rows"] == 2
    assert {4, 10}.isdisjoint(adata.obs["label"][adata.obs["sample"] == "fov1"])  # rows 3, 9
    with pytest.raises(InputError, match="every row has a NaN"):
        cluster(nan.iloc[[3, 9]], markers=["CD3", "CD20"], drop_na=True)


def test_degenerate_tables_give_one_cluster():
    three = pd.DataFrame({"A": [1.0, 2.0, 3.0], "B": [3.0, 1.0, 2.0]})
    adata = cluster(three, markers=["A", "B"], umap=True)
    assert adata.n_obs == 3 and "X_umap" not in adata.obsm  # too few for a layout
    same = pd.DataFrame({"A": [1.0] * 60, "B": [2.0] * 60})
    adata = cluster(same, markers=["A", "B"], signatures={"a": {"pos": ["A"]}})
    assert set(adata.obs["leiden"]) == {"0"}
    assert adata.uns["cytotrail"]["constant_markers"] == ["A", "B"]
    assert "one cluster" in adata.uns["cytotrail"]["resolution"]["method"]


# --------------------------------------------------------------------------------------
# typing optional, resolution from the data


def test_no_signatures_clusters_without_types():
    table, truth = _mibi(seed=3)
    for signatures in (None, {}):
        adata = cluster(table, markers=["CD3", "CD20", "PanCK"], signatures=signatures, umap=False)
        assert "cell_type" not in adata.obs and "leiden" in adata.obs
        assert _ari(truth, adata.obs["leiden"]) > 0.9


def test_resolution_from_data_and_given():
    table, truth = _mibi(n=400, seed=5)
    auto = cluster(table, markers=["CD3", "CD20", "PanCK"], umap=False, seed=2)
    choice = auto.uns["cytotrail"]["resolution"]
    assert choice["method"] == "stability across seeds"
    assert auto.uns["cytotrail"]["params"]["auto_resolution"]
    assert auto.uns["leiden"]["params"]["resolution"] == choice["resolution"]
    assert auto.obs["leiden"].nunique() == 3 and _ari(truth, auto.obs["leiden"]) > 0.95
    given = cluster(table, markers=["CD3", "CD20", "PanCK"], umap=False, resolution=2.0)
    assert given.uns["leiden"]["params"]["resolution"] == 2.0  # the user's value, honoured
    assert given.uns["cytotrail"]["resolution"] == {"method": "given", "resolution": 2.0}
    assert given.obs["leiden"].nunique() > 3
    with pytest.raises(InputError, match="resolution must be positive"):
        cluster(table, markers=["CD3"], resolution=0)


@pytest.mark.slow  # 28 Leiden runs twice, ~5 s
def test_choose_resolution_prefers_stable_partitions():
    import anndata as ad
    import scanpy as sc

    from cytotrail.cluster import KnnTransformer

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (4, 5))
    truth = rng.integers(0, 4, 1200)
    x = (centres[truth] + rng.normal(0, 1, (1200, 5))).astype(np.float32)
    adata = ad.AnnData(X=x)
    sc.pp.neighbors(adata, n_neighbors=15, use_rep="X", transformer=KnnTransformer(15))
    chosen, table = choose_resolution(adata, seed=1)
    assert [row["resolution"] for row in table] == [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0]
    best = max(row["stability"] for row in table if row["n_clusters"] >= 2)
    row = next(r for r in table if r["resolution"] == chosen)
    assert row["stability"] >= best - 0.01 and row["n_clusters"] == 4
    assert choose_resolution(adata, seed=1) == (chosen, table)  # seeded
    # above max_cells the choice is made on a subsample with its own graph
    sub, _ = choose_resolution(adata, seed=1, max_cells=600)
    assert sub in (0.05, 0.1, 0.2, 0.3)


# --------------------------------------------------------------------------------------
# command line


def _cli(tmp_path, *args):
    from cytotrail.cli import main

    return main(["cluster", *map(str, args), "-o", str(tmp_path / "out.h5ad"), "--no-umap"])


def test_cli_hostile_tables(tmp_path, capsys):
    import anndata

    pd.DataFrame({"CD3": [1.0, 2, 3], "CD20": [3.0, 1, 2]}).to_csv(tmp_path / "three.csv", index=False)
    assert _cli(tmp_path, tmp_path / "three.csv", "--markers", "CD3", "CD20") == 0
    assert anndata.read_h5ad(tmp_path / "out.h5ad").n_obs == 3
    pd.DataFrame({"CD3": [1.0] * 60, "CD20": [2.0] * 60}).to_csv(tmp_path / "same.csv", index=False)
    assert _cli(tmp_path, tmp_path / "same.csv", "--markers", "CD3", "CD20") == 0
    assert set(anndata.read_h5ad(tmp_path / "out.h5ad").obs["leiden"]) == {"0"}
    pd.DataFrame({"CD3": ["a", "1"] * 5, "CD20": np.arange(10.0)}).to_csv(tmp_path / "text.csv", index=False)
    capsys.readouterr()
    assert _cli(tmp_path, tmp_path / "text.csv", "--markers", "CD3", "CD20") == 2
    err = capsys.readouterr().err
    assert "marker column 'CD3' holds text" in err and "Traceback" not in err


def test_cli_foreign_tables_gates_and_workflow_csv(tmp_path, capsys):
    import anndata

    a, truth = _mibi(seed=7)
    one_image = {"label": np.arange(1, len(a) + 1)}  # no fov: one image per file
    a.drop(columns="fov").assign(**one_image).to_csv(tmp_path / "a.csv", index=False)
    b, truth_b = _mibi(seed=8)
    b.drop(columns="fov").assign(**one_image).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "workflow.csv").write_text(",,CD3,CD20,PanCK\nall,T,pos,,\nall,B,,pos,\nall,Tumour,,,pos\n")
    (tmp_path / "gates.csv").write_text("markers,gate\nCD3,2.5\n")
    assert (
        _cli(
            tmp_path,
            tmp_path / "a.csv",
            tmp_path / "b.parquet",
            "--markers",
            "CD3",
            "CD20",
            "PanCK",
            "--cell-types",
            tmp_path / "workflow.csv",
            "--gates",
            tmp_path / "gates.csv",
        )
        == 0
    )
    adata = anndata.read_h5ad(tmp_path / "out.h5ad")
    assert list(adata.obs["sample"].unique()) == ["a", "b"]
    assert adata.uns["cytotrail"]["thresholds"]["CD3"] == 2.5
    assert np.mean(adata.obs["cell_type"].astype(str) == np.r_[truth, truth_b]) > 0.95
    (tmp_path / "bad_gates.csv").write_text("markers,gate\nCD8,2.5\n")
    capsys.readouterr()
    assert (
        _cli(
            tmp_path,
            tmp_path / "a.csv",
            "--markers",
            "CD3",
            "--cell-types",
            "{T: {pos: [CD3]}}",
            "--gates",
            tmp_path / "bad_gates.csv",
        )
        == 2
    )
    assert "gate is given for marker 'CD8'" in capsys.readouterr().err
    assert (
        _cli(
            tmp_path,
            tmp_path / "a.csv",
            "--markers",
            "CD3",
            "--cell-types",
            "{T: {pos: [CD3], parent: B}, B: {pos: [CD3], parent: T}}",
        )
        == 2
    )
    assert "cycle" in capsys.readouterr().err
    # a type defined twice in a file: YAML kept the last one without a word
    (tmp_path / "types.yaml").write_text("T: {pos: [CD3]}\nB: {pos: [CD20]}\nT: {pos: [PanCK]}\n")
    args = ["--markers", "CD3", "CD20", "PanCK", "--cell-types", tmp_path / "types.yaml"]
    assert _cli(tmp_path, tmp_path / "a.csv", *args) == 2
    assert "'T' is given twice" in capsys.readouterr().err
    assert _cli(tmp_path, tmp_path / "a.csv", *args[:4], "--cell-types", "{T: {pos: [CD3], neg: [CD3]}}") == 2
    assert "signature of 'T' names ['CD3'] both positive and negative" in capsys.readouterr().err
    assert _cli(tmp_path, tmp_path / "a.csv", *args[:4], "--background", "Bkg") == 2
    assert "--background Bkg: table " in capsys.readouterr().err


def test_cli_without_markers_writes_the_table(tmp_path):
    import anndata

    a, _ = _mibi(seed=9)
    a.to_csv(tmp_path / "a.csv", index=False)
    assert _cli(tmp_path, tmp_path / "a.csv") == 0
    adata = anndata.read_h5ad(tmp_path / "out.h5ad")
    assert adata.n_vars == 0 and adata.n_obs == len(a)
    assert "leiden" not in adata.obs and "not clustered" in adata.uns["cytotrail"]["skipped"]
    assert _cli(tmp_path, tmp_path / "a.csv", "--cell-types", "{T: {pos: [CD3]}}") == 2


@pytest.mark.slow  # the report's figures, ~10 s
def test_report_summary_without_types_or_markers(tmp_path):
    from cytotrail.cli import main

    table, _ = _mibi(seed=11)
    table = table.rename(columns={"fov": "sample"}).assign(frame=0)
    table.to_csv(tmp_path / "cells.csv", index=False)
    for name, markers in (("clusters_only", ["--markers", "CD3", "CD20", "PanCK"]), ("no_markers", [])):
        out = tmp_path / f"{name}.h5ad"
        assert main(["cluster", str(tmp_path / "cells.csv"), "-o", str(out), "--no-umap", *markers]) == 0
        assert main(["report", "summary", str(out), "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name / "summary.tsv").is_file()


def test_spatial_from_other_tools_centroids():
    table, _ = _mibi()
    markers = ["CD3", "CD20", "PanCK"]
    rng = np.random.default_rng(1)
    row, col = rng.uniform(0, 500, len(table)), rng.uniform(0, 800, len(table))
    ark = table.assign(**{"centroid-0": row, "centroid-1": col})  # ark/steinbock: row first
    mcmicro = table.assign(X_centroid=col, Y_centroid=row)
    assert spatial_columns(ark) == ("centroid-1", "centroid-0")
    assert spatial_columns(mcmicro) == ("X_centroid", "Y_centroid")
    assert spatial_columns(table) is None
    for t in (ark, mcmicro):
        adata = cluster(t, markers=markers, umap=False, resolution=0.5)
        np.testing.assert_allclose(adata.obsm["spatial"], np.column_stack([col, row]))

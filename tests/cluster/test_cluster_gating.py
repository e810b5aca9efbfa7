"""Tests of cytotrail.cluster.gating and gated typing: rule semantics, thresholds, readers,
the hierarchy, background flags, and agreement with the authors' gating on real CyCIF tables."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data

from cytotrail.cluster import cluster, score_signatures
from cytotrail.cluster.celltypes import lineages, normalise_signatures
from cytotrail.cluster.gating import (
    GATE,
    SCALE_POWERS,
    estimate_thresholds,
    rescale,
    rule_scores,
    signatures_from_workflow,
    thresholds_from_gates,
)
from cytotrail.io import InputError

# --------------------------------------------------------------------------------------
# rule semantics (scimap's phenotype_cells)


def test_rule_scores_semantics():
    u = np.array([[0.9, 0.2, 0.7], [0.6, 0.8, 0.1], [0.3, 0.4, 0.2]])
    col = {"A": 0, "B": 1, "C": 2}
    np.testing.assert_allclose(rule_scores(u, col, {"pos": ["A", "C"]}), [0.8, 0.35, 0.25])
    np.testing.assert_allclose(rule_scores(u, col, {"neg": ["B"]}), [0.8, 0.2, 0.6])
    np.testing.assert_allclose(rule_scores(u, col, {"anypos": ["B", "C"]}), [0.7, 0.8, 0.4])
    np.testing.assert_allclose(rule_scores(u, col, {"anyneg": ["A", "B"]}), [0.8, 0.4, 0.7])
    # allpos: the best marker only when every one passes the gate (+0.01 edge), else 0
    np.testing.assert_allclose(rule_scores(u, col, {"allpos": ["A", "C"]}), [0.91, 0.0, 0.0])
    np.testing.assert_allclose(rule_scores(u, col, {"allneg": ["B", "C"]}), [0.0, 0.0, 0.81])
    # a failed allpos vetoes the type, however negative its 'neg' marker (scimap: 0.505)
    np.testing.assert_allclose(rule_scores(u, col, {"allpos": ["A", "C"], "neg": ["B"]}), [0.855, 0.0, 0.0])
    u0 = np.array([[0.9, 0.0, 0.2]])
    assert rule_scores(u0, col, {"allpos": ["A", "C"], "neg": ["B"]})[0] == 0.0
    # kinds must each pass: pos A and neg B average where both do, else 0
    np.testing.assert_allclose(rule_scores(u, col, {"pos": ["A"], "neg": ["B"]}), [0.85, 0.0, 0.0])
    # a marker at its minimum under 'neg' does not make up for a failed 'pos' (scimap: 0.65)
    assert rule_scores(np.array([[0.3, 0.0, 0.0]]), col, {"pos": ["A"], "neg": ["B"]})[0] == 0.0


def test_rescale_puts_threshold_at_gate():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 2)) * [1, 3] + [0, 10]
    t = [0.5, 11.0]
    u = rescale(values, t)
    assert u.min() == 0 and u.max() == 1
    for j in range(2):
        order = np.argsort(values[:, j])
        assert np.all(np.diff(u[order, j]) >= 0)  # monotone
        assert np.all((u[:, j] >= GATE) == (values[:, j] >= t[j]))
    np.testing.assert_allclose(rescale(np.array([[0.0], [1.0], [3.0]]), [1.0]), [[0], [0.5], [1]])


@pytest.mark.parametrize("method", ["posterior", "negative_tail", "mixture_boundary"])
def test_estimate_thresholds_separates_populations(method):
    rng = np.random.default_rng(1)
    neg = rng.normal(1.0, 0.2, 4000)
    pos = rng.normal(4.0, 0.5, 1000)
    values = np.column_stack([np.r_[neg, pos], rng.normal(2, 0.1, 5000)])
    values[:50, 0] = -5  # outliers (e.g. cells outside the tissue) must not pull the fit
    t = estimate_thresholds(values, ["A", "B"], seed=3, method=method)
    assert 1.4 < t["A"] < 3.0
    truth = np.r_[np.zeros(4000, bool), np.ones(1000, bool)]
    assert np.mean((values[:, 0] > t["A"]) == truth) > 0.98
    assert t == estimate_thresholds(values, ["A", "B"], seed=3, method=method)  # seeded
    constant = estimate_thresholds(np.ones((100, 1)), ["C"])
    assert constant["C"] > 1.0  # one value: every cell negative
    with pytest.raises(InputError, match="threshold method"):
        estimate_thresholds(values, ["A", "B"], method="otsu")


# --------------------------------------------------------------------------------------
# readers


def _workflow():
    return pd.DataFrame(
        [
            ["all", "Immune", "pos", "", "", ""],
            ["all", "Tumour", "neg", "", "", "pos"],
            ["Immune", "T", "", "pos", "", ""],
            ["Immune", "Myeloid", "", "", "anypos", "anypos"],
            ["Myeloid", "T", "", "pos", "", ""],
            ["T-rest", "CD8", "", "", "allpos", ""],
        ],
        columns=["", " ", "CD45", "CD3", "CD68", "PanCK"],
    ).replace("", np.nan)


def test_signatures_from_workflow():
    sigs = signatures_from_workflow(_workflow())
    assert list(sigs) == ["Immune", "Tumour", "T", "Myeloid", "T (Myeloid)", "CD8"]
    assert sigs["Immune"] == {"pos": ["CD45"], "label": "Immune"}  # 'all': no parent
    assert sigs["Tumour"] == {"neg": ["CD45"], "pos": ["PanCK"], "label": "Tumour"}
    assert sigs["Myeloid"]["anypos"] == ["CD68", "PanCK"]
    assert sigs["T (Myeloid)"] == {"pos": ["CD3"], "label": "T", "parent": "Myeloid"}
    assert sigs["CD8"]["parent"] == "T-rest"
    normalise_signatures(sigs, ["CD45", "CD3", "CD68", "PanCK"])  # valid as cytotrail's
    bad = _workflow()
    bad.iloc[2, 3] = "positive"
    with pytest.raises(InputError, match=r"line 4 \('T'\), marker 'CD3': 'positive' is not one of"):
        signatures_from_workflow(bad)
    with pytest.raises(InputError, match="one column per marker"):
        signatures_from_workflow(_workflow().iloc[:, :2])


def test_thresholds_from_gates():
    table = pd.DataFrame({"markers": ["CD3", " CD20"], "image-1": [7.5, 6]})
    assert thresholds_from_gates(table) == {"CD3": 7.5, "CD20": 6.0}
    with pytest.raises(InputError, match="one column of gates"):
        thresholds_from_gates(table.assign(other=1.0))
    with pytest.raises(InputError, match=r"gates of \['CD20'\] are not numbers"):
        thresholds_from_gates(table.assign(**{"image-1": ["7", "high"]}))
    with pytest.raises(InputError, match=r"markers \['CD3'\] more than once"):
        thresholds_from_gates(pd.DataFrame({"markers": ["CD3", "CD3"], "g": [1, 2]}))


# --------------------------------------------------------------------------------------
# the hierarchy


def test_gated_hierarchy_and_rest():
    markers = ["CD45", "CD3", "CD30", "CD8"]
    sigs = {
        "Immune": {"pos": ["CD45"]},
        "T": {"pos": ["CD3"], "parent": "Immune"},
        "Tumour": {"pos": ["CD30"], "parent": "T"},
        "CD8 T": {"pos": ["CD8"], "parent": "T-rest"},  # T cells that are not tumour
        "Other": {"neg": ["CD45"], "label": "Non-immune"},
    }
    hi, lo = 10.0, 0.0
    values = np.array(
        [
            [hi, hi, hi, hi],  # T, CD30+: tumour (the rest's children never see it)
            [hi, hi, lo, hi],  # T, CD30-: goes on to T-rest, CD8+
            [hi, hi, lo, lo],  # T, nothing further: stays T
            [hi, lo, lo, lo],  # immune only
            [lo, lo, lo, lo],  # non-immune
            [5.0, 5.0, 5.0, 5.0],  # in between: everything at 0.5 passes with the least margin
        ]
    )
    types, conf, scores = score_signatures(values, markers, sigs, thresholds=[4, 4, 4, 4])
    assert list(types[:5]) == ["Tumour", "CD8 T", "T", "Immune", "Non-immune"]
    assert list(scores.columns) == list(sigs)
    assert conf[:5].min() > 0.5 and conf[5] < 0.3
    assert np.all((conf >= 0) & (conf <= 1))
    none = score_signatures(values, markers, {"Immune": {"pos": ["CD45"]}}, thresholds=[11, 4, 4, 4])[0]
    assert set(none) == {"unknown"}  # nothing passes: unknown


def test_signature_errors():
    markers = ["A", "B"]
    with pytest.raises(InputError, match="cycle"):
        normalise_signatures(
            {"x": {"pos": ["A"], "parent": "y"}, "y": {"pos": ["B"], "parent": "x"}}, markers
        )
    with pytest.raises(InputError, match="parent 'z' is not a cell type"):
        normalise_signatures({"x": {"pos": ["A"], "parent": "z"}}, markers)
    with pytest.raises(InputError, match="parent 'z-rest' is not a cell type"):
        normalise_signatures({"x": {"pos": ["A"], "parent": "z-rest"}}, markers)
    with pytest.raises(InputError, match="unknown keys \\['posit'\\]"):
        normalise_signatures({"x": {"posit": ["A"]}}, markers)
    with pytest.raises(InputError, match="names no marker"):
        normalise_signatures({"x": {"parent": None}}, markers)
    with pytest.raises(InputError, match=r"signature markers \['C'\]"):
        normalise_signatures({"x": {"allneg": ["A", "C"]}}, markers)
    assert normalise_signatures({}, markers) == {} and normalise_signatures(None) == {}
    # positive/negative are pos/neg; a bare list is pos
    sig = normalise_signatures({"x": {"positive": ["A"], "negative": "B"}, "y": ["B"]}, markers)
    assert sig["x"]["rule"] == {"pos": ["A"], "neg": ["B"]} and sig["y"]["rule"] == {"pos": ["B"]}


# --------------------------------------------------------------------------------------
# through cluster()


def _two_types(n=300, seed=0):
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    values = rng.lognormal(0, 0.25, (n, 3)) * 5
    values[kind == 0, 0] *= 30
    values[kind == 1, 1] *= 30
    table = pd.DataFrame(values, columns=["CD3", "CD20", "Background"])
    return table, np.where(kind == 0, "T", "B")


@pytest.mark.slow  # may be the session's first cluster(): scanpy import and numba, ~15 s
def test_cluster_gates_auto_given_and_bad():
    table, truth = _two_types()
    sigs = {"T": {"pos": ["CD3"], "neg": ["CD20"]}, "B": {"pos": ["CD20"], "neg": ["CD3"]}}
    auto = cluster(table, markers=["CD3", "CD20"], signatures=sigs, umap=False)  # the default
    assert np.mean(auto.obs["cell_type"].astype(str) == truth) > 0.97
    assert set(auto.uns["cytotrail"]["thresholds"]) == {"CD3", "CD20"}
    assert auto.uns["cytotrail"]["params"]["gates"] == "auto"
    # a given gate above every cell: nobody is CD3+, so no T cells (with pos alone: a
    # neg term would average with it, as in scimap)
    given = cluster(
        table,
        markers=["CD3", "CD20"],
        gates={"CD3": 100.0},
        umap=False,
        signatures={"T": {"pos": ["CD3"]}, "B": {"pos": ["CD20"]}},
    )
    assert given.uns["cytotrail"]["thresholds"]["CD3"] == 100.0
    assert "T" not in set(given.obs["cell_type"].astype(str))
    with pytest.raises(InputError, match="gate is given for marker 'CD8', which is not in the table"):
        cluster(table, markers=["CD3", "CD20"], signatures=sigs, gates={"CD8": 1.0})
    with pytest.raises(InputError, match="gate of 'CD3' is not a number"):
        cluster(table, markers=["CD3", "CD20"], signatures=sigs, gates={"CD3": "high"})
    with pytest.raises(InputError, match="gates must be 'auto', 'none' or a mapping"):
        cluster(table, markers=["CD3", "CD20"], signatures=sigs, gates="otsu")


def test_background_channel_flags_cells():
    table, truth = _two_types(seed=4)
    high = np.zeros(len(table), bool)
    high[:40] = True  # a field where the background channel is bright
    table.loc[high, "Background"] *= 40
    table.loc[high, "CD20"] *= 30  # and it bleeds into CD20: would read as B cells
    sigs = {"T": {"pos": ["CD3"], "neg": ["CD20"]}, "B": {"pos": ["CD20"], "neg": ["CD3"]}}
    adata = cluster(
        table, markers=["CD3", "CD20"], signatures=sigs, gates="auto", background="Background", umap=False
    )
    flagged = adata.obs["background_high"].to_numpy()
    assert flagged[:40].all() and flagged[40:].mean() < 0.02
    assert (adata.obs["cell_type"].astype(str)[flagged] == "unknown").all()
    assert adata.obs["cell_type_confidence"][flagged].max() == 0
    assert "Background" not in adata.var_names
    ok = ~flagged
    assert np.mean(adata.obs["cell_type"].astype(str)[ok] == truth[ok]) > 0.97
    info = adata.uns["cytotrail"]["background"]
    assert info["markers"] == ["Background"] and 0.1 < info["fraction_high"] < 0.2
    with pytest.raises(InputError, match=r"markers \['Bkg'\] have no column"):
        cluster(table, markers=["CD3", "CD20"], background="Bkg")


def test_even_background_flags_nobody():
    # noise alone in the background channel (cytotrail init names MIBI's Background
    # channel for every such project): a mixture splits it and would flag its upper 16 %
    table, truth = _two_types(n=600, seed=5)
    table["Background"] = np.random.default_rng(5).gamma(2.0, 5.0, len(table))
    sigs = {"T": {"pos": ["CD3"], "neg": ["CD20"]}, "B": {"pos": ["CD20"], "neg": ["CD3"]}}
    adata = cluster(table, markers=["CD3", "CD20"], signatures=sigs, background="Background", umap=False)
    assert not adata.obs["background_high"].any()
    assert np.mean(adata.obs["cell_type"].astype(str) == truth) > 0.97
    # a MIBI-like channel: zero for most cells, noise counts for the others, then a bright field
    counts = np.random.default_rng(6).poisson(3.0, len(table)).astype(float)
    counts[np.random.default_rng(7).random(len(table)) < 0.7] = 0.0
    table["Background"] = counts
    sparse = cluster(table, markers=["CD3", "CD20"], signatures=sigs, background="Background", umap=False)
    assert not sparse.obs["background_high"].any()
    table.loc[:29, "Background"] = 60.0
    bright = cluster(table, markers=["CD3", "CD20"], signatures=sigs, background="Background", umap=False)
    assert bright.obs["background_high"].to_numpy()[:30].all() and bright.obs["background_high"].sum() == 30
    table["Background"] = np.random.default_rng(5).gamma(2.0, 5.0, len(table))
    # a gate the user gives is taken as it is, even inside the bulk
    from cytotrail.cluster.transform import _transform

    background, _ = _transform(table[["Background"]].to_numpy(float), ["Background"], "arcsinh", None)
    median = float(np.median(background))
    given = cluster(
        table,
        markers=["CD3", "CD20"],
        signatures=sigs,
        background="Background",
        gates={"Background": median},
        umap=False,
    )
    assert 0.4 < given.obs["background_high"].mean() < 0.6


# --------------------------------------------------------------------------------------
# real CyCIF tables (scimap's test data): the authors' gates and hierarchy


@pytest.fixture(scope="module")
def exemplar():
    import anndata as ad

    folder = shared_data("multiplex", "scimap-cycif")
    pheno = ad.read_h5ad(folder / "exemplar-001_phenotypes.h5ad")
    cells = pd.read_csv(folder / "exemplar-001_cells.csv")
    markers = [str(m) for m in pheno.var_names]
    return (
        cells,
        markers,
        thresholds_from_gates(pd.read_csv(folder / "exemplar-001_manual_gates.csv")),
        signatures_from_workflow(pd.read_csv(folder / "exemplar-001_phenotype_workflow.csv")),
        pheno.obs["phenotype"].astype(str).replace("Unknown", "unknown").to_numpy(),
    )


def test_exemplar_given_gates_reproduce_authors(exemplar):
    cells, markers, gates, sigs, truth = exemplar
    types, conf, _ = score_signatures(
        np.log1p(cells[markers].to_numpy(float)), markers, sigs, thresholds=gates
    )
    assert np.mean(types == truth) >= 0.98  # measured: 99.98 %
    assert set(types) == set(truth)
    assert np.all(conf[types == "unknown"] == 0)


def test_estimate_thresholds_marker_most_cells_carry():
    # a marker like HLA-DR: a broad shoulder of negatives and dim cells under a tight,
    # larger positive population; the negative tail of the broad component would lie
    # above every positive cell
    rng = np.random.default_rng(4)
    neg = rng.normal(0.45, 0.15, 1500)
    pos = rng.normal(0.70, 0.05, 3500)
    values = np.r_[neg, pos][:, None]
    for method in ("posterior", "negative_tail", "mixture_boundary"):
        (t,) = estimate_thresholds(values, ["HLADR"], method=method).values()
        assert 0.5 < t < 0.62, (method, t)
        assert np.mean(pos >= t) > 0.95


def test_estimate_thresholds_zeros_of_ion_counts():
    # IMC/MIBI means of ion counts: most negative cells are exactly 0, the rest dim; the
    # spike of zeros must not become the negative component (a threshold just above 0
    # called three of four cells positive)
    from cytotrail.cluster.transform import _transform

    rng = np.random.default_rng(5)
    positive = rng.random(5000) < 0.15
    raw = np.where(positive, rng.lognormal(np.log(20), 0.5, 5000), rng.exponential(1.0, 5000))
    raw[(rng.random(5000) < 0.6) & ~positive] = 0
    values, _ = _transform(raw[:, None], ["CD20"], "arcsinh", None)
    (t,) = estimate_thresholds(values, ["CD20"]).values()
    assert np.mean((values[:, 0] >= t) == positive) > 0.98


def _lineage_share(types, truth, sigs, markers):
    top = lineages(sigs, markers)
    return np.mean(np.array([top[t] for t in types]) == np.array([top[t] for t in truth]))


@pytest.mark.slow  # 45 mixture fits on 11,201 cells, ~8 s
def test_exemplar_estimated_thresholds(exemplar):
    from cytotrail.cluster.transform import _transform

    cells, markers, gates, sigs, truth = exemplar
    values, _ = _transform(cells[markers].to_numpy(float), markers, "arcsinh", None)
    est = estimate_thresholds(values, markers)
    types, _, _ = score_signatures(values, markers, sigs, thresholds=est)
    assert np.mean(types == truth) >= 0.8  # measured: 82.3 % (issue target 90 %: not met)
    assert _lineage_share(types, truth, sigs, markers) >= 0.86  # measured: 87.8 %
    calls = values >= np.array([est[m] for m in markers])
    gated = np.log1p(cells[markers].to_numpy(float)) >= np.array([gates[m] for m in markers])
    assert np.mean(calls != gated) < 0.09  # measured: 8.0 % of marker calls differ from the gates
    flat, _, _ = score_signatures(values, markers, sigs)  # percentile scores: far worse
    assert np.mean(types == truth) > np.mean(flat == truth) + 0.3


def test_lymphoid_33_gates_at_half():
    import anndata as ad

    folder = shared_data("multiplex", "scimap-cycif")
    with warnings.catch_warnings():  # the file predates anndata's current format: it says so
        warnings.simplefilter("ignore", ad.OldFormatWarning)
        adata = ad.read_h5ad(folder / "cycif_lymphoid_33markers.h5ad")
    sigs = signatures_from_workflow(pd.read_csv(folder / "cycif_lymphoid_phenotype_workflow.csv"))
    markers = [str(m) for m in adata.var_names]
    types, _, _ = score_signatures(
        np.asarray(adata.X, float), markers, sigs, thresholds={m: 0.5 for m in markers}
    )
    assert np.mean(types == adata.obs["phenotype"].astype(str).to_numpy()) >= 0.98  # 99.1 %


@pytest.mark.slow  # 90 mixture fits on 11,201 cells, ~10 s
def test_exemplar_as_ion_counts(exemplar):
    # exemplar-001 as an ion-count instrument would record it: Poisson counts over each
    # cell's area, 10 counts for a cell at the marker's median; the one-scale mixture
    # fit is thrown by a few markers (lineage 66 %), the five scales much less
    from cytotrail.cluster.transform import _transform

    cells, markers, gates, sigs, truth = exemplar
    raw = cells[markers].to_numpy(float)
    area = cells["Area"].to_numpy(float)[:, None]
    rate = raw * 10 / np.median(raw, axis=0) / area.mean()
    counts = np.random.default_rng(0).poisson(rate * area) / area
    values, _ = _transform(counts, markers, "arcsinh", None)
    share = {}
    for scales in ((1.0,), SCALE_POWERS):
        est = estimate_thresholds(values, markers, scales=scales)
        types, _, _ = score_signatures(values, markers, sigs, thresholds=est)
        share[scales] = _lineage_share(types, truth, sigs, markers)
    assert share[SCALE_POWERS] >= 0.74  # measured: 75.9 % (the authors' gates on these counts: 79 %)
    assert share[SCALE_POWERS] > share[(1.0,)] + 0.07  # one scale: 66.0 %


def test_lymphoid_33_estimated_lineage():
    import anndata as ad

    folder = shared_data("multiplex", "scimap-cycif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ad.OldFormatWarning)
        adata = ad.read_h5ad(folder / "cycif_lymphoid_33markers.h5ad")
    sigs = signatures_from_workflow(pd.read_csv(folder / "cycif_lymphoid_phenotype_workflow.csv"))
    markers = [str(m) for m in adata.var_names]
    values = np.asarray(adata.X, float)
    types, _, _ = score_signatures(values, markers, sigs, thresholds=estimate_thresholds(values, markers))
    truth = adata.obs["phenotype"].astype(str).to_numpy()
    # held out: nothing was chosen on this table; one scale gave 69.4 % (types 50.0 %)
    assert _lineage_share(types, truth, sigs, markers) >= 0.95  # measured: 95.8 %
    assert np.mean(types == truth) >= 0.75  # measured: 77.1 %

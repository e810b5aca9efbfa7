"""Cell typing and clustering on real CyCIF tables with the authors' gated phenotypes.

Usage::

    .venv/bin/python benchmarks/bench_cluster_gating.py [--data ../shared/data/multiplex/scimap-cycif]
        [--zero-fractions 0.2 0.4]

Two real per-cell tables from scimap's test data (see the folder's README.md):

- MCMICRO exemplar-001: 11,201 cells x 9 markers, raw MCQuant intensities, the authors'
  gates (on log1p intensity) and hierarchy, 8 phenotypes (``Unknown`` included);
- a lymphoid CyCIF table: 3,029 cells x 33 markers, ``X`` already rescaled to 0-1 with
  every gate at 0.5, its hierarchy, 25 phenotypes.

For each table, in one run and on the same cells, it prints the share of cells typed as
the authors typed them (and, for gating, the share put in the authors' lineage: the
top-level type of the hierarchy) by

- cytotrail gating with the authors' gates and hierarchy (``--transform log1p``, as the
  gates were drawn; on the 33-marker table, gates at 0.5 on ``X`` as given);
- cytotrail gating with thresholds estimated from the data (``gates="auto"``, the default
  transform: arcsinh on exemplar-001's raw intensities, none on the rescaled table), and
  each threshold method of :func:`cytotrail.cluster.gating.estimate_thresholds` with the
  share of per-marker calls (positive/negative) that differ from the authors' gates;
- the peer: scimap's automatic gates (``sm.pp.rescale`` without gates: a 3-component
  mixture on log1p, the gate midway between the upper two means; re-implemented in
  :func:`scimap_auto_gates`), typed by the same rules and hierarchy;
- cytotrail's percentile signature scores (``gates=None``) with the same hierarchy;
- a naive baseline: each marker z-scored over the cells, each type scored by the mean
  z of its positive markers minus that of its negative ones (every rule kind folded into
  those two), the best type of all, no hierarchy;

and the adjusted Rand index against the phenotypes of Leiden clusters: cytotrail with the
resolution chosen from the data, and scanpy's standard recipe at its default resolution
1.0 (``pp.scale``, ``pp.pca``, ``pp.neighbors`` with 15 exact neighbours, ``tl.leiden``).

Which data decided what: the estimator (posterior odds 0.99 of the upper mixture
component; before it, the negative tail with 3 SDs), its five scales (``--stress``: the
mean over exemplar-001's five versions) and the resolution rule (grid, stability, ties to
the lowest) were chosen on exemplar-001; the 33-marker table only reports, except for one
guard it exposed: a marker most cells carry (HLADR, MHCI) has broad negatives under a
tight positive peak, where any negative-tail rule called every cell negative; there the
threshold is the positives' lower edge (exemplar-001 unchanged).

``--stress`` types each table again in four other units a user may bring (see
:func:`stress_versions`: as ion counts with 50 and 10 expected counts at the median
cell, arcsinh then z-scored, log1p), with thresholds estimated on one scale and on five
(:func:`cytotrail.cluster.gating.estimate_thresholds`), and on the count versions with
the authors' gates in count units: how much of their typing the counting noise leaves.

Last run (``--stress --zero-fractions 0.2 0.4``, shared 2-core CPU), share of cells typed
as the authors did (lineage in brackets), mixtures fitted on at most 10,000 cells::

    exemplar-001              authors' gates   one scale       five scales (default)
      given                   99.8 (100.0)     78.6 (83.6)     82.3 (87.8)
      ion counts, 50          89.3 (90.3)      66.8 (69.7)     82.8 (86.2)
      ion counts, 10          76.8 (79.3)      63.7 (66.0)     73.3 (75.9)
      arcsinh, z-scored                        78.6 (83.7)     80.0 (85.4)
      log1p                                    76.2 (79.8)     77.8 (82.2)
      mean of the five                         72.8            79.2
    lymphoid-33 (reports)
      given                   98.6 (100.0)     50.0 (69.4)     77.1 (95.8)
      ion counts, 50          67.2 (86.6)      30.3 (54.3)     45.9 (68.8)
      ion counts, 10          46.6 (73.4)      41.6 (51.6)     40.9 (60.3)
      arcsinh, z-scored                        44.0 (64.6)     54.2 (73.5)
      log1p                                    40.2 (58.7)     55.2 (73.2)
      mean of the five                         41.2            54.7

One scale is fragile: with fits on 20,000 cells (every cell of exemplar-001) it typed
exemplar-001 as given 88.8 % (lineage 94.0 %), with 10,000 78.6 %; five scales 83.3 and
82.3 %. How the five answers combine was chosen by the mean over exemplar-001's five
versions (fits on 20,000 cells): the mean share without the highest and the lowest
78.1 %, the median 77.6 %, the plain mean 76.9 %. That margin is small, and lymphoid-33's
figures for all three were seen before the choice (median: 63.4 % / lineage 86.9 % as
given, stress mean 46.1 %), so for this one choice that table is not a clean held-out.
Marker calls differing from exemplar-001's gates: 8.0 %; negative tail 80.7 %, mixture
boundary 77.6 %. The peer, scimap's automatic gates with the same rules, types 60.9 % of
exemplar-001 (lineage 67.4 %) and 65.8 % of lymphoid-33 (cytotrail's estimate: 1.35x and
1.17x that). Percentile scores 46.5 %, naive z-score 46.9 %; Leiden ARI 0.334 at the
chosen 0.1 against 0.149 for scanpy at 1.0; the ARI of the cell types against the
phenotypes is 0.668 with estimated thresholds (0.996 with the authors' gates). lymphoid-33: negative tail 74.1 %, boundary
66.7 %, percentile scores 24.6 %, naive 21.2 %; Leiden ARI 0.144 at the chosen 0.2 against
0.109 at 1.0; cell types with estimated thresholds ARI 0.774 (authors' gates 0.996). The authors' given gates type 99.8 % and 98.6 %: their phenotypes carry
scimap's averaging of rule terms, which cytotrail no longer does (a failed ``pos`` or
``allpos`` is not made up for by a ``neg`` marker at its minimum). Targets not met:
estimated 90 % (exemplar-001), 85 % and ARI 0.4 (lymphoid-33).

Zero-inflated tables (``--zero-fractions 0.2 0.4``: the lowest 20 or 40 % of every marker
set to zero; on exemplar-001 that is below every gate, the lowest being CD45's at its 47th
percentile; on lymphoid-33 below all but HLADR's and MHCI's): 84.0 / 64.3 % on
exemplar-001 (80.7 / 56.4 % before rule terms had to pass each on its own and before the
five scales) and 47.6 / 37.8 % on lymphoid-33 (41.6 / 42.0 %). A two-Gaussian fit that
counts the zeros as negatives censored below detection gave 66.0 / 69.7 % and 52.0 /
64.2 % at one scale, better only at 40 %; not adopted. The lymphoid-33 phenotypes come
from scimap's own automatic gates (a 3-component mixture, midway between the upper two
means, on a scale this table no longer holds: ``X`` is not monotone in ``raw`` for 29 of
its 33 markers), so no estimator on ``X`` can recover those gates except by imitating
that one. Leiden on it stays below 0.2 whatever the features: on values rescaled around
the authors' own gates (0.5 on ``X``) the best ARI over resolutions 0.1-2 is 0.16, on
their binary calls 0.08; no resolution, feature scaling or PCA choice reached 0.4.

Tried and not adopted (mean over exemplar-001's five ``--stress`` versions, 79.2 % today):
trusting only the scales whose fitted mixture has two modes (their mean or median share:
75.8 %), or leaving out the scales where a unimodal fit has its broad component below (the
long left tail that a log-like scale gives low counts: 77.5 %). Both raised lymphoid-33's
mean lineage over its five versions from 74.3 % to 83-87 %, but the table that decides
fell, and so did its lineage (83.5 to 81-82 %). A skew-normal negative beside a Gaussian
positive, fitted by maximum likelihood on one scale: 65.8 %.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cytotrail.cluster.celltypes import lineages

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "multiplex" / "scimap-cycif"


def load(folder):
    """[(name, table, markers, transform, given gates, signatures, truth)] of both tables."""
    import anndata as ad

    from cytotrail.cluster.gating import signatures_from_workflow, thresholds_from_gates

    ex = ad.read_h5ad(folder / "exemplar-001_phenotypes.h5ad")
    cells = pd.read_csv(folder / "exemplar-001_cells.csv")
    if not (cells["CellID"].to_numpy() == ex.obs["CellID"].to_numpy()).all():
        raise SystemExit("exemplar-001: cells.csv and phenotypes.h5ad are not in the same order")
    markers = [str(m) for m in ex.var_names]
    out = [
        (
            "exemplar-001",
            cells,
            markers,
            thresholds_from_gates(pd.read_csv(folder / "exemplar-001_manual_gates.csv")),
            signatures_from_workflow(pd.read_csv(folder / "exemplar-001_phenotype_workflow.csv")),
            ex.obs["phenotype"].astype(str).replace("Unknown", "unknown").to_numpy(),
            "log1p",
            "arcsinh",
        )
    ]
    ly = ad.read_h5ad(folder / "cycif_lymphoid_33markers.h5ad")
    markers = [str(m) for m in ly.var_names]
    table = pd.DataFrame(np.asarray(ly.X, dtype=np.float64), columns=markers)
    table["imageid"] = ly.obs["ImageId"].astype(str).to_numpy()
    out.append(
        (
            "lymphoid-33",
            table,
            markers,
            {m: 0.5 for m in markers},
            signatures_from_workflow(pd.read_csv(folder / "cycif_lymphoid_phenotype_workflow.csv")),
            ly.obs["phenotype"].astype(str).to_numpy(),
            "none",
            "none",
        )
    )
    return out


def naive_zscore(values, markers, signatures):
    """Best flat signature by mean z-score of positive minus negative markers."""
    from cytotrail.cluster.celltypes import normalise_signatures

    sigs = normalise_signatures(signatures, markers)
    z = (values - values.mean(axis=0)) / np.where(values.std(axis=0) > 0, values.std(axis=0), 1)
    col = {m: j for j, m in enumerate(markers)}
    scores = []
    for sig in sigs.values():
        rule = sig["rule"]
        pos = [col[m] for k in ("pos", "anypos", "allpos") for m in rule.get(k, [])]
        neg = [col[m] for k in ("neg", "anyneg", "allneg") for m in rule.get(k, [])]
        s = z[:, pos].mean(axis=1) if pos else np.zeros(len(z))
        scores.append(s - (z[:, neg].mean(axis=1) if neg else 0))
    return np.asarray([s["label"] for s in sigs.values()])[np.argmax(scores, axis=0)]


def scimap_auto_gates(raw, markers, seed=0, components=3):
    """scimap's automatic gates (``sm.pp.rescale`` without a gate table), re-implemented.

    Per marker: the raw values clipped at their 0.01st and 99.99th percentiles, log1p, a
    Gaussian mixture of ``components`` (scimap's default 3, ``random_state`` 0), the gate
    midway between the two highest means; gates on the log1p scale, like the authors'.
    """
    from sklearn.mixture import GaussianMixture

    gates = {}
    for j, marker in enumerate(markers):
        x = np.log1p(np.clip(raw[:, j], *np.percentile(raw[:, j], [0.01, 99.99])))
        means = GaussianMixture(components, random_state=seed).fit(x[:, None]).means_.ravel()
        gates[marker] = float(np.sort(means)[-2:].mean())
    return gates


def stress_versions(table, markers):
    """[(name, values, units)]: the table as given and four versions of it a user may bring.

    - ``counts50``, ``counts10``: as an ion-count instrument (IMC, MIBI) records it:
      Poisson counts over each cell's area (``Area``, else 150 px) for an expected 50 or
      10 counts in a cell at the marker's median, divided by the area (a per-cell mean);
      ``units`` is then the factor from the given values to the expected ones;
    - ``asinh-z``: arcsinh with the 10th percentile as cofactor, then z-scored (a table
      already transformed and standardised);
    - ``log1p``: log1p of the values (of values x 1000 when they are at most 1).
    """
    raw = table[markers].to_numpy(np.float64)
    area = table["Area"].to_numpy(np.float64)[:, None] if "Area" in table else np.full((len(raw), 1), 150.0)
    out = [("given", raw, None)]
    for counts in (50, 10):
        units = counts / np.maximum(np.median(raw, axis=0), 1e-12) / area.mean()
        out.append((f"counts{counts}", np.random.default_rng(0).poisson(raw * units * area) / area, units))
    a = np.arcsinh(raw / np.maximum(np.percentile(raw, 10, axis=0), 1e-12))
    out.append(("asinh-z", (a - a.mean(axis=0)) / a.std(axis=0), None))
    out.append(("log1p", np.log1p(raw * 1000 if raw.max() <= 1 else raw), None))
    return out


def stress(table, markers, sigs, truth, gates, gate_tf, auto_tf):
    """Share of cells typed (and put in the lineage) as the authors did on each of
    :func:`stress_versions`, thresholds estimated on one scale and on five; on the
    count versions also with the authors' gates in count units (what the noise leaves)."""
    from cytotrail.cluster.celltypes import score_signatures
    from cytotrail.cluster.gating import SCALE_POWERS, estimate_thresholds
    from cytotrail.cluster.transform import _transform

    top = lineages(sigs, markers)
    lineage = np.array([top[x] for x in truth])
    raw_gates = np.array([gates[m] for m in markers])
    raw_gates = np.expm1(raw_gates) if gate_tf == "log1p" else raw_gates

    def shares(types):
        return np.mean(types == truth), np.mean(np.array([top[x] for x in types]) == lineage)

    print(
        f"  {'version':<10} {'authors gates':>14} {'one scale':>14} {'five scales':>14}   (types / lineage)"
    )
    means = {}
    for version, values, units in stress_versions(table, markers):
        cells = [""]
        if units is not None:
            types, _, _ = score_signatures(
                values, markers, sigs, thresholds=dict(zip(markers, raw_gates * units))
            )
            cells = ["{:6.1%} {:6.1%}".format(*shares(types))]
        on_a_scale = version == "asinh-z" or (version == "given" and auto_tf == "none")  # already transformed
        v, _ = _transform(values, markers, "none" if on_a_scale else "arcsinh", None)
        for scales in ((1.0,), SCALE_POWERS):
            types, _, _ = score_signatures(
                v, markers, sigs, thresholds=estimate_thresholds(v, markers, scales=scales)
            )
            typed, lin = shares(types)
            means.setdefault(len(scales), []).append(typed)
            cells.append(f"{typed:6.1%} {lin:6.1%}")
        print(f"  {version:<10} " + " ".join(f"{c:>14}" for c in cells))
    print(f"  {'mean':<10} {'':>14} " + " ".join(f"{np.mean(m):>6.1%}{'':>8}" for m in means.values()))
    return {f"stress mean, {k} scale(s)": float(np.mean(m)) for k, m in means.items()}


def scanpy_default(values, seed=0):
    import anndata as ad
    import scanpy as sc

    from cytotrail.cluster import KnnTransformer

    adata = ad.AnnData(X=values.astype(np.float32))
    sc.pp.scale(adata, max_value=10)
    sc.pp.pca(adata, n_comps=min(30, values.shape[1] - 1), random_state=seed)
    # scanpy's own kNN search fails with this scipy (csr_array.getnnz); the exact search
    # of cytotrail's KnnTransformer gives the neighbours scanpy's brute force would
    sc.pp.neighbors(adata, random_state=seed, transformer=KnnTransformer(n_neighbors=15, random_state=seed))
    sc.tl.leiden(adata, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return adata.obs["leiden"].to_numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--zero-fractions",
        type=float,
        nargs="*",
        default=[],
        metavar="F",
        help="also type each table with the lowest F of every marker set to its minimum (the zeros of "
        "ion counts or of noise removal in MIBI/IMC tables), estimated thresholds",
    )
    parser.add_argument(
        "--stress",
        action="store_true",
        help="also type each table as an ion-count instrument would record it and as users' "
        "pre-transformed tables (see stress_versions), with thresholds estimated on one scale and on five",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"data not found: {args.data} (../shared/data is not part of a clone)")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    from sklearn.metrics import adjusted_rand_score

    from cytotrail.cluster import cluster
    from cytotrail.cluster.celltypes import score_signatures
    from cytotrail.cluster.gating import THRESHOLD_METHODS, estimate_thresholds
    from cytotrail.cluster.transform import _transform

    rows = []
    for name, table, markers, gates, sigs, truth, gate_tf, auto_tf in load(args.data):
        raw = table[markers].to_numpy(np.float64)
        print(
            f"\n{name}: {len(table)} cells x {len(markers)} markers, "
            f"{len(set(truth))} phenotypes, {len(sigs)} signatures"
        )

        def agree(label, types, seconds, name=name, truth=truth):
            rows.append((name, label, float(np.mean(types == truth)), seconds))
            print(f"  {label:<62} {np.mean(types == truth):6.1%}   {seconds:6.1f} s")

        t0 = time.perf_counter()
        a = cluster(table, markers=markers, signatures=sigs, gates=gates, transform=gate_tf, umap=False)
        agree(
            f"cytotrail, given gates + hierarchy ({gate_tf})",
            a.obs["cell_type"].astype(str),
            time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
        b = cluster(table, markers=markers, signatures=sigs, gates="auto", transform=auto_tf, umap=False)
        agree(
            f"cytotrail, estimated thresholds + hierarchy ({auto_tf})",
            b.obs["cell_type"].astype(str),
            time.perf_counter() - t0,
        )
        top = lineages(sigs, markers)
        for label, adata in (("given gates", a), ("estimated thresholds", b)):
            ari = adjusted_rand_score(truth, adata.obs["cell_type"].astype(str))
            rows.append((name, f"cell_type ARI {label}", float(ari), np.nan))
            print(f"  {'  ARI of the cell types, ' + label:<62} {ari:6.3f}")
            lineage = np.mean(
                [top[x] for x in adata.obs["cell_type"].astype(str)] == np.array([top[x] for x in truth])
            )
            rows.append((name, f"lineage {label}", float(lineage), np.nan))
            print(f"  {'  lineage (top-level type), ' + label:<62} {lineage:6.1%}")
        for fraction in args.zero_fractions:  # the positives, above these quantiles, are untouched
            zeroed = raw.copy()
            cut = np.quantile(raw, fraction, axis=0)
            zeroed[zeroed <= cut] = 0.0 if auto_tf == "arcsinh" else raw.min()
            t0 = time.perf_counter()
            z = cluster(
                pd.DataFrame(zeroed, columns=markers),
                markers=markers,
                signatures=sigs,
                transform=auto_tf,
                umap=False,
            )
            agree(
                f"  estimated, lowest {fraction:.0%} of every marker set to its minimum",
                z.obs["cell_type"].astype(str),
                time.perf_counter() - t0,
            )
        if args.stress:
            print("  stress: the same cells in other units, estimated thresholds")
            for label, share in stress(table, markers, sigs, truth, gates, gate_tf, auto_tf).items():
                rows.append((name, label, share, np.nan))
        values, _ = _transform(raw, markers, auto_tf, None)
        gated, _ = _transform(raw, markers, gate_tf, None)
        gated = gated >= np.array([gates[m] for m in markers])
        for method in THRESHOLD_METHODS:
            t0 = time.perf_counter()
            est = estimate_thresholds(values, markers, method=method)
            types, _, _ = score_signatures(values, markers, sigs, thresholds=est)
            seconds = time.perf_counter() - t0
            differ = np.mean((values >= np.array([est[m] for m in markers])) != gated)
            agree(f"  thresholds {method} ({differ:.1%} of marker calls differ)", types, seconds)
        t0 = time.perf_counter()
        logged = np.log1p(raw)
        types, _, _ = score_signatures(logged, markers, sigs, thresholds=scimap_auto_gates(raw, markers))
        agree("scimap automatic gates (GMM-3 on log1p), same rules", types, time.perf_counter() - t0)
        t0 = time.perf_counter()
        types, _, _ = score_signatures(values, markers, sigs)
        agree(f"cytotrail, percentile signature scores ({auto_tf})", types, time.perf_counter() - t0)
        t0 = time.perf_counter()
        agree(
            f"naive: per-cell z-score argmax, flat ({auto_tf})",
            naive_zscore(values, markers, sigs),
            time.perf_counter() - t0,
        )

        choice = b.uns["cytotrail"]["resolution"]
        ari = adjusted_rand_score(truth, b.obs["leiden"].astype(str))
        print(
            f"  Leiden ARI, cytotrail, resolution from the data ({choice['resolution']}, "
            f"{b.obs['leiden'].nunique()} clusters): {ari:.3f}"
        )
        rows.append((name, "leiden ARI cytotrail auto", ari, np.nan))
        t0 = time.perf_counter()
        labels = scanpy_default(values)
        ari = adjusted_rand_score(truth, labels)
        print(
            f"  Leiden ARI, scanpy defaults, resolution 1.0 ({len(set(labels))} clusters): "
            f"{ari:.3f}   ({time.perf_counter() - t0:.1f} s)"
        )
        rows.append((name, "leiden ARI scanpy 1.0", ari, np.nan))
    print(
        "\ntargets (issue 16): exemplar-001 given gates >= 98 %, estimated >= 90 %; "
        "lymphoid-33 estimated >= 85 %, Leiden ARI >= 0.4"
    )
    return rows


if __name__ == "__main__":
    main()

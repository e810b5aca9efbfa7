"""``cytotrail cluster``, with its readers of per-cell tables, gates and cell-type signatures."""

from __future__ import annotations

import argparse
from pathlib import Path

from cytotrail.io import InputError

from ._common import _default, _given, _sample_name, log


def _parser_cluster(sub):
    from cytotrail.cluster import cluster, merge_tables

    p = sub.add_parser(
        "cluster",
        help="cluster cells into types (scanpy) and annotate them from marker signatures",
        description="Assemble per-cell tables (one row per cell, one column per marker) into one AnnData, "
        "transform, PCA, neighbours, Leiden, UMAP, and name cell types from marker signatures or gates. "
        "Any per-cell table will do: cytotrail's own (<marker>_<compartment>_<stat> columns), or one whose "
        "columns are named like the markers (MCMICRO/MCQuant, steinbock, scimap, a spreadsheet); "
        "sample, frame and label columns are optional (fov, imageid or SampleID name the sample; "
        "x/y, X_centroid/Y_centroid or centroid-0/centroid-1 give obsm['spatial']).",
    )
    p.add_argument("tables", nargs="+", help="per-cell tables (.csv/.tsv/.parquet/.h5ad)")
    p.add_argument("-o", "--output", required=True, help="output AnnData (.h5ad)")
    p.add_argument(
        "--markers",
        nargs="*",
        default=None,
        help="markers to cluster on; none: the table is written without clustering",
    )
    p.add_argument(
        "--tracks", nargs="+", default=None, help="track tables joined to the cells on (sample, frame, label)"
    )
    p.add_argument(
        "--feature",
        default=None,
        help="column suffix of the marker features: <marker>_<feature>, e.g. cell_mean; "
        "'' takes columns named exactly like the markers (default: cell_mean when every "
        "marker has such a column, else the columns named like the markers)",
    )
    p.add_argument(
        "--cell-types",
        default=None,
        help="cell-type signatures: a YAML/JSON file, the same inline (e.g. "
        "'{T_cell: {pos: [CD3], neg: [CD20]}, CD8_T: {pos: [CD8], parent: T_cell}}'), or "
        "a scimap phenotype workflow (.csv: parent, child, then pos/neg/anypos/anyneg/"
        "allpos/allneg per marker)",
    )
    p.add_argument(
        "--gates",
        default=None,
        help="how signatures type cells: 'auto' (gating, a threshold estimated "
        "per marker), 'none' (percentile signature scores, see --min-score), a gates table "
        "(.csv, as scimap's manual_gates.csv: markers, gate) or a mapping "
        "'{CD3: 1.2, CD20: 0.8}', on the transformed scale "
        "(scimap's gates are log1p: use --transform log1p); markers without a gate get "
        f"an estimated one (default {_default(cluster, 'gates')})",
    )
    p.add_argument(
        "--background",
        nargs="+",
        default=None,
        metavar="CHANNEL",
        help="background channel(s): cells where it is high are flagged "
        "(obs background_high) and typed unknown",
    )
    p.add_argument(
        "--drop-na",
        action="store_true",
        help="leave out rows with NaN or infinite marker values instead of failing",
    )
    p.add_argument(
        "--transform",
        default=None,
        choices=["arcsinh", "percentile", "log1p", "none"],
        help=f"per-marker transform (default {_default(cluster, 'transform')})",
    )
    p.add_argument("--cofactor", type=float, default=None, help="arcsinh cofactor (default: per marker)")
    p.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="Leiden resolution (default: chosen from the data, the most stable across seeds)",
    )
    p.add_argument(
        "--n-neighbors",
        type=int,
        default=None,
        help=f"neighbours in the kNN graph (default {_default(cluster, 'n_neighbors')})",
    )
    p.add_argument(
        "--level",
        default=None,
        choices=["cell", "track"],
        help=f"cluster cell-frames or whole tracks (default {_default(cluster, 'level')})",
    )
    p.add_argument(
        "--annotate",
        default=None,
        choices=["cell", "cluster"],
        help="cell types from each cell's own signature scores or its cluster's "
        f"(default {_default(cluster, 'annotate')})",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="with --gates none: signature score below which a cell is 'unknown' "
        f"(default {_default(cluster, 'min_score')})",
    )
    p.add_argument(
        "--unmatched",
        default=None,
        choices=["error", "keep", "drop"],
        help="cells without a track row (and track rows without a cell): fail, keep "
        f"them without track_id, or drop them (default {_default(merge_tables, 'unmatched')})",
    )
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP embedding")
    p.add_argument(
        "--seed", type=int, default=None, help=f"random seed (default {_default(cluster, 'seed')})"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of the neighbour search (the exact search, up to 50,000 cells, gives the same "
        "neighbours with any number; the workflow passes "
        f"the threads of rule cluster_cells; default {_default(cluster, 'threads')})",
    )
    p.set_defaults(func=_cmd_cluster)


def _cmd_cluster(args):
    import pandas as pd

    from cytotrail import io
    from cytotrail.cluster import cluster, merge_tables, write_anndata
    from cytotrail.cluster.pipeline import without_clustering
    from cytotrail.cluster.tables import check_marker_columns, with_sample

    tables = {}
    for path in args.tables:
        table = with_sample(_read_cells(path))
        if "sample" not in table.columns and len(args.tables) > 1:
            table.insert(0, "sample", _sample_name(argparse.Namespace(sample=None), path))
        tables[str(path)] = table
    markers = list(args.markers or [])
    extra = list(args.background or [])
    if markers and extra:
        try:
            check_marker_columns(tables, extra, args.feature, drop_na=args.drop_na)
        except InputError as err:
            raise InputError(f"--background {' '.join(extra)}: {err}") from err
    if markers:
        check_marker_columns(tables, markers + extra, args.feature, drop_na=args.drop_na)
    cells = pd.concat(list(tables.values()), ignore_index=True)
    tracks = None
    if args.tracks:
        tracks = pd.concat([io.read_table(path) for path in args.tracks], ignore_index=True)
    table = merge_tables(cells, tracks, **_given(args, "unmatched"))
    signatures = _read_signatures(args.cell_types) if args.cell_types else None
    gates = _read_gates(args.gates) if args.gates not in (None, "auto", "none") else args.gates
    if not markers:
        if signatures or extra:
            raise InputError("--cell-types and --background need --markers")
        adata = without_clustering(table)
    else:
        adata = cluster(
            table,
            markers=markers,
            feature=args.feature,
            signatures=signatures,
            cofactor=args.cofactor,
            resolution=args.resolution,
            umap=not args.no_umap,
            background=extra or None,
            drop_na=args.drop_na,
            **({} if gates is None else {"gates": gates}),
            **_given(args, "transform", "n_neighbors", "level", "annotate", "min_score", "seed", "threads"),
        )
    write_anndata(args.output, adata)
    log.info("wrote %s: %d observations x %d markers", args.output, adata.n_obs, adata.n_vars)


def _read_gates(text):
    """{marker: gate} from a gates table (.csv/.tsv), or given inline as YAML/JSON."""
    import yaml

    from cytotrail import io
    from cytotrail.cluster.gating import thresholds_from_gates

    if Path(text).suffix.lower() in (".csv", ".tsv"):
        return thresholds_from_gates(io.read_table(text))
    try:
        gates = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"--gates: not 'auto', a .csv table or a YAML/JSON mapping ({err})") from err
    if not isinstance(gates, dict):
        raise InputError(
            f"--gates: expected 'auto', a .csv gates table or a mapping {{marker: gate}}, got {text!r}"
        )
    return gates


def _unique_key_loader():
    """A safe YAML loader that refuses a mapping with a key twice (PyYAML keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"{key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _read_signatures(text):
    """Cell-type signatures from a YAML/JSON file, or given inline as YAML/JSON text."""
    import yaml

    path = Path(text)
    if path.suffix.lower() in (".csv", ".tsv"):  # a scimap phenotype workflow
        from cytotrail import io
        from cytotrail.cluster.gating import signatures_from_workflow

        return signatures_from_workflow(io.read_table(path))
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise InputError(f"cell-type file not found: {path}")
        text = path.read_text()
    else:
        path = "(given inline)"
    try:
        signatures = yaml.load(text, Loader=_unique_key_loader())
    except yaml.YAMLError as err:
        raise InputError(f"--cell-types: not valid YAML/JSON ({err})") from err
    if signatures is None:  # an empty file: no types
        log.warning("--cell-types %s holds no signatures: clustering only, no cell types", path)
        return None
    if not isinstance(signatures, dict):
        raise InputError("--cell-types: expected a mapping {type: {pos: [...], neg: [...]}}")
    return signatures


def _read_cells(path):
    from cytotrail import io

    if str(path).endswith(".h5ad"):
        adata = io.read_anndata(path)
        frame = adata.to_df()
        return frame.join(adata.obs.drop(columns=frame.columns, errors="ignore"))
    return io.read_table(path)

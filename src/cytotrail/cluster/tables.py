"""Per-cell tables in: joins of cells with tracks, marker columns, track summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

KEYS = ("sample", "frame", "label")


def merge_tables(cells, tracks=None, *, unmatched="error"):
    """Join per-cell measurements with tracks on ``(sample, frame, label)``.

    Parameters
    ----------
    cells : DataFrame
        One row per cell per frame with ``frame, label`` (and ``sample`` for several
        samples), as written by :func:`cytotrail.quantify.quantify`. Without ``tracks``
        any per-cell table will do (no ``frame``: one image); a ``fov``, ``imageid`` or
        ``ImageId`` column names the sample when there is no ``sample`` (see
        :func:`with_sample`).
    tracks : DataFrame, optional
        One row per detection with ``frame, label`` and ``track_id`` (plus
        ``parent_track_id``, ``lineage_id``, ...). None returns a copy of ``cells``.
    unmatched : {"error", "keep", "drop"}
        What to do with cells that have no track row and track rows without a cell:
        raise (default), keep the cells with an empty ``track_id`` (track rows without a
        cell are dropped), or drop both.

    Returns
    -------
    DataFrame
        ``cells`` with the track columns added (columns both tables have keep the values
        of ``cells``), in the row order of ``cells``.

    Raises
    ------
    InputError
        Missing key columns, duplicated keys in either table, or unmatched rows.
    """
    if unmatched not in ("error", "keep", "drop"):
        raise InputError(f"unmatched must be 'error', 'keep' or 'drop', got {unmatched!r}")
    cells = with_sample(cells)
    for name, table in (("cells", cells), ("tracks", tracks)):
        if table is None or tracks is None:  # a table alone needs no keys: one image
            continue
        missing = [k for k in ("frame", "label") if k not in table.columns]
        if missing:
            raise InputError(f"{name} table lacks the key column(s) {missing}; it has {list(table.columns)}")
    keys = [k for k in KEYS if k in cells.columns and (tracks is None or k in tracks.columns)]
    if "label" in keys:  # a cell is (sample, frame, label); without labels rows are cells
        _check_unique(cells, keys, "cells")
    if tracks is None:
        return cells.copy()
    if "sample" in cells.columns and "sample" not in tracks.columns and cells["sample"].nunique() > 1:
        raise InputError(
            "the cells come from several samples but the tracks table has no `sample` column to join on"
        )
    _check_unique(tracks, keys, "tracks")
    extra = [c for c in tracks.columns if c not in cells.columns]
    right = tracks[keys + extra]
    merged = cells.merge(
        right,
        on=keys,
        how="outer" if unmatched == "error" else "left",
        indicator=True,
        validate="one_to_one",
        sort=False,
    )
    if unmatched == "error":
        only_cells = merged["_merge"] == "left_only"
        only_tracks = merged["_merge"] == "right_only"
        if only_cells.any() or only_tracks.any():
            parts = []
            if only_cells.any():
                parts.append(
                    f"{int(only_cells.sum())} cell row(s) have no track row, e.g. "
                    f"{_examples(merged[only_cells], keys)}"
                )
            if only_tracks.any():
                parts.append(
                    f"{int(only_tracks.sum())} track row(s) have no cell row, e.g. "
                    f"{_examples(merged[only_tracks], keys)}"
                )
            hint = ""
            if "sample" in keys:
                a, b = set(cells["sample"].astype(str)), set(tracks["sample"].astype(str))
                if a != b:
                    hint = f"; samples in cells: {sorted(a)}, in tracks: {sorted(b)}"
            raise InputError(
                "cells and tracks do not join on "
                + ", ".join(keys)
                + ": "
                + "; ".join(parts)
                + hint
                + " (use unmatched='keep' or 'drop' to accept this)"
            )
        merged = merged[merged["_merge"] == "both"]
    elif unmatched == "drop":
        merged = merged[merged["_merge"] == "both"]
    return merged.drop(columns="_merge").reset_index(drop=True)


def _check_unique(table, keys, name):
    dup = table.duplicated(keys, keep=False)
    if dup.any():
        raise InputError(
            f"{name} table has {int(dup.sum())} rows with duplicated keys "
            f"({', '.join(keys)}), e.g. {_examples(table[dup], keys)}"
        )


def _examples(rows, keys, n=3):
    return "; ".join(", ".join(f"{k}={r[k]}" for k in keys) for _, r in rows[keys].head(n).iterrows())


SAMPLE_ALIASES = ("fov", "imageid", "image_id", "image", "sampleid", "sample_id", "roi")
# (x, y) centroid columns of the tables users bring: cytotrail, MCMICRO/scimap, steinbock
# and ark (centroid-0 is the row), other spreadsheets
SPATIAL_ALIASES = (
    ("x", "y"),
    ("x_centroid", "y_centroid"),
    ("centroid-1", "centroid-0"),
    ("centroid_x", "centroid_y"),
    ("x_position", "y_position"),
)


def _column(table, name):
    """The column of ``table`` named ``name`` whatever its case, or None."""
    return next((c for c in table.columns if str(c).lower() == name), None)


def with_sample(table):
    """``table`` with a ``sample`` column copied from ``fov``/``imageid`` when it has none.

    The first of ``SAMPLE_ALIASES`` present, whatever its case (MIBI/ark ``fov``,
    scimap/MCMICRO ``imageid``, ``SampleID`` of the published MIBI tables, ``ROI``), names
    the sample; a table with none is returned unchanged (the same object).
    """
    if "sample" in table.columns:
        return table
    alias = next((c for c in (_column(table, a) for a in SAMPLE_ALIASES) if c is not None), None)
    if alias is None:
        return table
    return table.assign(sample=table[alias].astype(str))


def spatial_columns(table):
    """Names of the (x, y) centroid columns of ``table`` (``SPATIAL_ALIASES``, any case), or None."""
    for x, y in SPATIAL_ALIASES:
        cx, cy = _column(table, x), _column(table, y)
        if (
            cx is not None
            and cy is not None
            and all(pd.api.types.is_numeric_dtype(table[c]) for c in (cx, cy))
        ):
            return cx, cy
    return None


def resolve_feature(table, markers, feature=None):
    """The column suffix of the marker values: ``feature``, or guessed when None.

    None takes cytotrail's own ``<marker>_cell_mean`` columns when every marker has one,
    else columns named exactly like the markers (MCMICRO/MCQuant, steinbock, scimap or a
    spreadsheet), else ``"cell_mean"`` (so that the error lists what is there).
    """
    if feature is not None:
        return str(feature)
    cols = set(map(str, table.columns))
    if all(f"{m}_cell_mean" in cols for m in markers):
        return "cell_mean"
    if any(str(m) in cols for m in markers):
        return ""
    return "cell_mean"


def _feature_columns(table, markers, feature):
    """Validated column name of every marker (numeric columns)."""
    markers = [str(m) for m in markers]
    if not markers:
        raise InputError("no markers given to cluster on")
    duplicated = sorted({m for m in markers if markers.count(m) > 1})
    if duplicated:
        raise InputError(f"duplicated marker names {duplicated}")
    columns = [f"{m}_{feature}" if feature else m for m in markers]
    missing = [m for m, c in zip(markers, columns) if c not in table.columns]
    if missing:
        if feature:
            suffix = f"_{feature}"
            available = [c[: -len(suffix)] for c in table.columns if str(c).endswith(suffix)]
            where = f"columns `<marker>_{feature}`"
        else:
            available = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
            where = "numeric columns"
        raise InputError(
            f"markers {missing} have no column in the table (feature {feature!r}); "
            f"markers available as {where}: {available}"
        )
    check_marker_values(table, columns, markers, drop_na=True)
    return markers, columns


def check_marker_values(table, columns, markers, *, drop_na=False, where=None):
    """InputError at the first marker column holding text, or (unless ``drop_na``) NaN or
    infinite values; rows are counted from 0 after the header. ``where`` (a file) starts the message."""
    prefix = f"table {where}: " if where else ""
    for c in columns:
        if not (pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])):
            numbers = pd.to_numeric(table[c], errors="coerce")
            text = np.flatnonzero((numbers.isna() & table[c].notna()).to_numpy())
            if len(text):
                raise InputError(
                    f"{prefix}marker column {c!r} holds text, not numbers: {table[c].iloc[text[0]]!r} "
                    f"in row {text[0]} (counting from 0 after the header)"
                )
    if drop_na:
        return
    bad = ~np.isfinite(table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        counts = {m: int(n) for m, n in zip(markers, bad.sum(axis=0)) if n}
        raise InputError(
            f"{prefix}marker values are NaN or infinite in {len(rows)} row(s) (the first: row {rows[0]}): "
            f"{counts}; drop or fill those rows first (or drop_na=True, `--drop-na`)"
        )


def check_marker_columns(tables, markers, feature=None, *, drop_na=False):
    """Check that every table has every marker's column, named the same way.

    Parameters
    ----------
    tables : dict
        ``{name (e.g. the file): DataFrame}``.
    markers : sequence of str
    feature : str, optional
        As in :func:`resolve_feature` (guessed per table when None).
    drop_na : bool
        NaN or infinite marker values are allowed (the rows will be left out).

    Raises
    ------
    InputError
        Naming the table, the missing markers, and the marker columns it has instead:
        no marker column at all, markers only some tables have (different names in
        different samples), or tables whose columns are named differently; naming the
        table and row of a marker value that is text, NaN or infinite
        (:func:`check_marker_values`).
    """
    found = {}
    for name, table in tables.items():
        used = resolve_feature(table, markers, feature)
        columns = {m: (f"{m}_{used}" if used else m) for m in markers}
        missing = [m for m, c in columns.items() if c not in table.columns]
        found[name] = (used, missing)
        if len(missing) == len(markers):
            raise InputError(
                f"table {name} has no column for any of the markers {list(markers)} "
                f"(feature {used!r}); {_has(table)}"
            )
    for name, (used, missing) in found.items():
        if missing:
            others = [n for n, (_, miss) in found.items() if n != name and not set(missing) & set(miss)]
            where = (
                f"; present in {others}: name each marker the same way in every table"
                if others
                else f"; {_has(tables[name])}"
            )
            raise InputError(f"table {name} has no column for markers {missing} (feature {used!r}){where}")
    features = {used for used, _ in found.values()}
    if len(features) > 1:
        raise InputError(
            "the tables name their marker columns differently: "
            + ", ".join(f"{n}: {'<marker>_' + u if u else '<marker>'}" for n, (u, _) in found.items())
            + "; pass --feature"
        )
    for name, table in tables.items():
        used = found[name][0]
        check_marker_values(
            table, [f"{m}_{used}" if used else m for m in markers], markers, drop_na=drop_na, where=name
        )


def _has(table):
    numeric = [
        str(c) for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and str(c) not in KEYS
    ]
    return f"its numeric columns are {numeric}"


def marker_values(table, columns, markers, *, drop_na=False):
    """(rows kept, (N, M) float64 values) of the marker ``columns``.

    Raises
    ------
    InputError
        NaN or infinite values (unless ``drop_na``: those rows are left out).
    """
    raw = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(raw).all(axis=1)
    if not drop_na and not keep.all():
        check_marker_values(table, columns, markers)  # raises, naming the first bad row
    return keep, raw[keep]


def track_summaries(table, *, markers, feature="cell_mean", trends=False):
    """One row per track: mean marker values and the track's extent in time and space.

    Parameters
    ----------
    table : DataFrame
        Per-cell table with ``track_id`` (and ``sample`` for several samples).
    markers : sequence of str
    feature : str
        Column suffix of the marker values (``""``: columns named like the markers).
    trends : bool
        Add ``<column>_slope``: the least-squares change per frame of each marker over
        the track (NaN for one-frame tracks), the simplest summary of its time series.

    Returns
    -------
    DataFrame
        ``sample, track_id, n_frames, first_frame, last_frame, y, x`` (mean centroid),
        ``parent_track_id`` and ``lineage_id`` when present, and one mean column per marker
        (named like the input columns). Sorted by sample then track_id.
    """
    if "track_id" not in table.columns:
        raise InputError("track summaries need a `track_id` column: join the tracks first (merge_tables)")
    markers, columns = _feature_columns(table, markers, feature)
    data = table[table["track_id"].notna()]
    groups = ["sample", "track_id"] if "sample" in data.columns else ["track_id"]
    g = data.groupby(groups, sort=True, observed=True)
    out = g[columns].mean()
    out.insert(0, "n_frames", g.size())
    if "frame" in data.columns:
        out.insert(1, "first_frame", g["frame"].min())
        out.insert(2, "last_frame", g["frame"].max())
    for c in ("y", "x"):
        if c in data.columns:
            out[c] = g[c].mean()
    for c in ("parent_track_id", "lineage_id"):
        if c in data.columns:
            out[c] = g[c].first()
    if trends and "frame" in data.columns:
        frame = data["frame"].astype(float)
        df = frame - g["frame"].transform("mean")
        denom = (df * df).groupby([data[k] for k in groups], sort=True).sum()
        for c in columns:
            dv = data[c] - g[c].transform("mean")
            num = (df * dv).groupby([data[k] for k in groups], sort=True).sum()
            out[f"{c}_slope"] = (num / denom.where(denom > 0)).to_numpy()
    return out.reset_index()

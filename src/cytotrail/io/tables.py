"""Tables and small records out and in: per-cell and per-track tables (Parquet, CSV, TSV),
clustered AnnData files (read), JSON and YAML records, and figures, each written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cytotrail.io.files import InputError, atomic_path

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")  # what write_table writes


def read_table(path):
    """Read a ``.csv``, ``.tsv`` or ``.parquet`` table into a DataFrame."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"table {path} is a folder: give a .csv, .tsv or .parquet file")
    if not path.is_file():
        raise InputError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str)
            table = pd.read_csv(path, sep=sep)
    except Exception as err:
        raise InputError(f"cannot read table {path}: {err}") from err
    if suffix in (".csv", ".tsv", ".txt"):
        names = [n for n in (header.iloc[0] if len(header) else []) if isinstance(n, str)]  # unnamed: NaN
        twice = sorted({n for n in names if names.count(n) > 1}, key=str)
        if twice:  # pandas would keep both, the second renamed "<name>.1"
            raise InputError(f"table {path} names the column(s) {twice} more than once")
        return table
    raise InputError(f"table {path}: unsupported format {suffix!r}; use .csv, .tsv or .parquet")


def read_anndata(path):
    """Read a ``.h5ad`` file (what ``cytotrail cluster`` writes), or InputError naming it."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise InputError(f"AnnData file {path}: {what} (give the .h5ad of `cytotrail cluster`)")
    import anndata

    try:
        return anndata.read_h5ad(path)
    except Exception as err:  # h5py and anndata raise many types for files that are no .h5ad
        raise InputError(f"cannot read AnnData file {path}: not a readable .h5ad ({err})") from err


def write_table(path, table):
    """Write a DataFrame as ``.parquet`` or ``.csv``/``.tsv`` (by suffix), atomically.

    Parquet files are written without timestamps, so equal tables give equal bytes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            table.to_parquet(tmp, index=False, engine="pyarrow")
        elif suffix in (".csv", ".tsv"):
            table.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise InputError(f"output {path}: unsupported table format {suffix!r}")


def write_json(path, obj):
    """Write ``obj`` as pretty JSON with sorted keys, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def write_yaml(path, text):
    """Write YAML text (already formatted, comments kept), atomically."""
    import yaml

    yaml.safe_load(text)  # refuse to write what would not read back
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def save_figure(path, figure, *, dpi=110):
    """Save a matplotlib figure (format from the suffix), atomically, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(
            tmp,
            dpi=dpi,
            format=path.suffix.lstrip(".") or "png",
            metadata={"Software": None} if path.suffix == ".png" else None,
        )
    plt.close(figure)

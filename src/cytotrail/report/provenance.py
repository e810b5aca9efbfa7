"""The versions of cytotrail, its key dependencies and the segmentation model."""

from __future__ import annotations

import pandas as pd


def versions(*, model=None):
    """Versions of cytotrail, its key dependencies and the segmentation model (name, sha256)."""
    import json
    from importlib import metadata

    from cytotrail.segment.model import model_dir

    rows = []
    for package in (
        "cytotrail",
        "snakemake",
        "torch",
        "numpy",
        "pandas",
        "scikit-image",
        "trackpy",
        "anndata",
        "scanpy",
        "leidenalg",
    ):
        try:
            rows.append({"component": package, "version": metadata.version(package)})
        except metadata.PackageNotFoundError:
            rows.append({"component": package, "version": "not installed"})
    folder = model_dir(model)
    card = json.loads((folder / "config.json").read_text())
    rows.append(
        {
            "component": f"segmentation model {folder.name}",
            "version": f"sha256 {card.get('weights_sha256', '?')[:16]}",
        }
    )
    return pd.DataFrame(rows)

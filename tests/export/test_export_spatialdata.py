"""SpatialData export: a results folder (built from the synthetic demo with the stage
commands, not Snakemake) in, a store that spatialdata.read_zarr reads back with every
table row pointing at a label of its frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytotrail.cli import main
from cytotrail.export.spatialdata import annotate_regions, element_names, scale_factors
from cytotrail.io import InputError
from cytotrail.synth import make_timelapse, write_dataset

# A warning of spatialdata's own dependencies, not of cytotrail's calls: ome-zarr deprecates a
# class that spatialdata uses when it is imported.
LIBRARY_NOTICES = [
    pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning"),
]


def _library_notices(test):
    for mark in LIBRARY_NOTICES:
        test = mark(test)
    return test


SAMPLES = {"s1": 3, "s.2": 1}  # a timelapse and a single frame


def test_element_names_and_pyramids():
    assert element_names("a", 1) == [("a", "a_image", "a_labels")]
    assert [n[2] for n in element_names("a", 3)] == ["a_t000_labels", "a_t001_labels", "a_t002_labels"]
    assert element_names("a", 1200)[-1][0] == "a_t1199"
    assert scale_factors((96, 96)) == [] and scale_factors((128, 300)) == [2]
    assert scale_factors((4096, 4096)) == [2, 2, 2, 2]


def test_regions_of_a_cell_table():
    obs = pd.DataFrame({"sample": ["a", "a", "b"], "frame": [0, 2, 0], "label": [1, 4, 2]})
    assert annotate_regions(obs, {"a": 3, "b": 1}).tolist() == ["a_t000_labels", "a_t002_labels", "b_labels"]
    with pytest.raises(InputError, match=r"sample\(s\) \['b'\]"):
        annotate_regions(obs, {"a": 3})
    with pytest.raises(InputError, match="frame"):
        annotate_regions(obs, {"a": 2, "b": 1})
    with pytest.raises(InputError, match="label"):
        annotate_regions(obs.drop(columns="label"), {"a": 3, "b": 1})


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """resources/ + results/ + config/samples.tsv as the workflow lays them out, via the CLI."""
    root = tmp_path_factory.mktemp("project")
    lines = ["sample\timage"]
    for i, (sample, n_frames) in enumerate(SAMPLES.items()):
        data = make_timelapse(n_frames=n_frames, shape=(128, 128), n_cells=10, seed=30 + i)
        write_dataset(root / "resources", data, sample=sample)
        image = root / "resources" / f"{sample}.ome.tif"
        out = root / "results" / sample
        assert (
            main(
                [
                    "-q",
                    "segment",
                    str(image),
                    "-o",
                    str(out / "labels.tif"),
                    "--backend",
                    "labels",
                    "--labels",
                    str(root / "resources" / "truth" / f"{sample}_labels.tif"),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "-q",
                    "track",
                    str(out / "labels.tif"),
                    "-o",
                    str(out / "tracks.parquet"),
                    "--sample",
                    sample,
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "-q",
                    "quantify",
                    str(image),
                    str(out / "labels.tif"),
                    "-o",
                    str(out / "cells.parquet"),
                    "--sample",
                    sample,
                ]
            )
            == 0
        )
        lines.append(f"{sample}\t{image}")
    (root / "config").mkdir()
    (root / "config" / "samples.tsv").write_text("\n".join(lines) + "\n")
    cells = [str(root / "results" / s / "cells.parquet") for s in SAMPLES]
    tracks = [str(root / "results" / s / "tracks.parquet") for s in SAMPLES]
    assert (
        main(
            [
                "-q",
                "cluster",
                *cells,
                "--tracks",
                *tracks,
                "-o",
                str(root / "results" / "cells.h5ad"),
                "--markers",
                "CD3",
                "CD20",
                "CD68",
                "PanCK",
                "--no-umap",
            ]
        )
        == 0
    )
    return root


def _export(root, out, *extra):
    return main(
        [
            "-q",
            "export",
            "spatialdata",
            str(root / "results"),
            "-o",
            str(out),
            "--samples",
            str(root / "config" / "samples.tsv"),
            *extra,
        ]
    )


@pytest.mark.slow
@_library_notices
def test_round_trip_with_spatialdata(results, tmp_path):
    spatialdata = pytest.importorskip("spatialdata", reason="spatialdata is in the `export` extra")
    import anndata

    from cytotrail import io

    assert _export(results, tmp_path / "out.zarr") == 0
    sdata = spatialdata.read_zarr(tmp_path / "out.zarr")
    expected = {
        f"{base}_{kind}"
        for s, n in SAMPLES.items()
        for base, *_ in element_names(s, n)
        for kind in ("image",)
    }
    assert set(sdata.images) == expected
    assert set(sdata.labels) == {name.replace("_image", "_labels") for name in expected}

    # images are multiscale with named channels and the pixels of the input
    image, names = io.read_image(results / "resources" / "s1.ome.tif")
    tree = sdata.images["s1_t001_image"]
    assert len(tree.children) == 2  # 128 px and 64 px
    level0 = tree["scale0"]["image"]
    assert list(level0.coords["c"].values) == names
    np.testing.assert_array_equal(level0.values, image[1])

    # every table row points to a label present in its frame's labels element
    table = sdata.tables["cells"]
    attrs = table.uns["spatialdata_attrs"]
    assert (attrs["region_key"], attrs["instance_key"]) == ("region", "label")
    assert set(attrs["region"]) == set(sdata.labels)
    source = anndata.read_h5ad(results / "results" / "cells.h5ad")
    assert table.n_obs == source.n_obs
    for region, rows in table.obs.groupby("region", observed=True):
        labels = np.asarray(sdata.labels[region]["scale0"]["image"].values)
        present = set(np.unique(labels)) - {0}
        assert set(rows["label"]) <= present, region
        sample, frame = rows["sample"].iloc[0], int(rows["frame"].iloc[0])
        assert (rows["sample"] == sample).all() and (rows["frame"] == frame).all()
        truth = io.read_labels(results / "results" / sample / "labels.tif")[frame]
        np.testing.assert_array_equal(labels, truth)
    # the transforms keep each frame in its own pixel coordinate system
    systems = spatialdata.transformations.get_transformation(sdata.labels["s.2_labels"], get_all=True)
    assert list(systems) == ["s.2"]


@pytest.mark.slow
@_library_notices
def test_images_and_labels_alone(results, tmp_path):
    spatialdata = pytest.importorskip("spatialdata", reason="spatialdata is in the `export` extra")
    assert _export(results, tmp_path / "out.zarr", "--no-table") == 0
    sdata = spatialdata.read_zarr(tmp_path / "out.zarr")
    assert not sdata.tables and len(sdata.labels) == sum(SAMPLES.values())


@pytest.mark.slow  # the results fixture runs the stage commands (~15 s)
def test_bad_inputs_fail_before_any_image_is_read(results, tmp_path, capsys):
    out = tmp_path / "out.zarr"
    sheet = results / "config" / "samples.tsv"
    bad = tmp_path / "bad.tsv"
    bad.write_text(sheet.read_text() + "ghost\tresources/ghost.ome.tif\n")
    assert (
        main(["-q", "export", "spatialdata", str(results / "results"), "-o", str(out), "--samples", str(bad)])
        == 2
    )
    assert "ghost" in capsys.readouterr().err
    assert _export(results, tmp_path / "out.zarr", "--table", str(tmp_path / "none.h5ad")) == 2
    assert "none.h5ad" in capsys.readouterr().err
    # the output must not replace the results folder it reads, nor a folder holding it
    assert _export(results, results / "results") == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert _export(results, results) == 2
    assert "would replace the results folder" in capsys.readouterr().err
    assert _export(results, results / "config") == 2  # a folder of other files
    assert "refusing to replace" in capsys.readouterr().err
    assert (results / "config" / "samples.tsv").is_file()
    assert (results / "results" / "cells.h5ad").is_file()
    assert not out.exists()


@pytest.mark.slow  # the results fixture runs the stage commands (~15 s)
def test_cli_export_geff_from_a_track_table(results, tmp_path):
    import json

    from cytotrail import io

    tracks = io.read_table(results / "results" / "s1" / "tracks.parquet")
    assert (
        main(
            [
                "-q",
                "export",
                "geff",
                str(results / "results" / "s1" / "tracks.parquet"),
                "-o",
                str(tmp_path / "s1.geff"),
                "--pixel-size-um",
                "0.65",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "s1.geff" / ".zattrs").read_text())["geff"]
    assert meta["axes"][2]["scale"] == 0.65
    assert json.loads((tmp_path / "s1.geff" / "nodes" / "ids" / ".zarray").read_text())["shape"] == [
        len(tracks)
    ]


@pytest.mark.slow  # the results fixture runs the stage commands (~15 s)
def test_without_spatialdata_the_command_names_the_extra(results, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "spatialdata", None)  # as if not installed
    assert _export(results, tmp_path / "out.zarr") == 2
    assert "cytotrail[export]" in capsys.readouterr().err
    assert not (tmp_path / "out.zarr").exists()

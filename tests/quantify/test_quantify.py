"""Tests of cytotrail.quantify.quantify: exactness against scikit-image and steinbock, invariances, bad input, CLI."""

import numpy as np
import pandas as pd
import pytest
from quantify_data import STEINBOCK, steinbock_files, synth, timelapse

from cytotrail.io import InputError
from cytotrail.quantify import quantify

SHAPE_PROPS = ("area", "perimeter", "eccentricity", "solidity", "axis_major_length", "axis_minor_length")


def _regionprops(lab, img, spacing=1.0):
    from skimage.measure import regionprops_table

    props = (
        "label",
        "centroid",
        "orientation",
        "intensity_mean",
        "intensity_min",
        "intensity_max",
        "intensity_std",
    ) + SHAPE_PROPS
    return pd.DataFrame(
        regionprops_table(lab, np.moveaxis(img, 0, -1), properties=props, spacing=(spacing, spacing))
    )


def test_equals_regionprops_table():
    image, labels, names = synth()
    s = 0.65
    cells = quantify(
        labels,
        image,
        channel_names=names,
        pixel_size_um=s,
        statistics=("mean", "min", "max", "std"),
        compartments=("nucleus",),
    )
    assert list(cells.columns[:4]) == ["frame", "label", "y", "x"]
    for t in range(labels.shape[0]):
        ref = _regionprops(labels[t], image[t], spacing=s)
        got = cells[cells["frame"] == t].reset_index(drop=True)
        assert len(got) > 15
        np.testing.assert_array_equal(got["label"], ref["label"])
        # centroid columns are in pixels, regionprops' with spacing in µm
        np.testing.assert_allclose(got["y"] * s, ref["centroid-0"], rtol=1e-12)
        np.testing.assert_allclose(got["x"] * s, ref["centroid-1"], rtol=1e-12)
        for prop in SHAPE_PROPS:
            np.testing.assert_allclose(got[prop], ref[prop], rtol=1e-9, atol=1e-12, err_msg=prop)
        # orientation: +pi/2 and -pi/2 are the same axis
        diff = np.angle(np.exp(2j * (got["orientation"] - ref["orientation"])))
        np.testing.assert_allclose(diff, 0, atol=1e-9)
        for c, name in enumerate(names):
            for stat in ("mean", "min", "max", "std"):
                np.testing.assert_allclose(
                    got[f"{name}_nucleus_{stat}"],
                    ref[f"intensity_{stat}-{c}"],
                    rtol=1e-10,
                    err_msg=f"{name} {stat}",
                )


def test_empty_cytoplasm_is_nan():
    labels = np.zeros((1, 12, 12), np.uint32)
    labels[0, 2:6, 2:6] = 1
    labels[0, 0:12, 6:12] = 2  # touches the image border on three sides
    labels[0, 0:2, 0:12] = 3
    labels[0, 6:12, 0:6] = 4
    labels[0, 2:6, 0:2] = 5
    image = np.arange(144, dtype=np.float32).reshape(1, 1, 12, 12)
    cells = quantify(labels, image, channel_names=["A"], statistics=("mean", "sum", "median"))
    row = cells.set_index("label").loc[1]
    assert np.isnan(row["A_cytoplasm_mean"]) and np.isnan(row["A_cytoplasm_median"])
    assert row["A_cytoplasm_sum"] == 0
    assert row["A_cell_mean"] == row["A_nucleus_mean"]


def test_label_ids_do_not_matter():
    image, labels, names = synth()
    rng = np.random.default_rng(1)
    ids = np.unique(labels)
    new_ids = np.zeros(ids.max() + 1, np.int64)
    new_ids[ids[1:]] = rng.choice(10**9, size=len(ids) - 1, replace=False) + 1  # huge ids
    relabelled = new_ids[labels]
    stats = ("mean", "median", "std")
    a = quantify(labels, image, channel_names=names, statistics=stats)
    b = quantify(relabelled, image, channel_names=names, statistics=stats)
    back = {int(new): old for old, new in enumerate(new_ids) if new}
    b = b.assign(label=[back[v] for v in b["label"]])
    b = b.sort_values(["frame", "label"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


def test_translation_moves_only_positions():
    image, labels, names = synth()
    pad = ((0, 0), (7, 0), (5, 0))
    big_lab = np.pad(labels, pad)
    big_img = np.pad(image, ((0, 0),) + pad[:1] + pad[1:])
    # the nucleus only: a ring at the old image border would grow into the new margin
    opts = dict(
        channel_names=names,
        neighbour_radius_um=25,
        compartments=("nucleus",),
        statistics=("mean", "median", "max"),
    )
    a = quantify(labels, image, **opts)
    b = quantify(big_lab, big_img, **opts)
    np.testing.assert_allclose(b["y"] - a["y"], 7)
    np.testing.assert_allclose(b["x"] - a["x"], 5)
    same = [c for c in a.columns if c not in ("y", "x", "border_distance")]
    pd.testing.assert_frame_equal(a[same], b[same])


def test_two_dimensional_input_and_empty_frames():
    labels = np.zeros((20, 30), np.uint16)
    labels[3:8, 4:10] = 7
    image = np.ones((2, 20, 30), np.float32)
    cells = quantify(labels, image, channel_names=["a", "b"])
    assert len(cells) == 1 and cells.loc[0, "label"] == 7 and cells.loc[0, "area"] == 30
    empty = quantify(np.zeros((2, 20, 30), np.uint32), np.ones((2, 2, 20, 30)), channel_names=["a", "b"])
    assert len(empty) == 0
    assert list(empty.columns) == list(cells.columns)


def test_bad_input_is_named():
    image, labels, names = synth()
    with pytest.raises(InputError, match=r"\['CD99', 'Foo'\].*available channels.*CD3"):
        quantify(labels, image, channel_names=names, markers=["CD3", "CD99", "Foo"])
    with pytest.raises(InputError, match="duplicated channel names"):
        quantify(labels, image, channel_names=["DNA"] * len(names))
    with pytest.raises(InputError, match="unknown statistic 'average'"):
        quantify(labels, image, channel_names=names, statistics=("average",))
    with pytest.raises(InputError, match="unknown compartments"):
        quantify(labels, image, channel_names=names, compartments=("membrane",))
    with pytest.raises(InputError, match="do not match"):
        quantify(labels[:1], image, channel_names=names)
    with pytest.raises(InputError, match="channel name"):
        quantify(labels, image, channel_names=names[:-1])
    with pytest.raises(InputError, match="background"):
        quantify(labels, image, channel_names=names, background={"CD99": 1.0})
    for threads in (0, 1.5, True):
        with pytest.raises(InputError, match="threads must be a whole number >= 1"):
            quantify(labels, image, channel_names=names, threads=threads)
    holes = image.astype(np.float32)
    holes[1, 2, 5:7, 5] = np.nan
    with pytest.raises(InputError, match="channel .CD20. of frame 1 has 2 NaN"):
        quantify(labels, holes, channel_names=names)
    quantify(labels, holes, channel_names=names, markers=["CD3"])  # other channels are fine


def test_does_not_modify_inputs():
    image, labels, names = synth()
    img0, lab0 = image.copy(), labels.copy()
    quantify(labels, image, channel_names=names, statistics=("median", "std"), background="auto")
    np.testing.assert_array_equal(image, img0)
    np.testing.assert_array_equal(labels, lab0)


def test_reproduces_steinbock_intensities_and_regionprops():
    from cytotrail import io

    files = steinbock_files()
    panel = pd.read_csv(STEINBOCK / "panel.csv")
    names = panel.loc[panel["keep"] == 1, "name"].tolist()
    assert len(files) == 15
    for path in files:
        image, _ = io.read_image(path, axes="CYX", channel_names=names)
        labels = io.read_labels(STEINBOCK / "masks_deepcell" / path.name)
        cells = quantify(labels, image, channel_names=names, compartments=("nucleus",))
        means = pd.read_csv(STEINBOCK / "intensities_deepcell" / f"{path.stem}.csv")
        props = pd.read_csv(STEINBOCK / "regionprops_deepcell" / f"{path.stem}.csv")
        np.testing.assert_array_equal(cells["label"], means["Object"])
        for name in names:
            np.testing.assert_allclose(
                cells[f"{name}_nucleus_mean"],
                means[name],
                rtol=1e-6,
                atol=1e-9,
                err_msg=f"{path.name} {name}",
            )
        np.testing.assert_array_equal(cells["label"], props["Object"])
        np.testing.assert_allclose(cells["area"], props["area"])
        np.testing.assert_allclose(cells["y"], props["centroid-0"], rtol=1e-12)
        np.testing.assert_allclose(cells["x"], props["centroid-1"], rtol=1e-12)
        for col in ("axis_major_length", "axis_minor_length", "eccentricity"):
            np.testing.assert_allclose(cells[col], props[col], rtol=1e-9, atol=1e-12)


def test_cli_quantify_round_trip(tmp_path):
    from cytotrail import io
    from cytotrail.cli import main

    tl = timelapse()
    io.write_image(tmp_path / "s1.ome.tif", tl.image, channel_names=tl.channel_names)
    io.write_labels(tmp_path / "s1_labels.tif", tl.labels)
    out = tmp_path / "cells.parquet"
    code = main(
        [
            "quantify",
            str(tmp_path / "s1.ome.tif"),
            str(tmp_path / "s1_labels.tif"),
            "-o",
            str(out),
            "--statistics",
            "mean",
            "p90",
            "--pixel-size-um",
            "0.5",
        ]
    )
    assert code in (0, None)
    cells = io.read_table(out)
    direct = quantify(
        tl.labels,
        tl.image,
        channel_names=tl.channel_names,
        statistics=("mean", "p90"),
        pixel_size_um=0.5,
    )
    assert (cells["sample"] == "s1").all()
    pd.testing.assert_frame_equal(cells.drop(columns="sample"), direct)

"""Tests of cytotrail.quantify.stats and .background: statistics against numpy and the numpy oracle, background."""

import numpy as np
import pandas as pd
import pytest
from quantify_data import synth

from cytotrail.quantify import quantify


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int32", "float32", "float64"])
def test_order_statistics_equal_numpy(dtype):
    image, labels, names = synth()
    rng = np.random.default_rng(4)
    img = image[:1].astype(np.float64)
    if dtype.startswith("float"):
        img = (img - 300) * rng.uniform(0.5, 1.5, img.shape)  # negative values too
    elif dtype == "uint8":
        img = img % 256
    img = img.astype(dtype)
    lab = labels[:1]
    cells = quantify(
        lab,
        img,
        channel_names=names,
        markers=["CD3", "Ki67"],
        statistics=("median", "sum", "p10"),
        percentiles=(99.5,),
        compartments=("nucleus", "cell"),
    )
    ids = cells["label"].to_numpy()
    for marker in ("CD3", "Ki67"):
        channel = img[0, names.index(marker)].astype(np.float64)
        for i, label in enumerate(ids[:12]):
            values = channel[lab[0] == label]
            row = cells.iloc[i]
            assert row[f"{marker}_nucleus_median"] == pytest.approx(np.median(values), rel=1e-12)
            assert row[f"{marker}_nucleus_p10"] == pytest.approx(np.percentile(values, 10), rel=1e-12)
            assert row[f"{marker}_nucleus_p99.5"] == pytest.approx(np.percentile(values, 99.5), rel=1e-12)
            assert row[f"{marker}_nucleus_sum"] == pytest.approx(values.sum(), rel=1e-12)


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8"])
def test_integer_sums_exact_on_long_rows(dtype):
    # rows far longer than the 2**15-pixel runs the integer kernel sums in int32, values
    # at the top of the dtype's range: sums, means and std stay exact
    rng = np.random.default_rng(9)
    info = np.iinfo(dtype)
    lab = np.zeros((3, 70_000), np.uint16)
    lab[0] = 1
    lab[1, :40_000] = 2
    lab[2, 100:170] = 3
    img = rng.integers(info.max - 40, info.max, size=(2, 3, 70_000), endpoint=True).astype(dtype)
    if info.min < 0:
        img[1] = rng.integers(info.min, info.min + 40, size=(3, 70_000)).astype(dtype)
    stats = ("sum", "mean", "std", "min", "max")
    cells = quantify(
        lab, img, channel_names=["a", "b"], statistics=stats, compartments=("nucleus",), morphology=False
    )
    for c, name in enumerate(["a", "b"]):
        for i, label in enumerate([1, 2, 3]):
            values = img[c][lab == label].astype(np.int64)
            row = cells.iloc[i]
            assert row[f"{name}_nucleus_sum"] == values.sum()
            assert row[f"{name}_nucleus_mean"] == pytest.approx(values.mean(), rel=1e-15)
            assert row[f"{name}_nucleus_std"] == pytest.approx(values.std(), rel=1e-12)
            assert row[f"{name}_nucleus_min"] == values.min()
            assert row[f"{name}_nucleus_max"] == values.max()


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_statistics_equal_numpy_reference(dtype):
    # the numba accumulators (one pass for nucleus and ring, the cell combined from both)
    # against reduceat and one sort per channel over each compartment on its own
    from skimage.segmentation import expand_labels

    from cytotrail.quantify import _reference as reference
    from cytotrail.quantify.options import parse_statistics

    image, labels, names = synth()
    if dtype == "float32":
        image = (image.astype(np.float32) - 200) * 0.7  # negative values too
    stats = ("mean", "sum", "std", "min", "max", "median", "p90")
    cells = quantify(labels, image, channel_names=names, statistics=stats, background="auto")
    parsed = parse_statistics(stats, ())
    for t in range(labels.shape[0]):
        ids, nuc_idx, lut = reference.label_index(labels[t])
        cell_idx = lut[expand_labels(labels[t], distance=3.0)].ravel()
        index = {
            "nucleus": reference.index(nuc_idx, len(ids)),
            "cytoplasm": reference.index(np.where(nuc_idx > 0, 0, cell_idx), len(ids)),
            "cell": reference.index(cell_idx, len(ids)),
        }
        got = cells[cells["frame"] == t]
        np.testing.assert_array_equal(got["label"], ids)
        for c, marker in enumerate(names):
            values = image[t, c].ravel()
            bg = np.median(values[cell_idx == 0])
            for comp, compartment in index.items():
                for stat, expected in reference.channel_stats(values, compartment, parsed, bg).items():
                    np.testing.assert_allclose(
                        got[f"{marker}_{comp}_{stat}"], expected, rtol=1e-9, err_msg=f"{marker}_{comp}_{stat}"
                    )


def test_channel_blocks_threads_and_order_do_not_matter():
    image, labels, names = synth()
    stats = ("mean", "sum", "std", "min", "max", "median", "p90")
    wide = np.concatenate([image, image[:, ::-1]], axis=1)  # 12 channels: two blocks
    wide_names = names + [f"{n}_b" for n in names]
    order = wide_names[::-1]  # not contiguous in the image
    one = quantify(labels, wide, channel_names=wide_names, markers=order, statistics=stats)
    two = quantify(labels, wide, channel_names=wide_names, markers=order, statistics=stats, threads=2)
    pd.testing.assert_frame_equal(one, two)
    # "CD3_b" holds image channel 4 (PanCK): the same numbers under another name
    for stat in stats:
        np.testing.assert_array_equal(one[f"CD3_b_cell_{stat}"], one[f"PanCK_cell_{stat}"])


def test_background_subtraction():
    image, labels, names = synth()
    stats = ("mean", "sum", "median", "std")
    plain = quantify(labels, image, channel_names=names, markers=["CD3"], statistics=stats)
    fixed = quantify(
        labels, image, channel_names=names, markers=["CD3"], statistics=stats, background={"CD3": 100.0}
    )
    np.testing.assert_allclose(fixed["CD3_cell_mean"], plain["CD3_cell_mean"] - 100)
    np.testing.assert_allclose(fixed["CD3_nucleus_median"], plain["CD3_nucleus_median"] - 100)
    n_pixels = plain["CD3_cell_sum"] / plain["CD3_cell_mean"]
    np.testing.assert_allclose(fixed["CD3_cell_sum"], plain["CD3_cell_sum"] - 100 * n_pixels)
    np.testing.assert_allclose(fixed["CD3_cell_std"], plain["CD3_cell_std"])
    auto = quantify(labels, image, channel_names=names, markers=["CD3"], background="auto")
    from skimage.segmentation import expand_labels

    outside = expand_labels(labels[0], distance=3) == 0
    bg = np.median(image[0, names.index("CD3")][outside])
    first = auto["frame"] == 0
    np.testing.assert_allclose(auto.loc[first, "CD3_nucleus_mean"], plain.loc[first, "CD3_nucleus_mean"] - bg)


def test_local_background_removes_uneven_illumination():
    _, labels, _ = synth()
    yy, xx = np.mgrid[0:128, 0:128]
    gradient = 100 + 1.0 * yy + 0.5 * xx  # 100 .. 290 across the frame
    signal = np.where(labels > 0, 200.0, 0.0)
    image = (gradient + signal)[:, np.newaxis].astype(np.float32)
    opts = dict(channel_names=["M"], compartments=("nucleus",), statistics=("mean", "median"))
    plain = quantify(labels, image, **opts)
    glob = quantify(labels, image, background="auto", **opts)
    local = quantify(labels, image, background="local", background_block_um=12.0, pixel_size_um=0.5, **opts)
    spread = plain["M_nucleus_mean"].std()
    assert spread > 30  # the gradient dominates
    assert glob["M_nucleus_mean"].std() == pytest.approx(spread, rel=0.05)  # one per frame
    for stat in ("mean", "median"):
        values = local[f"M_nucleus_{stat}"]
        np.testing.assert_allclose(values, 200, atol=25)
        assert values.std() < 0.25 * spread

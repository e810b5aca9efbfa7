"""Tests of cytotrail.quantify.index: the label index and the compartments grown from the nuclei."""

import numpy as np
import pytest
from quantify_data import STEINBOCK, steinbock_files, synth

from cytotrail.quantify import quantify
from cytotrail.quantify.index import grow_index, label_index
from cytotrail.synth import make_timelapse


@pytest.mark.parametrize("distance", [1, 1.5, 2.0, 3.0, 4.2, 7.0, 12.0])
def test_grown_index_equals_expand_labels_ties_included(distance):
    # sparse single pixels on lattices make many pixels equidistant from two or more
    # nuclei: the numba kernel must break those ties as scipy's feature transform does
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(int(distance * 10))
    frames = []
    for trial in range(6):
        lab = np.zeros((61, 73), np.int32)
        n = int(rng.integers(5, 80))
        lab[rng.integers(0, 61, n), rng.integers(0, 73, n)] = rng.integers(1, 40, n)
        if trial % 2:
            lab[::7, ::5] = 3
        frames.append(lab)
    frames.append(make_timelapse(n_frames=1, shape=(96, 96), n_cells=30, seed=4).labels[0])
    for lab in frames:
        ids, idx, lut, _ = label_index(lab)
        for threads in (1, 3):
            got = grow_index(idx, lab, ids, lut, distance, threads)
            np.testing.assert_array_equal(got.reshape(lab.shape), lut[expand_labels(lab, distance)])


def test_grown_index_equals_expand_labels_on_real_masks():
    from skimage.segmentation import expand_labels

    from cytotrail import io

    for path in steinbock_files()[:5]:
        lab = np.squeeze(io.read_labels(STEINBOCK / "masks_deepcell" / path.name))
        ids, idx, lut, _ = label_index(lab)
        got = grow_index(idx, lab, ids, lut, 3.0, 2)
        np.testing.assert_array_equal(got.reshape(lab.shape), lut[expand_labels(lab, 3.0)], err_msg=path.name)


def test_compartments_follow_expand_labels():
    from skimage.segmentation import expand_labels

    image, labels, names = synth()
    ring_2um = dict(channel_names=names, markers=["CD68"], cytoplasm_um=2.0, pixel_size_um=0.5)
    cells = quantify(labels, image, statistics=("sum", "mean", "max"), **ring_2um)
    grown = expand_labels(labels[1], distance=4)  # 2 µm at 0.5 µm/px
    ring = np.where(labels[1] > 0, 0, grown)
    chan = image[1, names.index("CD68")].astype(np.float64)
    got = cells[cells["frame"] == 1].set_index("label")
    for label in got.index[:10]:
        assert got.loc[label, "CD68_cytoplasm_sum"] == pytest.approx(chan[ring == label].sum())
        assert got.loc[label, "CD68_cell_max"] == chan[grown == label].max()
    np.testing.assert_allclose(got["CD68_cell_sum"], got["CD68_nucleus_sum"] + got["CD68_cytoplasm_sum"])
    # the cell mean is the area-weighted mean of its two parts
    n_cell = np.bincount(grown.ravel())[got.index]
    np.testing.assert_allclose(got["CD68_cell_mean"] * n_cell, got["CD68_cell_sum"])
    # cell statistics combined from the two parts equal those measured on the cell directly
    opts = dict(statistics=("sum", "mean", "max", "min"), background={"CD68": 50.0}, **ring_2um)
    direct = quantify(labels, image, compartments=("cell",), **opts)
    parts = quantify(labels, image, **opts)
    for stat in ("sum", "mean", "max", "min"):
        np.testing.assert_allclose(parts[f"CD68_cell_{stat}"], direct[f"CD68_cell_{stat}"], rtol=1e-12)


@pytest.mark.parametrize("scale", [1, 1_000_003])
def test_label_index_equals_numpy_reference(scale):
    # small ids: the counting kernel; ids far above the pixel count: np.unique
    from cytotrail.quantify import _reference as reference

    _, labels, _ = synth()
    for lab in labels.astype(np.int64) * scale:
        ids, idx, lut, counts = label_index(lab)
        ref_ids, ref_idx, _ = reference.label_index(lab)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(idx, ref_idx)
        assert counts is None or np.array_equal(counts, np.bincount(ref_idx)[1:])
        assert (lut is None) == (scale > 1)


def test_whole_cells_replace_the_ring():
    # cell pixels of a label that is no nucleus are ignored; nucleus pixels stay in their cell
    from cytotrail.quantify.index import cell_index

    lab = np.zeros((1, 6, 8), np.int32)
    lab[0, 1:3, 1:3] = 4
    lab[0, 3:5, 5:7] = 9
    cells = np.zeros_like(lab)
    cells[0, :, :4] = 4
    cells[0, :, 4:] = 12  # no nucleus has label 12
    cells[0, 1, 1] = 0  # a nucleus pixel outside its cell
    ids, idx, _, _ = label_index(lab[0])
    got = cell_index(idx, cells[0].ravel(), ids).reshape(lab.shape[1:])
    expected = np.where(cells[0] == 4, 1, 0)
    expected[lab[0] == 4] = 1
    expected[lab[0] == 9] = 2
    np.testing.assert_array_equal(got, expected)
    image = np.arange(48, dtype=np.float64).reshape(1, 1, 6, 8)
    table = quantify(lab, image, channel_names=["a"], statistics=("sum",), cells=cells)
    assert table["a_cell_sum"].tolist() == [image[0, 0][expected == 1].sum(), image[0, 0][lab[0] == 9].sum()]
    assert table["a_cytoplasm_sum"].tolist() == [image[0, 0][(expected == 1) & (lab[0] == 0)].sum(), 0.0]

"""Tests of cytotrail.quantify.morphology: shape features against the numpy oracle, neighbours, border distance."""

import numpy as np
from quantify_data import synth

from cytotrail.quantify import quantify


def test_neighbours_and_border_distance():
    image, labels, names = synth()
    cells = quantify(labels[:1], image[:1], channel_names=names, pixel_size_um=2.0, neighbour_radius_um=40.0)
    pts = cells[["y", "x"]].to_numpy() * 2.0
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    np.testing.assert_array_equal(cells["n_neighbours"], (dist <= 40.0).sum(axis=1) - 1)
    y, x = cells["y"], cells["x"]
    expected = np.minimum.reduce([y, x, 127 - y, 127 - x]) * 2.0
    np.testing.assert_allclose(cells["border_distance"], expected)


def _frames():
    """Synthetic nuclei, a few hand-made shapes (holes, a ring, lines, single pixels, touching the
    border) and, when present, real DeepCell masks."""
    from quantify_data import STEINBOCK

    from cytotrail import io

    _, labels, _ = synth()
    odd = np.zeros((24, 30), np.int32)
    odd[2:9, 2:9] = 5
    odd[4:7, 4:7] = 0  # a hole
    odd[5, 5] = 9  # a pixel inside it
    odd[0, 10:20] = 3  # a line on the border
    odd[12:20, 25] = 4  # a vertical line
    odd[15:22, 3:14] = 8
    odd[18, 20] = 2  # a single pixel
    odd[10:24, 14:24] = np.where(np.add.outer(np.arange(14), np.arange(10)) % 3 == 0, 7, 0)  # diagonals
    frames = [labels[0], labels[1], odd]
    files = sorted((STEINBOCK / "img").glob("*.tiff"))[:4] if STEINBOCK.is_dir() else []
    frames += [np.squeeze(io.read_labels(STEINBOCK / "masks_deepcell" / path.name)) for path in files]
    return frames


def test_shape_kernels_equal_numpy_reference():
    # moments, border pixels, perimeter and convex hull counts of the numba kernels against
    # bincount, shifted arrays and Qhull + grid_points_in_poly (scikit-image's own route)
    from cytotrail.quantify import _reference as reference
    from cytotrail.quantify.index import Index, label_index
    from cytotrail.quantify.morphology import convex_areas, moment_features, morphology, perimeter

    for lab in _frames():
        ids, idx, _, counts = label_index(lab)
        nucleus = Index(idx, len(ids), counts=counts)
        got = morphology(nucleus, lab.shape, 0.5, 20.0, full=True)
        yc, xc, mu20, mu02, mu11 = reference.central_moments(nucleus, lab.shape)
        np.testing.assert_allclose(got["y"], yc, rtol=1e-12)
        np.testing.assert_allclose(got["x"], xc, rtol=1e-12)
        for name, expected in moment_features(mu20, mu02, mu11, counts, 0.5).items():
            np.testing.assert_allclose(got[name], expected, rtol=1e-9, atol=1e-12, err_msg=name)
        border, perim = perimeter(nucleus, lab.shape)
        ref_border, ref_perim = reference.perimeter(lab, nucleus, lab.shape)
        for a, b in zip(border, ref_border):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(perim, ref_perim, rtol=1e-12)
        np.testing.assert_allclose(got["perimeter"], ref_perim * 0.5, rtol=1e-12)
        areas = convex_areas(border, nucleus, lab.shape)
        np.testing.assert_array_equal(areas, reference.convex_areas(ref_border, nucleus, lab.shape))
        np.testing.assert_allclose(got["solidity"], counts / areas, rtol=1e-12)


def test_shapes_equal_regionprops_on_odd_shapes():
    from skimage.measure import regionprops_table

    odd = _frames()[2]
    cells = quantify(odd[None], np.ones((1, 1) + odd.shape), channel_names=["a"])
    props = (
        "label",
        "area",
        "perimeter",
        "solidity",
        "eccentricity",
        "axis_major_length",
        "axis_minor_length",
    )
    ref = regionprops_table(odd, properties=props)
    np.testing.assert_array_equal(cells["label"], ref["label"])
    for prop in props[1:]:
        np.testing.assert_allclose(cells[prop], ref[prop], rtol=1e-9, atol=1e-12, err_msg=prop)

"""Tests of cytotrail.quantify: exactness against scikit-image and steinbock, options, bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytotrail.io import InputError
from cytotrail.quantify import quantify
from cytotrail.synth import make_timelapse

STEINBOCK = Path(__file__).parents[1] / ".." / "shared" / "data" / "multiplex" / "steinbock-mock"

SHAPE_PROPS = ("area", "perimeter", "eccentricity", "solidity", "axis_major_length", "axis_minor_length")


@pytest.fixture(scope="module")
def _synth():
    return make_timelapse(n_frames=2, shape=(128, 128), n_cells=25, seed=21)


@pytest.fixture
def synth(_synth):
    return _synth.image.copy(), _synth.labels.copy(), list(_synth.channel_names)


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


def test_equals_regionprops_table(synth):
    image, labels, names = synth
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


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int32", "float32", "float64"])
def test_order_statistics_equal_numpy(synth, dtype):
    image, labels, names = synth
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


def test_compartments_follow_expand_labels(synth):
    from skimage.segmentation import expand_labels

    image, labels, names = synth
    cells = quantify(
        labels,
        image,
        channel_names=names,
        markers=["CD68"],
        cytoplasm_um=2.0,
        pixel_size_um=0.5,
        statistics=("sum", "mean", "max"),
    )
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
    direct = quantify(
        labels,
        image,
        channel_names=names,
        markers=["CD68"],
        cytoplasm_um=2.0,
        pixel_size_um=0.5,
        statistics=("sum", "mean", "max", "min"),
        compartments=("cell",),
        background={"CD68": 50.0},
    )
    parts = quantify(
        labels,
        image,
        channel_names=names,
        markers=["CD68"],
        cytoplasm_um=2.0,
        pixel_size_um=0.5,
        statistics=("sum", "mean", "max", "min"),
        background={"CD68": 50.0},
    )
    for stat in ("sum", "mean", "max", "min"):
        np.testing.assert_allclose(parts[f"CD68_cell_{stat}"], direct[f"CD68_cell_{stat}"], rtol=1e-12)


@pytest.mark.parametrize("distance", [1, 1.5, 2.0, 3.0, 4.2, 7.0, 12.0])
def test_grown_index_equals_expand_labels_ties_included(distance):
    # sparse single pixels on lattices make many pixels equidistant from two or more
    # nuclei: the numba kernel must break those ties as scipy's feature transform does
    from skimage.segmentation import expand_labels

    from cytotrail.quantify import _grow_index, _label_index

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
        ids, idx, lut, _ = _label_index(lab)
        for threads in (1, 3):
            got = _grow_index(idx, lab, ids, lut, distance, threads)
            np.testing.assert_array_equal(got.reshape(lab.shape), lut[expand_labels(lab, distance)])


def test_grown_index_equals_expand_labels_on_real_masks():
    from skimage.segmentation import expand_labels

    from cytotrail import io
    from cytotrail.quantify import _grow_index, _label_index

    for path in _steinbock_files()[:5]:
        lab = np.squeeze(io.read_labels(STEINBOCK / "masks_deepcell" / path.name))
        ids, idx, lut, _ = _label_index(lab)
        got = _grow_index(idx, lab, ids, lut, 3.0, 2)
        np.testing.assert_array_equal(got.reshape(lab.shape), lut[expand_labels(lab, 3.0)], err_msg=path.name)


def test_numpy_path_equals_numba_path(synth, monkeypatch):
    import cytotrail.quantify as q

    image, labels, names = synth
    stats = ("mean", "sum", "std", "min", "max", "median", "p90")
    for img in (image, (image.astype(np.float32) - 200) * 0.7):
        fast = quantify(labels, img, channel_names=names, statistics=stats, background="auto")
        monkeypatch.setitem(q._KERNELS, "accumulate", None)
        slow = quantify(labels, img, channel_names=names, statistics=stats, background="auto")
        monkeypatch.undo()
        pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-9)

    # blocks of channels, threads and a non-contiguous channel order do not change results
    wide = np.concatenate([image, image[:, ::-1]], axis=1)  # 12 channels: two blocks
    wide_names = names + [f"{n}_b" for n in names]
    order = wide_names[::-1]
    one = quantify(labels, wide, channel_names=wide_names, markers=order, statistics=stats)
    two = quantify(labels, wide, channel_names=wide_names, markers=order, statistics=stats, threads=2)
    pd.testing.assert_frame_equal(one, two)
    # "CD3_b" holds image channel 4 (PanCK): the same numbers under another name
    for stat in stats:
        np.testing.assert_array_equal(one[f"CD3_b_cell_{stat}"], one[f"PanCK_cell_{stat}"])


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


def test_label_ids_do_not_matter(synth):
    image, labels, names = synth
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


def test_translation_moves_only_positions(synth):
    image, labels, names = synth
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


def test_neighbours_and_border_distance(synth):
    image, labels, names = synth
    cells = quantify(labels[:1], image[:1], channel_names=names, pixel_size_um=2.0, neighbour_radius_um=40.0)
    pts = cells[["y", "x"]].to_numpy() * 2.0
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    np.testing.assert_array_equal(cells["n_neighbours"], (dist <= 40.0).sum(axis=1) - 1)
    y, x = cells["y"], cells["x"]
    expected = np.minimum.reduce([y, x, 127 - y, 127 - x]) * 2.0
    np.testing.assert_allclose(cells["border_distance"], expected)


def test_background_subtraction(synth):
    image, labels, names = synth
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


def test_local_background_removes_uneven_illumination(synth):
    _, labels, _ = synth
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


def test_two_dimensional_input_and_empty_frames():
    labels = np.zeros((20, 30), np.uint16)
    labels[3:8, 4:10] = 7
    image = np.ones((2, 20, 30), np.float32)
    cells = quantify(labels, image, channel_names=["a", "b"])
    assert len(cells) == 1 and cells.loc[0, "label"] == 7 and cells.loc[0, "area"] == 30
    empty = quantify(np.zeros((2, 20, 30), np.uint32), np.ones((2, 2, 20, 30)), channel_names=["a", "b"])
    assert len(empty) == 0
    assert list(empty.columns) == list(cells.columns)


def test_bad_input_is_named(synth):
    image, labels, names = synth
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
    holes = image.astype(np.float32)
    holes[1, 2, 5:7, 5] = np.nan
    with pytest.raises(InputError, match="channel .CD20. of frame 1 has 2 NaN"):
        quantify(labels, holes, channel_names=names)
    quantify(labels, holes, channel_names=names, markers=["CD3"])  # other channels are fine


def test_does_not_modify_inputs(synth):
    image, labels, names = synth
    img0, lab0 = image.copy(), labels.copy()
    quantify(labels, image, channel_names=names, statistics=("median", "std"), background="auto")
    np.testing.assert_array_equal(image, img0)
    np.testing.assert_array_equal(labels, lab0)


def _steinbock_files():
    if not STEINBOCK.is_dir():
        pytest.skip("../shared/data/multiplex/steinbock-mock not found")
    return sorted((STEINBOCK / "img").glob("*.tiff"))


def test_reproduces_steinbock_intensities_and_regionprops():
    from cytotrail import io

    files = _steinbock_files()
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


def test_cli_quantify_round_trip(tmp_path, _synth):
    from cytotrail import io
    from cytotrail.cli import main

    io.write_image(tmp_path / "s1.ome.tif", _synth.image, channel_names=_synth.channel_names)
    io.write_labels(tmp_path / "s1_labels.tif", _synth.labels)
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
        _synth.labels,
        _synth.image,
        channel_names=_synth.channel_names,
        statistics=("mean", "p90"),
        pixel_size_um=0.5,
    )
    assert (cells["sample"] == "s1").all()
    pd.testing.assert_frame_equal(cells.drop(columns="sample"), direct)


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


_CACHE_PROBE = """
import json, sys
import numpy as np
import cytotrail.quantify as q
assert q.__file__.startswith(sys.argv[1]), q.__file__
lab = np.zeros((40, 40), np.uint32)
lab[5:15, 5:15] = 1
lab[20:30, 18:33] = 7
img = np.arange(2 * 40 * 40, dtype=np.uint16).reshape(2, 40, 40)
out = q.quantify(lab, img, channel_names=["a", "b"], compartments=("nucleus",),
                 morphology=False)
assert out["a_nucleus_mean"].iloc[0] == img[0][lab == 1].mean()
kernels = q._numba_kernels()
hits = sum(sum(k.stats.cache_hits.values()) for k in kernels)
misses = sum(sum(k.stats.cache_misses.values()) for k in kernels)
print(json.dumps({"hits": hits, "misses": misses}))
"""


@pytest.mark.slow
def test_numba_kernels_cached_when_package_is_read_only(tmp_path):
    # every Snakemake job is a fresh process: the kernels compile once, later processes
    # load them from numba's cache, also from an installation they cannot write to (numba
    # then caches under the user's cache directory)
    import json
    import os
    import shutil
    import subprocess
    import sys

    pytest.importorskip("numba")
    src = Path(__file__).parents[1] / "src" / "cytotrail"
    pkg = tmp_path / "site"
    shutil.copytree(src, pkg / "cytotrail", ignore=shutil.ignore_patterns("__pycache__"))
    cache_home = tmp_path / "cache"
    cache_home.mkdir()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through any permission: a file where numba would create the
        # package's __pycache__ makes that location unusable in the same way
        (pkg / "cytotrail" / "__pycache__").write_text("")
    for path in [pkg, *pkg.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    env.update(PYTHONPATH=str(pkg), XDG_CACHE_HOME=str(cache_home), HOME=str(tmp_path))

    def probe():
        res = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE, str(pkg)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    first, second = probe(), probe()
    try:
        assert first["misses"] > 0 and first["hits"] == 0  # compiled on the first call
        assert second["hits"] == first["misses"] and second["misses"] == 0  # loaded
        assert not list(pkg.rglob("*.nbi"))  # nothing written beside the read-only module
        assert list((cache_home / "numba").rglob("*.nbi"))
    finally:
        for path in [pkg, *pkg.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)

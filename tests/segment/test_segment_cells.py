"""Whole cells grown from nuclei (cytotrail.segment.cells), quantified as the cell compartment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

from cytotrail import io
from cytotrail.cli import main
from cytotrail.io import InputError
from cytotrail.quantify import quantify
from cytotrail.segment.cells import grow_cells, membrane_channels
from cytotrail.segment.metrics import f1_score
from cytotrail.synth import make_timelapse, write_dataset

MARKERS = ["CD3", "CD20", "CD68", "PanCK"]  # two membrane, two cytoplasm markers


@pytest.fixture(scope="module")
def synth():
    # seed 7: neither the benchmark's dev seed (100) nor the demo's (0, 1)
    return make_timelapse(n_frames=3, shape=(160, 160), n_cells=30, seed=7)


def test_synth_ground_truth_has_whole_cells(synth):
    assert synth.cells.shape == synth.labels.shape
    nuc = synth.labels > 0
    assert (synth.cells[nuc] == synth.labels[nuc]).all()
    assert set(np.unique(synth.cells)) == set(np.unique(synth.labels))
    assert (synth.cells > 0).sum() > 1.3 * nuc.sum()


def test_grown_cells_match_the_true_cells(synth):
    channels = membrane_channels(synth.image, synth.channel_names, MARKERS)
    cells = grow_cells(synth.labels, channels)
    assert f1_score(synth.cells, cells) >= 0.9
    # the nuclei alone are not the cells: the score measures the growth
    assert f1_score(synth.cells, synth.labels) < 0.5


def test_cells_keep_their_nucleus_label_and_stay_within_reach(synth):
    channels = membrane_channels(synth.image, synth.channel_names, MARKERS)
    cells = grow_cells(synth.labels, channels, max_um=3.0, pixel_size_um=0.5)  # 6 px
    nuc = synth.labels > 0
    assert cells.dtype == synth.labels.dtype
    assert (cells[nuc] == synth.labels[nuc]).all()
    for t in range(len(cells)):
        assert set(np.unique(cells[t])) <= set(np.unique(synth.labels[t]))
        dist = ndi.distance_transform_edt(synth.labels[t] == 0)
        assert dist[cells[t] > 0].max() <= 6.0
        # every cell is one connected piece
        for lab in np.unique(cells[t])[1:]:
            assert ndi.label(cells[t] == lab)[1] == 1


def test_label_ids_do_not_matter(synth):
    lab = synth.labels[0]
    channels = membrane_channels(synth.image[0], synth.channel_names, MARKERS)
    ids = np.unique(lab)[1:]
    rng = np.random.default_rng(0)
    lut = np.zeros(lab.max() + 1, lab.dtype)
    lut[ids] = rng.permutation(ids) + 1000
    assert (grow_cells(lut[lab], channels) == lut[grow_cells(lab, channels)]).all()


def test_a_membrane_ring_is_filled_and_ends_at_its_edge():
    nuclei = np.zeros((40, 40), np.uint32)
    nuclei[18:22, 18:22] = 5
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 19.5, xx - 19.5)
    membrane = ((r > 7) & (r <= 9)).astype(float)  # a dim inside, a bright ring at 7-9 px
    cells = grow_cells(nuclei, membrane, max_um=15.0)
    assert set(np.unique(cells)) == {0, 5}
    assert (cells[r <= 8.5] == 5).all()
    assert (cells[r > 10.5] == 0).all()


def test_empty_frames_and_no_signal():
    nuclei = np.zeros((2, 20, 20), np.int32)
    nuclei[1, 8:12, 8:12] = 3
    cells = grow_cells(nuclei, np.zeros((2, 1, 20, 20)), min_um=0)
    assert not cells[0].any()
    assert (cells[1] == nuclei[1]).all()  # nothing stained: the cell is its nucleus
    # ... or its nucleus plus the min_um ring (2 µm = 4 px here)
    cells = grow_cells(nuclei, np.zeros((2, 1, 20, 20)), min_um=2.0, pixel_size_um=0.5)
    assert (cells[1] == expand_labels(nuclei[1], 4)).all()


def test_bad_input_names_the_problem(synth):
    with pytest.raises(InputError, match=r"\['Vimentin'\].*available channels: \['DNA'"):
        membrane_channels(synth.image, synth.channel_names, ["CD3", "Vimentin"])
    with pytest.raises(InputError, match="empty"):
        membrane_channels(synth.image, synth.channel_names, [])
    channels = membrane_channels(synth.image, synth.channel_names, ["CD3"])
    with pytest.raises(InputError, match="max_um"):
        grow_cells(synth.labels, channels, max_um=0)
    with pytest.raises(InputError, match="min_um"):
        grow_cells(synth.labels, channels, min_um=-1)
    with pytest.raises(InputError, match="do not match"):
        grow_cells(synth.labels[:2], channels)
    with pytest.raises(InputError, match="NaN"):
        grow_cells(synth.labels[0], np.full(synth.labels.shape[1:], np.nan))


def test_quantify_with_whole_cells_equals_the_ring_it_replaces(synth):
    ring = quantify(
        synth.labels, synth.image, channel_names=synth.channel_names, cytoplasm_um=3.0, morphology=False
    )
    grown = np.stack([expand_labels(lab, 3) for lab in synth.labels])
    given = quantify(
        synth.labels,
        synth.image,
        channel_names=synth.channel_names,
        cytoplasm_um=0.5,
        morphology=False,
        cells=grown,
    )
    assert given.columns.tolist() == ring.columns.tolist()
    np.testing.assert_allclose(given.to_numpy(float), ring.to_numpy(float), rtol=1e-12)


def test_quantify_cell_compartment_is_the_mask(synth):
    lab, img = synth.labels[:1], synth.image[:1]
    cells = synth.cells[:1].copy()
    cells[0][lab[0] > 0] = 0  # cell masks with holes where their nuclei are
    stray = int(lab.max()) + 7
    cells[0, :3, :3] = stray  # a cell with no nucleus is ignored
    table = quantify(
        lab,
        img,
        channel_names=synth.channel_names,
        markers=["CD3"],
        statistics=["sum"],
        morphology=False,
        cells=cells,
    )
    # nucleus pixels are always in their cell; the stray label's pixels are not counted
    expected = ndi.sum_labels(img[0, 1].astype(float), synth.cells[0], table["label"].to_numpy())
    np.testing.assert_allclose(table["CD3_cell_sum"].to_numpy(), expected)
    with pytest.raises(InputError, match="do not match"):
        quantify(lab, img, channel_names=synth.channel_names, cells=synth.cells)


def test_cli_segment_cells_then_quantify(synth, tmp_path, capsys):
    write_dataset(tmp_path, synth, sample="s")
    image = str(tmp_path / "s.ome.tif")
    nuclei = str(tmp_path / "truth" / "s_labels.tif")
    assert (io.read_labels(tmp_path / "truth" / "s_cells.tif") == synth.cells).all()
    out = tmp_path / "cells.tif"
    assert (
        main(["-q", "segment-cells", image, nuclei, "-o", str(out), "--channels", *MARKERS, "--max-um", "10"])
        == 0
    )
    cells = io.read_labels(out)
    assert f1_score(synth.cells, cells) >= 0.9
    assert main(["-q", "quantify", image, nuclei, "-o", str(tmp_path / "c.csv"), "--cells", str(out)]) == 0
    table = io.read_table(tmp_path / "c.csv")
    assert len(table) == len(synth.tracks) and "CD3_cell_mean" in table
    # a channel that is not in the image: one line naming it, no output
    assert (
        main(["-q", "segment-cells", image, nuclei, "-o", str(tmp_path / "x.tif"), "--channels", "NaKATPase"])
        != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and "NaKATPase" in err[-1]
    assert not (tmp_path / "x.tif").exists()


def test_schema_default_is_the_package_default():
    import yaml
    from conftest import ROOT

    from cytotrail.segment.cells import MAX_UM, MIN_UM

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    cells = schema["properties"]["segment"]["properties"]["cells"]
    assert cells["default"] is None  # no membrane channel named: nuclei + ring, as before
    assert f"when left out, {MAX_UM:g} (" in cells["properties"]["max_um"]["description"]
    assert f"when left out, {MIN_UM:g} (" in cells["properties"]["min_um"]["description"]


@pytest.mark.workflow
def test_workflow_grows_cells_only_when_channels_are_named(tmp_path):
    from conftest import planned_jobs, prepare_demo

    (tmp_path / "ring").mkdir()
    (tmp_path / "cells").mkdir()
    prepare_demo(tmp_path / "ring")
    assert "segment_cells" not in planned_jobs(tmp_path / "ring")
    prepare_demo(tmp_path / "cells", **{"segment.cells": {"channels": ["CD3", "CD68"]}})
    assert planned_jobs(tmp_path / "cells")["segment_cells"] == 2


@pytest.mark.workflow
def test_workflow_names_a_membrane_channel_that_is_not_in_the_image(tmp_path):
    from conftest import prepare_demo, snakemake

    prepare_demo(tmp_path, **{"segment.cells": {"channels": ["CD3", "NaKATPase"], "max_um": 8}})
    proc = snakemake(tmp_path, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for needle in ("NaKATPase", "segment.cells.channels", "s1"):
        assert needle in out, out[-3000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
@pytest.mark.slow
def test_workflow_quantifies_the_grown_cells(tmp_path):
    from conftest import prepare_demo, snakemake

    prepare_demo(tmp_path, **{"segment.cells": {"channels": ["CD3", "CD20", "CD68", "PanCK"]}})
    snakemake(tmp_path, "results/s1/cells.parquet")
    nuclei = io.read_labels(tmp_path / "results" / "s1" / "labels.tif")
    cells = io.read_labels(tmp_path / "results" / "s1" / "cells.tif")
    assert cells.shape == nuclei.shape and cells.dtype == np.uint32
    assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all() and (cells > 0).sum() > (nuclei > 0).sum()
    table = io.read_table(tmp_path / "results" / "s1" / "cells.parquet")
    image, names = io.read_image(tmp_path / "resources" / "demo" / "s1.ome.tif")
    expected = quantify(
        nuclei, image, channel_names=names, markers=["CD3"], morphology=False, cells=cells, background="local"
    )
    np.testing.assert_allclose(table["CD3_cell_mean"], expected["CD3_cell_mean"])

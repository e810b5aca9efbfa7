"""Contract tests for every segmentation backend, plus tiling, devices, models and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage as ndi

from cytotrail.io import InputError
from cytotrail.segment import segment
from cytotrail.segment.cellpose_backend import cellpose_available
from cytotrail.segment.metrics import f1_score, match_labels
from cytotrail.synth import make_timelapse

BACKENDS = [
    "unet",
    "watershed",
    "labels",
    pytest.param(
        "cellpose", marks=pytest.mark.skipif(not cellpose_available(), reason="cellpose is not installed")
    ),
]
# smallest F1@0.5 each backend must reach on the synthetic frames
MIN_F1 = {"unet": 0.93, "watershed": 0.75, "labels": 1.0, "cellpose": 0.8}


@pytest.fixture(scope="session")
def _synth():
    data = make_timelapse(n_frames=3, shape=(128, 128), n_cells=18, seed=321)
    return data.image[:, 0], data.labels


@pytest.fixture
def synth(_synth):
    frames, truth = _synth
    return frames.copy(), truth.copy()


def run(backend, frames, truth=None, **options):
    """segment() with the truth as masks for the labels backend (ids shuffled)."""
    if backend == "labels":
        rng = np.random.default_rng(0)
        ids = np.unique(truth)
        perm = np.zeros(int(ids.max()) + 1, np.int64)
        perm[ids[1:]] = rng.permutation(np.arange(1000, 1000 + len(ids) - 1))
        options["labels"] = perm[truth] if truth is not None else None
    return segment(frames, backend=backend, device="cpu", **options)


# --------------------------------------------------------------------------------------
# the contract, for every backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_dtype_and_ids(backend, synth):
    frames, truth = synth
    labels = run(backend, frames, truth)
    assert labels.shape == frames.shape
    assert labels.dtype == np.uint32
    for lab in labels:
        ids = np.unique(lab)
        ids = ids[ids > 0]
        assert len(ids) > 5
        # ids are 1..n, and each id is one object (one connected piece, give or take a pixel)
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
        pieces = [ndi.label(lab == i)[1] for i in ids[:10]]
        assert max(pieces) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_frame_gives_one_frame_stack(backend, synth):
    frames, truth = synth
    labels = run(backend, frames[0], truth[0])
    assert labels.shape == (1,) + frames.shape[1:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_background_stays_zero(backend, synth):
    frames, truth = synth
    labels = run(backend, frames, truth)
    far = ~ndi.binary_dilation(truth > 0, iterations=4, axes=(1, 2))
    assert far.any()
    assert np.mean(labels[far] == 0) > 0.999


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_frames_give_no_labels(backend, synth):
    frames, truth = synth
    for value in (0, 500):
        blank = np.full_like(frames, value)
        assert not run(backend, blank, np.zeros_like(truth)).any()
    # an empty frame inside a stack stays empty; the others are still segmented
    mixed = frames.copy()
    mixed[1] = 0
    mixed_truth = truth.copy()
    mixed_truth[1] = 0
    labels = (
        run(backend, mixed, mixed_truth, diameter_px=14.0)
        if backend != "labels"
        else run(backend, mixed, mixed_truth)
    )
    assert not labels[1].any()
    assert labels[0].any() and labels[2].any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_decent_f1_on_synthetic_frames(backend, synth):
    frames, truth = synth
    labels = run(backend, frames, truth)
    assert f1_score(truth, labels) >= MIN_F1[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_order_does_not_matter(backend, synth):
    frames, truth = synth
    perm = np.array([2, 0, 1])
    options = {} if backend == "labels" else {"diameter_px": 14.0}
    a = run(backend, frames, truth, **options)
    b = run(backend, frames[perm], truth[perm], **options)
    for t, p in enumerate(perm):
        assert f1_score(a[p], b[t], iou=0.9) >= 0.99


@pytest.mark.parametrize("backend", BACKENDS)
def test_translation_moves_the_objects(backend, synth):
    frames, truth = synth
    dy, dx = 24, 16
    options = {} if backend == "labels" else {"diameter_px": 14.0}
    whole = run(backend, frames[:1], truth[:1], **options)[0]
    part = run(backend, frames[:1, dy:, dx:], truth[:1, dy:, dx:], **options)[0]
    # compare away from the new borders, where context changed
    inner = (slice(12, None), slice(12, None))
    a = whole[dy:, dx:][inner]
    b = part[inner]
    r = match_labels(a, b, iou=0.5)
    assert r["tp"] >= 0.9 * max(len(np.unique(a)) - 1, 1)


@pytest.mark.parametrize("backend", ["unet", "watershed"])
def test_8_and_16_bit_and_float_agree(backend, synth):
    frames, truth = synth
    as16 = run(backend, frames, truth, diameter_px=14.0)
    scaled = frames.astype(np.float64) / frames.max()
    as8 = run(backend, np.round(scaled * 255).astype(np.uint8), truth, diameter_px=14.0)
    asfloat = run(backend, scaled.astype(np.float32) * 3.7 + 11, truth, diameter_px=14.0)
    assert f1_score(as16, as8, iou=0.75) >= 0.95
    assert f1_score(as16, asfloat, iou=0.9) >= 0.98


# --------------------------------------------------------------------------------------
# unet specifics


def test_unet_separates_touching_nuclei():
    data = make_timelapse(n_frames=1, shape=(128, 128), n_cells=45, diameter=16, seed=77)
    truth = data.labels
    # crowded: many nuclei touch a neighbour
    touching = ndi.binary_dilation(truth[0] > 0) & (
        ndi.grey_dilation(truth[0], size=3) != -ndi.grey_dilation(-truth[0].astype(np.int64), size=3)
    )
    assert touching.sum() > 50
    labels = segment(data.image[:, 0], device="cpu")
    assert f1_score(truth, labels) >= 0.9


@pytest.mark.parametrize("smooth", [1.0, 2.5, 4.0])
def test_h_maxima_equals_skimage(smooth):
    from skimage.morphology import h_maxima as sk_h_maxima

    from cytotrail.segment.postprocess import h_maxima

    rng = np.random.default_rng(int(smooth * 10))
    for _ in range(8):
        f = ndi.gaussian_filter(rng.random((83, 121)), smooth).astype(np.float32)
        # values on a 1e-3 grid: ties are exact (plateaus) and other differences far above the
        # float rounding allowance of skimage's version
        f = np.round(1000 * (f - f.min()) / (f.max() - f.min())).astype(np.float32) / 1000
        for h in (0.0205, 0.1005, 0.3005):
            expected = sk_h_maxima(f, np.float32(h)).astype(bool)
            assert expected.sum() >= 1
            assert np.array_equal(h_maxima(f, h), expected)
            # with a floor: exact for the maxima at least floor + h high, none below
            high = f >= 0.4 + h
            floored = h_maxima(f, h, floor=0.4)
            assert np.array_equal(floored & high, expected & high)
            assert not (floored & ~high).any()


def test_h_maxima_plateaus_and_equal_peaks():
    from skimage.morphology import h_maxima as sk_h_maxima

    from cytotrail.segment.postprocess import h_maxima

    f = np.zeros((24, 24), np.float32)
    f[3:6, 3:6] = 1.0  # a plateau
    f[10:12, 10:15] = 0.5  # a lower plateau ...
    f[15, 2] = f[15, 4] = 0.5  # ... and two equal single-pixel peaks
    f[15, 3] = 0.2  # joined by a saddle 0.3 below them
    f[18:22, 18:22] = 0.7
    f[19, 19] = 0.75  # a bump of dynamic 0.05 on a plateau
    for h in (0.04, 0.1, 0.3, 0.5, 0.6, 1.0):
        assert np.array_equal(h_maxima(f, h), sk_h_maxima(f, np.float32(h)).astype(bool)), h
    assert h_maxima(f, 0.1)[15, [2, 4]].all()


def test_h_maxima_above_a_floor_equals_skimages_above_it():
    from skimage.morphology import h_maxima as sk_h_maxima

    from cytotrail.segment.postprocess import h_maxima

    rng = np.random.default_rng(3)
    f = np.round(1000 * ndi.gaussian_filter(rng.random((64, 64)), 2.0)).astype(np.float32)
    f /= f.max()
    fast = h_maxima(f, 0.0505, floor=0.5)
    slow = sk_h_maxima(f, np.float32(0.0505)).astype(bool) & (f >= np.float32(0.5 + 0.0505))
    assert fast.any() and np.array_equal(fast, slow)


def test_fill_holes_gives_each_hole_to_the_object_around_it():
    from cytotrail.segment.postprocess import _fill_holes

    labels = np.zeros((40, 40), np.int32)
    labels[2:12, 2:12] = 1
    labels[5:8, 5:8] = 0  # a hole inside object 1
    labels[20:30, 5:15] = 2
    labels[20:30, 15:25] = 3
    labels[24:26, 13:17] = 0  # a hole between objects 2 and 3
    labels[0:4, 30:40] = 4  # background open to the border is no hole
    labels[3, 33:37] = 0
    out = _fill_holes(labels)
    assert (out[5:8, 5:8] == 1).all()
    assert (out[24:26, 13:15] == 2).all() and (out[24:26, 15:17] == 3).all()
    assert (out[3, 33:37] == 0).all()
    assert np.array_equal(out[labels > 0], labels[labels > 0])


@pytest.mark.slow
def test_unet_tiled_equals_untiled():
    data = make_timelapse(n_frames=1, shape=(256, 224), n_cells=45, seed=11)
    frames = data.image[:, 0]
    whole = segment(frames, device="cpu", diameter_px=14.0)
    tiled = segment(frames, device="cpu", diameter_px=14.0, tile_size=192)  # cores of 64 px: 16 tiles
    n_whole, n_tiled = whole.max(), tiled.max()
    assert abs(int(n_whole) - int(n_tiled)) <= 1
    r = match_labels(whole[0], tiled[0], iou=0.9)
    assert r["tp"] >= n_whole - 1
    # no nucleus is cut at a tile border: the matched pairs are nearly identical
    assert r["mean_iou"] > 0.97


def test_unet_postprocessing_threads_give_the_same_labels():
    # 72 small tiles per frame, post-processed by 3 threads while the network runs: same labels
    data = make_timelapse(n_frames=2, shape=(200, 180), n_cells=40, seed=12)
    frames = data.image[:, 0]
    serial = segment(frames, device="cpu", diameter_px=14.0, tile_size=160, workers=1)
    threaded = segment(frames, device="cpu", diameter_px=14.0, tile_size=160, workers=3)
    assert serial.max() >= 30
    assert np.array_equal(serial, threaded)


@pytest.mark.parametrize("diameter", [9, 40])
def test_unet_estimates_diameter_and_rescales(diameter):
    shape = (192, 192)
    n = int(0.25 * shape[0] * shape[1] / (np.pi * diameter**2 / 4))
    data = make_timelapse(n_frames=1, shape=shape, n_cells=n, diameter=diameter, seed=5)
    from cytotrail.segment.infer import estimate_diameter
    from cytotrail.segment.model import load_model
    from cytotrail.segment.preprocess import equivalent_diameters

    net, config, thresholds = load_model(None, device="cpu")
    import torch

    est = estimate_diameter(
        data.image[:, 0], net=net, config=config, thresholds=thresholds, device=torch.device("cpu")
    )
    true = np.median(equivalent_diameters(data.labels[0]))
    assert est == pytest.approx(true, rel=0.3)
    assert f1_score(data.labels, segment(data.image[:, 0], device="cpu")) >= 0.85


def test_unet_reuses_the_estimate_pass_for_whole_frames(monkeypatch):
    # frames that fit whole in the diameter estimate's crop, with nuclei at the native scale,
    # are not run through the network again: the result equals segmenting at the estimated
    # diameter
    import torch

    import cytotrail.segment.infer as infer
    import cytotrail.segment.tiled as tiled
    from cytotrail.segment.model import load_model

    data = make_timelapse(n_frames=2, shape=(160, 160), n_cells=20, diameter=18, seed=8)
    frames = data.image[:, 0]
    net, config, thresholds = load_model(None, device="cpu")
    d = infer.estimate_diameter(
        frames, net=net, config=config, thresholds=thresholds, device=torch.device("cpu")
    )
    passes = []
    predict = tiled.predict_maps
    monkeypatch.setattr(
        tiled,
        "predict_maps",
        lambda net, batch, **kw: (passes.append(len(batch)), predict(net, batch, **kw))[1],
    )
    given = segment(frames, device="cpu", diameter_px=d)
    n_given = sum(passes)
    passes.clear()
    estimated = segment(frames, device="cpu")
    n_estimate = sum(passes)
    passes.clear()
    infer.estimate_diameter(frames, net=net, config=config, thresholds=thresholds, device=torch.device("cpu"))
    assert n_given == 2
    assert n_estimate == sum(passes)  # the final segmentation added no network pass
    np.testing.assert_array_equal(estimated, given)


def test_unet_rejects_weights_that_do_not_match_their_sha256(tmp_path):
    from cytotrail.segment.model import model_dir

    folder = tmp_path / "model"
    shutil.copytree(model_dir(None), folder)
    config = json.loads((folder / "config.json").read_text())
    config["weights_sha256"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="sha256"):
        segment(np.zeros((32, 32), np.uint8) + 1, model=folder, device="cpu", diameter_px=10)


def test_unet_unknown_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        segment(np.ones((32, 32)), model=tmp_path / "absent", device="cpu")


# --------------------------------------------------------------------------------------
# input validation, labels and cellpose backends


def test_bad_inputs_are_input_errors(synth):
    frames, truth = synth
    with pytest.raises(InputError, match="backend"):
        segment(frames, backend="magic")
    with pytest.raises(InputError, match="shape"):
        segment(frames[:, :, :, None])
    with pytest.raises(InputError, match="diameter"):
        segment(frames, diameter_px=-3)
    for backend in ("watershed", "labels"):  # the flips were ignored
        with pytest.raises(InputError, match=f"tta=True .* is for backend 'unet', not '{backend}'"):
            segment(frames, backend=backend, tta=True, labels=truth if backend == "labels" else None)
    for backend in ("unet", "watershed"):  # the watershed failed deep in numpy, the network found nothing
        with pytest.raises(InputError, match=r"diameter_px 100000 is larger than the frames \("):
            segment(frames, backend=backend, diameter_px=100_000)
    with pytest.raises(InputError, match="labels"):
        segment(frames, backend="labels")
    with pytest.raises(InputError, match="shape"):
        segment(frames, backend="labels", labels=truth[:, :-1])
    with pytest.raises(InputError, match="NaN"):
        segment(np.full((16, 16), np.nan))


def test_labels_backend_relabels_consecutively():
    masks = np.zeros((2, 8, 8), np.int64)
    masks[0, 1:3, 1:3] = 7
    masks[0, 5:7, 5:7] = 900
    masks[1, 2:4, 2:4] = 3
    out = segment(np.ones((2, 8, 8)), backend="labels", labels=masks)
    assert out.dtype == np.uint32
    assert sorted(np.unique(out[0])) == [0, 1, 2]
    assert sorted(np.unique(out[1])) == [0, 1]
    np.testing.assert_array_equal(out > 0, masks > 0)


@pytest.mark.skipif(cellpose_available(), reason="cellpose is installed")
def test_cellpose_without_cellpose_is_a_clear_input_error(synth):
    with pytest.raises(InputError, match="cellpose"):
        segment(synth[0], backend="cellpose")


# --------------------------------------------------------------------------------------
# devices


def test_select_device_auto_and_explicit():
    import torch

    from cytotrail.segment.device import select_device

    auto = select_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    else:
        assert auto.type in ("cpu", "mps")
        with pytest.raises(InputError, match="CUDA"):
            select_device("cuda")
    assert select_device("cpu").type == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        select_device("tpu")


@pytest.mark.gpu
def test_cuda_matches_cpu(synth):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    frames, _ = synth
    cpu = segment(frames, device="cpu", diameter_px=14.0)
    gpu = segment(frames, device="cuda", diameter_px=14.0)
    assert f1_score(cpu, gpu, iou=0.9) >= 0.98


# --------------------------------------------------------------------------------------
# CLI


def test_cli_segment_writes_labels(tmp_path, synth):
    from cytotrail import io
    from cytotrail.cli import main

    frames, truth = synth
    path = tmp_path / "img.tif"
    io.write_image(path, frames[:, None], channel_names=["DNA"])
    out = tmp_path / "labels.tif"
    assert main(["segment", str(path), "-o", str(out), "--backend", "watershed"]) == 0
    labels = io.read_labels(out)
    assert labels.shape == frames.shape
    assert f1_score(truth, labels) >= MIN_F1["watershed"]
    assert main(["segment", str(path), "-o", str(out), "--backend", "labels"]) == 2


def test_cli_segment_unet_workers_and_diameter(tmp_path, synth):
    from cytotrail import io
    from cytotrail.cli import main

    frames, _ = synth
    path = tmp_path / "img.tif"
    io.write_image(path, frames[:, None], channel_names=["DNA"])
    out = tmp_path / "labels.tif"
    assert (
        main(
            ["segment", str(path), "-o", str(out), "--diameter-px", "14", "--workers", "2", "--device", "cpu"]
        )
        == 0
    )
    assert np.array_equal(io.read_labels(out), segment(frames, device="cpu", diameter_px=14.0))


def test_prefetch_keeps_the_order_hands_on_errors_and_stops_with_its_consumer():
    from cytotrail.segment.batches import _prefetch

    assert list(_prefetch(iter(range(50)), 2)) == list(range(50))
    assert list(_prefetch(iter(range(5)), 0)) == list(range(5))

    def failing():
        yield 1
        raise InputError("frame 2 is unreadable")

    got = []
    with pytest.raises(InputError, match="frame 2"):
        for item in _prefetch(failing(), 2):
            got.append(item)
    assert got == [1]
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = _prefetch(endless(), 2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the producer thread stops: at most a few items ahead, then nothing more
    n = len(produced)
    assert n <= 3 + 2 + 1
    import time

    time.sleep(0.3)
    assert len(produced) == n

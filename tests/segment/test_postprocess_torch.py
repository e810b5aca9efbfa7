"""The torch post-processing (maps to labels on the device) against the numba/scipy one.

Every check runs on the CPU, which exercises the same torch code as CUDA and MPS; the
``gpu`` test repeats the comparison on CUDA when it is present.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from scipy import ndimage as ndi

from cytotrail.io import InputError
from cytotrail.segment import segment
from cytotrail.segment.metrics import average_precision, match_labels
from cytotrail.segment.postprocess import h_maxima, maps_to_labels
from cytotrail.segment.postprocess_torch import h_maxima_torch, label_components, maps_to_labels_torch
from cytotrail.synth import make_timelapse

torch = pytest.importorskip("torch")

# the bar where labels cannot match exactly (watershed and hole ties)
MIN_MATCHED = 0.995
MIN_IOU = 0.95


def both(fg, centre, diameter, thresholds=None):
    """(numba labels, torch labels, numba seeds, torch seeds) of one pair of maps."""
    host, host_seeds = maps_to_labels(fg, centre, diameter=diameter, thresholds=thresholds)
    dev, dev_seeds = maps_to_labels_torch(fg, centre, diameter=diameter, thresholds=thresholds)
    return host, dev[0].numpy(), host_seeds, dev_seeds[0]


def matched_share(a, b):
    """Share of the objects of ``a`` matched in ``b`` at IoU >= MIN_IOU (1.0 when both are empty)."""
    n = int(a.max())
    if n == 0:
        return 1.0 if b.max() == 0 else 0.0
    return match_labels(a, b, iou=MIN_IOU)["tp"] / max(n, int(b.max()))


def random_maps(rng, shape, smooth):
    """Smooth random foreground and centre-ness maps in [0, 1] with nucleus-like blobs."""
    fg = ndi.gaussian_filter(rng.random(shape), smooth)
    fg = (fg - fg.min()) / (fg.max() - fg.min())
    centre = ndi.gaussian_filter(rng.random(shape), smooth / 1.5)
    centre = (centre - centre.min()) / (centre.max() - centre.min()) * fg
    return fg.astype(np.float32), centre.astype(np.float32)


@pytest.fixture(scope="session")
def _network_maps():
    """Network maps of 3 synthetic frames (crowded, sparse, large nuclei), computed once."""
    from cytotrail.segment.model import load_model
    from cytotrail.segment.tiled import _segment_maps_frame

    net, config, thresholds = load_model(None)
    out = []
    for seed, (n_cells, diameter) in enumerate([(70, 14.0), (25, 14.0), (20, 26.0)]):
        data = make_timelapse(
            n_frames=1, shape=(192, 192), n_cells=n_cells, diameter=diameter, seed=40 + seed
        )
        maps = _segment_maps_frame(
            data.image[0, 0],
            net=net,
            config=config,
            device=torch.device("cpu"),
            diameter=diameter,
            normalized=False,
        )
        out.append((maps, diameter))
    return out, thresholds


@pytest.fixture
def network_maps(_network_maps):
    maps, thresholds = _network_maps
    return [(m.copy(), d) for m, d in maps], dict(thresholds)


# --------------------------------------------------------------------------------------
# the parts: exact


@pytest.mark.parametrize("smooth", [1.0, 2.5, 4.0])
def test_h_maxima_torch_equals_numba(smooth):
    rng = np.random.default_rng(int(10 * smooth))
    for _ in range(6):
        f = ndi.gaussian_filter(rng.random((67, 91)), smooth).astype(np.float32)
        f = (f - f.min()) / (f.max() - f.min())
        for h, floor in ((0.02, None), (0.1, 0.2), (0.2, 0.3), (0.3, None)):
            expected = h_maxima(f, h, floor=floor)
            assert np.array_equal(h_maxima_torch(f, h, floor=floor).numpy(), expected), (h, floor)
    # plateaus, equal peaks and rounded values (exact float32 ties)
    g = np.round(1000 * f) / np.float32(1000)
    for h in (0.0205, 0.1005):
        assert np.array_equal(h_maxima_torch(g, h).numpy(), h_maxima(g, h))


def test_h_maxima_torch_plateaus_equal_peaks_and_batches():
    f = np.zeros((24, 24), np.float32)
    f[3:6, 3:6] = 1.0
    f[10:12, 10:15] = 0.5
    f[15, 2] = f[15, 4] = 0.5
    f[15, 3] = 0.2
    f[18:22, 18:22] = 0.7
    f[19, 19] = 0.75
    for h in (0.04, 0.1, 0.3, 0.5, 0.6, 1.0):
        assert np.array_equal(h_maxima_torch(f, h).numpy(), h_maxima(f, h)), h
    batch = np.stack([f, f[::-1], np.zeros_like(f)])
    out = h_maxima_torch(batch, 0.1).numpy()
    for got, image in zip(out, batch):
        assert np.array_equal(got, h_maxima(image, 0.1))
    with pytest.raises(ValueError, match="h > 0"):
        h_maxima_torch(f, 0.0)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_components_equals_scipy(connectivity):
    rng = np.random.default_rng(connectivity)
    structure = ndi.generate_binary_structure(2, connectivity)
    masks = [ndi.gaussian_filter(rng.random((70, 83)), s) > 0.5 for s in (0.7, 1.5, 3.0)]
    masks.append(np.zeros((70, 83), bool))
    masks.append(rng.random((70, 83)) > 0.4)  # many tiny components, diagonal contacts
    for m in masks:
        expected, n = ndi.label(m, structure)
        got, counts = label_components(m, connectivity=connectivity)
        assert np.array_equal(got.numpy(), expected)
        assert counts.tolist() == [n]
    # a batch numbers each frame from 1
    got, counts = label_components(np.stack(masks), connectivity=connectivity)
    for g, m in zip(got.numpy(), masks):
        assert np.array_equal(g, ndi.label(m, structure)[0])
    assert counts.tolist() == [ndi.label(m, structure)[1] for m in masks]


# --------------------------------------------------------------------------------------
# maps to labels: the same objects


def test_random_fields_give_the_same_labels():
    # identical but for filled holes: a hole pixel as far from two objects goes to either
    # (scipy's distance transform and the torch propagation break such ties differently)
    rng = np.random.default_rng(7)
    identical = 0
    for i in range(12):
        fg, centre = random_maps(rng, (96, 112), smooth=[2.0, 3.0, 4.5][i % 3])
        host, dev, host_seeds, dev_seeds = both(fg, centre, diameter=10.0)
        assert host.dtype == dev.dtype == np.int32
        assert host.max() > 3
        assert matched_share(host, dev) >= MIN_MATCHED
        np.testing.assert_allclose(dev_seeds, host_seeds)
        differ = host != dev
        assert not (differ & (fg > 0.5)).any()  # the watershed: exact
        assert differ.mean() < 2e-3
        assert np.array_equal(host > 0, dev > 0)
        identical += int(not differ.any())
    assert identical >= 3


def test_network_maps_of_synthetic_frames_give_the_same_labels(network_maps):
    maps, thresholds = network_maps
    for m, diameter in maps:
        host, dev, host_seeds, dev_seeds = both(m[0], m[1], diameter, thresholds)
        assert host.max() >= 10
        assert matched_share(host, dev) >= MIN_MATCHED
        assert (host != dev).mean() < 1e-3
        np.testing.assert_allclose(dev_seeds, host_seeds)


def test_a_batch_equals_frame_by_frame(network_maps):
    maps, thresholds = network_maps
    m = maps[0][0]
    batch = np.stack([m, m[:, ::-1, :], np.zeros_like(m)])
    labels, seeds = maps_to_labels_torch(batch[:, 0], batch[:, 1], diameter=14.0, thresholds=thresholds)
    assert labels.shape == (3,) + m.shape[1:]
    for i in range(3):
        alone, alone_seeds = maps_to_labels_torch(
            batch[i, 0], batch[i, 1], diameter=14.0, thresholds=thresholds
        )
        assert np.array_equal(labels[i].numpy(), alone[0].numpy())
        np.testing.assert_allclose(seeds[i], alone_seeds[0])
    assert not labels[2].any() and seeds[2].shape == (0, 2)


def test_thresholds_apply_alike(network_maps):
    maps, thresholds = network_maps
    m, diameter = maps[1]
    for change in ({"h": 0.0}, {"h": 0.35}, {"seed": 0.8}, {"foreground": 0.3}, {"min_area": 0.6}):
        th = dict(thresholds, **change)
        host, dev, _, _ = both(m[0], m[1], diameter, th)
        assert matched_share(host, dev) >= MIN_MATCHED, change


def test_fill_holes_gives_each_hole_to_the_object_around_it():
    from cytotrail.segment.postprocess_torch import _fill_holes

    labels = np.zeros((40, 40), np.int32)
    labels[2:12, 2:12] = 1
    labels[5:8, 5:8] = 0
    labels[20:30, 5:15] = 2
    labels[20:30, 15:25] = 3
    labels[24:26, 13:17] = 0
    labels[0:4, 30:40] = 4
    labels[3, 33:37] = 0
    out = _fill_holes(torch.as_tensor(labels)[None])[0].numpy()
    assert (out[5:8, 5:8] == 1).all()
    assert (out[24:26, 13:15] == 2).all() and (out[24:26, 15:17] == 3).all()
    assert (out[3, 33:37] == 0).all()
    assert np.array_equal(out[labels > 0], labels[labels > 0])


# --------------------------------------------------------------------------------------
# bad input: the same behaviour on both paths


@pytest.mark.parametrize("case", ["1x1", "zeros", "nan", "ones", "int32", "float64"])
def test_odd_maps_behave_alike(case):
    rng = np.random.default_rng(3)
    fg, centre = random_maps(rng, (48, 40), smooth=2.5)
    fg, centre = {
        "1x1": (np.ones((1, 1), np.float32), np.ones((1, 1), np.float32)),
        "zeros": (np.zeros((16, 16), np.float32),) * 2,
        "nan": (np.full((16, 16), np.nan, np.float32),) * 2,
        "ones": (np.ones((16, 16), np.float32),) * 2,
        "int32": ((fg > 0.5).astype(np.int32), (centre > 0.4).astype(np.int32)),
        "float64": (fg.astype(np.float64), centre.astype(np.float64)),
    }[case]
    host, dev, host_seeds, dev_seeds = both(fg, centre, diameter=2.0 if case == "1x1" else 8.0)
    np.testing.assert_allclose(dev_seeds, host_seeds)
    if case == "int32":  # flat plateaus: the watershed's ties may go either way
        assert host.max() >= 5 and np.array_equal(host > 0, dev > 0)
        assert matched_share(host, dev) >= MIN_MATCHED
    else:
        assert np.array_equal(host, dev)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        maps_to_labels_torch(np.zeros((8, 8)), np.zeros((8, 9)), diameter=5.0)
    with pytest.raises(ValueError, match="shape"):
        maps_to_labels_torch(np.zeros((2, 2, 8, 8)), np.zeros((2, 2, 8, 8)), diameter=5.0)


@pytest.fixture
def torch_everywhere(monkeypatch):
    """segment() with maps turned into labels by the torch path, whatever the device."""
    import cytotrail.segment.tiled as tiled

    monkeypatch.setattr(tiled, "_postprocess_path", lambda postprocess, device: "torch")


@pytest.mark.parametrize("case", ["1x1", "zeros", "nan"])
def test_segment_rejects_or_empties_odd_frames_on_every_path(case, torch_everywhere):
    frame = {"1x1": np.ones((1, 1)), "zeros": np.zeros((32, 32)), "nan": np.full((32, 32), np.nan)}[case]
    if case == "zeros":
        assert not segment(frame, device="cpu", diameter_px=10.0).any()
        return
    with pytest.raises(InputError, match="too small" if case == "1x1" else "NaN"):
        segment(frame, device="cpu", diameter_px=10.0)


def test_segment_int32_and_float64_frames_alike_on_both_paths(monkeypatch):
    import cytotrail.segment.tiled as tiled

    data = make_timelapse(n_frames=2, shape=(96, 96), n_cells=14, seed=5)
    frames = data.image[:, 0]
    runs = {}
    for path in ("host", "torch"):
        monkeypatch.setattr(tiled, "_postprocess_path", lambda postprocess, device, p=path: p)
        for dtype in (np.int32, np.float64):
            runs[path, dtype] = segment(frames.astype(dtype), device="cpu", diameter_px=14.0)
    reference = runs["host", np.int32]
    assert reference.max() >= 8
    for key, labels in runs.items():
        assert labels.dtype == np.uint32
        assert np.array_equal(labels, reference), key


@pytest.mark.slow
def test_segment_unet_tiled_torch_path_equals_host_path():
    from cytotrail.segment.infer import segment_unet

    data = make_timelapse(n_frames=2, shape=(200, 180), n_cells=40, seed=12)
    frames = data.image[:, 0]
    host = segment_unet(frames, device="cpu", diameter_px=14.0, tile_size=160, postprocess="host")
    dev = segment_unet(frames, device="cpu", diameter_px=14.0, tile_size=160, postprocess="torch")
    assert host.max() >= 30
    for a, b in zip(host, dev):
        assert matched_share(a, b) >= MIN_MATCHED
    with pytest.raises(InputError, match="postprocess"):
        segment_unet(frames, device="cpu", diameter_px=14.0, postprocess="gpu")


def test_auto_picks_torch_beside_an_accelerator_and_numba_on_the_cpu():
    from cytotrail.segment.resources import _postprocess_path

    assert _postprocess_path("auto", torch.device("cpu")) == "host"
    assert _postprocess_path("auto", torch.device("cuda")) == "torch"
    assert _postprocess_path("auto", torch.device("mps")) == "torch"
    assert _postprocess_path("torch", torch.device("cpu")) == "torch"


# --------------------------------------------------------------------------------------
# real data and devices


@pytest.mark.slow
def test_dsb2018_val_maps_give_the_same_labels_and_ap():
    import pandas as pd
    import tifffile

    from cytotrail.segment.model import load_model
    from cytotrail.segment.tiled import _segment_maps_frame

    root = shared_data("nuclei", "dsb2018_fluo")
    table = pd.read_csv(root / "manifest.csv")
    ids = table.loc[table["split"] == "val", "id"].tolist()[:12]
    net, config, thresholds = load_model(None)
    ap_host, ap_dev, matched, objects = [], [], 0, 0
    for i in ids:
        image = tifffile.imread(root / "images" / f"{i}.tif")
        truth = tifffile.imread(root / "masks" / f"{i}.tif")
        m = _segment_maps_frame(
            image, net=net, config=config, device=torch.device("cpu"), diameter=18.0, normalized=False
        )
        host, dev, _, _ = both(m[0], m[1], 18.0, thresholds)
        n = int(host.max())
        matched += match_labels(host, dev, iou=MIN_IOU)["tp"] if n else 0
        objects += max(n, int(dev.max()))
        ap_host.append(average_precision(truth, host)[0.5])
        ap_dev.append(average_precision(truth, dev)[0.5])
    assert objects > 300
    assert matched / objects >= MIN_MATCHED
    assert abs(np.mean(ap_host) - np.mean(ap_dev)) <= 0.002


@pytest.mark.gpu
def test_cuda_gives_the_cpu_labels(network_maps):
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    maps, thresholds = network_maps
    for m, diameter in maps:
        cpu, cpu_seeds = maps_to_labels_torch(m[0], m[1], diameter=diameter, thresholds=thresholds)
        gpu, gpu_seeds = maps_to_labels_torch(
            m[0], m[1], diameter=diameter, thresholds=thresholds, device=torch.device("cuda")
        )
        assert gpu.device.type == "cuda"
        assert np.array_equal(cpu.numpy(), gpu.cpu().numpy())
        np.testing.assert_allclose(cpu_seeds[0], gpu_seeds[0])

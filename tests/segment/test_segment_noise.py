"""Noisy (ion-count) nuclear channels are smoothed before the network; fluorescence is not."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data
from scipy import ndimage as ndi

from cytotrail.segment.preprocess import (
    DENOISE_SIGMA,
    NOISE_TARGET,
    denoise_sigma,
    looks_like_counts,
    noise_ratio,
    percentiles,
)


def blobs(shape=(128, 128), n=12, radius=6.0, seed=0):
    """Bright discs on a dark field, slightly blurred (a clean fluorescence frame)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for y, x in rng.uniform(10, min(shape) - 10, size=(n, 2)):
        img[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = 1.0
    return ndi.gaussian_filter(img, 1.5)


@pytest.mark.parametrize("sd", [0.01, 0.05, 0.2])
def test_noise_ratio_recovers_white_noise(sd):
    rng = np.random.default_rng(1)
    frame = blobs() + rng.normal(0, sd, (128, 128))
    # against a range of 1: the estimate is the noise's SD, the blobs' edges add little
    assert noise_ratio(frame, 0.0, 1.0) == pytest.approx(sd, rel=0.15, abs=0.004)


def test_flat_and_tiny_frames_have_no_noise():
    assert noise_ratio(np.full((50, 50), 7.0), 7.0, 7.0) == 0.0
    assert noise_ratio(np.ones((2, 2)), 0.0, 1.0) == 0.0
    assert denoise_sigma(np.zeros((1, 1)), 0.0, 0.0) == 0.0


def test_clean_frames_are_left_and_shot_noise_is_smoothed():
    clean = blobs() * 1000 + 100
    assert denoise_sigma(clean, *percentiles(clean)) == 0.0
    counts = np.random.default_rng(2).poisson(blobs() * 3 + 0.2).astype(np.float32)  # a few ions a pixel
    assert noise_ratio(counts, *percentiles(counts)) > NOISE_TARGET and looks_like_counts(counts)
    assert denoise_sigma(counts, *percentiles(counts)) == DENOISE_SIGMA


def test_noisy_fluorescence_is_left_to_the_network():
    """Dense Gaussian-like noise above the target is no reason to smooth: the network copes
    (smoothing synthetic fluorescence at these levels cost up to 0.045 F1 on small nuclei)."""
    from cytotrail.synth import make_timelapse

    frame = make_timelapse(n_frames=1, shape=(128, 128), n_cells=15, seed=21, noise=4.0).image[0, 0]
    assert noise_ratio(frame, *percentiles(frame)) > NOISE_TARGET
    assert not looks_like_counts(frame)
    assert denoise_sigma(frame, *percentiles(frame)) == 0.0


def test_dsb2018_fluorescence_is_never_smoothed():
    import tifffile

    root = shared_data("nuclei", "dsb2018_fluo")
    ids = pd.read_csv(root / "manifest.csv")["id"]
    smoothed = [
        denoise_sigma(im, *percentiles(im)) > 0
        for im in (tifffile.imread(root / "images" / f"{i}.tif") for i in ids)
    ]
    assert not any(smoothed)  # 9 of the 535 are above the noise target, none is counts


def test_imc_nuclei_are_found_once_per_cell():
    """steinbock's IMC images (H3K27Ac): each of DeepCell's whole cells should hold one nucleus;
    without the smoothing 41.8 % did (267 nuclei for 404 cells), with it 54.2 % (310)."""
    from cytotrail import io
    from cytotrail.segment import segment

    folder = shared_data("multiplex", "steinbock-mock")
    names = pd.read_csv(folder / "panel.csv")["name"].tolist()
    one, cells, nuclei = 0, 0, 0
    for path in sorted((folder / "img").glob("*.tiff")):
        image, _ = io.read_image(path, axes="CYX", channel_names=names)
        found = segment(image[:, names.index("H3K27Ac")], device="cpu")[0]
        truth = io.read_labels(folder / "masks_deepcell" / path.name)[0]
        nuclei += int(found.max())
        for cell in np.unique(truth[truth > 0]):
            inside = np.unique(found[truth == cell])
            one += int(np.count_nonzero(inside) == 1)
            cells += 1
    assert one / cells > 0.50
    assert nuclei > 0.7 * cells


def test_the_smoothing_is_recorded_in_the_provenance():
    from cytotrail.segment import segment

    clean = (blobs((96, 96), n=8) * 1000 + 100).astype(np.float32)
    counts = np.random.default_rng(3).poisson(blobs((96, 96), n=8) * 3 + 0.2).astype(np.float32)
    for frame, expected in ((clean, 0), (counts, 1)):
        info = {}
        segment(np.stack([frame, frame]), device="cpu", diameter_px=12, info=info)
        assert info["frames_smoothed"] == 2 * expected
        assert info["smoothing_sigma_px"] == (DENOISE_SIGMA if expected else 0.0)


def test_nuclei_recorded_as_a_few_ions_are_found():
    """Synthetic nuclei with a known truth, Poisson-sampled at 5 ions a pixel at the brightest:
    F1@0.5 0.94 with the smoothing, 0.43 without (``benchmarks/bench_segment.py``)."""
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import f1_score
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=3, shape=(256, 256), n_cells=60, seed=11, noise=0.5)
    signal = data.image[:, 0].astype(np.float64)
    signal = np.clip(signal - np.percentile(signal, 1), 0, None)
    signal /= np.percentile(signal, 99)
    counts = np.random.default_rng(0).poisson(signal * 5 + 0.3).astype(np.float32)
    assert f1_score(data.labels, segment(counts, device="cpu"), iou=0.5) > 0.85


def test_counts_with_a_few_negative_pixels_still_look_like_counts():
    counts = np.random.default_rng(4).poisson(blobs() * 3 + 0.2).astype(np.float32)
    counts[::17, ::13] -= 0.3  # what a spillover compensation leaves
    assert looks_like_counts(counts)
    noise = np.random.default_rng(5).normal(0, 20, (128, 128))
    assert not looks_like_counts(blobs() * 1000 + 100 + noise)  # fluorescence over an offset
    assert not looks_like_counts((blobs() * 1000 + noise).astype(np.float32))  # background subtracted

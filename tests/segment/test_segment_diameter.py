"""Diameter estimates on tissue: irregular nuclei ~30 px across among many small bright specks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cytotrail.segment.diameter import estimate_diameter_otsu, typical_diameter
from cytotrail.segment.preprocess import equivalent_diameters


def tissue_frame(seed=0, shape=(384, 384), n_nuclei=70, diameter=33.0, n_specks=1500):
    """(uint16 image, int32 labels): irregular textured nuclei (long axis ~``diameter`` px, lobed
    outlines, uneven brightness) and ``n_specks`` bright specks of 2-5 px, as in a histone channel
    of a multiplexed tissue image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    img = np.zeros(shape, np.float32)
    k = 0
    for _ in range(n_nuclei * 20):
        if k == n_nuclei:
            break
        cy, cx = rng.uniform(20, shape[0] - 20), rng.uniform(20, shape[1] - 20)
        a = diameter / 2 * rng.uniform(0.8, 1.25)
        b = a * rng.uniform(0.55, 1.0)
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / a
        v = (-dx * np.sin(th) + dy * np.cos(th)) / b
        ang = np.arctan2(v, u)
        wobble = 1 + 0.12 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.08 * np.sin(5 * ang + rng.uniform(0, 6))
        inside = (u**2 + v**2) < wobble**2
        if (labels[inside] > 0).mean() > 0.05:
            continue
        k += 1
        inside &= labels == 0
        labels[inside] = k
        texture = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5)[inside]
        texture /= texture.std() + 1e-6
        img[inside] = rng.uniform(0.35, 1.0) * np.clip(1 + 0.25 * texture, 0.05, None)
    for _ in range(n_specks):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        speck = (yy - y) ** 2 + (xx - x) ** 2 <= rng.uniform(1.0, 2.5) ** 2
        img[speck] = np.maximum(img[speck], rng.uniform(0.8, 2.0))
    img = ndi.gaussian_filter(img, 1.0) + rng.normal(0.05, 0.03, shape).astype(np.float32)
    return (np.clip(img, 0, None) * 1000).astype(np.uint16), labels


@pytest.fixture(scope="module")
def tissue():
    image, labels = tissue_frame(0)
    return image, labels, float(np.median(equivalent_diameters(labels)))


def test_typical_diameter_sets_specks_aside():
    nuclei = np.random.default_rng(0).normal(30, 3, 60)
    specks = np.random.default_rng(1).uniform(2, 6, 600)  # ten times as many specks as nuclei
    assert np.median(np.concatenate([nuclei, specks])) < 6  # the plain median is a speck's size
    assert typical_diameter(np.concatenate([nuclei, specks])) == pytest.approx(np.median(nuclei), rel=0.02)
    assert typical_diameter(nuclei) == pytest.approx(np.median(nuclei))  # nothing to set aside
    assert typical_diameter([]) is None
    assert typical_diameter([12.0]) == 12.0


def test_otsu_estimate_holds_on_tissue(tissue):
    from cytotrail.segment.classical import estimate_diameter_classical

    image, _, truth = tissue
    assert 25 < truth < 31  # nuclei ~30 px across
    assert estimate_diameter_classical(image) < 0.8 * truth  # the whole-mask estimate is pulled down
    assert estimate_diameter_otsu(image) == pytest.approx(truth, rel=0.15)
    assert estimate_diameter_otsu(np.zeros((32, 32), np.uint8)) is None


@pytest.mark.slow
def test_unet_diameter_estimate_holds_on_tissue(tissue):
    import torch

    from cytotrail.segment.infer import estimate_diameter
    from cytotrail.segment.model import load_model

    image, _, truth = tissue
    net, config, thresholds = load_model(None, device="cpu")
    d = estimate_diameter(
        image[None], net=net, config=config, thresholds=thresholds, device=torch.device("cpu")
    )
    # 5.6 px (the specks' size) with a plain median over the network's objects and the
    # whole-mask Otsu start; the network still splits some irregular nuclei, hence the margin
    assert 0.75 * truth < d < 1.2 * truth

"""Training crops: drawing, augmentation, the torch ``Dataset`` and data-loader worker seeding.

Crops are drawn at a random scale so that nuclei are 10-32 px across (the model's
training diameter is 18 px; inference rescales images to that range), with flips,
90-degree rotations and intensity augmentation for images unlike the training set:
gamma, contrast/offset, background ramps, blur, saturation (clipped highlights), low bit
depth (few grey levels), Gaussian and shot noise. Crop ``i`` of a run is drawn from its
own random generator seeded by ``(seed, i)``, in ``torch.utils.data`` worker processes,
so the crops, and a run on the CPU, are the same for any number of workers and a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math

import numpy as np

from cytotrail.segment.train.defaults import DIAMETER_RANGE, TRAIN_DIAMETER

__all__ = ["CropDataset", "sample_weights"]


def _draw_crop(sample, rng, crop, diameter_range):
    """One augmented (image, fg, centre) crop of side ``crop``, float32 ndarray (3, crop, crop)."""
    import torch
    from torch.nn import functional as F

    d_native = sample.diameter if np.isfinite(sample.diameter) else TRAIN_DIAMETER
    target = math.exp(rng.uniform(math.log(diameter_range[0]), math.log(diameter_range[1])))
    scale = float(np.clip(target / d_native, 0.2, 5.0))
    side = max(8, int(round(crop / scale)))
    ny, nx = sample.image.shape
    y0 = int(rng.integers(0, max(1, ny - side + 1)))
    x0 = int(rng.integers(0, max(1, nx - side + 1)))
    win = np.stack(
        [
            sample.image[y0 : y0 + side, x0 : x0 + side],
            sample.fg[y0 : y0 + side, x0 : x0 + side].astype(np.float32),
            sample.centre[y0 : y0 + side, x0 : x0 + side],
        ]
    )
    if win.shape[1] < side or win.shape[2] < side:  # image smaller than the window: pad
        ph, pw = side - win.shape[1], side - win.shape[2]
        fill = float(np.percentile(win[0], 5))
        win = np.stack(
            [
                np.pad(win[0], ((0, ph), (0, pw)), constant_values=fill),
                np.pad(win[1], ((0, ph), (0, pw))),
                np.pad(win[2], ((0, ph), (0, pw))),
            ]
        )
    t = torch.from_numpy(np.ascontiguousarray(win))[None]
    with torch.no_grad():
        img = F.interpolate(
            t[:, :1], size=(crop, crop), mode="bilinear", align_corners=False, antialias=scale < 1
        )[0, 0].numpy()
        tgt = F.interpolate(t[:, 1:], size=(crop, crop), mode="bilinear", align_corners=False)[0].numpy()
    fg = (tgt[0] > 0.5).astype(np.float32)
    out = np.stack([img, fg, tgt[1] * fg])
    out = np.rot90(out, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    out = np.ascontiguousarray(out)
    out[0] = _augment_intensity(out[0], rng)
    return out


def _augment_intensity(img, rng):
    """Acquisition and display changes on a normalised (Y, X) crop (0 background, 1 bright nuclei).

    In the order a microscope would make them: defocus, clipped highlights (saturation),
    Gaussian and shot noise, few grey levels (low bit depth or a dim 8-bit image), then
    gamma, contrast/offset and a background ramp.
    """
    from scipy import ndimage as ndi

    img = img.astype(np.float32, copy=True)
    if rng.random() < 0.25:  # defocus
        img = ndi.gaussian_filter(img, rng.uniform(0.5, 2.0))
    if rng.random() < 0.15:  # saturation: highlights clipped, then the clip level is the new maximum
        level = rng.uniform(0.3, 0.9)
        img = np.minimum(img, level) / level
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(0, 0.08), size=img.shape).astype(np.float32)
    if rng.random() < 0.2:  # shot noise: variance grows with the signal
        img = img + (
            rng.normal(0, 1, size=img.shape) * np.sqrt(np.clip(img, 0, None)) * rng.uniform(0.02, 0.15)
        ).astype(np.float32)
    if rng.random() < 0.2:  # few grey levels between background and the brightest nuclei
        levels = float(2 ** rng.integers(3, 7))
        img = np.round(img * levels) / levels
    if rng.random() < 0.8:  # gamma on the positive part
        gamma = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        img = np.clip(img, 0, None) ** gamma
    img = img * rng.uniform(0.5, 1.5) + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.5:  # background ramp
        n = img.shape[-1]
        angle = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-0.5, 0.5, n, dtype=np.float32)
        img = img + rng.uniform(0, 0.6) * (math.cos(angle) * ramp[:, None] + math.sin(angle) * ramp[None, :])
    return img.astype(np.float32)


def _empty_crop(rng, crop):
    """A crop with no nucleus: flat background, noise, maybe a ramp (teaches 'nothing here')."""
    img = rng.normal(0, rng.uniform(0.02, 0.3), size=(crop, crop)).astype(np.float32)
    img = img + np.float32(rng.uniform(-0.1, 0.5))
    return np.concatenate([img[None], np.zeros((2, crop, crop), np.float32)])


def sample_weights(samples, synthetic_weight):
    """Drawing probabilities: synthetic samples (names ``synth...``) share ``synthetic_weight``."""
    is_synth = np.array([s.name.startswith("synth") for s in samples])
    weights = np.ones(len(samples))
    if is_synth.any() and (~is_synth).any():
        weights[is_synth] = synthetic_weight / is_synth.sum()
        weights[~is_synth] = (1 - synthetic_weight) / (~is_synth).sum()
    return weights / weights.sum()


class CropDataset:
    """Map-style dataset of augmented training crops: item ``i`` is crop ``i`` of the run.

    Crop ``i`` comes from ``numpy.random.default_rng((seed, i))`` alone, so it is the same
    whichever worker process draws it and however many there are.

    Parameters
    ----------
    samples : list of Sample
    weights : (n_samples,) ndarray
        Probability of drawing each sample.
    seed : int
    crop : int
        Crop side in px.
    diameter_range : (float, float)
        Nuclei are rescaled to a log-uniform diameter in this range.
    empty_fraction : float
        Share of crops with no nucleus (noise and background only).
    """

    def __init__(self, samples, weights, *, seed, crop, diameter_range=DIAMETER_RANGE, empty_fraction=0.03):
        self.samples, self.weights = samples, np.asarray(weights, float)
        self.seed, self.crop, self.diameter_range = int(seed), int(crop), tuple(diameter_range)
        self.empty_fraction = empty_fraction

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, int(i)))
        if rng.random() < self.empty_fraction:
            return _empty_crop(rng, self.crop)
        s = self.samples[int(rng.choice(len(self.samples), p=self.weights))]
        return _draw_crop(s, rng, self.crop, self.diameter_range)


def _seed_worker(worker_id):
    """Seed a data-loader worker's global generators from torch's per-worker seed."""
    import random

    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)

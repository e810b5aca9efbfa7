"""Training samples: image/mask folder pairs and generated synthetic frames.

Each sample is pre-processed once into (normalised image, foreground, centre-ness,
nucleus diameter); crops are drawn from them at random scales during training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytotrail.io import InputError
from cytotrail.segment.preprocess import centre_map, equivalent_diameters, normalize, percentiles

__all__ = ["Sample", "make_sample", "folder_samples", "synthetic_samples", "split_of"]

_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")


@dataclass
class Sample:
    """One training image: normalised (Y, X) float32 image, uint8 foreground, float32 centre-ness."""

    name: str
    image: np.ndarray
    fg: np.ndarray
    centre: np.ndarray
    labels: np.ndarray
    diameter: float


def make_sample(name, image, labels, *, lo=1.0, hi=99.8):
    """Pre-process one (Y, X) image and its (Y, X) label image into a :class:`Sample`."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise InputError(f"training pair {name}: image shape {image.shape} != labels shape {labels.shape}")
    p_lo, p_hi = percentiles(image, lo, hi)
    diams = equivalent_diameters(labels)
    diameter = float(np.median(diams)) if len(diams) else float("nan")
    return Sample(name=name, image=normalize(image, p_lo, p_hi), fg=(labels > 0).astype(np.uint8),
                  centre=centre_map(labels), labels=labels.astype(np.int32), diameter=diameter)


def _stem(path):
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def split_of(name, val_fraction=0.1):
    """Deterministic train/val split of a sample name (by sha1), used without a manifest."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def folder_samples(images_dir, labels_dir, *, split="train", manifest=None, val_fraction=0.1,
                   channel=0):
    """Load image/label pairs from two folders (matched by file name stem).

    Parameters
    ----------
    images_dir, labels_dir : str or Path
        Folders of TIFF images (YX, or CYX with ``channel``) and label images (YX).
    split : {"train", "val", "all"}
        Which pairs to return.
    manifest : DataFrame, optional
        Columns ``id`` (file stem) and ``split`` (train/val); without it the split is
        :func:`split_of` the stem.
    val_fraction : float
        Fraction of pairs in ``val`` when there is no manifest.

    Returns
    -------
    list of Sample
    """
    from cytotrail import io

    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise InputError(f"training folder not found: {d}")
    labels_by_stem = {_stem(p): p for p in labels_dir.iterdir() if p.name.lower().endswith(_SUFFIXES)}
    splits = None
    if manifest is not None:
        if not {"id", "split"} <= set(manifest.columns):
            raise InputError("training manifest needs columns id and split")
        splits = dict(zip(manifest["id"].astype(str), manifest["split"].astype(str)))
    samples = []
    for path in sorted(images_dir.iterdir()):
        if not path.name.lower().endswith(_SUFFIXES):
            continue
        stem = _stem(path)
        if stem not in labels_by_stem:
            continue
        which = splits.get(stem) if splits is not None else split_of(stem, val_fraction)
        if split != "all" and which != split:
            continue
        image, _ = io.read_image(path)
        labels = io.read_labels(labels_by_stem[stem])
        samples.append(make_sample(stem, image[0, channel], labels[0]))
    if not samples:
        raise InputError(f"no {split} image/label pairs found in {images_dir} and {labels_dir}")
    return samples


def synthetic_samples(n, *, seed, shape=(256, 256), frames=(0, 2)):
    """Synthetic frames from :func:`cytotrail.synth.make_timelapse` with varied conditions.

    Diameters 7-60 px (log-uniform), coverage 5-45 % of the frame (sparse to crowded),
    noise 0.2-2.5; seeds ``seed, seed + 1, ...`` (one timelapse each).
    """
    from cytotrail.synth import make_timelapse

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        diameter = float(np.exp(rng.uniform(np.log(7), np.log(60))))
        coverage = rng.uniform(0.05, 0.45)
        n_cells = max(1, int(coverage * shape[0] * shape[1] / (np.pi * diameter**2 / 4)))
        noise = float(rng.uniform(0.2, 2.5))
        data = make_timelapse(n_frames=max(frames) + 1, shape=shape, n_cells=n_cells, diameter=diameter,
                              noise=noise, motility=diameter / 8, seed=seed + i)
        for t in frames:
            samples.append(make_sample(f"synth{seed + i}_t{t}", data.image[t, 0], data.labels[t]))
    return samples

"""Training samples: image/mask folder pairs, acquisition families and synthetic frames.

Each sample is pre-processed once into (normalised image, foreground, centre-ness,
nucleus diameter); crops are drawn from them at random scales during training.

Acquisition families (:func:`acquisition_family`) group images that most likely come
from one instrument and protocol (same dtype, image size and intensity level), so that
whole families can be held out of training and model choices (:func:`held_out_families`):
a leave-family-out check of how a model does on images unlike those it learnt from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytotrail.io import InputError
from cytotrail.io.labels import check_instance_labels  # re-exported: training's check of its labels
from cytotrail.segment.preprocess import centre_map, equivalent_diameters, normalize, percentiles

__all__ = [
    "Sample",
    "make_sample",
    "folder_samples",
    "synthetic_samples",
    "split_of",
    "acquisition_family",
    "held_out_families",
    "check_instance_labels",
    "HOLD_OUT_FRACTION",
]

_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")

# leave-family-out: at most this fraction of the images is held out, whole families at a time
HOLD_OUT_FRACTION = 0.15
# intensity levels of a family: 99.8th percentile as a fraction of the dtype's full range
_LEVELS = ((200 / 255, "saturated"), (64 / 255, "bright"), (0.0, "dim"))


@dataclass
class Sample:
    """One training image: normalised (Y, X) float32 image, uint8 foreground, float32 centre-ness."""

    name: str
    image: np.ndarray
    fg: np.ndarray
    centre: np.ndarray
    labels: np.ndarray
    diameter: float
    family: str = ""
    split: str = ""


def make_sample(name, image, labels, *, lo=1.0, hi=99.8, family=""):
    """Pre-process one (Y, X) image and its (Y, X) label image into a :class:`Sample`."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise InputError(f"training pair {name}: image shape {image.shape} != labels shape {labels.shape}")
    p_lo, p_hi = percentiles(image, lo, hi)
    diams = equivalent_diameters(labels)
    diameter = float(np.median(diams)) if len(diams) else float("nan")
    return Sample(
        name=name,
        image=normalize(image, p_lo, p_hi),
        fg=(labels > 0).astype(np.uint8),
        centre=centre_map(labels),
        labels=labels.astype(np.int32),
        diameter=diameter,
        family=family or acquisition_family(image),
    )


def acquisition_family(image):
    """Acquisition family of a (Y, X) image: ``"<dtype>-<Y>x<X>-<level>"``.

    The level is ``saturated``, ``bright`` or ``dim`` by the 99.8th intensity percentile as
    a fraction of the dtype's full range (200/255 and 64/255 are the bounds); float images
    have level ``float``. Images of one instrument and protocol share dtype, size and
    exposure, so a family stands for an acquisition setting (a rule, not a hand list).

    Parameters
    ----------
    image : (Y, X) ndarray

    Returns
    -------
    str
    """
    image = np.asarray(image)
    ny, nx = image.shape[-2:]
    if np.issubdtype(image.dtype, np.integer):
        fraction = percentiles(image, 1.0, 99.8)[1] / float(np.iinfo(image.dtype).max)
        level = next(name for bound, name in _LEVELS if fraction >= bound)
    else:
        level = "float"
    return f"{image.dtype.name}-{ny}x{nx}-{level}"


def _family_rank(family):
    return int(hashlib.sha1(family.encode()).hexdigest()[:8], 16)


def held_out_families(families, fraction=HOLD_OUT_FRACTION):
    """Families to hold out: whole families, taken in sha1 order while they fit in ``fraction``.

    Families are visited in the order of the sha1 of their names (arbitrary but fixed,
    blind to any score); each is held out if the held-out images then stay within
    ``fraction`` of all images, else skipped. No choice uses how a model does on them.

    Parameters
    ----------
    families : sequence of str
        The family of every image (one entry per image).
    fraction : float
        Largest share of the images to hold out (0 holds out nothing).

    Returns
    -------
    set of str
    """
    from collections import Counter

    if not 0 <= fraction < 1:
        raise InputError(f"hold-out fraction must be in [0, 1), got {fraction!r}")
    counts = Counter(families)
    budget = fraction * sum(counts.values())
    held, n = set(), 0
    for family in sorted(counts, key=_family_rank):
        if n + counts[family] <= budget:
            held.add(family)
            n += counts[family]
    return held


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


def folder_samples(
    images_dir, labels_dir, *, split="train", manifest=None, val_fraction=0.1, channel=0, hold_out=0.0
):
    """Load image/label pairs from two folders (matched by file name stem).

    Every image needs a label image of the same name, and label images must be instance
    labels (not binary masks); both are checked, naming the file, before any pair is
    pre-processed.

    Parameters
    ----------
    images_dir, labels_dir : str or Path
        Folders of TIFF images (YX, or CYX with ``channel``) and label images (YX).
    split : {"train", "val", "held_out", "all"}
        Which pairs to return; ``held_out`` is every pair of the held-out families (of
        either split), which ``train`` and ``val`` then leave out.
    manifest : DataFrame, optional
        Columns ``id`` (file stem) and ``split`` (train/val); without it the split is
        :func:`split_of` the stem.
    val_fraction : float
        Fraction of pairs in ``val`` when there is no manifest.
    hold_out : float
        Largest share of the images whose acquisition families are held out
        (:func:`held_out_families`); 0 holds out nothing.

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
    images = [p for p in sorted(images_dir.iterdir()) if p.name.lower().endswith(_SUFFIXES)]
    if not images:
        raise InputError(f"no TIFF images in training folder {images_dir}")
    missing = [p for p in images if _stem(p) not in labels_by_stem]
    if missing:
        raise InputError(
            f"{missing[0]}: no label image of the same name in {labels_dir} "
            f"({len(missing)} of {len(images)} images have none)"
        )
    splits = None
    if manifest is not None:
        if not {"id", "split"} <= set(manifest.columns):
            raise InputError("training manifest needs columns id and split")
        splits = dict(zip(manifest["id"].astype(str), manifest["split"].astype(str)))
    pairs = []
    for path in images:
        stem = _stem(path)
        image = io.read_image(path)[0][0, channel]
        labels = io.read_labels(labels_by_stem[stem])[0]
        which = splits.get(stem) if splits is not None else split_of(stem, val_fraction)
        pairs.append((stem, image, labels, which, acquisition_family(image)))
    held = held_out_families([p[4] for p in pairs], hold_out) if hold_out else set()
    samples = []
    for stem, image, labels, which, family in pairs:
        which = "held_out" if family in held else which
        if split == "all" or which == split:
            sample = make_sample(stem, image, labels, family=family)
            sample.split = which
            samples.append(sample)
    if not samples:
        raise InputError(
            f"no {split} image/label pairs left in {images_dir} and {labels_dir} after the "
            f"split{' and the held-out families' if held else ''}"
        )
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
        data = make_timelapse(
            n_frames=max(frames) + 1,
            shape=shape,
            n_cells=n_cells,
            diameter=diameter,
            noise=noise,
            motility=diameter / 8,
            seed=seed + i,
        )
        for t in frames:
            samples.append(make_sample(f"synth{seed + i}_t{t}", data.image[t, 0], data.labels[t]))
    return samples

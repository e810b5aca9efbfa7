"""Synthetic timelapses of nuclei with multiplexed markers and full ground truth.

The same generator feeds the demo workflow, the tests and the benchmarks. A simulated
population of nuclei moves (persistent random walk plus a common drift), grows, divides
into two daughters that keep a link to their mother, drifts in and out of the field of
view and pushes against its neighbours so that nuclei touch. Each nucleus belongs to one
of K cell types; each type carries a distinct marker profile, rendered with nuclear,
cytoplasmic or membrane patterns. Images are blurred, put on a background gradient and
degraded with Poisson-Gaussian noise.

Examples
--------
>>> from cytotrail.synth import make_timelapse
>>> data = make_timelapse(n_frames=5, shape=(128, 128), n_cells=12, seed=1)
>>> data.image.shape[:2], data.channel_names[0]
((5, 6), 'DNA')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = [
    "Marker",
    "Timelapse",
    "default_panel",
    "make_timelapse",
    "tissue_frame",
    "true_cells",
    "write_dataset",
]

NUCLEAR_CHANNEL = "DNA"
CELL_GROW_PX = 4  # a cell is its nucleus grown by this many pixels (without crossing neighbours)


@dataclass(frozen=True)
class Marker:
    """A marker channel: its name, where it sits in the cell, and which type carries it."""

    name: str
    pattern: str  # "nuclear", "cytoplasm" or "membrane"
    cell_type: str | None  # the type that expresses it highly; None for a type-independent marker


DEMO_PANEL = (
    Marker("CD3", "membrane", "T_cell"),
    Marker("CD20", "membrane", "B_cell"),
    Marker("CD68", "cytoplasm", "Macrophage"),
    Marker("PanCK", "cytoplasm", "Tumor"),
    Marker("Ki67", "nuclear", None),
)


def default_panel(n_types=4):
    """Marker panel for ``n_types`` cell types: one defining marker each plus Ki67.

    The first four are the demo's (CD3, CD20, CD68, PanCK); more types get markers
    ``M5, M6, ...`` with patterns cycling through membrane, cytoplasm and nuclear.
    """
    if n_types < 1:
        raise ValueError("n_types must be at least 1")
    typed = list(DEMO_PANEL[:4])[:n_types]
    patterns = ("membrane", "cytoplasm", "nuclear")
    for k in range(len(typed), n_types):
        typed.append(Marker(f"M{k + 1}", patterns[k % 3], f"type_{k + 1}"))
    return tuple(typed) + (DEMO_PANEL[4],)


def cell_type_signatures(panel):
    """Marker signatures (``{type: {"positive": [...], "negative": [...]}}``) of a panel."""
    typed = [m for m in panel if m.cell_type is not None]
    return {
        m.cell_type: {
            "positive": [m.name],
            "negative": [o.name for o in typed if o.name != m.name],
        }
        for m in typed
    }


@dataclass
class Timelapse:
    """A synthetic timelapse and its ground truth.

    Attributes
    ----------
    image : (T, C, Y, X) uint16 ndarray
        Channel 0 is the nuclear stain; the others are markers.
    channel_names : list of str
    labels : (T, Y, X) uint32 ndarray
        True nuclei; the label of a nucleus is its ``track_id``.
    tracks : DataFrame
        One row per nucleus per frame: ``frame, label, track_id, parent_track_id,
        lineage_id, y, x, area, cell_type``. ``parent_track_id`` is <NA> for no parent.
    panel : tuple of Marker
    signatures : dict
        Cell-type marker signatures, in the config's format.
    cells : (T, Y, X) uint32 ndarray or None
        True whole cells (the extent the cytoplasm and membrane markers are drawn in),
        labelled like their nuclei.
    """

    image: np.ndarray
    channel_names: list
    labels: np.ndarray
    tracks: pd.DataFrame
    panel: tuple
    signatures: dict = field(default_factory=dict)
    cells: np.ndarray | None = None

    @property
    def divisions(self):
        """DataFrame ``parent_track_id, track_id`` of every mother-daughter link."""
        first = self.tracks.sort_values("frame").groupby("track_id", sort=True).first()
        d = first[first["parent_track_id"].notna()].reset_index()
        return d[["parent_track_id", "track_id"]]


class _Population:
    """State of all simulated nuclei, as parallel arrays."""

    fields = (
        "y",
        "x",
        "vy",
        "vx",
        "a",
        "b",
        "theta",
        "bright",
        "age",
        "div_age",
        "track",
        "parent",
        "lineage",
        "ctype",
        "wobble",
    )

    def __init__(self):
        self.cols = {f: [] for f in self.fields}

    def __len__(self):
        return len(self.cols["y"])


def make_timelapse(
    *,
    n_frames=20,
    shape=(256, 256),
    n_cells=40,
    n_types=4,
    diameter=14.0,
    drift=(0.4, 0.6),
    motility=1.5,
    division_every=40,
    noise=1.0,
    panel=None,
    seed=0,
):
    """Simulate a timelapse of dividing, moving nuclei with multiplexed markers.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    shape : (int, int)
        Frame size (Y, X) in pixels.
    n_cells : int
        Nuclei in the field at the first frame (the density stays about constant).
    n_types : int
        Number of cell types K (ignored when ``panel`` is given).
    diameter : float
        Mean nucleus diameter in pixels.
    drift : (float, float)
        Common displacement (dy, dx) per frame in pixels.
    motility : float
        Standard deviation of each nucleus's own random step per frame, in pixels.
    division_every : float
        Mean cell-cycle length in frames.
    noise : float
        Scales the read noise and the background; 0 gives clean images.
    panel : sequence of Marker, optional
        Marker channels; default ``default_panel(n_types)``.
    seed : int
        Seed of the random generator: equal seeds give identical data.

    Returns
    -------
    Timelapse
    """
    rng = np.random.default_rng(seed)
    panel = tuple(panel) if panel is not None else default_panel(n_types)
    type_names = sorted(
        {m.cell_type for m in panel if m.cell_type is not None}, key=[m.cell_type for m in panel].index
    )
    if not type_names:
        type_names = ["cell"]
    ny, nx = shape
    margin = 2.0 * diameter
    canvas = (ny + 2 * margin, nx + 2 * margin)  # cells live here; the frame is its centre
    density = n_cells / (ny * nx)
    r0 = diameter / 2.0

    pop = _Population()
    next_id = [1]
    # per-track marker multipliers (cell-to-cell variation, inherited by daughters)
    marker_var = {}

    def spawn(y, x, *, parent=0, lineage=0, ctype=None, a=None, b=None, bright=None):
        tid = next_id[0]
        next_id[0] += 1
        size = r0 * rng.lognormal(0.0, 0.15) if a is None else a
        ecc = rng.uniform(0.7, 1.0)
        c = pop.cols
        c["y"].append(y)
        c["x"].append(x)
        c["vy"].append(rng.normal(0, motility))
        c["vx"].append(rng.normal(0, motility))
        c["a"].append(size)
        c["b"].append(size * ecc if b is None else b)
        c["theta"].append(rng.uniform(0, np.pi))
        c["bright"].append(rng.lognormal(0.0, 0.35) if bright is None else bright)
        c["age"].append(0 if parent else int(rng.integers(0, division_every)))
        c["div_age"].append(max(4, int(rng.normal(division_every, division_every * 0.2))))
        c["track"].append(tid)
        c["parent"].append(parent)
        c["lineage"].append(lineage or tid)
        c["ctype"].append(int(rng.integers(len(type_names))) if ctype is None else ctype)
        c["wobble"].append(rng.normal(0, 0.06, size=(3, 2)))
        base = marker_var.get(parent)
        var = rng.lognormal(0.0, 0.25, size=len(panel))
        ki67 = rng.random() < 0.3
        if base is not None:  # daughters resemble their mother
            var = base * rng.lognormal(0.0, 0.08, size=len(panel))
        else:
            var[-1] = 1.0 if ki67 else 0.1
        marker_var[tid] = var
        return tid

    for _ in range(rng.poisson(density * canvas[0] * canvas[1])):
        spawn(rng.uniform(0, canvas[0]), rng.uniform(0, canvas[1]))

    rows = []
    labels = np.zeros((n_frames, ny, nx), np.uint32)
    for t in range(n_frames):
        if t > 0:
            _step(
                pop,
                rng,
                spawn,
                drift=drift,
                motility=motility,
                canvas=canvas,
                density=density,
                r0=r0,
                max_cells=int(2.5 * density * canvas[0] * canvas[1]),
            )
        _resolve_overlaps(pop, r0)
        labels[t] = _render_labels(pop, shape, margin)
        rows.extend(_frame_rows(pop, labels[t], t, margin, type_names))

    tracks = pd.DataFrame(
        rows,
        columns=[
            "frame",
            "label",
            "track_id",
            "parent_track_id",
            "lineage_id",
            "y",
            "x",
            "area",
            "cell_type",
        ],
    )
    # parents that never showed up in the frame are not parents in the ground truth
    parent = tracks["parent_track_id"]
    tracks["parent_track_id"] = parent.where(parent.isin(tracks["track_id"])).astype("Int64")
    image = _render_image(labels, tracks, panel, marker_var, type_names, pop, rng, noise)
    names = [NUCLEAR_CHANNEL] + [m.name for m in panel]
    return Timelapse(
        image=image,
        channel_names=names,
        labels=labels,
        tracks=tracks,
        panel=panel,
        signatures=cell_type_signatures(panel),
        cells=true_cells(labels),
    )


def true_cells(labels):
    """True whole cells of nucleus labels: each nucleus grown by ``CELL_GROW_PX`` pixels.

    Parameters
    ----------
    labels : (T, Y, X) int ndarray

    Returns
    -------
    (T, Y, X) ndarray, same dtype
    """
    from skimage.segmentation import expand_labels

    return np.stack([expand_labels(lab, distance=CELL_GROW_PX) for lab in labels])


def _step(pop, rng, spawn, *, drift, motility, canvas, density, r0, max_cells):
    c = {k: np.asarray(v, dtype=object if k == "wobble" else float) for k, v in pop.cols.items()}
    n = len(pop)
    # persistent random walk
    c["vy"] = 0.6 * c["vy"] + rng.normal(0, motility, n)
    c["vx"] = 0.6 * c["vx"] + rng.normal(0, motility, n)
    c["y"] = c["y"] + drift[0] + c["vy"]
    c["x"] = c["x"] + drift[1] + c["vx"]
    c["theta"] = c["theta"] + rng.normal(0, 0.1, n)
    c["age"] = c["age"] + 1
    c["a"] = np.minimum(c["a"] * 1.01, r0 * 1.5)
    c["b"] = np.minimum(c["b"] * 1.01, r0 * 1.5)
    inside = (c["y"] > -r0) & (c["y"] < canvas[0] + r0) & (c["x"] > -r0) & (c["x"] < canvas[1] + r0)
    dividing = (c["age"] >= c["div_age"]) & inside
    room = max(0, max_cells - n)
    if dividing.sum() > room:  # crowded: a random few divide, the others skip a cycle (contact inhibition)
        due = np.flatnonzero(dividing)
        waiting = rng.choice(due, size=len(due) - room, replace=False)
        dividing[waiting] = False
        c["age"][waiting] = 0
    keep = inside & ~dividing
    for k in pop.cols:
        pop.cols[k] = [v for v, kept in zip(c[k], keep) if kept]
    for i in np.flatnonzero(dividing):
        offset = 0.55 * c["a"][i]
        dy, dx = offset * np.sin(c["theta"][i]), offset * np.cos(c["theta"][i])
        for sign in (1, -1):
            spawn(
                c["y"][i] + sign * dy,
                c["x"][i] + sign * dx,
                parent=int(c["track"][i]),
                lineage=int(c["lineage"][i]),
                ctype=int(c["ctype"][i]),
                a=c["a"][i] * 0.72,
                b=c["b"][i] * 0.72,
                bright=c["bright"][i],
            )
    # new cells wander in: keep the density about constant
    deficit = density * canvas[0] * canvas[1] - len(pop)
    for _ in range(rng.poisson(max(deficit, 0) * 0.3)):
        edge = rng.integers(4)
        y = rng.uniform(0, canvas[0]) if edge < 2 else (0.0 if edge == 2 else canvas[0])
        x = rng.uniform(0, canvas[1]) if edge >= 2 else (0.0 if edge == 0 else canvas[1])
        spawn(y, x)


def _resolve_overlaps(pop, r0, iterations=6):
    """Push nuclei apart until they at most touch, with slight overlap allowed."""
    from scipy.spatial import cKDTree

    if len(pop) < 2:
        return
    y = np.asarray(pop.cols["y"], float)
    x = np.asarray(pop.cols["x"], float)
    r = np.sqrt(np.asarray(pop.cols["a"]) * np.asarray(pop.cols["b"]))
    for _ in range(iterations):
        pts = np.column_stack([y, x])
        pairs = cKDTree(pts).query_pairs(3.2 * r0, output_type="ndarray")
        if len(pairs) == 0:
            break
        i, j = pairs[:, 0], pairs[:, 1]
        d = pts[j] - pts[i]
        dist = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-6)
        overlap = 0.92 * (r[i] + r[j]) - dist
        mask = overlap > 0
        if not mask.any():
            break
        push = (overlap[mask] / 2 / dist[mask])[:, None] * d[mask]
        delta = np.zeros_like(pts)
        np.add.at(delta, i[mask], -push)
        np.add.at(delta, j[mask], push)
        y, x = y + delta[:, 0], x + delta[:, 1]
    pop.cols["y"], pop.cols["x"] = list(y), list(x)


def _render_labels(pop, shape, margin):
    """Paint every nucleus as a wobbly ellipse; touching pixels go to the nearer centre."""
    ny, nx = shape
    labels = np.zeros(shape, np.uint32)
    best = np.full(shape, 1.0)
    c = pop.cols
    for i in range(len(pop)):
        cy, cx = c["y"][i] - margin, c["x"][i] - margin
        a, b, th = c["a"][i], c["b"][i], c["theta"][i]
        rmax = 1.3 * max(a, b)
        y0, y1 = max(int(cy - rmax), 0), min(int(cy + rmax) + 2, ny)
        x0, x1 = max(int(cx - rmax), 0), min(int(cx + rmax) + 2, nx)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        phi = np.arctan2(v, u)
        w = c["wobble"][i]
        radius = 1.0 + sum(
            w[k, 0] * np.cos((k + 2) * phi) + w[k, 1] * np.sin((k + 2) * phi) for k in range(3)
        )
        d = np.sqrt((u / a) ** 2 + (v / b) ** 2) / radius
        win_best = best[y0:y1, x0:x1]
        win = d < win_best
        win_best[win] = d[win]
        labels[y0:y1, x0:x1][win] = c["track"][i]
    # drop slivers at the frame border: too small to be seen as nuclei
    ids, counts = np.unique(labels, return_counts=True)
    small = ids[(counts < 12) & (ids > 0)]
    if len(small):
        labels[np.isin(labels, small)] = 0
    return labels


def _frame_rows(pop, lab, t, margin, type_names):
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return []
    index = {tid: i for i, tid in enumerate(pop.cols["track"])}
    area = ndi.sum_labels(np.ones_like(lab), lab, ids)
    com = ndi.center_of_mass(np.ones_like(lab), lab, ids)
    rows = []
    for tid, ar, (cy, cx) in zip(ids, area, com):
        i = index[int(tid)]
        rows.append(
            (
                t,
                int(tid),
                int(tid),
                int(pop.cols["parent"][i]),
                int(pop.cols["lineage"][i]),
                float(cy),
                float(cx),
                int(ar),
                type_names[int(pop.cols["ctype"][i])],
            )
        )
    return rows


def _render_image(labels, tracks, panel, marker_var, type_names, pop, rng, noise):
    from skimage.segmentation import expand_labels, find_boundaries

    n_frames, ny, nx = labels.shape
    n_ch = 1 + len(panel)
    image = np.zeros((n_frames, n_ch, ny, nx), np.float32)
    max_id = int(labels.max()) + 1
    bright = np.zeros(max_id)
    level = np.zeros((max_id, len(panel)))
    per_track = tracks.drop_duplicates("track_id").set_index("track_id")
    bright_by_track = dict(zip(pop.cols["track"], pop.cols["bright"]))
    for tid, row in per_track.iterrows():
        if tid >= max_id:
            continue
        bright[tid] = bright_by_track.get(tid, 1.0)
        typed = np.array([m.cell_type == row["cell_type"] for m in panel], float)
        base = np.where(typed > 0, 1.0, 0.06)
        base[[m.cell_type is None for m in panel]] = 1.0
        level[tid] = base * marker_var[tid]

    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    texture_scale = 2.0
    for t in range(n_frames):
        lab = labels[t]
        # nuclear stain: domed nuclei with chromatin texture
        dist = ndi.distance_transform_edt(lab > 0)
        peak = ndi.maximum(dist, lab, index=np.arange(max_id))
        peak = np.asarray(peak)
        dome = np.where(lab > 0, 0.55 + 0.45 * np.clip(dist / np.maximum(peak[lab], 1), 0, 1), 0)
        texture = 1 + 0.15 * ndi.gaussian_filter(rng.normal(size=(ny, nx)), texture_scale) * 4
        image[t, 0] = 900 * bright[lab] * dome * texture
        cells = expand_labels(lab, distance=CELL_GROW_PX)
        cyto = (cells > 0) & (lab == 0)
        membrane = find_boundaries(cells, mode="inner") & (cells > 0)
        membrane = ndi.binary_dilation(membrane) & (cells > 0)
        for m, marker in enumerate(panel):
            lut = 500 * level[:, m]
            if marker.pattern == "nuclear":
                sig = lut[lab] * (lab > 0)
            elif marker.pattern == "cytoplasm":
                sig = lut[cells] * (cyto + 0.25 * (lab > 0))
            else:  # membrane
                sig = lut[cells] * (membrane + 0.1 * (cells > 0))
            image[t, 1 + m] = sig
        # optics: blur, then background gradient and Poisson-Gaussian noise
        image[t] = ndi.gaussian_filter(image[t], sigma=(0, 1.2, 1.2))
        gradient = 60 + 120 * (0.6 * yy + 0.4 * xx)
        image[t] += noise * gradient[np.newaxis].astype(np.float32)
    if noise > 0:
        image = rng.poisson(np.clip(image, 0, None)).astype(np.float32)
        image += rng.normal(0, 8 * noise, size=image.shape).astype(np.float32)
    return np.clip(image + 100 * noise, 0, 65535).astype(np.uint16)


def write_dataset(directory, data, *, sample):
    """Write a Timelapse as ``{sample}.ome.tif`` plus its ground truth beside it.

    Files written in ``directory``: ``{sample}.ome.tif`` (TCYX, channel names in the OME
    metadata), ``truth/{sample}_labels.tif`` (T, Y, X), ``truth/{sample}_tracks.csv`` and,
    when the data has them, the true whole cells ``truth/{sample}_cells.tif`` (T, Y, X).
    """
    from cytotrail import io

    directory = Path(directory)
    io.write_labels(directory / "truth" / f"{sample}_labels.tif", data.labels)
    io.write_table(directory / "truth" / f"{sample}_tracks.csv", data.tracks)
    if data.cells is not None:
        io.write_labels(directory / "truth" / f"{sample}_cells.tif", data.cells)
    # the image last: it is the file the workflow asks for
    io.write_image(directory / f"{sample}.ome.tif", data.image, channel_names=data.channel_names)


def tissue_frame(shape=(384, 384), *, n_nuclei=70, diameter_px=33.0, n_specks=1500, background=0.3, seed=0):
    """One frame of a tissue's nuclear channel with its true nuclei, for diameter estimates.

    Irregular nuclei (ellipses of axis ratio 0.55-1 with lobed outlines, long axis about
    ``diameter_px``, uneven brightness and a grainy chromatin texture) packed side by side,
    small bright specks of 2-5 px among them, as in a histone channel of a multiplexed ion
    beam or imaging mass cytometry image, on an uneven background (a smooth haze plus a
    left-to-right ramp, up to ``background`` x the brightest nucleus), blurred (1 px) and noisy.

    Parameters
    ----------
    shape : (int, int)
        Frame size (Y, X) in pixels.
    n_nuclei : int
        Nuclei placed (fewer when the frame is full: a nucleus may overlap others by 5 %).
    diameter_px : float
        Typical long axis of a nucleus in pixels (the median equivalent diameter is ~0.85 x).
    n_specks : int
        Bright specks (radius 1-2.5 px), anywhere.
    background : float
        Height of the uneven background, as a fraction of a bright nucleus (0: flat).
    seed : int

    Returns
    -------
    image : (Y, X) uint16 ndarray
    labels : (Y, X) int32 ndarray
        The nuclei, numbered 1..n (the specks are not nuclei).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    labels = np.zeros(shape, np.int32)
    img = np.zeros(shape, np.float32)
    texture = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5)
    texture /= texture.std() + 1e-6
    reach = int(np.ceil(diameter_px * 1.25 * 1.2 / 2)) + 1  # longest semi-axis with its lobes
    k = 0
    for _ in range(n_nuclei * 20):
        if k == n_nuclei:
            break
        cy, cx = rng.uniform(20, ny - 20), rng.uniform(20, nx - 20)
        a = diameter_px / 2 * rng.uniform(0.8, 1.25)
        b = a * rng.uniform(0.55, 1.0)
        th = rng.uniform(0, np.pi)
        phase3, phase5, bright = rng.uniform(0, 6), rng.uniform(0, 6), rng.uniform(0.35, 1.0)
        y0, y1 = max(0, int(cy) - reach), min(ny, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(nx, int(cx) + reach + 1)
        dy, dx = np.mgrid[y0:y1, x0:x1]
        dy, dx = dy - cy, dx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / a
        v = (-dx * np.sin(th) + dy * np.cos(th)) / b
        ang = np.arctan2(v, u)
        wobble = 1 + 0.12 * np.sin(3 * ang + phase3) + 0.08 * np.sin(5 * ang + phase5)
        inside = (u**2 + v**2) < wobble**2
        window = labels[y0:y1, x0:x1]
        if not inside.any() or (window[inside] > 0).mean() > 0.05:
            continue
        k += 1
        inside &= window == 0
        window[inside] = k
        grain = texture[y0:y1, x0:x1][inside]
        img[y0:y1, x0:x1][inside] = bright * np.clip(1 + 0.25 * grain, 0.05, None)
    for _ in range(n_specks):
        y, x, r = rng.integers(0, ny), rng.integers(0, nx), rng.uniform(1.0, 2.5)
        y0, x0 = max(0, y - 3), max(0, x - 3)
        dy, dx = np.mgrid[y0 : min(ny, y + 4), x0 : min(nx, x + 4)]
        speck = (dy - y) ** 2 + (dx - x) ** 2 <= r**2
        window = img[y0 : y0 + speck.shape[0], x0 : x0 + speck.shape[1]]
        window[speck] = np.maximum(window[speck], rng.uniform(0.8, 2.0))
    haze = ndi.gaussian_filter(rng.normal(0, 1, shape), max(shape) / 6)
    haze = (haze - haze.min()) / (np.ptp(haze) + 1e-9)
    ramp = np.broadcast_to(np.linspace(0, 1, nx), shape)
    img = ndi.gaussian_filter(img, 1.0) + (background * (0.5 * haze + 0.5 * ramp)).astype(np.float32)
    img += rng.normal(0.05, 0.03, shape).astype(np.float32)
    return (np.clip(img, 0, None) * 1000).astype(np.uint16), labels

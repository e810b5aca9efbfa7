"""The public ``track`` function: detections table in, the same table with track columns out."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from cytotrail.checks import number, whole_number
from cytotrail.deprecations import REMOVED_IN, renamed_keywords
from cytotrail.io import InputError
from cytotrail.track.calibrate import (
    MAX_STEP_TO_SPACING,
    WIDE_DIVISION_SCALES,
    birth_death_costs,
    calibrate_motion,
    estimate_miss_rate,
    fit_division_scales,
    gap_cost,
)
from cytotrail.track.costs import DEFAULT_DIVISION_SCALES, CostModel
from cytotrail.track.link import OUTPUT_COLUMNS, estimate_drift, link_frames, validate_detections

__all__ = ["track"]

CALIBRATION_DETECTIONS = 50_000  # detections the division scales are fitted on (whole frames)


@renamed_keywords(search_range="search_range_px")
def track(
    detections,
    *,
    search_range_px=None,
    memory=2,
    divisions=True,
    min_length=1,
    predict=True,
    pixel_size_um=None,
    image_shape=None,
    link_strategy="auto",
    division_scales=None,
):
    """Link detections across frames into tracks, with divisions and lineages.

    Parameters
    ----------
    detections : DataFrame
        One row per object per frame with columns ``frame`` (whole numbers >= 0), ``y``,
        ``x`` (px). Optional cues: ``area`` (px^2), ``mean_intensity``, ``touches_border``,
        ``orientation`` and ``elongation`` (as from :func:`detections_from_labels`).
        Other columns are carried through. The table is not modified. A ``sample`` column
        with several values: each sample is tracked on its own (ids restart at 1).
    search_range_px : float, optional
        Largest displacement between consecutive frames after drift correction, in px.
        Default: fitted to the movie, the reach of a heavy-tailed (Student t) fit to the
        confident frame-to-frame steps that only 1 in 10^4 steps exceeds, at most the
        typical nearest-neighbour distance (see
        :func:`cytotrail.track.calibrate.calibrate_motion`). The old keyword
        ``search_range`` still works, with a FutureWarning, until cytotrail 0.2.
    memory : int
        Frames a cell may be missed and still be linked across the gap.
    divisions : bool
        Detect divisions: a mother ending (or shrinking by about half) where two daughters
        start; both daughters get new tracks with ``parent_track_id`` set.
    min_length : int
        Drop tracks with fewer detections, unless they take part in a division.
    predict : bool
        Motion model: estimate the common drift of the field per frame and link on
        drift-corrected positions, and predict each cell's next step from its last one
        (velocity persistence estimated from the data).
    pixel_size_um : float, optional
        Deprecated (FutureWarning; removed in cytotrail 0.2): when given, the search range
        is read in µm, as in earlier releases. Give ``search_range_px`` in pixels instead
        (µm / pixel size).
    image_shape : (int, int), optional
        Frame size (Y, X) in px for the border flag; default ``detections.attrs
        ["image_shape"]`` when present.
    link_strategy : str
        trackpy's subnet solver (``'auto'``, ``'hybrid'``, ``'numba'``, ``'recursive'``).
    division_scales : dict, optional
        Overrides of the fitted division scales (keys of
        :data:`cytotrail.track.costs.DEFAULT_DIVISION_SCALES`, e.g. ``{"division_cost": 4}``).

    Returns
    -------
    DataFrame
        ``detections`` in its row order and index, minus any dropped short tracks, with
        ``track_id`` (int >= 1), ``parent_track_id`` (Int64, <NA> when none),
        ``lineage_id`` (root ancestor's ``track_id``), ``generation`` (0 for roots),
        ``border_track`` (some detection of the track touches the frame border) and
        ``merged`` (the detection holds two cells that were segmented as one; the other
        cell's track skips those frames) added or replaced. ``attrs["track"]`` holds the
        parameters actually used and fitted (search range, step scale and tail, drift,
        missed-frame rate and cost, birth and death costs, division scales) and counts of
        divisions, split mothers, closed gaps and resolved merges. Equal inputs give equal
        outputs, also when the rows are shuffled or the field is translated.

    Notes
    -----
    1. Motion model (:func:`_calibrate_motion`): the common shift of the field between
       frames (median of mutual nearest-neighbour displacements, a 2-D vote after sudden
       jumps) is removed; the step scale and search range are fitted to the movie. Steps as
       long as the spacing (unrelated frames) stop with an ``InputError`` unless
       ``search_range_px`` is given.
    2. Frame-to-frame links: ``trackpy.link_iter`` on the drift-corrected positions with
       its adaptive search for crowded subnetworks (smaller ranges, never an exception).
    3. Calibration pass (:func:`_resolve_events`, on the first
       :data:`CALIBRATION_DETECTIONS` detections): steps 4-5 with wide division scales,
       from which the missed-frame rate (hence the cost of a gap), the rates of track
       starts and ends (hence birth and death costs) and the division scales (summed and
       sister area ratios, midpoint spread) are fitted. All fitted values are in
       ``attrs["track"]``.
    4. Division-aware relinking: around every track start or end, the links between the two
       frames are solved again as a small integer program (scipy's HiGHS MILP) that may
       also choose divisions and bridge gaps of up to ``memory`` frames; costs combine
       displacement from the predicted position, area ratios and, for divisions, the
       sisters' similarity, their still touching each other and their lying along the
       mother's long axis.
    5. Remaining gaps and divisions across missed frames, then merges (two cells segmented
       as one for a while) are resolved; see :mod:`cytotrail.track.divisions`.
    """
    memory, min_length = _check_options(memory, min_length, search_range_px, pixel_size_um)
    search_range = search_range_px  # in µm when the deprecated pixel_size_um is given
    frame, pos = validate_detections(detections)
    _warn_duplicated_rows(detections)
    if "sample" in detections.columns and detections["sample"].nunique(dropna=False) > 1:
        return _track_by_sample(
            detections,
            search_range_px=search_range,
            memory=memory,
            divisions=divisions,
            min_length=min_length,
            predict=predict,
            pixel_size_um=pixel_size_um,
            image_shape=image_shape,
            link_strategy=link_strategy,
            division_scales=division_scales,
        )
    # canonical order: by frame, then position; independent of the input's row order
    order = np.lexsort((pos[:, 1], pos[:, 0], frame))
    f, p = frame[order], pos[order]
    cues = {
        c: _optional(detections, c, order) for c in ("area", "mean_intensity", "orientation", "elongation")
    }
    touches = _touches_border(detections, image_shape, pos)
    border = None if touches is None else touches[order]

    pc, motion = _calibrate_motion(
        f, p, predict=predict, search_range=search_range, pixel_size_um=pixel_size_um
    )
    segment, strategy = link_frames(
        f, pc, search_range=motion["search_range_px"], memory=0, link_strategy=link_strategy
    )
    segment, parent_seg, merged, events = _resolve_events(
        f,
        pc,
        segment,
        cues,
        border,
        motion,
        memory=memory,
        divisions=divisions,
        predict=predict,
        division_scales=division_scales,
    )

    track_id, parent_id, keep = _number_tracks(f, segment, parent_seg, min_length)
    out = _output_table(
        detections, order, track_id, parent_id, merged, keep, _touches_border(detections, image_shape, pos)
    )
    out.attrs["track"] = {
        "memory": memory,
        "divisions": bool(divisions),
        "predict": bool(predict),
        "min_length": min_length,
        "link_strategy": strategy,
        **motion,
        **events,
        "n_detections": int(len(f)),
        "n_tracks": int(out["track_id"].nunique()),
    }
    return out


def _warn_duplicated_rows(detections):
    """Warn when whole rows repeat: a table concatenated twice links every cell to its copy.

    Identical rows stay tracked as separate objects (cells may coincide), so this is a
    warning, not an error; the message says how to drop them.
    """
    dup = detections.duplicated(keep="first")
    if dup.any():
        warnings.warn(
            f"{int(dup.sum())} of {len(detections)} detections repeat an earlier row exactly "
            "(every column equal); each is tracked as a cell of its own. If the table was "
            "concatenated twice, drop them first: detections.drop_duplicates()",
            UserWarning,
            stacklevel=3,
        )


def _check_options(memory, min_length, search_range_px, pixel_size_um):
    """Validate the scalar options; return ``memory, min_length`` as ints."""
    memory = whole_number(memory, "memory", minimum=0)
    min_length = whole_number(min_length, "min_length", minimum=1)
    if search_range_px is not None:
        number(search_range_px, "search_range_px", above=0)
    if pixel_size_um is not None:
        number(pixel_size_um, "pixel_size_um", above=0)
        warnings.warn(
            "track(): keyword `pixel_size_um` is deprecated: it reads the search range in µm; "
            f"it still works until cytotrail {REMOVED_IN}: give search_range_px in pixels "
            "(µm / pixel size)",
            FutureWarning,
            stacklevel=4,
        )
    return memory, min_length


def _calibrate_motion(f, p, *, predict, search_range, pixel_size_um):
    """Step 1: drift-corrected positions and the motion model (search range, step scale).

    Returns the corrected positions and the provenance dict of the motion model.
    """
    drift = None
    pc = p
    if predict and len(f):
        offset, drift = estimate_drift(f, p)
        pc = p - offset
    search_px, info = calibrate_motion(f, pc) if len(f) else (10.0, {})
    fitted = search_px
    if search_range is not None:
        search_px = float(search_range) / (pixel_size_um or 1.0)
    elif info.get("sigma", np.nan) > MAX_STEP_TO_SPACING * info.get("nn_distance", np.inf):
        # steps as long as the spacing: unrelated positions in successive frames (too few
        # frames per second for the motion, or shuffled frames); no linking can be right
        raise InputError(
            f"cells move about as far between frames as they are apart (step scale "
            f"{info['sigma']:.1f} px, nearest neighbours {info['nn_distance']:.1f} px apart): the "
            "frames look unrelated, e.g. the motion is far larger than the spacing or the frame "
            "numbers are wrong; pass search_range_px to link anyway"
        )
    nu = info.get("nu")
    return pc, {
        "search_range_px": float(search_px),
        "search_range_adaptive": search_range is None,
        "search_range_fitted_px": float(fitted),
        "displacement_sigma_px": _float(info.get("sigma")),
        "displacement_t_dof": None if nu is None or np.isnan(nu) else float(nu),
        "calibration_pairs": int(info.get("n_pairs", 0)),
        "calibration_iterations": int(info.get("iterations", 0)),
        "nn_distance_px": _float(info.get("nn_distance")),
        "drift_px_per_frame": (
            [float(drift["dy"].iloc[1:].mean()), float(drift["dx"].iloc[1:].mean())]
            if drift is not None and len(drift) > 1
            else [0.0, 0.0]
        ),
    }


def _resolve_events(f, pc, segment, cues, border, motion, *, memory, divisions, predict, division_scales):
    """Steps 2-4: divisions, gaps and merges on top of the frame-to-frame links.

    Divisions are found twice: first by :func:`_calibration_pass` with wide division scales
    on the first :data:`CALIBRATION_DETECTIONS` detections, which fits the event costs and
    division scales, then on the whole movie with the fitted ones (``division_scales``
    entries override the scales). A second calibration pass was tried (frames 0-7 of the
    epidermis movie): no gain.

    Returns segment ids, parent segments, the merged flags and the provenance dict.
    """
    from cytotrail.track import divisions as dv

    n = len(f)
    events = {
        "velocity_persistence": 0.0,
        "predicted_step_sigma_px": motion["displacement_sigma_px"],
        "division_scales": None,
        "miss_rate": None,
        "birth_cost": None,
        "death_cost": None,
        "p_birth": None,
        "p_death": None,
        "gap_cost_per_frame": None,
        "n_divisions": 0,
        "n_mothers_split": 0,
        "n_gaps_closed": 0,
        "n_merges": 0,
    }
    if n == 0:
        return segment, np.zeros(0, np.int64), np.zeros(0, bool), events
    succ, pred = dv.chains(f, segment)

    def model_for(k, fitted):
        s = succ[:k].copy()
        s[s >= k] = -1
        return CostModel(
            f[:k],
            pc[:k],
            _head(cues["area"], k),
            _head(cues["mean_intensity"], k),
            search_range=motion["search_range_px"],
            sigma=motion["displacement_sigma_px"],
            succ=s,
            persistence=predict,
            orientation=_head(cues["orientation"], k),
            elongation=_head(cues["elongation"], k),
            border=_head(border, k),
            scales=fitted["scales"],
            gap_cost=fitted["gap"],
            birth_cost=fitted["birth"],
            death_cost=fitted["death"],
        )

    k = _calibration_prefix(f)
    # without areas, sisters that still touch lie about one neighbour distance apart
    contact = (
        {"contact_distance_px": motion["nn_distance_px"]}
        if cues["area"] is None and motion["nn_distance_px"]
        else {}
    )
    wide = {"scales": {**WIDE_DIVISION_SCALES, **contact}, "gap": None, "birth": None, "death": None}
    fitted = _calibration_pass(model_for(k, wide), succ, pred, memory=memory, divisions=divisions)
    fitted["scales"].update(contact)
    fitted["scales"].update(division_scales or {})
    scales, gap, birth, death = fitted["scales"], fitted["gap"], fitted["birth"], fitted["death"]
    miss_rate, rates = fitted["miss_rate"], fitted["rates"]
    model = model_for(n, fitted)
    found = {}
    if divisions:
        succ_new, pred_new, found = dv.relink_divisions(model, succ, pred, memory=memory)
    else:
        succ_new, pred_new = succ, pred
    succ_new, pred_new, found, _ = dv.resolve_events(
        model, succ_new, pred_new, found, memory=memory, find_divisions=bool(divisions)
    )
    succ_new, pred_new, found, merged, n_merges = dv.resolve_merges(model, succ_new, pred_new, found)
    segment, parent_seg = dv.segments_from_links(succ_new, found)
    linked = np.flatnonzero(succ_new >= 0)
    events.update(
        {
            "velocity_persistence": float(model.phi),
            "predicted_step_sigma_px": float(model.sigma_pred),
            "division_scales": {k: _float(v) for k, v in scales.items()},
            "miss_rate": float(miss_rate),
            "birth_cost": float(birth),
            "death_cost": float(death),
            **rates,
            "gap_cost_per_frame": float(gap),
            "n_divisions": len(found),
            "n_mothers_split": int(sum(succ[m] >= 0 for m in found)),
            "n_gaps_closed": int((f[succ_new[linked]] - f[linked] > 1).sum()),
            "n_merges": int(n_merges),
        }
    )
    return segment, parent_seg, merged, events


def _calibration_pass(model, succ, pred, *, memory, divisions):
    """Fit the event costs and division scales on ``model``'s detections (a prefix).

    Divisions are found with ``model``'s division scales on the links between consecutive
    frames; the miss rate comes from those links, then gaps of one frame are closed
    (divisions across them included) at the cost that rate gives; the rates of starts and
    ends and the division scales come from the result.

    Returns
    -------
    dict
        ``scales, gap, birth, death, miss_rate, rates`` (as :class:`CostModel` takes them).
    """
    from cytotrail.track import divisions as dv

    k = len(model.frame)
    s, p = succ[:k].copy(), pred[:k].copy()
    s[s >= k] = -1
    p[p >= k] = -1
    found = {}
    if divisions:
        s, p, found = dv.relink_divisions(model, s, p, memory=0)
    miss_rate = estimate_miss_rate(model, s, p, found)
    gap = gap_cost(miss_rate)
    if memory:
        model.gap_cost = gap
        s, p, found, _ = dv.resolve_events(model, s, p, found, memory=1, find_divisions=bool(divisions))
    birth, death, rates = birth_death_costs(model, s, p, found)
    scales = fit_division_scales(model, found) if divisions else dict(DEFAULT_DIVISION_SCALES)
    return {
        "scales": scales,
        "gap": gap,
        "birth": birth,
        "death": death,
        "miss_rate": miss_rate,
        "rates": rates,
    }


def _calibration_prefix(f):
    """Detections (a prefix of whole frames) that the division scales are fitted on."""
    if len(f) <= CALIBRATION_DETECTIONS:
        return len(f)
    last = f[CALIBRATION_DETECTIONS - 1]
    return int(np.searchsorted(f, last, side="right"))


def _head(values, k):
    return None if values is None else values[:k]


def _output_table(detections, order, track_id, parent_id, merged, keep, touches):
    """Step 5: the input table (its row order and index) with the track columns added."""
    n = len(order)
    lineage, generation = _lineage(track_id, parent_id)
    out = detections.copy()
    out = out.drop(columns=[c for c in (*OUTPUT_COLUMNS, "border_track", "merged") if c in out.columns])
    columns = {
        "track_id": track_id,
        "parent_track_id": parent_id,
        "lineage_id": lineage,
        "generation": generation,
        "merged": merged,
    }
    inverse = np.empty(n, np.int64)
    inverse[order] = np.arange(n)
    for name, values in columns.items():
        out[name] = values[inverse] if n else values
    parents = out["parent_track_id"].to_numpy(dtype=np.int64)
    out["parent_track_id"] = pd.arrays.IntegerArray(parents, parents <= 0)
    out["border_track"] = _border_tracks(out["track_id"].to_numpy(), touches)
    out = out[keep[inverse]] if n else out
    out.attrs = dict(detections.attrs)
    return out


def _track_by_sample(detections, **options):
    """Track each sample of a multi-sample table on its own; ids restart at 1 per sample."""
    codes, names = pd.factorize(detections["sample"], sort=True)
    parts, positions, info = [], [], {}
    for k in np.unique(codes):
        idx = np.flatnonzero(codes == k)
        rows = detections.iloc[idx].reset_index(drop=True)
        try:
            out = track(rows, **options)
        except InputError as err:
            raise InputError(f"sample {names[k] if k >= 0 else 'nan'!s}: {err}") from err
        info[str(names[k]) if k >= 0 else "nan"] = out.attrs.pop("track")
        positions.append(idx[out.index.to_numpy()])
        parts.append(out)
    positions = np.concatenate(positions)
    out = pd.concat(parts, ignore_index=True)
    order = np.argsort(positions, kind="stable")
    out = out.iloc[order]
    out.index = detections.index[positions[order]]
    out["parent_track_id"] = out["parent_track_id"].astype("Int64")
    out.attrs = dict(detections.attrs)
    out.attrs["track"] = {"per_sample": info}
    return out


def _float(value):
    return None if value is None or not np.isfinite(value) else float(value)


def _optional(table, column, order):
    if column not in table.columns:
        return None
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[order]
    return values if np.isfinite(values).any() else None


def _number_tracks(frame, segment, parent_seg, min_length):
    """Track ids 1..K by first appearance; parent ids (0 = none); mask of kept rows."""
    n = len(frame)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    n_seg = segment.max() + 1
    length = np.bincount(segment, minlength=n_seg)
    has_child = np.zeros(n_seg, bool)
    has_child[parent_seg[parent_seg >= 0]] = True
    kept_seg = (length >= min_length) | has_child | (parent_seg >= 0)
    first = np.full(n_seg, n, np.int64)
    np.minimum.at(first, segment, np.arange(n))
    order = np.argsort(first, kind="stable")
    order = order[kept_seg[order]]
    ids = np.zeros(n_seg, np.int64)
    ids[order] = np.arange(1, len(order) + 1)
    parent_ids = np.where(parent_seg >= 0, ids[np.maximum(parent_seg, 0)], 0)
    return ids[segment], parent_ids[segment], kept_seg[segment]


def _lineage(track_id, parent_id):
    """Root ancestor and generation of every row's track."""
    if len(track_id) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = max(track_id.max(), parent_id.max()) + 1
    parent = np.zeros(k, np.int64)
    parent[track_id] = parent_id
    root = np.arange(k)
    generation = np.zeros(k, np.int64)
    current = parent.copy()
    active = current > 0
    while active.any():
        root[active] = current[active]
        generation[active] += 1
        current = np.where(active, parent[current], 0)
        active = current > 0
        if generation.max() > k:  # a cycle cannot happen, but never loop forever
            raise RuntimeError("cycle in the lineage graph")
    return root[track_id], generation[track_id]


def _touches_border(detections, image_shape, pos):
    """Per row: the object touches the frame's edge (None when that cannot be known).

    From a ``touches_border`` column, else from ``image_shape`` (or ``attrs["image_shape"]``)
    and the radius ``sqrt(area / pi)``.
    """
    n = len(detections)
    if "touches_border" in detections.columns:
        return detections["touches_border"].fillna(False).to_numpy(dtype=bool)
    shape = image_shape or detections.attrs.get("image_shape")
    if shape is None or n == 0:
        return None
    if "area" in detections.columns:
        area = pd.to_numeric(detections["area"], errors="coerce").fillna(0).to_numpy(np.float64)
        radius = np.sqrt(np.clip(area, 0, None) / np.pi)
    else:
        radius = np.zeros(n)
    ny, nx = shape
    y, x = pos[:, 0], pos[:, 1]
    return (y - radius <= 0.5) | (x - radius <= 0.5) | (y + radius >= ny - 1.5) | (x + radius >= nx - 1.5)


def _border_tracks(track_id, touches):
    """True for every row of a track that has a detection touching the frame border."""
    n = len(track_id)
    if n == 0 or touches is None:
        return np.zeros(n, bool)
    flagged = np.zeros(track_id.max() + 1, bool)
    flagged[track_id[touches]] = True
    return flagged[track_id]

"""Divisions and gap closing on top of frame-to-frame linking.

Frame-to-frame linking (trackpy) joins each cell to its nearest plausible successor. Around
a division that is wrong in a known way: the linker continues the mother into one daughter
(the one nearer its old centre) and the other daughter starts a new track; in crowds it may
also hand a daughter to a neighbour. Two steps repair this:

1. **Division-aware relinking** (:func:`relink_divisions`). Wherever a track starts or ends
   next to other cells, the links between the two frames around it are solved again as a
   small integer program that may also choose divisions (one cell -> two): each candidate
   link and division has a cost, each cell at most one predecessor and one successor role.
2. **Events across gaps** (:func:`resolve_events`). Track ends and starts up to ``memory``
   missed frames apart are joined (gap closing), and divisions whose mother or daughter was
   missed in a frame are found, with the same costs; a compatible set of least total cost
   is chosen.
3. **Merges** (:func:`resolve_merges`). Two touching cells segmented as one object for a
   few frames look like a track ending into its neighbour, whose area doubles, and later a
   "division": that split is given back to the two cells and the blob is flagged.

The costs of links, divisions, births and deaths are :class:`~cytotrail.track.costs.CostModel`'s.
"""

from __future__ import annotations

import numpy as np

from cytotrail.track.costs import HALF, _log_ratio

__all__ = ["chains", "relink_divisions", "resolve_events", "resolve_merges", "segments_from_links"]

MAX_CANDIDATES = 8  # successors considered per cell
MAX_DAUGHTERS = 6  # nearest cells considered as daughters of a mother
REACH = 1.5  # neighbourhood of a track start or end re-solved, in (division radius + search range)


def chains(frame, segment):
    """``succ``/``pred`` detection index along each segment (-1 at the ends)."""
    n = len(frame)
    order = np.lexsort((frame, segment))
    same = segment[order][1:] == segment[order][:-1]
    succ = np.full(n, -1, np.int64)
    pred = np.full(n, -1, np.int64)
    succ[order[:-1][same]] = order[1:][same]
    pred[order[1:][same]] = order[:-1][same]
    return succ, pred


def _frame_index(frame):
    frames, starts = np.unique(frame, return_index=True)
    stops = np.append(starts[1:], len(frame))
    return {int(t): (int(a), int(b)) for t, a, b in zip(frames, starts, stops)}


def _pairs(tree_pts, query_pts, radius):
    """All (query, point) index pairs within ``radius``."""
    from scipy.spatial import cKDTree

    if len(tree_pts) == 0 or len(query_pts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s = cKDTree(query_pts).sparse_distance_matrix(cKDTree(tree_pts), radius, output_type="ndarray")
    return s["i"].astype(np.int64), s["j"].astype(np.int64)


def _nearest_pairs(tree_pts, query_pts, radius, k):
    """(query, point) index pairs: up to ``k`` nearest points within ``radius`` of each query."""
    from scipy.spatial import cKDTree

    if len(tree_pts) == 0 or len(query_pts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = min(k, len(tree_pts))
    dist, j = cKDTree(tree_pts).query(query_pts, k=k, distance_upper_bound=radius)
    dist, j = dist.reshape(len(query_pts), k), j.reshape(len(query_pts), k)
    ok = np.isfinite(dist)
    i = np.broadcast_to(np.arange(len(query_pts))[:, None], ok.shape)
    return i[ok].astype(np.int64), j[ok].astype(np.int64)


def relink_divisions(model, succ, pred, *, memory=0, half_divisions=True, time_limit=20.0):
    """Re-solve the links between two frames wherever a track starts or ends beside others.

    Parameters
    ----------
    model : CostModel
    succ, pred : (N,) int ndarray
        Links from frame-to-frame linking (consecutive frames only); not modified.
    memory : int
        Track ends up to this many frames before ``t`` may also link into ``t + 1``
        (gap closing, decided jointly with the divisions).

    Returns
    -------
    succ, pred : (N,) int ndarray
        New links (a mother has no successor).
    divisions : dict
        Mother detection -> tuple of daughter detections (one or two).
    """
    frame, pos = model.frame, model.pos
    succ, pred = succ.copy(), pred.copy()
    index = _frame_index(frame)
    t_min = frame.min()
    divisions = {}
    radius = model.division_radius
    for u in sorted(index):
        if u == t_min:
            continue
        t = u - 1
        a0, a1 = index.get(t, (0, 0))
        b0, b1 = index[u]
        starts = b0 + np.flatnonzero(pred[b0:b1] < 0)
        ends = a0 + np.flatnonzero(succ[a0:a1] < 0)
        if half_divisions and model.area is not None and model.border is not None:
            # a linked cell whose area halves is a division with a daughter unseen
            linked = a0 + np.flatnonzero(succ[a0:a1] >= 0)
            r = _log_ratio(model.area[succ[linked]], model.area[linked])
            shrunk = linked[r < HALF / 2]
        else:
            shrunk = np.zeros(0, np.int64)
        triggers = np.concatenate([pos[starts], pos[ends], pos[shrunk]])
        if len(triggers) == 0:
            continue
        # the neighbourhood of the triggers in both frames, closed under the current links
        ia, _ = _pairs(triggers, pos[a0:a1], (radius + model.search_range) * REACH)
        ib, _ = _pairs(triggers, pos[b0:b1], (radius + model.search_range) * REACH)
        local_a = np.unique(a0 + ia)
        local_b = np.unique(b0 + ib)
        if len(local_b) == 0:
            continue
        partners_b = succ[local_a][succ[local_a] >= 0]
        partners_a = pred[local_b][pred[local_b] >= 0]
        local_a = np.union1d(local_a, partners_a)
        local_b = np.union1d(local_b, partners_b)
        # open track ends of the previous `memory` frames near the neighbourhood
        earlier = []
        for g in range(1, memory + 1):
            if t - g not in index:
                continue
            c0, c1 = index[t - g]
            open_end = c0 + np.flatnonzero(succ[c0:c1] < 0)
            open_end = open_end[[k not in divisions for k in open_end.tolist()]]
            ic, _ = _pairs(pos[local_b], pos[open_end], model.search_range * np.sqrt(g + 1))
            earlier.append(open_end[np.unique(ic)])
        earlier = np.concatenate(earlier) if earlier else np.zeros(0, np.int64)
        model.update_velocity(np.concatenate([local_a, earlier]), pred)
        _solve_pair(
            model, local_a, local_b, succ, pred, divisions, half_divisions, time_limit, earlier=earlier
        )
    return succ, pred, divisions


def _solve_pair(model, local_a, local_b, succ, pred, divisions, half_divisions, time_limit, earlier=None):
    """Optimal links and divisions between detections ``local_a`` (t) and ``local_b`` (t+1).

    ``earlier`` are open track ends of earlier frames that may link into ``local_b`` across
    a gap.
    """
    pos, frame = model.pos, model.frame
    # links (from t, and across gaps from earlier open ends)
    qi, qj = _nearest_pairs(pos[local_b], pos[local_a], model.search_range, MAX_CANDIDATES)
    li, lj = local_a[qi], local_b[qj]
    if earlier is not None and len(earlier):
        t1 = frame[local_b[0]]
        for g in np.unique(t1 - frame[earlier]).tolist():
            src = earlier[t1 - frame[earlier] == g]
            qi, qj = _nearest_pairs(pos[local_b], pos[src], model.search_range * np.sqrt(g), MAX_CANDIDATES)
            li = np.concatenate([li, src[qi]])
            lj = np.concatenate([lj, local_b[qj]])
        local_a_all = np.concatenate([local_a, earlier])
    else:
        local_a_all = local_a
    link_cost = model.link(li, lj) - model.death_of(li) - model.birth_of(lj)
    keep = link_cost < 0
    li, lj, link_cost = li[keep], lj[keep], link_cost[keep]
    # divisions: pairs of daughters near the mother
    qi, qj = _nearest_pairs(pos[local_b], pos[local_a], model.division_radius, MAX_DAUGHTERS)
    mi, dj = local_a[qi], local_b[qj]
    order = np.lexsort((dj, mi))
    mi, dj = mi[order], dj[order]
    bounds = np.flatnonzero(np.diff(np.r_[-1, mi, -2]))
    triples = [
        (mi[lo], dj[x], dj[y])
        for lo, hi in zip(bounds[:-1], bounds[1:])
        for x in range(lo, hi)
        for y in range(x + 1, hi)
    ]
    if triples:
        dm, d1, d2 = np.asarray(triples, np.int64).T
        div_cost = model.division(dm, d1, d2) - model.death_of(dm) - model.birth_of(d1) - model.birth_of(d2)
        keep = div_cost < 0
        dm, d1, d2, div_cost = dm[keep], d1[keep], d2[keep], div_cost[keep]
    else:
        dm = d1 = d2 = np.zeros(0, np.int64)
        div_cost = np.zeros(0)
    if half_divisions and model.area is not None and model.border is not None:
        hm, hd = mi, dj
        half_cost = model.half_division(hm, hd) - model.death_of(hm) - model.birth_of(hd)
        keep = half_cost < 0
        hm, hd, half_cost = hm[keep], hd[keep], half_cost[keep]
    else:
        hm = hd = np.zeros(0, np.int64)
        half_cost = np.zeros(0)

    n_l, n_d, n_h = len(li), len(dm), len(hm)
    if n_l + n_d + n_h == 0:
        chosen_l = chosen_d = chosen_h = np.zeros(0, np.int64)
    else:
        # constraint rows: one per source (t) and per target (t+1) detection
        src = {int(k): r for r, k in enumerate(local_a_all)}
        dst = {int(k): len(src) + r for r, k in enumerate(local_b)}
        rows = np.concatenate(
            [
                [src[k] for k in li.tolist()],
                [dst[k] for k in lj.tolist()],
                [src[k] for k in dm.tolist()],
                [dst[k] for k in d1.tolist()],
                [dst[k] for k in d2.tolist()],
                [src[k] for k in hm.tolist()],
                [dst[k] for k in hd.tolist()],
            ]
        ).astype(np.int64)
        cols = np.concatenate(
            [
                np.arange(n_l),
                np.arange(n_l),
                n_l + np.arange(n_d),
                n_l + np.arange(n_d),
                n_l + np.arange(n_d),
                n_l + n_d + np.arange(n_h),
                n_l + n_d + np.arange(n_h),
            ]
        ).astype(np.int64)
        cost = np.concatenate([link_cost, div_cost, half_cost])
        x = _packing(cost, rows, cols, len(src) + len(dst), time_limit)
        chosen_l = np.flatnonzero(x[:n_l])
        chosen_d = np.flatnonzero(x[n_l : n_l + n_d])
        chosen_h = np.flatnonzero(x[n_l + n_d :])
    # apply: drop every current link that touches the neighbourhood, then set the new ones
    old = local_a[succ[local_a] >= 0]
    pred[succ[old]] = -1
    succ[old] = -1
    old = local_b[pred[local_b] >= 0]
    succ[pred[old]] = -1
    pred[old] = -1
    for k in local_a.tolist():
        divisions.pop(k, None)
    succ[li[chosen_l]] = lj[chosen_l]
    pred[lj[chosen_l]] = li[chosen_l]
    for k in chosen_d.tolist():
        divisions[int(dm[k])] = (int(d1[k]), int(d2[k]))
    for k in chosen_h.tolist():
        divisions[int(hm[k])] = (int(hd[k]),)


def _packing(cost, rows, cols, n_rows, time_limit):
    """Binary x minimising cost @ x with every row used at most once (HiGHS MILP; greedy fallback)."""
    n = len(cost)
    order = np.lexsort((np.arange(n), cost))
    if n == 1:
        return (cost < 0).astype(np.int8)
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_array

        a = csr_array((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n))
        res = milp(
            cost,
            constraints=LinearConstraint(a, -np.inf, 1),
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            options={"time_limit": time_limit},
        )
        if res.x is not None:
            x = (res.x > 0.5).astype(np.int8)
            used = np.bincount(rows[np.isin(cols, np.flatnonzero(x))], minlength=n_rows)
            if used.max(initial=0) <= 1:
                return x
    except (ImportError, ValueError):
        pass
    # greedy, cheapest first
    by_col = [[] for _ in range(n)]
    for r, c in zip(rows.tolist(), cols.tolist()):
        by_col[c].append(r)
    used = np.zeros(n_rows, bool)
    x = np.zeros(n, np.int8)
    for c in order.tolist():
        if cost[c] < 0 and not used[by_col[c]].any():
            used[by_col[c]] = True
            x[c] = 1
    return x


def resolve_events(model, succ, pred, divisions, *, memory, gap_closing=True, find_divisions=True):
    """Close gaps of up to ``memory`` missed frames and find divisions across such gaps.

    Parameters
    ----------
    model : CostModel
    succ, pred : (N,) int ndarray
        Current links (not modified).
    divisions : dict
        Mother -> daughters found so far (not modified).
    memory : int

    Returns
    -------
    succ, pred, divisions, stats
        Updated copies; ``stats`` counts ``n_gaps_closed`` and ``n_divisions_across_gaps``.
    """
    frame, pos = model.frame, model.pos
    succ, pred, divisions = succ.copy(), pred.copy(), dict(divisions)
    model.update_velocity(np.arange(len(frame)), pred)
    t_min, t_max = frame.min(), frame.max()
    is_daughter = np.zeros(len(frame), bool)
    for ds in divisions.values():
        is_daughter[list(ds)] = True
    is_mother = np.zeros(len(frame), bool)
    is_mother[list(divisions)] = True
    is_start = (pred < 0) & (frame > t_min) & ~is_daughter
    is_end = (succ < 0) & (frame < t_max) & ~is_mother
    starts, ends = np.flatnonzero(is_start), np.flatnonzero(is_end)
    stats = {"n_gaps_closed": 0, "n_divisions_across_gaps": 0}
    if len(starts) == 0 or len(ends) + len(frame) == 0:
        return succ, pred, divisions, stats
    big = 10.0 * (model.division_radius + 1.0) * (memory + 3)
    pts = np.column_stack([pos, frame * big])
    events = []  # (cost, kind, a, b, c)
    if gap_closing:
        for g in range(1, memory + 2):
            q = np.column_stack([pos[ends], (frame[ends] + g) * big])
            qi, qj = _pairs(pts, q, model.search_range * np.sqrt(g))
            e, s = ends[qi], qj
            ok = is_start[s]
            e, s = e[ok], s[ok]
            if len(e):
                c = model.link(e, s) - model.death_of(e) - model.birth_of(s)
                events += zip(c.tolist(), ["gap"] * len(e), e.tolist(), s.tolist(), [-1] * len(e))
    if find_divisions:
        ms, ss = [], []
        for g in range(1, memory + 2):
            q = np.column_stack([pos[starts], (frame[starts] - g) * big])
            qi, qj = _pairs(pts, q, model.division_radius * np.sqrt(g))
            ms.append(qj)
            ss.append(starts[qi])
        m, s = np.concatenate(ms), np.concatenate(ss)
        ok = ~is_mother[m]
        m, s = m[ok], s[ok]
        # the mother continues (as one daughter) and s is the other daughter, across a gap
        mid = succ[m] >= 0
        m1, s1 = m[mid], s[mid]
        c1 = succ[m1]
        ok = (frame[s1] - frame[m1] >= 2) | (frame[c1] - frame[m1] >= 2)
        m1, s1, c1 = m1[ok], s1[ok], c1[ok]
        if len(m1):
            c = model.division(m1, c1, s1) - model.link(m1, c1) - model.birth_of(s1)
            events += zip(c.tolist(), ["mid"] * len(m1), m1.tolist(), c1.tolist(), s1.tolist())
        # the mother ends and two starts are the daughters, one of them after a gap
        m2, s2 = m[~mid], s[~mid]
        if len(m2):
            order = np.lexsort((s2, m2))
            m2, s2 = m2[order], s2[order]
            bounds = np.flatnonzero(np.diff(np.r_[-1, m2, -2]))
            triples = [
                (m2[lo], s2[x], s2[y])
                for lo, hi in zip(bounds[:-1], bounds[1:])
                for x in range(lo, hi)
                for y in range(x + 1, hi)
                if s2[x] != s2[y]
            ]
            if triples:
                pm, pa, pb = np.asarray(triples, np.int64).T
                ok = (frame[pa] - frame[pm] >= 2) | (frame[pb] - frame[pm] >= 2)
                pm, pa, pb = pm[ok], pa[ok], pb[ok]
                c = model.division(pm, pa, pb) - model.death_of(pm) - model.birth_of(pa) - model.birth_of(pb)
                events += zip(c.tolist(), ["end"] * len(pm), pm.tolist(), pa.tolist(), pb.tolist())
    events = sorted({ev for ev in events if ev[0] < 0}, key=lambda ev: (ev[0], ev[1], ev[2], ev[3], ev[4]))
    if not events:
        return succ, pred, divisions, stats
    keys = {}
    rows, cols = [], []
    for k, (_, kind, a, b, c) in enumerate(events):
        if kind == "gap":
            used = (("out", a), ("in", b))
        elif kind == "mid":
            used = (("mother", a), ("in", c))
        else:
            used = (("out", a), ("mother", a), ("in", b), ("in", c))
        for key in used:
            rows.append(keys.setdefault(key, len(keys)))
            cols.append(k)
    x = _packing(np.array([ev[0] for ev in events]), np.asarray(rows), np.asarray(cols), len(keys), 60.0)
    for k in np.flatnonzero(x).tolist():
        _, kind, a, b, c = events[k]
        if kind == "gap":
            succ[a], pred[b] = b, a
            stats["n_gaps_closed"] += 1
        else:
            if kind == "mid":
                pred[b] = -1
                succ[a] = -1
            divisions[a] = (b, c)
            stats["n_divisions_across_gaps"] += 1
    return succ, pred, divisions, stats


def segments_from_links(succ, divisions):
    """Segment ids (by first detection) and parent segment of each segment.

    Parameters
    ----------
    succ : (N,) int ndarray
        Successor of each detection, -1 for none; detections in frame-sorted order.
    divisions : dict
        Mother detection -> daughter detections.

    Returns
    -------
    segment : (N,) int64 ndarray
    parent : (S,) int64 ndarray
        -1 for none.
    """
    n = len(succ)
    has_pred = np.zeros(n, bool)
    has_pred[succ[succ >= 0]] = True
    heads = np.flatnonzero(~has_pred)
    segment = np.full(n, -1, np.int64)
    segment[heads] = np.arange(len(heads))
    current, cur_id = heads, np.arange(len(heads))
    while len(current):
        nxt = succ[current]
        ok = nxt >= 0
        current, cur_id = nxt[ok], cur_id[ok]
        segment[current] = cur_id
    parent = np.full(len(heads), -1, np.int64)
    for mother, pair in divisions.items():
        for d in pair:
            if segment[d] != segment[mother]:
                parent[segment[d]] = segment[mother]
    return segment, parent


def resolve_merges(model, succ, pred, divisions, *, max_frames=10, area_tolerance=0.3):
    """Find two cells segmented as one object for a while, and keep both tracks.

    A merge: track A ends at detection ``e`` (frame t) next to track B, whose next detection
    ``p`` (t + 1) has about the area of A and B together (``|log((a_e + a_q) / a_p)| <
    area_tolerance`` and ``a_p > 1.4 a_q`` where ``q`` is B's detection at t, a jump also
    beyond three times the spread of log area ratios along the movie's links). When B's
    blob later splits in two (a division found within ``max_frames``), the split is the two
    cells coming apart, not a division: A continues (across the gap) into the part that
    matches it in area and side, B into the other. The blob's detections are flagged.

    Needs areas; without them nothing is done.

    Returns
    -------
    succ, pred, divisions : updated copies
    merged : (N,) bool ndarray
        Detections that hold two cells.
    n_merges : int
        Merges resolved (the blob split again).
    """
    n = len(model.frame)
    merged = np.zeros(n, bool)
    if model.area is None or n == 0:
        return succ, pred, divisions, merged, 0
    frame, pos, area = model.frame, model.pos, model.area
    succ, pred, divisions = succ.copy(), pred.copy(), dict(divisions)
    is_mother = np.zeros(n, bool)
    is_mother[list(divisions)] = True
    ends = np.flatnonzero((succ < 0) & ~is_mother & (frame < frame.max()))
    if len(ends) == 0:
        return succ, pred, divisions, merged, 0
    big = 10.0 * (model.division_radius + 1.0) * 3
    pts = np.column_stack([pos, frame * big])
    qi, qj = _pairs(pts, np.column_stack([pos[ends], (frame[ends] + 1) * big]), model.division_radius)
    e, p = ends[qi], qj
    q = pred[p]
    ok = (q >= 0) & (q != e)
    e, p, q = e[ok], p[ok], q[ok]
    if len(e) == 0:
        return succ, pred, divisions, merged, 0
    together = _log_ratio(area[e] + area[q], area[p])
    jump = _log_ratio(area[p], area[q])
    # the jump must stand out of the movie's own area noise along links (real cells grow and
    # are segmented less evenly than synthetic ones)
    noise = 3.0 * model.sigma_a if model.sigma_a is not None else 0.0
    ok = (np.abs(together) < area_tolerance) & (jump > max(np.log(1.4), noise))
    if model.border is not None:
        ok &= ~(model.border[e] | model.border[p])
    e, p, q = e[ok], p[ok], q[ok]
    order = np.lexsort((e, np.abs(together[ok])))
    used = set()
    n_merges = 0
    for k in order.tolist():
        ek, pk, qk = int(e[k]), int(p[k]), int(q[k])
        if ek in used or pk in used:
            continue
        # follow the blob while it keeps the joint area, until it divides
        blob = [pk]
        cur = pk
        split = None
        while len(blob) <= max_frames:
            if cur in divisions and len(divisions[cur]) == 2:
                split = cur
                break
            nxt = succ[cur]
            if nxt < 0 or abs(_log_ratio(area[[nxt]], area[[cur]])[0]) > area_tolerance:
                break
            blob.append(int(nxt))
            cur = int(nxt)
        if split is None:  # no split seen: cannot tell a merge from growth; leave it
            continue
        used.update((ek, pk))
        merged[blob] = True
        d1, d2 = divisions.pop(split)
        # which part is A: the cheaper pair of links from A's and B's last separate states
        straight = model.link(np.array([ek, qk]), np.array([d1, d2])).sum()
        swapped = model.link(np.array([ek, qk]), np.array([d2, d1])).sum()
        da, db = (d1, d2) if straight <= swapped else (d2, d1)
        succ[split], pred[db] = db, split
        succ[ek], pred[da] = da, ek
        n_merges += 1
    return succ, pred, divisions, merged, n_merges

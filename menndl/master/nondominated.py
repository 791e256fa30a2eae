"""Fast non-dominated sorting and crowding distances with numpy (all objectives minimised).

DEAP's ``sortNondominated`` compares every pair in pure Python, quadratic in
the population (docs/scaling.md).  Here, for up to three objectives,
rows are visited in lexicographic order (a dominator always comes first) and
each front keeps a 2-D "staircase" of its rows' last two objectives, so the
question "does front f hold a dominator of this row?" is one bisection, and
the row's front is found by binary search over the fronts (dominance by front
f implies dominance by every earlier front).
Four or more objectives use dominator bitsets: per objective, the set of rows
no worse in it is a prefix of that objective's sort order (one cumulative OR),
a row's dominators are the AND of its sets, and fronts are peeled off by
clearing the bits of each front found (quadratic in bits, n^2 / 8 bytes per
objective, about 8x fewer operations than comparing rows blockwise).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

BITSET_ROWS = 1024  # rows of the dominator matrix built at once (`_ranks_bitsets`)


def front_ranks(values: np.ndarray, enough: int | None = None) -> np.ndarray:
    """Front index (0 = non-dominated) of every row of ``values`` (rows x objectives, minimised).

    With ``enough``, fronts past the one that brings the rows ranked to ``enough`` or more may all get
    that front's index + 1 (what a truncation to ``enough`` rows needs; four objectives or more stop there).
    """
    values = _checked(values)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if values.shape[1] > 3:
        return _ranks_bitsets(values, enough=enough)
    order, rows, distinct, group = _sorted_distinct(values)
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = _ranks_staircase(rows[distinct])[group]
    return ranks


def first_front(values: np.ndarray) -> np.ndarray:
    """Boolean per row of ``values``: is it non-dominated?  ``front_ranks(values) == 0``, with one
    staircase instead of one per front (a batch of results is mostly dominated, by many fronts)."""
    values = _checked(values)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    if values.shape[1] > 3:
        return _ranks_bitsets(values, first_only=True) == 0
    order, rows, distinct, group = _sorted_distinct(values)
    rows = rows[distinct]
    xs, ys = rows[:, 1].tolist(), rows[:, 2].tolist()
    front_x: list[float] = []  # the first front's 2nd objective, ascending, and its 3rd, descending
    front_y: list[float] = []
    kept = [False] * len(rows)
    for row, (x, y) in enumerate(zip(xs, ys)):
        start = end = bisect_right(front_x, x)
        if start and front_y[start - 1] <= y:  # an earlier, distinct row is <= in every objective
            continue
        kept[row] = True
        while end < len(front_x) and front_y[end] >= y:
            end += 1
        front_x[start:end] = [x]
        front_y[start:end] = [y]
    mask = np.empty(len(values), dtype=bool)
    mask[order] = np.asarray(kept, dtype=bool)[group]
    return mask


def _checked(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {values.shape}")
    return values


def _sorted_distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows padded to three objectives in lexicographic order (a dominator always comes first): the
    order, the sorted rows, which of them differ from the one before, and each one's distinct index."""
    padded = np.zeros((len(values), 3))
    padded[:, : values.shape[1]] = values
    order = np.lexsort(padded.T[::-1])
    rows = padded[order]
    distinct = np.r_[True, np.any(rows[1:] != rows[:-1], axis=1)]
    group = np.cumsum(distinct) - 1  # equal rows share one front
    return order, rows, distinct, group


def _ranks_staircase(rows: np.ndarray) -> np.ndarray:
    """Fronts of distinct rows sorted lexicographically, three objectives."""
    xs, ys = rows[:, 1].tolist(), rows[:, 2].tolist()
    front_x: list[list[float]] = []  # per front: its rows' 2nd objective, ascending ...
    front_y: list[list[float]] = []  # ... and the 3rd, descending (the 2-D non-dominated staircase)
    fronts = 0
    ranks = [0] * len(rows)
    for row, (x, y) in enumerate(zip(xs, ys)):
        low, high = 0, fronts
        while low < high:
            middle = (low + high) >> 1
            i = bisect_right(front_x[middle], x)
            if i and front_y[middle][i - 1] <= y:  # an earlier, distinct row is <= in every objective
                low = middle + 1
            else:
                high = middle
        ranks[row] = low
        if low == fronts:
            front_x.append([x])
            front_y.append([y])
            fronts += 1
            continue
        fx, fy = front_x[low], front_y[low]
        start = end = bisect_right(fx, x)
        size = len(fx)
        while end < size and fy[end] >= y:
            end += 1
        fx[start:end] = [x]
        fy[start:end] = [y]
    return np.asarray(ranks, dtype=np.int64)


def _ranks_bitsets(values: np.ndarray, first_only: bool = False, enough: int | None = None) -> np.ndarray:
    """Fronts of any number of objectives from dominator bitsets (see the module's docstring).

    Rows are numbered in lexicographic order, so a row's dominators come before it: the first objective
    needs no bitset, and only the lower triangle of the dominator matrix is built, `BITSET_ROWS` rows at
    a time.  With ``first_only`` only the first front is found: every other row gets rank 1; with
    ``enough``, peeling stops once that many rows (counting equal rows) are ranked: the rest get the next rank.
    """
    unique, group = np.unique(values, axis=0, return_inverse=True)  # sorted rows; equal rows share one front
    group = group.reshape(-1)
    count, words = len(unique), (len(unique) + 63) >> 6
    rows = np.arange(count)
    bits = np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64))
    prefixes, positions = [], []
    for column in unique.T[1:]:
        order = np.argsort(column, kind="stable")
        prefix = np.zeros((count, words), dtype=np.uint64)
        prefix[rows, order >> 6] = bits[order]
        np.bitwise_or.accumulate(prefix, axis=0, out=prefix)  # prefix[s]: rows at sorted positions <= s
        ordered = column[order]
        position = np.empty(count, dtype=np.int64)
        position[order] = np.searchsorted(ordered, ordered, side="right") - 1  # a tie shares its group's prefix
        prefixes.append(prefix)
        positions.append(position)
    dominators = np.zeros((count, words), dtype=np.uint64)
    for start in range(0, count, BITSET_ROWS):
        block = rows[start : start + BITSET_ROWS]
        used = int(block[-1] >> 6) + 1  # words past a row's own are rows after it: never its dominators
        earlier = dominators[block[0] : block[-1] + 1, :used]
        earlier[np.arange(used)[None, :] < (block >> 6)[:, None]] = np.uint64(2**64 - 1)
        earlier[block - start, block >> 6] = bits[block] - np.uint64(1)  # the rows before it in its own word
        for prefix, position in zip(prefixes, positions):
            earlier &= np.take(prefix, position[block], axis=0)[:, :used]  # a gather (an indexed &= is slower)
    ranks = np.zeros(count, dtype=np.int64)
    multiplicity = np.bincount(group, minlength=count)  # rows equal to each distinct row
    ranked_rows, enough = 0, len(values) if enough is None else enough
    alive, rank, first_word = rows, 0, 0  # `dominators` holds the alive rows' words from first_word on
    while len(alive):
        empty = ~dominators.any(axis=1)
        front = alive[empty]
        ranks[front] = rank
        ranked_rows += int(multiplicity[front].sum())
        if first_only or ranked_rows >= enough:
            ranks[alive[~empty]] = rank + 1
            break
        alive = alive[~empty]
        if not len(alive):
            break
        cleared = np.zeros(words, dtype=np.uint64)
        np.bitwise_or.at(cleared, front >> 6, bits[front])
        # Rows before the first alive one are all ranked: their words are zero for everyone left
        start = int(alive[0] >> 6)
        dominators = dominators[~empty, start - first_word :]
        dominators &= ~cleared[start:]
        first_word = start
        rank += 1
    return ranks[group]


def dominated_by_any(columns: np.ndarray, point: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Boolean per row: does that row dominate ``point``?  ``columns`` is objectives x rows.

    One pass per objective over contiguous columns, several times faster than
    ``np.all(rows <= point, axis=1)`` on a rows x 3 array.
    """
    less_equal = columns[0] <= point[0]
    less = columns[0] < point[0]
    for j in range(1, len(point)):
        less_equal &= columns[j] <= point[j]
        less |= columns[j] < point[j]
    return less_equal & less


def no_worse_than(columns: np.ndarray, point: tuple[float, ...], out: np.ndarray, scratch: np.ndarray) -> None:
    """Set ``out`` (booleans, one per column) to: does that column dominate ``point``?

    `dominated_by_any` into caller-owned buffers, with half the passes: "no worse in every
    objective" first, and "better in one" only checked when some column equals ``point`` in the
    last objective (a tie there is rare: the exact check of the tied columns then runs).
    ``scratch`` is a boolean buffer as long as ``out``.
    """
    np.less_equal(columns[0], point[0], out=out)
    for j in range(1, len(point)):
        np.less_equal(columns[j], point[j], out=scratch)
        out &= scratch
    last = len(point) - 1
    np.equal(columns[last], point[last], out=scratch)
    scratch &= out
    if np.count_nonzero(scratch):
        for j in range(last):
            scratch &= columns[j] == point[j]
        out &= ~scratch  # a column equal to the point in every objective does not dominate it


def dominated_by(columns: np.ndarray, point: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Boolean per row: does ``point`` dominate that row?  (`dominated_by_any` mirrored, no negated copies.)"""
    greater_equal = columns[0] >= point[0]
    greater = columns[0] > point[0]
    for j in range(1, len(point)):
        greater_equal &= columns[j] >= point[j]
        greater |= columns[j] > point[j]
    return greater_equal & greater


def crowding_distances(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of every row within its front (boundary rows: infinity)."""
    count, objectives = values.shape
    distance = np.zeros(count)
    if count == 0:
        return distance
    for j in range(objectives):
        order = np.lexsort((values[:, j], ranks))
        front = ranks[order]
        column = values[order, j]
        starts = np.flatnonzero(np.r_[True, front[1:] != front[:-1]])
        ends = np.r_[starts[1:], count] - 1
        span = np.repeat(column[ends] - column[starts], ends - starts + 1)
        gap = np.zeros(count)
        if count > 2:
            gap[1:-1] = column[2:] - column[:-2]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(span > 0, gap / (objectives * span), 0.0)  # DEAP's normalisation
        share[starts] = np.inf
        share[ends] = np.inf
        distance[order] += share
    return distance


def nsga2_order(ranks: np.ndarray, crowding: np.ndarray) -> np.ndarray:
    """Row indices best first: lower front, then larger crowding distance (NSGA-II's truncation order)."""
    return np.lexsort((-crowding, ranks))

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
a row's dominators are the AND of its sets (quadratic in bits, n^2 / 8 bytes
per objective, about 8x fewer operations than comparing rows blockwise).
Rows are ranked in lexicographic order, a block at a time: a row's front is
the smallest one past its dominators' (a binary search over the bitsets of the
fronts found in earlier blocks, the same monotonicity as above, then fronts
peeled within the block), so only one block of the dominator matrix is held.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

BITSET_ROWS = 1024  # rows of the dominator matrix built at once (`_ranks_bitsets`)


def front_ranks(values: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of every row of ``values`` (rows x objectives, minimised)."""
    values = _checked(values)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if values.shape[1] > 3:
        return _ranks_bitsets(values)
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
    """Rows padded to at least three objectives in lexicographic order (a dominator always comes first): the
    order, the sorted rows, which of them differ from the one before, and each one's distinct index."""
    padded = np.zeros((len(values), max(3, values.shape[1])))
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


def _ranks_bitsets(values: np.ndarray, first_only: bool = False) -> np.ndarray:
    """Fronts of any number of objectives from dominator bitsets (see the module's docstring).

    Rows are numbered in lexicographic order, so a row's dominators come before it: the first objective
    needs no bitset, and rows are ranked `BITSET_ROWS` at a time, from the block of their dominators'
    bits (the lower triangle of the dominator matrix; the whole matrix is never held).  A row's front
    is the smallest one past all its dominators': a binary search over the bitsets of the earlier
    blocks' fronts (`_floor`), then fronts peeled within the block (`_peel_block`).  With ``first_only`` only the first
    front is found: every other row gets rank 1.
    """
    lexicographic, sorted_rows, distinct, sorted_group = _sorted_distinct(values)  # (faster than np.unique)
    unique = sorted_rows[distinct]
    group = np.empty(len(values), dtype=np.int64)
    group[lexicographic] = sorted_group  # equal rows share one front
    count, words = len(unique), (len(unique) + 63) >> 6
    rows = np.arange(count)
    bits = np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64))
    prefixes, positions = [], []
    for column in unique.T[1:]:
        order = np.argsort(column, kind="stable")
        prefix = np.zeros((words, count), dtype=np.uint64)  # (words x rows: a cumulative OR along a row is fast)
        prefix[order >> 6, rows] = bits[order]
        np.bitwise_or.accumulate(prefix, axis=1, out=prefix)  # prefix[:, s]: rows at sorted positions <= s
        ordered = column[order]
        position = np.empty(count, dtype=np.int64)
        position[order] = np.searchsorted(ordered, ordered, side="right") - 1  # a tie shares its group's prefix
        prefixes.append(prefix)
        positions.append(position)
    ranks = np.zeros(count, dtype=np.int64)
    fronts = np.zeros((words, 0), dtype=np.uint64)  # fronts[:, k]: bits of the earlier blocks' rows of front k
    for start in range(0, count, BITSET_ROWS):
        block = rows[start : start + BITSET_ROWS]
        first, used = start >> 6, int(block[-1] >> 6) + 1  # words of earlier blocks; words up to the block's last row
        dominators = prefixes[0][:used, positions[0][block]]  # words x rows (a gather of the words needed only)
        for prefix, position in zip(prefixes[1:], positions[1:]):
            dominators &= prefix[:used, position[block]]
        inside = dominators[first:]
        inside &= _EARLIER_IN_BLOCK[: used - first, : len(block)]  # of the block's rows, only those before each
        earlier = dominators[:first]
        if first_only:
            ranks[block] = (inside.any(axis=0) | earlier.any(axis=0)).astype(np.int64)
            continue
        floor = _floor(earlier, fronts[:first])
        block_ranks = _peel_block(inside, floor, bits[: len(block)])  # (a block starts a word: the same bits)
        ranks[block] = block_ranks
        if block_ranks.max() >= fronts.shape[1]:
            grown = np.zeros((words, block_ranks.max() + 1), dtype=np.uint64)
            grown[:, : fronts.shape[1]] = fronts
            fronts = grown
        np.bitwise_or.at(fronts, (block >> 6, block_ranks), bits[block])
    return ranks[group]


def _floor(earlier: np.ndarray, fronts: np.ndarray) -> np.ndarray:
    """Per row, one past the worst front among its dominators in earlier blocks (0: none there).

    ``earlier`` (words x rows) holds the rows' dominators in earlier blocks, ``fronts`` (words x fronts)
    those blocks' rows by front.  A dominator in front k has one in front k - 1 (which dominates the row
    too), so "a dominator in front k" is monotone in k: a binary search, one test per halving.
    """
    low = np.zeros(earlier.shape[1], dtype=np.int64)
    high = np.full(earlier.shape[1], fronts.shape[1], dtype=np.int64)
    searching = np.flatnonzero(low < high)
    while len(searching):
        middle = (low[searching] + high[searching] + 1) >> 1
        hit = (earlier[:, searching] & fronts[:, middle - 1]).any(axis=0)  # a dominator in front middle - 1?
        low[searching[hit]] = middle[hit]
        high[searching[~hit]] = middle[~hit] - 1
        searching = searching[low[searching] < high[searching]]
    return low


def _peel_block(inside: np.ndarray, floor: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Fronts of one block's rows: each the smallest front >= its ``floor`` past all its dominators in the block.

    ``inside`` (words x rows) holds each row's dominators among the block's rows (bit i: the block's row i);
    ``bits`` is each row's bit in its word.
    """
    ranks = np.full(len(floor), -1, dtype=np.int64)
    below = np.zeros((inside.shape[0], 1), dtype=np.uint64)  # the block's rows ranked in fronts before `front`
    waiting, front = np.arange(len(floor)), int(floor.min())
    while len(waiting):
        ready = (floor[waiting] <= front) & ~(inside[:, waiting] & ~below).any(axis=0)
        placed = waiting[ready]
        ranks[placed] = front
        np.bitwise_or.at(below[:, 0], placed >> 6, bits[placed])
        waiting = waiting[~ready]
        front += 1
    return ranks


def _earlier_in_block(size: int) -> np.ndarray:
    """Bitsets (words x rows) of a block of ``size`` rows: row i's holds the rows before it (bits 0 to i - 1)."""
    local = np.arange(size)
    mask = np.where(np.arange((size + 63) >> 6)[None, :] < (local >> 6)[:, None], np.uint64(2**64 - 1), np.uint64(0))
    mask[local, local >> 6] = np.left_shift(np.uint64(1), (local & 63).astype(np.uint64)) - np.uint64(1)
    return np.ascontiguousarray(mask.T)


_EARLIER_IN_BLOCK = _earlier_in_block(BITSET_ROWS)


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

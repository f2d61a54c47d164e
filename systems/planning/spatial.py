"""A uniform grid over units, for "the nearest k within radius r" in time that does not grow
with the map.

Perception builds one per side (or reuses it for a fraction of a second: units move less
than a tile meanwhile, and distances are always measured on the live positions), so a
snapshot costs the same with 100 or 10,000 units on the map.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Container, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")

CELL = 4
"""Tiles per cell side: a crowd's nearest few are found in the first ring or two of cells."""

_STRIDE = 1 << 20
"""Cells are keyed by one int, ``gx * _STRIDE + gy`` (cheaper than a tuple per lookup)."""
_ORDERS: dict[tuple[int, float, int], list[tuple[float, int]]] = {}
"""Per (cell size, slack, rings), the cells around a centre cell as (lower bound on the squared
distance from any point of the centre cell to anything bucketed there, key offset), nearest
first; built on first use."""
_ORDERS_MAX = 64
_SCAN_ALL: list[tuple[float, int]] = [(0.0, 0)]


def _order(cell: int, slack: float, rings: int) -> list[tuple[float, int]]:
    key = (cell, slack, rings)
    order = _ORDERS.get(key)
    if order is None:
        if len(_ORDERS) >= _ORDERS_MAX:
            _ORDERS.clear()
        found = []
        for dx in range(-rings, rings + 1):
            gap_x = max(0, abs(dx) - 1) * cell
            for dy in range(-rings, rings + 1):
                gap_y = max(0, abs(dy) - 1) * cell
                # An item bucketed in that cell may since have walked ``slack`` tiles out of
                # it; a hair less, so rounding never prunes a cell an item is exactly at.
                lb = math.sqrt(gap_x * gap_x + gap_y * gap_y) - slack - 1e-9
                found.append((lb * lb if lb > 0 else 0.0, dx * _STRIDE + dy))
        found.sort()
        order = _ORDERS[key] = found
    return order


class HasXY(Protocol):
    """A live position (``components.world.Position`` is one)."""

    @property
    def x(self) -> float: ...

    @property
    def y(self) -> float: ...


_Entry = tuple[HasXY, Hashable, T]


class CellIndex(Generic[T]):
    """Items bucketed by the cell of their position.

    ``pos(item)`` returns the item's *live* position object and ``key(item)`` a hashable id
    (for ``skip``); both are read once, at build time. Distances are measured on the position
    objects at query time, so an index built a moment ago still answers for where units are,
    given ``slack``: how far (in tiles) an item may have moved since it was bucketed."""

    __slots__ = ("_bounds", "_cells", "_entries", "cell", "slack")

    def __init__(self, items: Iterable[T], pos: Callable[[T], HasXY],
                 key: Callable[[T], Hashable] = id, cell: int = CELL,
                 slack: float = 0.0) -> None:
        self.cell = cell
        self.slack = slack
        """Tiles an item may have moved since it was bucketed (see :meth:`nearest`)."""
        entries: list[_Entry[T]] = [(pos(i), key(i), i) for i in items]
        cells: dict[int, list[_Entry[T]]] = {}
        xs = [int(e[0].x // cell) for e in entries]
        ys = [int(e[0].y // cell) for e in entries]
        for gx, gy, entry in zip(xs, ys, entries, strict=True):
            k = gx * _STRIDE + gy
            bucket = cells.get(k)
            if bucket is None:
                cells[k] = [entry]
            else:
                bucket.append(entry)
        if entries:
            lo_x, hi_x, lo_y, hi_y = min(xs), max(xs), min(ys), max(ys)
        else:
            lo_x = lo_y = 1 << 30
            hi_x = hi_y = -(1 << 30)
        self._entries = entries
        self._cells = cells
        self._bounds = (lo_x, lo_y, hi_x, hi_y)

    def __len__(self) -> int:
        return len(self._entries)

    def nearest(
        self, x: float, y: float, radius: float, k: int, skip: Container[Hashable] = (),
        where: Callable[[T], bool] | None = None,
    ) -> list[tuple[float, T]]:
        """Up to ``k`` items within ``radius`` of (x, y), nearest first, as (squared distance,
        item); items whose key is in ``skip``, or for which ``where(item)`` is false, are left
        out (the agent itself, its leader; the dead).

        Cells are visited nearest first, by a precomputed lower bound on how near anything
        bucketed in them can be to any point of the query's own cell, and the search stops at
        the first cell whose bound lies beyond the radius or (once ``k`` items are held) beyond
        the k-th distance, so the cost follows the local density, not the number of items or
        the radius. The bounds allow for ``slack``: items may have moved that far since the
        index was built."""
        entries = self._entries
        if k <= 0 or not entries:
            return []
        c = self.cell
        lo_x, lo_y, hi_x, hi_y = self._bounds
        cx, cy = int(x // c), int(y // c)
        max_ring = int(radius // c) + 1
        # A max-heap (negated distances) of the best k so far; once full, its top is the
        # k-th distance and bounds the search.
        best: list[tuple[float, int, T]] = []
        r2 = radius * radius
        seq = 0
        push, pushpop = heapq.heappush, heapq.heappushpop
        span = max(hi_x - lo_x, hi_y - lo_y) + 1
        if (2 * min(max_ring, span) + 1) ** 2 >= len(entries):
            # fewer items than cells to visit: scan them all, as one pool
            get: Callable[[int], list[_Entry[T]] | None] = {0: entries}.get
            order: list[tuple[float, int]] = _SCAN_ALL
            base = 0
        else:
            far = max(abs(cx - lo_x), abs(cx - hi_x), abs(cy - lo_y), abs(cy - hi_y))
            get = self._cells.get
            order = _order(c, self.slack, min(max_ring, far))
            base = cx * _STRIDE + cy
        for bound, off in order:
            if bound > r2:
                break  # this cell and every one after it lie beyond the k-th nearest
            pool = get(base + off)
            if pool is None:
                continue
            for p, key, item in pool:
                dx_ = p.x - x
                dy_ = p.y - y
                d2 = dx_ * dx_ + dy_ * dy_
                if d2 <= r2 and key not in skip and (where is None or where(item)):
                    seq += 1
                    if len(best) < k:
                        push(best, (-d2, -seq, item))
                        if len(best) == k:
                            r2 = -best[0][0]
                    elif d2 < r2:
                        pushpop(best, (-d2, -seq, item))
                        r2 = -best[0][0]
        # (-d2, -seq) descending is (d2, seq) ascending: nearest first, ties in visiting
        # order; seq is unique, so items themselves are never compared.
        best.sort(reverse=True)
        return [(-nd2, item) for nd2, _, item in best]

"""A uniform grid over units, for "the nearest k within radius r" in time that does not grow
with the map.

Perception builds one per side (or reuses it for a fraction of a second: units move less
than a tile meanwhile, and distances are always measured on the live positions), so a
snapshot costs the same with 100 or 10,000 units on the map.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Container, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")

CELL = 4
"""Tiles per cell side: a crowd's nearest few are found in the first ring or two of cells."""


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
    objects at query time, so an index built a moment ago still answers for where units are."""

    __slots__ = ("_bounds", "_cells", "_entries", "cell")

    def __init__(self, items: Iterable[T], pos: Callable[[T], HasXY],
                 key: Callable[[T], Hashable] = id, cell: int = CELL) -> None:
        self.cell = cell
        entries: list[_Entry[T]] = [(pos(i), key(i), i) for i in items]
        cells: dict[tuple[int, int], list[_Entry[T]]] = {}
        lo_x = lo_y = 1 << 30
        hi_x = hi_y = -(1 << 30)
        for entry in entries:
            p = entry[0]
            k = (int(p.x) // cell, int(p.y) // cell)
            bucket = cells.get(k)
            if bucket is None:
                cells[k] = [entry]
            else:
                bucket.append(entry)
            lo_x, hi_x = min(lo_x, k[0]), max(hi_x, k[0])
            lo_y, hi_y = min(lo_y, k[1]), max(hi_y, k[1])
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

        Cells are visited in rings around (x, y); the search stops once it holds ``k`` items
        and nothing in an unvisited ring could be nearer, so its cost follows the local
        density, not the number of items or the radius."""
        entries = self._entries
        if k <= 0 or not entries:
            return []
        c = self.cell
        lo_x, lo_y, hi_x, hi_y = self._bounds
        cx, cy = int(x) // c, int(y) // c
        max_ring = int(radius // c) + 1
        # A max-heap (negated distances) of the best k so far; once full, its top is the
        # k-th distance and bounds the search.
        best: list[tuple[float, int, T]] = []
        bound = [radius * radius]
        seq = [0]
        push, pushpop = heapq.heappush, heapq.heappushpop

        def take(pool: list[_Entry[T]]) -> None:
            r2 = bound[0]
            for p, key, item in pool:
                dx = p.x - x
                dy = p.y - y
                d2 = dx * dx + dy * dy
                if d2 <= r2 and key not in skip and (where is None or where(item)):
                    seq[0] += 1
                    if len(best) < k:
                        push(best, (-d2, -seq[0], item))
                        if len(best) == k:
                            r2 = bound[0] = -best[0][0]
                    elif d2 < r2:
                        pushpop(best, (-d2, -seq[0], item))
                        r2 = bound[0] = -best[0][0]

        span = max(hi_x - lo_x, hi_y - lo_y) + 1
        if (2 * min(max_ring, span) + 1) ** 2 >= len(entries):
            take(entries)  # fewer items than cells to visit: scan them all
        else:
            cells = self._cells
            far = max(abs(cx - lo_x), abs(cx - hi_x), abs(cy - lo_y), abs(cy - hi_y))
            for ring in range(min(max_ring, far) + 1):
                for gx in range(max(lo_x, cx - ring), min(hi_x, cx + ring) + 1):
                    if gx == cx - ring or gx == cx + ring:
                        rows: Iterable[int] = range(max(lo_y, cy - ring), min(hi_y, cy + ring) + 1)
                    else:
                        rows = (cy - ring, cy + ring)
                    for gy in rows:
                        bucket = cells.get((gx, gy))
                        if bucket is not None:
                            take(bucket)
                reach = ring * c
                if len(best) == k and bound[0] <= reach * reach:
                    break
        ordered = sorted(((-nd2, -ns, item) for nd2, ns, item in best),
                         key=lambda e: (e[0], e[1]))
        return [(d2, item) for d2, _, item in ordered]

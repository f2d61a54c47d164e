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

_STRIDE = 1 << 20
"""Cells are keyed by one int, ``gx * _STRIDE + gy`` (cheaper than a tuple per lookup)."""
_RINGS: list[list[tuple[int, int, int]]] = []
"""Per ring, the cells on it as (dx, dy, key offset); grown on demand."""


def _ring(r: int) -> list[tuple[int, int, int]]:
    while len(_RINGS) <= r:
        n = len(_RINGS)
        cells = [(dx, dy) for dx in range(-n, n + 1) for dy in range(-n, n + 1)
                 if max(abs(dx), abs(dy)) == n]
        # nearest first within the ring, so a full heap prunes the corners
        cells.sort(key=lambda d: d[0] * d[0] + d[1] * d[1])
        _RINGS.append([(dx, dy, dx * _STRIDE + dy) for dx, dy in cells])
    return _RINGS[r]


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
        lo_x = lo_y = 1 << 30
        hi_x = hi_y = -(1 << 30)
        for entry in entries:
            p = entry[0]
            gx, gy = int(p.x // cell), int(p.y // cell)
            k = gx * _STRIDE + gy
            bucket = cells.get(k)
            if bucket is None:
                cells[k] = [entry]
            else:
                bucket.append(entry)
            lo_x, hi_x = min(lo_x, gx), max(hi_x, gx)
            lo_y, hi_y = min(lo_y, gy), max(hi_y, gy)
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

        Cells are visited in rings around (x, y). A cell whose rectangle lies beyond the
        radius, or (once ``k`` items are held) beyond the k-th distance, is passed over, and
        the search stops when nothing in an unvisited ring could be nearer, so the cost follows
        the local density, not the number of items or the radius. Cell rectangles are widened
        by ``slack`` tiles: items may have moved that far since the index was built."""
        entries = self._entries
        if k <= 0 or not entries:
            return []
        c = self.cell
        slack = self.slack
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
            pools: Iterable[list[_Entry[T]]] = (entries,)  # fewer items than cells: scan all
            rings: Iterable[int] = (0,)
        else:
            pools = ()
            far = max(abs(cx - lo_x), abs(cx - hi_x), abs(cy - lo_y), abs(cy - hi_y))
            rings = range(min(max_ring, far) + 1)
        cells = self._cells
        base = cx * _STRIDE + cy
        fx, fy = x - cx * c, y - cy * c  # where in its own cell (x, y) lies
        # The visited square after ring n reaches at least n * c plus this far all round.
        edge = min(fx, c - fx, fy, c - fy) - slack
        for ring in rings:
            todo: Iterable[list[_Entry[T]]]
            if pools:
                todo = pools
            else:
                todo = []
                for dx, dy, off in _ring(ring):
                    bucket = cells.get(base + off)
                    if bucket is None:
                        continue
                    # distance from (x, y) to the cell's rectangle, widened by the slack
                    ddx = (dx * c - fx if dx > 0 else fx - (dx + 1) * c if dx < 0 else 0.0) - slack
                    ddy = (dy * c - fy if dy > 0 else fy - (dy + 1) * c if dy < 0 else 0.0) - slack
                    ddx = ddx if ddx > 0 else 0.0
                    ddy = ddy if ddy > 0 else 0.0
                    if ddx * ddx + ddy * ddy <= r2:
                        todo.append(bucket)  # else: all of it beyond the k-th nearest
            for pool in todo:
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
            reach = ring * c + edge
            if len(best) == k and reach > 0 and r2 <= reach * reach:
                break
        # (-d2, -seq) descending is (d2, seq) ascending: nearest first, ties in visiting
        # order; seq is unique, so items themselves are never compared.
        best.sort(reverse=True)
        return [(-nd2, item) for nd2, _, item in best]

"""The heist's own tile geometry: walking paths and lines of fire (no library internals)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

Tile = tuple[int, int]


def neighbours(tile: Tile) -> Iterable[Tile]:
    x, y = tile
    return ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1))


def find_path(
    start: Tile, goal: Tile, width: int, height: int, walls: frozenset[Tile]
) -> list[Tile] | None:
    """Breadth-first path of 4-connected tiles from ``start`` (excluded) to ``goal``
    (included); ``[]`` when already there, ``None`` when walls cut it off."""
    if start == goal:
        return []
    if goal in walls or not (0 <= goal[0] < width and 0 <= goal[1] < height):
        return None
    came: dict[Tile, Tile] = {start: start}
    todo = deque([start])
    while todo:
        cur = todo.popleft()
        for nxt in neighbours(cur):
            if nxt in came or nxt in walls:
                continue
            if not (0 <= nxt[0] < width and 0 <= nxt[1] < height):
                continue
            came[nxt] = cur
            if nxt == goal:
                path = [nxt]
                while came[path[-1]] != start:
                    path.append(came[path[-1]])
                path.reverse()
                return path
            todo.append(nxt)
    return None


def line(a: Tile, b: Tile) -> list[Tile]:
    """Bresenham tiles from ``a`` to ``b``, both ends included, always drawn from the lower
    (row-major) end so that a line and its reverse cover the same tiles."""
    flip = (a[1], a[0]) > (b[1], b[0])
    (x0, y0), (x1, y1) = (b, a) if flip else (a, b)
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    out = [(x0, y0)]
    while (x0, y0) != (x1, y1):
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy
        out.append((x0, y0))
    if flip:
        out.reverse()
    return out


def between(a: Tile, b: Tile) -> list[Tile]:
    """Tiles strictly between ``a`` and ``b`` on the line of fire."""
    return line(a, b)[1:-1]


def _segment_distance(p: tuple[float, float], a: Tile, b: Tile) -> float:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / length2))
    return math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy))


def clear_shot(
    a: Tile, b: Tile, walls: frozenset[Tile], smoke: Iterable[tuple[int, int, float]] = ()
) -> bool:
    """No wall strictly between the tiles and no smoke cloud over the segment."""
    if any(t in walls for t in between(a, b)):
        return False
    return all(_segment_distance((sx, sy), a, b) > r for sx, sy, r in smoke)


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])

"""Cost-to-goal fields: every tile's walking cost to one shared destination, computed once.

Many agents walking to the same place (an objective, a rally point) each pay a long A* on a
big map: on a 378x382 map a route across it expands tens of thousands of tiles (~60 ms in
Python), and a squad that leads the way there re-plans it every few decisions. A field is one
Dijkstra from the goal over the whole layout (~12 ms on a 112x132 map, ~0.2 s on 378x382);
after that a shortest route from *any* tile is a walk downhill, a few microseconds a tile.
This is the "Dijkstra map" / flow-field technique of crowd games.

Fields are cached with the wall layout's other derived data (see :mod:`pathfinding`), a few
goals per layout (LRU of :data:`GOAL_FIELD_CACHE_SIZE`); a host that knows its destinations
can build them at load time with :func:`cost_field` so the first frame that needs one does not
pay for it.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterator

from esper_arbiter.components.snapshot import GridView
from esper_arbiter.systems.planning.pathfinding import Tile, _index, _walkable

GOAL_FIELD_CACHE_SIZE = 4
"""Goals whose fields one wall layout keeps (8 bytes a tile each: 1.2 MB on 378x382)."""

_EPS = 1e-9


def cost_field(grid: GridView, goal: Tile) -> array[float] | None:
    """Octile walking cost from every tile (index ``y * width + x``) to ``goal``; ``inf`` for
    walls and tiles that cannot reach it. ``None`` when ``goal`` is a wall or off the map.
    Built on first use per layout and goal, then shared (treat it as read-only)."""
    idx = _index(grid)
    if not _walkable(idx, goal):
        return None
    g = goal[1] * idx.width + goal[0]
    cache = idx.goal_fields
    hit = cache.get(g)
    if hit is not None:
        cache.move_to_end(g)
        return hit
    dist = array("d", [math.inf]) * (idx.width * idx.height)
    dist[g] = 0.0
    nbrs = idx.neighbours
    frontier = [(0.0, g)]
    pop, push = heapq.heappop, heapq.heappush
    while frontier:
        d, i = pop(frontier)
        if d > dist[i]:
            continue
        for j, cost in nbrs[i]:
            nd = d + cost
            if nd < dist[j]:
                dist[j] = nd
                push(frontier, (nd, j))
    cache[g] = dist
    if len(cache) > GOAL_FIELD_CACHE_SIZE:
        cache.popitem(last=False)
    return dist


def route_toward(grid: GridView, start: Tile, goal: Tile) -> Iterator[Tile] | None:
    """The tiles of a shortest walking route from ``start`` to ``goal`` (excluding ``start``,
    ending with ``goal``), produced lazily so a caller that needs the first few pays for those
    only. ``None`` when either end is a wall or off the map, or no route joins them.

    The route costs the same as :func:`pathfinding.find_path`'s (both are exact); where several
    routes tie, the two may choose differently.
    """
    idx = _index(grid)
    if not _walkable(idx, start):
        return None
    dist = cost_field(grid, goal)
    w = idx.width
    s = start[1] * w + start[0]
    if dist is None or dist[s] == math.inf:
        return None
    return _downhill(idx.neighbours, dist, s, w)


def _downhill(
    nbrs: list[tuple[tuple[int, float], ...]], dist: array[float], s: int, w: int
) -> Iterator[Tile]:
    cur = s
    while dist[cur] > _EPS:
        best, best_d = -1, math.inf
        for j, cost in nbrs[cur]:
            d = cost + dist[j]
            if d < best_d - _EPS:
                best, best_d = j, d
        cur = best
        yield cur % w, cur // w

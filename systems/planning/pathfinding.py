"""Grid A* pathfinding, reachability and line of sight over a :class:`GridView`.

Movement is 8-connected with no corner cutting: a diagonal step is allowed only when both
orthogonal tiles beside it are walkable, so nobody squeezes between two wall tiles that touch
at a corner. A consequence used below: two tiles are connected 8-way exactly when they are
connected 4-way, so reachability is a lookup in 4-connected component labels.

Everything derived from a grid's walls (neighbour lists, component labels, paths, step-distance
maps, wall-only sight lines) is computed once per *grid identity* and cached. The identity is
``(version, width, height, walls)``: hosts bump ``version`` when walls change, and because
``walls`` is a frozenset (whose hash Python caches) a host that forgets to bump it, or a test
that builds two different grids with version 0, still never gets a stale answer. Smoke is not
cached: clouds come and go every few seconds, and testing a segment against a handful of
circles is cheaper than a cache lookup would be.

Expected failures are values: an unreachable goal is ``None``, never an exception.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from esper_arbiter.components.snapshot import GridView

Tile = tuple[int, int]

SQRT2 = math.sqrt(2.0)

PATH_CACHE_SIZE = 4096
"""Paths kept per grid (LRU)."""
STEP_MAP_CACHE_SIZE = 256
"""Step-distance maps kept per grid (LRU); one per distinct start tile. On a big map fewer are
kept: see :data:`STEP_MAP_CELL_BUDGET`."""
STEP_MAP_CELL_BUDGET = 1 << 18
"""Tiles held by one grid's cached step maps, at most (a map costs ~100 bytes a reachable
tile, so ~25 MB): a 416x208 stress map keeps 8 maps, not 256 maps of 2 GB in all."""
GRID_CACHE_SIZE = 2
"""Distinct grids (wall layouts) kept at once (LRU): the current one and the one before (a door
that opens and closes again). A game that moves to another map does not come back to the old
one soon, and each cached layout holds its paths, step maps and sight lines, tens of MB on a
50-agent map: the soak (bench/soak.py, a fresh map each round) grew +120% after warm-up with
16 layouts kept, +4% with 2."""
LOS_CACHE_SIZE = 65536
"""Wall-only sight lines kept per grid before the table is cleared."""

_ORTHO: tuple[tuple[int, int], ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))
_DIAG: tuple[tuple[int, int], ...] = ((1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass(slots=True)
class _GridIndex:
    """Everything derived from one wall layout. Internal; built by :func:`_index`."""

    width: int
    height: int
    blocked: bytearray
    neighbours: list[tuple[tuple[int, float], ...]] = field(default_factory=list)
    labels: list[int] | None = None
    paths: OrderedDict[tuple[int, int], tuple[Tile, ...] | None] = field(
        default_factory=OrderedDict
    )
    step_maps: OrderedDict[int, dict[Tile, int]] = field(default_factory=OrderedDict)
    los: dict[tuple[int, int], bool] = field(default_factory=dict)
    goal_fields: OrderedDict[int, array[float]] = field(default_factory=OrderedDict)
    """Cost-to-goal fields per goal cell (see :mod:`goal_fields`)."""

    def build_neighbours(self) -> None:
        w, h, blocked = self.width, self.height, self.blocked
        out: list[tuple[tuple[int, float], ...]] = []
        for y in range(h):
            for x in range(w):
                if blocked[y * w + x]:
                    out.append(())
                    continue
                nb: list[tuple[int, float]] = []
                for dx, dy in _ORTHO:
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < w and 0 <= ny < h and not blocked[ny * w + nx]:
                        nb.append((ny * w + nx, 1.0))
                for dx, dy in _DIAG:
                    nx, ny = x + dx, y + dy
                    if (
                        0 <= nx < w
                        and 0 <= ny < h
                        and not blocked[ny * w + nx]
                        and not blocked[y * w + nx]
                        and not blocked[ny * w + x]
                    ):
                        nb.append((ny * w + nx, SQRT2))
                out.append(tuple(nb))
        self.neighbours = out

    def component_labels(self) -> list[int]:
        """4-connected component label per cell (-1 for walls), computed once."""
        if self.labels is not None:
            return self.labels
        w, h, blocked = self.width, self.height, self.blocked
        labels = [-1] * (w * h)
        current = 0
        for seed in range(w * h):
            if blocked[seed] or labels[seed] != -1:
                continue
            labels[seed] = current
            stack = [seed]
            while stack:
                i = stack.pop()
                x, y = i % w, i // w
                for dx, dy in _ORTHO:
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < w and 0 <= ny < h:
                        j = ny * w + nx
                        if not blocked[j] and labels[j] == -1:
                            labels[j] = current
                            stack.append(j)
            current += 1
        self.labels = labels
        return labels


_GridKey = tuple[int, int, int, frozenset[Tile]]
_indexes: OrderedDict[_GridKey, _GridIndex] = OrderedDict()


_last: list[tuple[GridView, _GridIndex]] = []
"""The last grid object looked up and its index: hosts share one GridView per frame, so most
lookups are an identity check. (Holding the grid keeps its id from being reused.)"""


def _index(grid: GridView) -> _GridIndex:
    """The cached derived data for ``grid``'s wall layout (built on first use)."""
    if _last and _last[0][0] is grid:
        return _last[0][1]
    key = (grid.version, grid.width, grid.height, grid.walls)
    idx = _indexes.get(key)
    if idx is not None:
        _indexes.move_to_end(key)
        _last[:] = [(grid, idx)]
        return idx
    w, h = max(0, grid.width), max(0, grid.height)
    blocked = bytearray(w * h)
    for x, y in grid.walls:
        if 0 <= x < w and 0 <= y < h:
            blocked[y * w + x] = 1
    idx = _GridIndex(width=w, height=h, blocked=blocked)
    idx.build_neighbours()
    _indexes[key] = idx
    if len(_indexes) > GRID_CACHE_SIZE:
        _indexes.popitem(last=False)
    _last[:] = [(grid, idx)]
    return idx


def clear_caches() -> None:
    """Forget every cached grid, path and sight line (benchmarks use it for cold timings)."""
    _indexes.clear()
    _last.clear()


def _walkable(idx: _GridIndex, t: Tile) -> bool:
    x, y = t
    return 0 <= x < idx.width and 0 <= y < idx.height and not idx.blocked[y * idx.width + x]


def distance(a: Tile, b: Tile) -> float:
    """Euclidean distance between two tiles, in tiles."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


def octile(a: Tile, b: Tile) -> float:
    """Length of the shortest 8-connected path between two tiles on an empty grid."""
    dx, dy = abs(a[0] - b[0]), abs(a[1] - b[1])
    return max(dx, dy) + (SQRT2 - 1.0) * min(dx, dy)


def walkable(grid: GridView, tile: Tile) -> bool:
    """True when ``tile`` is inside the map and not a wall."""
    return grid.walkable(tile[0], tile[1])


def neighbours(grid: GridView, tile: Tile) -> list[Tile]:
    """Walkable tiles one step from ``tile`` (8-connected, no corner cutting)."""
    idx = _index(grid)
    if not _walkable(idx, tile):
        return []
    w = idx.width
    return [(j % w, j // w) for j, _ in idx.neighbours[tile[1] * w + tile[0]]]


def reachable(grid: GridView, start: Tile, goal: Tile) -> bool:
    """True when a walking path joins ``start`` and ``goal`` (both must be walkable).

    Costs a label lookup once the grid's components are known (computed once per wall layout).
    """
    idx = _index(grid)
    if not (_walkable(idx, start) and _walkable(idx, goal)):
        return False
    labels = idx.component_labels()
    w = idx.width
    return labels[start[1] * w + start[0]] == labels[goal[1] * w + goal[0]]


def region(grid: GridView, tile: Tile) -> int:
    """Label of the walkable region holding ``tile`` (-1 for walls and off-map tiles). Two tiles
    are mutually reachable exactly when their labels are equal and not -1."""
    idx = _index(grid)
    x, y = tile
    if not (0 <= x < idx.width and 0 <= y < idx.height):
        return -1
    return idx.component_labels()[y * idx.width + x]


def find_path(grid: GridView, start: Tile, goal: Tile) -> list[Tile] | None:
    """Shortest walking path from ``start`` to ``goal`` (A*, octile costs).

    Returns the tiles to walk through, ending with ``goal`` and excluding ``start``; ``[]`` when
    ``start == goal``; ``None`` when either end is out of bounds or a wall, or no path exists.
    Results are cached per grid (LRU of :data:`PATH_CACHE_SIZE`), so asking again is a lookup.
    """
    idx = _index(grid)
    if not (_walkable(idx, start) and _walkable(idx, goal)):
        return None
    if start == goal:
        return []
    w = idx.width
    s, g = start[1] * w + start[0], goal[1] * w + goal[0]
    key = (s, g)
    cache = idx.paths
    if key in cache:
        cache.move_to_end(key)
        hit = cache[key]
        return None if hit is None else list(hit)
    labels = idx.component_labels()
    result = None if labels[s] != labels[g] else _astar(idx, s, g)
    cache[key] = result
    if len(cache) > PATH_CACHE_SIZE:
        cache.popitem(last=False)
    return None if result is None else list(result)


def _astar(idx: _GridIndex, s: int, g: int) -> tuple[Tile, ...] | None:
    w = idx.width
    gx, gy = g % w, g // w
    nbrs = idx.neighbours
    extra = SQRT2 - 1.0

    def h(i: int) -> float:
        dx, dy = abs(i % w - gx), abs(i // w - gy)
        return (dx + extra * dy) if dx >= dy else (dy + extra * dx)

    best: dict[int, float] = {s: 0.0}
    came: dict[int, int] = {}
    counter = 0
    frontier: list[tuple[float, int, int]] = [(h(s), counter, s)]
    closed: set[int] = set()
    while frontier:
        _, _, cur = heapq.heappop(frontier)
        if cur == g:
            out: list[Tile] = []
            while cur != s:
                out.append((cur % w, cur // w))
                cur = came[cur]
            out.reverse()
            return tuple(out)
        if cur in closed:
            continue
        closed.add(cur)
        base = best[cur]
        for nxt, cost in nbrs[cur]:
            ng = base + cost
            if ng < best.get(nxt, math.inf) - 1e-9:
                best[nxt] = ng
                came[nxt] = cur
                counter += 1
                heapq.heappush(frontier, (ng + h(nxt), counter, nxt))
    return None


def path_cost(path: Iterable[Tile], start: Tile) -> float:
    """Walking cost of ``path`` (as returned by :func:`find_path`) starting from ``start``."""
    total = 0.0
    prev = start
    for t in path:
        total += SQRT2 if (t[0] != prev[0] and t[1] != prev[1]) else 1.0
        prev = t
    return total


def step_distances(
    grid: GridView, start: Tile, max_steps: int | None = None
) -> Mapping[Tile, int]:
    """Number of steps (8-connected, no corner cutting) from ``start`` to every reachable tile,
    or only to those at most ``max_steps`` away.

    A full map costs a walk over the whole grid, so it is cached per grid and start tile (the
    mapping is shared: treat it as read-only); a bounded one is cheap and not cached. Empty when
    ``start`` is not walkable. For a yes/no question use :func:`reachable`, which is O(1).
    """
    idx = _index(grid)
    if not _walkable(idx, start):
        return {}
    w = idx.width
    s = start[1] * w + start[0]
    cache = idx.step_maps
    if max_steps is None:
        hit = cache.get(s)
        if hit is not None:
            cache.move_to_end(s)
            return hit
    limit = -1 if max_steps is None else max(0, max_steps)
    dist = {s: 0}
    frontier = [s]
    nbrs = idx.neighbours
    d = 0
    while frontier and d != limit:
        d += 1
        nxt_frontier: list[int] = []
        for i in frontier:
            for j, _ in nbrs[i]:
                if j not in dist:
                    dist[j] = d
                    nxt_frontier.append(j)
        frontier = nxt_frontier
    out = {(i % w, i // w): n for i, n in dist.items()}
    if max_steps is None:
        cache[s] = out
        keep = max(8, min(STEP_MAP_CACHE_SIZE, STEP_MAP_CELL_BUDGET // max(1, len(out))))
        while len(cache) > keep:
            cache.popitem(last=False)
    return out


def nearest_reachable(
    grid: GridView, start: Tile, candidates: Iterable[Tile]
) -> tuple[Tile, int] | None:
    """The candidate tile fewest steps from ``start`` (ties: lowest y, then x), with its steps.

    ``None`` when no candidate is reachable.
    """
    steps = step_distances(grid, start)
    best: tuple[int, int, int] | None = None
    for t in candidates:
        n = steps.get(t)
        if n is not None and (best is None or (n, t[1], t[0]) < best):
            best = (n, t[1], t[0])
    if best is None:
        return None
    return (best[2], best[1]), best[0]


def tiles_within(grid: GridView, centre: Tile, radius: float) -> list[Tile]:
    """In-bounds walkable tiles whose distance to ``centre`` is at most ``radius``,
    nearest first (ties: lowest y, then x)."""
    r = max(0, math.floor(radius))
    cx, cy = centre
    out: list[tuple[float, int, int]] = []
    for y in range(cy - r, cy + r + 1):
        for x in range(cx - r, cx + r + 1):
            if grid.walkable(x, y):
                d = math.hypot(x - cx, y - cy)
                if d <= radius + 1e-9:
                    out.append((d, y, x))
    out.sort()
    return [(x, y) for _, y, x in out]


def nearest_walkable(grid: GridView, tile: Tile, origin: Tile | None = None) -> Tile | None:
    """The walkable tile closest (euclidean) to ``tile``; with ``origin``, only tiles reachable
    from ``origin``. ``tile`` itself when it qualifies. ``None`` when nothing qualifies."""
    reach = step_distances(grid, origin) if origin is not None else None
    radius = 0.0
    limit = float(max(grid.width, grid.height)) * 1.5
    while radius <= limit:
        for t in tiles_within(grid, tile, radius):
            if reach is None or t in reach:
                return t
        radius += 1.0
    return None


COVER_CELL = 8
"""Tiles per side of the buckets :func:`cover_near` sorts a map's cover into."""
_cover_last: list[tuple[frozenset[Tile], dict[Tile, list[Tile]]]] = []


def _cover_buckets(cover: frozenset[Tile]) -> dict[Tile, list[Tile]]:
    if _cover_last and _cover_last[0][0] is cover:
        return _cover_last[0][1]
    buckets: dict[Tile, list[Tile]] = {}
    for t in sorted(cover):
        buckets.setdefault((t[0] // COVER_CELL, t[1] // COVER_CELL), []).append(t)
    _cover_last[:] = [(cover, buckets)]
    return buckets


def cover_near(grid: GridView, centre: Tile, want: int) -> list[Tile]:
    """Cover tiles around ``centre``: those in the smallest square (8, 16, 32 ... tiles
    across each way) that holds at least ``want`` of them, or all of them. A big map has
    thousands of cover tiles; a unit looking for cover needs the few nearby, in a time that
    does not grow with the map."""
    cover = grid.cover
    if len(cover) <= max(want, 64):
        return sorted(cover)
    buckets = _cover_buckets(cover)
    cx, cy = centre[0] // COVER_CELL, centre[1] // COVER_CELL
    span = max(grid.width, grid.height) // COVER_CELL + 1
    ring = 1
    while True:
        found = [t for gx in range(cx - ring, cx + ring + 1)
                 for gy in range(cy - ring, cy + ring + 1)
                 for t in buckets.get((gx, gy), ())]
        if len(found) >= want or ring >= span:
            return found
        ring *= 2


_Cloud = tuple[int, int, float]


def line_of_sight(grid: GridView, a: Tile, b: Tile) -> bool:
    """True when nothing blocks sight between the centres of tiles ``a`` and ``b``.

    Walls block (tiles strictly between the ends on the Bresenham line; the line is always drawn
    from the lower endpoint so sight is symmetric). A smoke cloud ``(x, y, radius)`` blocks when
    the segment passes within ``radius`` of its centre. Out-of-bounds ends see nothing.
    Answers are remembered per wall layout, and per set of clouds while it lasts: a fight asks
    the same few pairs again and again (both ends of a duel, every squad mate).
    """
    if not (grid.in_bounds(a[0], a[1]) and grid.in_bounds(b[0], b[1])):
        return False
    idx = _index(grid)
    w = idx.width
    ia, ib = a[1] * w + a[0], b[1] * w + b[0]
    key = (ia, ib) if ia < ib else (ib, ia)
    smoke = grid.smoke
    if smoke:
        seen = _cloud_memo(smoke).seen
        hit = seen.get(key)
        if hit is None:
            hit = seen[key] = not smoke_blocks(smoke, a, b) and _walls_clear(idx, a, b, key)
        return hit
    return _walls_clear(idx, a, b, key)


def _walls_clear(idx: _GridIndex, a: Tile, b: Tile, key: tuple[int, int]) -> bool:
    if a == b:
        return True
    hit = idx.los.get(key)
    if hit is None:
        lo, hi = (a, b) if key[0] == a[1] * idx.width + a[0] else (b, a)
        hit = _bresenham_clear(idx, lo, hi)
        if len(idx.los) >= LOS_CACHE_SIZE:
            idx.los.clear()
        idx.los[key] = hit
    return hit


def _bresenham_clear(idx: _GridIndex, a: Tile, b: Tile) -> bool:
    x0, y0 = a
    x1, y1 = b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx = 1 if x0 < x1 else -1
    sy = 1 if y0 < y1 else -1
    err = dx + dy
    w, blocked = idx.width, idx.blocked
    x, y = x0, y0
    while True:
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x += sx
        if e2 <= dx:
            err += dx
            y += sy
        if x == x1 and y == y1:
            return True
        if blocked[y * w + x]:
            return False


SMOKE_CELL = 8
"""Tiles per side of the buckets clouds are sorted into when there are many."""
_SMOKE_STRIDE = 1 << 20


@dataclass(slots=True)
class _CloudMemo:
    """What one tuple of clouds lets us remember: sight answers, and its buckets."""

    seen: dict[tuple[int, int], bool] = field(default_factory=dict)
    buckets: dict[int, list[_Cloud]] | None = None


_clouds_known: dict[tuple[_Cloud, ...], _CloudMemo] = {}
"""Per tuple of clouds (the perception's and the host's grid views hold equal tuples; a new
cloud or one gone starts a new memo)."""
_clouds_last: list[tuple[tuple[_Cloud, ...], _CloudMemo]] = []
"""The tuple asked about last and its memo: a frame asks about one tuple again and again."""


def _cloud_memo(smoke: tuple[_Cloud, ...]) -> _CloudMemo:
    last = _clouds_last
    if last and last[0][0] is smoke:
        return last[0][1]
    memo = _clouds_known.get(smoke)
    if memo is None:
        if len(_clouds_known) >= 4:
            _clouds_known.clear()
        memo = _clouds_known[smoke] = _CloudMemo()
    elif len(memo.seen) >= LOS_CACHE_SIZE:
        memo.seen.clear()
    last[:] = [(smoke, memo)]
    return memo


def _smoke_buckets(smoke: tuple[_Cloud, ...]) -> dict[int, list[_Cloud]]:
    memo = _cloud_memo(smoke)
    if memo.buckets is not None:
        return memo.buckets
    c = SMOKE_CELL
    buckets: dict[int, list[_Cloud]] = {}
    for cloud in smoke:
        cx, cy, r = cloud
        for gx in range(int((cx - r) // c), int((cx + r) // c) + 1):
            for gy in range(int((cy - r) // c), int((cy + r) // c) + 1):
                buckets.setdefault(gx * _SMOKE_STRIDE + gy, []).append(cloud)
    memo.buckets = buckets
    return buckets


def smoke_blocks(smoke: Iterable[_Cloud], a: Tile, b: Tile) -> bool:
    """True when the segment between tile centres ``a`` and ``b`` passes within the radius of
    any cloud ``(x, y, radius)`` in ``smoke``.

    With many clouds (a big battle throws hundreds) only those bucketed in cells the
    segment's bounding box touches are tested, so a sight check costs the same however many
    clouds hang elsewhere on the map."""
    if isinstance(smoke, tuple) and len(smoke) > 8:
        c = SMOKE_CELL
        buckets = _smoke_buckets(smoke)
        x0, x1 = (a[0], b[0]) if a[0] <= b[0] else (b[0], a[0])
        y0, y1 = (a[1], b[1]) if a[1] <= b[1] else (b[1], a[1])
        near: list[_Cloud] = []
        for gx in range(x0 // c, x1 // c + 1):
            for gy in range(y0 // c, y1 // c + 1):
                bucket = buckets.get(gx * _SMOKE_STRIDE + gy)
                if bucket is not None:
                    near.extend(bucket)
        return _segment_meets(near, a, b)
    return _segment_meets(smoke, a, b)


def _segment_meets(smoke: Iterable[_Cloud], a: Tile, b: Tile) -> bool:
    ax, ay = a
    vx, vy = b[0] - ax, b[1] - ay
    vv = vx * vx + vy * vy
    for cx, cy, r in smoke:
        if vv == 0:
            t = 0.0
        else:
            t = ((cx - ax) * vx + (cy - ay) * vy) / vv
            t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
        px, py = ax + t * vx - cx, ay + t * vy - cy
        if px * px + py * py <= r * r:
            return True
    return False

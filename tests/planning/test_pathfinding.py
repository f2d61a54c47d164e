"""Grid pathfinding, reachability and line of sight on the hello_companion map and random grids."""

from __future__ import annotations

import heapq
import math
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.components.snapshot import GridView
from esper_arbiter.systems.planning import pathfinding as pf
from tests.planning import WALL, hello_grid

Tile = tuple[int, int]


# -- independent oracles (plain BFS / Dijkstra written differently from the module) --------


def oracle_reachable(grid: GridView, a: Tile, b: Tile) -> bool:
    if not (grid.walkable(*a) and grid.walkable(*b)):
        return False
    seen = {a}
    todo = deque([a])
    while todo:
        x, y = todo.popleft()
        if (x, y) == b:
            return True
        for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if n not in seen and grid.walkable(*n):
                seen.add(n)
                todo.append(n)
    return False


def oracle_cost(grid: GridView, a: Tile, b: Tile) -> float | None:
    """Dijkstra over 8 directions, diagonals only when both orthogonal tiles are open."""
    best = {a: 0.0}
    heap = [(0.0, a)]
    while heap:
        d, (x, y) = heapq.heappop(heap)
        if (x, y) == b:
            return d
        if d > best[(x, y)]:
            continue
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                n = (x + dx, y + dy)
                if (dx, dy) == (0, 0) or not grid.walkable(*n):
                    continue
                if dx and dy and not (grid.walkable(x + dx, y) and grid.walkable(x, y + dy)):
                    continue
                nd = d + (math.sqrt(2) if dx and dy else 1.0)
                if nd < best.get(n, math.inf) - 1e-9:
                    best[n] = nd
                    heapq.heappush(heap, (nd, n))
    return None


def assert_valid_path(grid: GridView, start: Tile, goal: Tile, path: list[Tile]) -> None:
    assert path[-1] == goal
    assert start not in path
    prev = start
    for t in path:
        assert grid.walkable(*t), f"{t} is not walkable"
        dx, dy = t[0] - prev[0], t[1] - prev[1]
        assert max(abs(dx), abs(dy)) == 1, f"{prev} -> {t} is not one step"
        if dx and dy:  # no squeezing past a wall corner
            assert grid.walkable(prev[0] + dx, prev[1]) and grid.walkable(prev[0], prev[1] + dy)
        prev = t


# -- hello_companion map -------------------------------------------------------------------


def test_path_goes_around_the_wall_not_through_it() -> None:
    grid = hello_grid()
    path = pf.find_path(grid, (2, 3), (12, 2))
    assert path is not None
    assert_valid_path(grid, (2, 3), (12, 2), path)
    assert not set(path) & WALL
    crossings = [t for t in path if t[0] == 6]
    assert crossings and all(t[1] in (0, 9) for t in crossings)


def test_path_to_the_door_takes_the_southern_gap() -> None:
    grid = hello_grid()
    path = pf.find_path(grid, (2, 8), (15, 8))
    assert path is not None
    assert (6, 9) in path
    assert math.isclose(pf.path_cost(path, (2, 8)), oracle_cost(grid, (2, 8), (15, 8)) or -1)


def test_open_ground_path_is_straight_and_shortest() -> None:
    grid = hello_grid()
    assert pf.find_path(grid, (8, 4), (12, 4)) == [(9, 4), (10, 4), (11, 4), (12, 4)]
    diag = pf.find_path(grid, (8, 2), (11, 5))
    assert diag == [(9, 3), (10, 4), (11, 5)]


def test_degenerate_requests_are_values_not_errors() -> None:
    grid = hello_grid()
    assert pf.find_path(grid, (2, 3), (2, 3)) == []
    assert pf.find_path(grid, (2, 3), (6, 4)) is None  # goal is a wall
    assert pf.find_path(grid, (2, 3), (20, 3)) is None  # out of bounds
    assert pf.find_path(grid, (-1, 0), (2, 3)) is None
    assert pf.find_path(grid, (6, 4), (2, 3)) is None  # start inside the wall


def test_walled_off_goal_is_unreachable() -> None:
    box = frozenset({(9, 3), (10, 3), (11, 3), (9, 4), (11, 4), (9, 5), (10, 5), (11, 5)})
    grid = hello_grid(walls=WALL | box)
    assert pf.find_path(grid, (2, 3), (10, 4)) is None
    assert not pf.reachable(grid, (2, 3), (10, 4))
    assert pf.reachable(grid, (2, 3), (12, 2))
    assert pf.region(grid, (2, 3)) == pf.region(grid, (12, 2)) != pf.region(grid, (10, 4))
    assert pf.region(grid, (6, 4)) == pf.region(grid, (30, 0)) == -1


def test_no_corner_cutting_between_diagonal_walls() -> None:
    grid = GridView(3, 3, frozenset({(1, 0), (0, 1)}), frozenset())
    assert pf.find_path(grid, (0, 0), (1, 1)) is None
    grid = GridView(3, 3, frozenset({(1, 0)}), frozenset())
    assert pf.find_path(grid, (0, 0), (1, 1)) == [(0, 1), (1, 1)]


def test_changed_walls_are_seen_even_if_the_version_was_not_bumped() -> None:
    open_grid = GridView(5, 1, frozenset(), frozenset(), version=7)
    assert pf.find_path(open_grid, (0, 0), (4, 0)) == [(1, 0), (2, 0), (3, 0), (4, 0)]
    blocked = GridView(5, 1, frozenset({(2, 0)}), frozenset(), version=7)
    assert pf.find_path(blocked, (0, 0), (4, 0)) is None
    assert not pf.reachable(blocked, (0, 0), (4, 0))


def test_cached_path_cannot_be_corrupted_by_the_caller() -> None:
    grid = hello_grid()
    first = pf.find_path(grid, (2, 3), (17, 3))
    assert first is not None
    expected = list(first)
    first.clear()
    assert pf.find_path(grid, (2, 3), (17, 3)) == expected


def test_line_of_sight_walls_and_open_ground() -> None:
    grid = hello_grid()
    assert not pf.line_of_sight(grid, (2, 3), (12, 2))  # through the wall
    assert pf.line_of_sight(grid, (7, 3), (12, 2))
    assert pf.line_of_sight(grid, (2, 0), (12, 0))  # along the open top row
    assert pf.line_of_sight(grid, (4, 4), (4, 4))
    assert not pf.line_of_sight(grid, (2, 3), (25, 3))


def test_smoke_blocks_sight_only_near_the_line() -> None:
    clear = hello_grid()
    assert pf.line_of_sight(clear, (7, 3), (15, 3))
    on_line = hello_grid(smoke=[(11, 3, 1.5)])
    assert not pf.line_of_sight(on_line, (7, 3), (15, 3))
    assert not pf.line_of_sight(on_line, (15, 3), (7, 3))
    off_line = hello_grid(smoke=[(11, 7, 1.5)])
    assert pf.line_of_sight(off_line, (7, 3), (15, 3))


def test_step_distances_and_nearest_helpers() -> None:
    grid = hello_grid()
    steps = pf.step_distances(grid, (2, 3))
    assert steps[(2, 3)] == 0
    assert steps[(3, 4)] == 1
    assert (6, 4) not in steps
    assert steps[(7, 3)] > 5  # around the wall, not through it
    got = pf.nearest_reachable(grid, (2, 3), [(7, 3), (4, 5), (6, 5)])
    assert got == ((4, 5), 2)
    assert pf.nearest_walkable(grid, (6, 4)) in {(5, 4), (7, 4)}
    assert pf.nearest_walkable(grid, (3, 3)) == (3, 3)
    assert pf.distance((0, 0), (3, 4)) == 5.0
    near = pf.step_distances(grid, (2, 3), max_steps=2)
    assert near == {t: n for t, n in steps.items() if n <= 2}


# -- properties on random grids ------------------------------------------------------------


@st.composite
def grids_and_ends(draw: st.DrawFn) -> tuple[GridView, Tile, Tile]:
    w = draw(st.integers(1, 9))
    h = draw(st.integers(1, 9))
    cells = [(x, y) for x in range(w) for y in range(h)]
    walls = frozenset(draw(st.sets(st.sampled_from(cells), max_size=len(cells))))
    version = draw(st.integers(0, 3))
    tile = st.tuples(st.integers(-1, w), st.integers(-1, h))
    return GridView(w, h, walls, frozenset(), version=version), draw(tile), draw(tile)


@settings(max_examples=300, deadline=None)
@given(grids_and_ends())
def test_path_found_iff_reachable_and_walks_only_open_tiles(
    case: tuple[GridView, Tile, Tile],
) -> None:
    grid, start, goal = case
    path = pf.find_path(grid, start, goal)
    expect = oracle_reachable(grid, start, goal)
    assert pf.reachable(grid, start, goal) == expect
    assert (path is not None) == expect
    if path is None:
        return
    if start == goal:
        assert path == []
        return
    assert_valid_path(grid, start, goal, path)
    cost = oracle_cost(grid, start, goal)
    assert cost is not None
    assert math.isclose(pf.path_cost(path, start), cost)


@settings(max_examples=300, deadline=None)
@given(grids_and_ends(), st.lists(
    st.tuples(st.integers(0, 8), st.integers(0, 8), st.floats(0.5, 2.0)), max_size=2))
def test_line_of_sight_is_symmetric(
    case: tuple[GridView, Tile, Tile], smoke: list[tuple[int, int, float]],
) -> None:
    grid, a, b = case
    grid = GridView(grid.width, grid.height, grid.walls, frozenset(), tuple(smoke), grid.version)
    assert pf.line_of_sight(grid, a, b) == pf.line_of_sight(grid, b, a)
    if pf.line_of_sight(grid, a, b) and a != b:
        assert not pf.smoke_blocks(grid.smoke, a, b)


@settings(max_examples=300, deadline=None)
@given(
    clouds=st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60),
                              st.floats(0.5, 6.0)), min_size=9, max_size=80),
    a=st.tuples(st.integers(0, 50), st.integers(0, 50)),
    b=st.tuples(st.integers(0, 50), st.integers(0, 50)),
)
def test_many_clouds_block_sight_exactly_as_a_scan_of_them_all(
    clouds: list[tuple[int, int, float]], a: tuple[int, int], b: tuple[int, int]
) -> None:
    """A big battle's hundreds of clouds are bucketed; the answer must not change."""
    assert pf.smoke_blocks(tuple(clouds), a, b) == any(
        pf.smoke_blocks([c], a, b) for c in clouds
    )


@settings(max_examples=100, deadline=None)
@given(
    cover=st.sets(st.tuples(st.integers(0, 199), st.integers(0, 199)), min_size=70,
                  max_size=400),
    centre=st.tuples(st.integers(0, 199), st.integers(0, 199)),
    want=st.integers(1, 20),
)
def test_cover_near_holds_the_nearest_cover(
    cover: set[tuple[int, int]], centre: tuple[int, int], want: int
) -> None:
    """On a big map only nearby cover is ranked: it must still include the `want` nearest."""
    grid = GridView(200, 200, frozenset(), frozenset(cover))
    near = set(pf.cover_near(grid, centre, want))
    assert len(near) >= min(want, len(cover))
    cheb = sorted(max(abs(t[0] - centre[0]), abs(t[1] - centre[1])) for t in cover)
    kth = cheb[min(want, len(cover)) - 1]
    # every tile strictly nearer (Chebyshev) than the want-th nearest is in the answer
    assert all(t in near for t in cover
               if max(abs(t[0] - centre[0]), abs(t[1] - centre[1])) < min(kth, 8))

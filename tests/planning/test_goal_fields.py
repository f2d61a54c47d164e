"""Cost-to-goal fields: a route read off the field is a real shortest walk, like A*'s."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings

from esper_arbiter.components.snapshot import GridView
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.goal_fields import cost_field, route_toward
from tests.planning.test_pathfinding import (
    assert_valid_path,
    grids_and_ends,
    oracle_cost,
    oracle_reachable,
)


@settings(max_examples=300, deadline=None)
@given(grids_and_ends())
def test_a_route_exists_iff_reachable_and_costs_what_the_shortest_walk_does(
    case: tuple[GridView, tuple[int, int], tuple[int, int]],
) -> None:
    grid, start, goal = case
    route = route_toward(grid, start, goal)
    assert (route is not None) == oracle_reachable(grid, start, goal)
    if route is None:
        return
    tiles = list(route)
    if start == goal:
        assert tiles == []
        return
    assert_valid_path(grid, start, goal, tiles)
    cost = oracle_cost(grid, start, goal)
    assert cost is not None
    assert math.isclose(pf.path_cost(tiles, start), cost)
    found = pf.find_path(grid, start, goal)
    assert found is not None and math.isclose(pf.path_cost(found, start), cost)


def test_the_field_is_built_once_per_goal_and_shared() -> None:
    grid = GridView(30, 20, frozenset((10, y) for y in range(15)), frozenset(), version=71)
    first = cost_field(grid, (28, 2))
    assert first is not None
    assert cost_field(grid, (28, 2)) is first
    assert first[2 * 30 + 10] == math.inf  # a wall
    # around the wall's open end: from (2, 2) the walk goes down past y = 14 and back up
    around = oracle_cost(grid, (2, 2), (28, 2))
    assert around is not None and around > 26 + 2
    assert math.isclose(first[2 * 30 + 2], around)


def test_only_the_first_tiles_asked_for_are_walked() -> None:
    grid = GridView(200, 3, frozenset(), frozenset(), version=72)
    route = route_toward(grid, (0, 1), (199, 1))
    assert route is not None
    assert list(itertools.islice(route, 3)) == [(1, 1), (2, 1), (3, 1)]


def test_walls_and_cut_off_goals_have_no_route() -> None:
    walls = frozenset((5, y) for y in range(10))
    grid = GridView(10, 10, walls, frozenset(), version=73)
    assert route_toward(grid, (1, 1), (8, 8)) is None  # the wall cuts the map in two
    assert route_toward(grid, (1, 1), (5, 5)) is None  # the goal is a wall
    assert route_toward(grid, (5, 5), (1, 1)) is None  # so is the start
    assert route_toward(grid, (1, 1), (-1, 1)) is None  # off the map
    assert cost_field(grid, (5, 2)) is None

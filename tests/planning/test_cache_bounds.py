"""The pathfinding caches stay bounded in memory, not only in entry count: a big map keeps
few step maps, and maps the game has left are dropped."""

from __future__ import annotations

from esper_arbiter.components.snapshot import GridView
from esper_arbiter.systems.planning import pathfinding as pf


def _open_grid(w: int, h: int, version: int = 0) -> GridView:
    return GridView(width=w, height=h, walls=frozenset({(w // 2, 0)}), cover=frozenset(),
                    smoke=(), version=version)


def test_step_maps_of_a_big_map_stay_within_the_cell_budget() -> None:
    grid = _open_grid(400, 200)  # 80,000 tiles: 256 cached maps would be ~2 GB
    for x in range(0, 40):
        pf.step_distances(grid, (x, 5))
    idx = pf._index(grid)
    cells = sum(len(m) for m in idx.step_maps.values())
    assert len(idx.step_maps) == 8
    assert cells <= max(pf.STEP_MAP_CELL_BUDGET, 8 * 400 * 200)


def test_a_small_map_keeps_every_start_tile_up_to_the_count_limit() -> None:
    grid = _open_grid(20, 10)
    for x in range(20):
        for y in range(1, 10):
            pf.step_distances(grid, (x, y))
    assert len(pf._index(grid).step_maps) == 180


def test_only_a_few_wall_layouts_are_kept() -> None:
    for v in range(40):
        pf.step_distances(_open_grid(30, 20, version=1000 + v), (1, 1))
    assert len(pf._indexes) <= pf.GRID_CACHE_SIZE <= 2

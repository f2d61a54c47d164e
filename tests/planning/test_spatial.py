"""The spatial index answers exactly what a full scan would, whatever the layout."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.components.world import Position
from esper_arbiter.systems.planning.spatial import CellIndex

coord = st.floats(min_value=-5, max_value=150, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    pts=st.lists(st.tuples(coord, coord), max_size=300),
    x=coord, y=coord,
    radius=st.floats(min_value=0.5, max_value=120),
    k=st.integers(0, 12),
    cell=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_nearest_matches_a_full_scan(
    pts: list[tuple[float, float]], x: float, y: float, radius: float, k: int, cell: int
) -> None:
    idx = CellIndex([Position(*p) for p in pts], lambda p: p, cell=cell)

    def d2(p: tuple[float, float]) -> float:
        dx, dy = p[0] - x, p[1] - y
        return dx * dx + dy * dy

    got = [d for d, _ in idx.nearest(x, y, radius, k)]
    want = sorted(d2(p) for p in pts if d2(p) <= radius * radius)[:k]
    assert got == want


def test_skip_leaves_items_out_without_using_up_k() -> None:
    pts = [Position(float(i), 0.0) for i in range(10)]
    idx = CellIndex(pts, lambda p: p, key=lambda p: int(p.x))
    near = idx.nearest(0.0, 0.0, 50.0, 3, skip={0, 1})
    assert [p.x for _, p in near] == [2.0, 3.0, 4.0]


def test_distances_use_live_positions() -> None:
    a, b = Position(0.0, 0.0), Position(3.0, 0.0)
    idx = CellIndex([a, b], lambda p: p)
    a.x = 10.0  # moved after the index was built
    assert [p for _, p in idx.nearest(3.0, 0.0, 5.0, 1)] == [b]
    assert [p for _, p in idx.nearest(9.0, 0.0, 5.0, 1)] == [a]


@settings(max_examples=300, deadline=None)
@given(
    pts=st.lists(st.tuples(coord, coord, st.floats(-1, 1), st.floats(-1, 1)), max_size=300),
    x=coord, y=coord,
    radius=st.floats(min_value=0.5, max_value=60),
    k=st.integers(1, 12),
    cell=st.sampled_from([2, 4, 8]),
)
def test_items_that_moved_within_the_slack_are_still_found_exactly(
    pts: list[tuple[float, float, float, float]], x: float, y: float, radius: float, k: int,
    cell: int,
) -> None:
    """Perception keeps an index for a fraction of a second while units walk: pruning whole
    cells must not lose a unit that has since stepped out of its cell's rectangle."""
    live = [Position(px, py) for px, py, _, _ in pts]
    idx = CellIndex(live, lambda p: p, cell=cell, slack=1.5)
    for p, (_, _, mx, my) in zip(live, pts, strict=True):
        p.x += mx
        p.y += my
    got = [d for d, _ in idx.nearest(x, y, radius, k)]
    # the index's own arithmetic (x * x, not x ** 2: the two can differ in the last bit)
    d2s = sorted((p.x - x) * (p.x - x) + (p.y - y) * (p.y - y) for p in live)
    assert got == [d for d in d2s if d <= radius * radius][:k]

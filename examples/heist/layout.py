"""The bank: a 32x22 tile map drawn as text, and the parser that turns it into world data.

Legend: ``#`` wall, ``.`` floor, ``c`` cover (a desk, a pillar: walkable, halves damage),
``E`` the exit, ``T`` the vault terminal, ``D`` the vault door (a wall until hacked),
``V`` the loot inside the vault, ``S`` a crew member, ``G`` a patrolling guard, ``g`` a guard
who stays put, ``p`` a civilian.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BANK = """\
################################
#......#.............#.........#
#.E....#..c.......T..#..V......#
#......+.............D.........#
#......#.....G.......#.........#
#..SS..#....c....c...#.........#
#..S...#.............###########
###+####...p...................#
#..............c........G......#
#.....c.............######.....#
#...........#...p...#....#..c..#
#....p......#.......#....#.....#
#...........#.......#....+..p..#
####.########...c...######.....#
#................G.............#
#....c.........................#
#.........########..c.....p....#
#..p......#......#.............#
#.........#..p...+.......c.....#
#.........#......#.............#
#..............................#
################################
"""


@dataclass(slots=True)
class Layout:
    """What a map text says: bounds, walls, cover, points of interest and who starts where."""

    width: int
    height: int
    walls: set[tuple[int, int]] = field(default_factory=set)
    cover: set[tuple[int, int]] = field(default_factory=set)
    pois: dict[str, tuple[int, int]] = field(default_factory=dict)
    crew: list[tuple[int, int]] = field(default_factory=list)
    guards: list[tuple[int, int, bool]] = field(default_factory=list)
    """(x, y, patrols)."""
    civilians: list[tuple[int, int]] = field(default_factory=list)


def parse(text: str) -> Layout:
    """Read a map drawn with the legend above. Rows must all have the same width."""
    rows = [r for r in text.splitlines() if r]
    if not rows:
        raise ValueError("empty map")
    width = len(rows[0])
    bad = [i for i, r in enumerate(rows) if len(r) != width]
    if bad:
        raise ValueError(f"map rows {bad} are not {width} characters wide")
    out = Layout(width, len(rows))
    for y, row in enumerate(rows):
        for x, ch in enumerate(row):
            tile = (x, y)
            if ch == "#":
                out.walls.add(tile)
            elif ch == "c":
                out.cover.add(tile)
            elif ch == "E":
                out.pois["exit"] = tile
            elif ch == "T":
                out.pois["terminal"] = tile
            elif ch == "D":
                out.pois["vault_door"] = tile
                out.walls.add(tile)
            elif ch == "V":
                out.pois["vault"] = tile
            elif ch == "S":
                out.crew.append(tile)
            elif ch in "Gg":
                out.guards.append((x, y, ch == "G"))
            elif ch == "p":
                out.civilians.append(tile)
            elif ch not in ".+":
                raise ValueError(f"map ({x}, {y}): unknown tile {ch!r}")
    return out

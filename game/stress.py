"""A big world of small fights: the stress round for ``--agents N --squad-size K``.

:func:`~esper_arbiter.game.scenario.build_stress_scenario` puts every companion behind one
player, so ``--agents 10000`` is one fight of 20,000 units around one spot: a crowd whose
density grows with N, which no engine can make cost the same per agent. A game that has
10,000 NPCs has them in squads, each in its own encounter. This builder lays the map out
as a grid of sectors, one squad per sector: a squad leader (``Leader``, order ``hold``)
with ``K - 1`` companions that follow it (``Agent.leader``), and as many enemies spawned in
contact on the sector's other half. Neighbouring sectors touch, so fights spill over as
they would in a real level. The player starts among the first squad and heads for the
breach door in the far corner.

The same ``(n, seed, squad)`` always gives the same scenario.
"""

from __future__ import annotations

import math
import random

from esper_arbiter.game.scenario import MAX_MAP_SIDE, Scenario, UnitSpec, _reachable
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

Tile = tuple[int, int]

SECTOR_W = 14
"""Tiles across one squad's sector: blue holds the left half, red arrives on the right."""
SECTOR_H = 10
DEFAULT_SQUAD = 10
"""Agents in a squad (its leader included) when none is given."""
MAX_SQUAD = (SECTOR_W // 2) * SECTOR_H - 1
"""As many as a sector's half holds, the player's place aside."""


def build_squad_scenario(n: int, seed: int = 0, rules: Rules = DEFAULT_RULES,
                         *, squad: int = DEFAULT_SQUAD) -> Scenario:
    """``n`` companions in squads of ``squad`` (each led by one of them) and ``n`` enemies,
    one squad and its attackers per sector (see module docstring)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 1 <= squad <= MAX_SQUAD:
        raise ValueError(f"a squad has 1 to {MAX_SQUAD} members, not {squad}")
    rng = random.Random(seed)
    n_squads = math.ceil(n / squad)
    cols = max(1, round(math.sqrt(n_squads * SECTOR_H / SECTOR_W)))
    rows = math.ceil(n_squads / cols)
    width, height = cols * SECTOR_W, rows * SECTOR_H + 2  # a spare corridor row for the door
    if width > MAX_MAP_SIDE or height > MAX_MAP_SIDE:
        raise ValueError(f"{n} agents in squads of {squad} need a {width}x{height} map; the "
                         f"largest is {MAX_MAP_SIDE} a side (use larger squads)")
    walls: set[Tile] = set()
    cover: set[Tile] = set()
    blue_tiles: list[list[Tile]] = []
    red_tiles: list[list[Tile]] = []
    for s in range(n_squads):
        ox, oy = (s % cols) * SECTOR_W, (s // cols) * SECTOR_H
        half = SECTOR_W // 2
        # A short wall stub between the halves and two cover tiles per side: sight lines,
        # paths around and something to hide behind, as in the hand-made rounds.
        stub_y = oy + rng.randrange(1, SECTOR_H - 4)
        walls.update((ox + half, y) for y in range(stub_y, stub_y + 3))
        for side_x in (ox + 1, ox + half + 1):
            for _ in range(2):
                cover.add((side_x + rng.randrange(half - 2), oy + rng.randrange(SECTOR_H)))
        blue = [(x, y) for x in range(ox, ox + half) for y in range(oy, oy + SECTOR_H)]
        red = [(x, y) for x in range(ox + half + 1, ox + SECTOR_W)
               for y in range(oy, oy + SECTOR_H)]
        rng.shuffle(blue)
        rng.shuffle(red)
        blue_tiles.append(blue)
        red_tiles.append(red)
    cover -= walls
    door = (width - 2, height - 1)
    companions: list[UnitSpec] = []
    enemies: list[UnitSpec] = []
    player_tile = blue_tiles[0].pop()
    left = n
    for s in range(n_squads):
        size = min(squad, left)
        left -= size
        lead = f"sergeant{s + 1}"
        for i in range(size):
            x, y = blue_tiles[s][i]
            if i == 0:
                companions.append(UnitSpec(lead, x, y, 80.0, "blue", 30, 30, 30, leads=True,
                                           order="hold"))
            else:
                companions.append(UnitSpec(f"companion{len(companions) + 1}", x, y, 80.0,
                                           "blue", 30, 30, 30, leader=lead))
            rx, ry = red_tiles[s][i]
            enemies.append(UnitSpec(f"enemy{len(enemies) + 1}", rx, ry, 40.0, "red", 30, 30, 30,
                                    accuracy=0.3, damage=6.0))
    reach = _reachable(width, height, frozenset(walls), door)
    stranded = [u for u in (*companions, *enemies) if u.pos not in reach]
    if stranded or player_tile not in reach:  # the stubs are too short for this; a guard
        raise ValueError(f"squad map {n}/{squad}: {len(stranded)} spawns cut off the door")
    player = UnitSpec("player", player_tile[0], player_tile[1], 100.0, "blue", 30, 30, 60)
    return Scenario(
        name=f"squads-{n}x{squad}", width=width, height=height, walls=frozenset(walls),
        cover=frozenset(cover), pois={"breach_door": door}, objective="extract",
        extraction_poi="breach_door", player=player, companions=tuple(companions),
        enemies=tuple(enemies), rules=rules, source=f"<squads n={n} squad={squad} seed={seed}>",
    )

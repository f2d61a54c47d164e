"""Reusable snapshots of the hello_companion map for tests.

The map is 20x10 with a wall at x=6 for y=1..8 (gaps at y=0 and y=9), the player at (2, 2), the
companion (the perceiving agent, 80 hp, 30/30 ammo) at (2, 3), the enemy Rival at (12, 2) with
60 hp and two more enemies, cover tiles, and the breach door at (15, 8). Entity ids are fixed
constants so tests can name them.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from esper_arbiter.components.snapshot import GridView, ObjectiveView, UnitView, WorldSnapshot

PLAYER_ID = 1
COMPANION_ID = 2
RIVAL_ID = 3
GRUNT_ID = 4
SNIPER_ID = 5
ENEMY_IDS = (RIVAL_ID, GRUNT_ID, SNIPER_ID)

WIDTH, HEIGHT = 20, 10
WALLS = frozenset((6, y) for y in range(1, 9))
COVER = frozenset({(5, 2), (5, 5), (7, 3), (11, 4), (13, 7)})
DOOR = (15, 8)


def unit(uid: int, x: int, y: int, hp: float = 100.0, max_hp: float | None = None,
         team: str = "blue", name: str = "", in_cover: bool = False) -> UnitView:
    """A :class:`UnitView` with short defaults."""
    return UnitView(id=uid, x=x, y=y, hp=hp, max_hp=hp if max_hp is None else max_hp,
                    team=team, in_cover=in_cover, name=name)


def hello_grid(walls: frozenset[tuple[int, int]] = WALLS,
               cover: frozenset[tuple[int, int]] = COVER,
               smoke: tuple[tuple[int, int, float], ...] = ()) -> GridView:
    return GridView(width=WIDTH, height=HEIGHT, walls=walls, cover=cover, smoke=smoke)


def hello_enemies() -> tuple[UnitView, ...]:
    return (
        unit(RIVAL_ID, 12, 2, hp=60, team="red", name="Rival"),
        unit(GRUNT_ID, 14, 6, hp=40, team="red", name="Grunt"),
        unit(SNIPER_ID, 17, 3, hp=40, team="red", name="Sniper"),
    )


def hello_snapshot(**overrides: Any) -> WorldSnapshot:
    """The hello_companion opening as the companion sees it; ``overrides`` replace any
    :class:`WorldSnapshot` field (``ammo=0``, ``cooldowns={"smoke": 4.0}``, ``grid=...``)."""
    snap = WorldSnapshot(
        t=0.0,
        me=unit(COMPANION_ID, 2, 3, hp=80, team="blue", name="companion"),
        leader=unit(PLAYER_ID, 2, 2, hp=100, team="blue", name="player"),
        enemies=hello_enemies(),
        allies=(),
        grid=hello_grid(),
        pois=MappingProxyType({"breach_door": DOOR}),
        objective=ObjectiveView("breach_door", "reach", 15, 8),
        orders=None,
        ammo=30,
        ammo_capacity=30,
        ammo_reserve=90,
        morale=1.0,
        cooldowns=MappingProxyType({"smoke": 0.0, "heal": 0.0}),
    )
    return dataclasses.replace(snap, **overrides) if overrides else snap


def with_enemy(snap: WorldSnapshot, uid: int, **changes: Any) -> WorldSnapshot:
    """``snap`` with enemy ``uid``'s fields changed (``hp=0`` kills it)."""
    enemies = tuple(dataclasses.replace(e, **changes) if e.id == uid else e
                    for e in snap.enemies)
    return dataclasses.replace(snap, enemies=enemies)

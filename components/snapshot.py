"""WorldSnapshot: everything an agent's brains know about the world, frozen at one instant.

The snapshot is the only input to GOAP, the behaviour tree, the validator and the prompt, so a
host that fills it can use the whole system. It is immutable and cheap to share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esper_arbiter.components.actions import ActionStep

_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class UnitView:
    """One entity as seen by an agent: id, tile, health, side and whether it is in cover."""

    id: int
    x: int
    y: int
    hp: float
    max_hp: float
    team: str
    in_cover: bool = False
    name: str = ""

    @property
    def alive(self) -> bool:
        return self.hp > 0

    @property
    def pos(self) -> tuple[int, int]:
        return (self.x, self.y)


@dataclass(frozen=True, slots=True)
class GridView:
    """Map bounds and what blocks movement or sight right now."""

    width: int
    height: int
    walls: frozenset[tuple[int, int]]
    cover: frozenset[tuple[int, int]]
    smoke: tuple[tuple[int, int, float], ...] = ()  # (x, y, radius) of live clouds
    version: int = 0

    def in_bounds(self, x: int, y: int) -> bool:
        return 0 <= x < self.width and 0 <= y < self.height

    def walkable(self, x: int, y: int) -> bool:
        return 0 <= x < self.width and 0 <= y < self.height and (x, y) not in self.walls


@dataclass(frozen=True, slots=True)
class ObjectiveView:
    """The objective as an agent sees it: its label, kind, and the walkable tile it means (the
    POI's tile, or the nearest walkable tile when the POI itself is a wall)."""

    label: str
    kind: str
    x: int
    y: int
    radius: float = 1.5

    @property
    def pos(self) -> tuple[int, int]:
        return (self.x, self.y)


@dataclass(frozen=True, slots=True)
class WorldSnapshot:
    """What agent ``me`` perceives at game time ``t``.

    ``enemies`` are units of hostile sides, ``allies`` units of ``me``'s own or allied sides
    (the leader not included), ``neutrals`` units of neutral sides: never targets. ``leader``
    is the unit the agent follows and protects, if its side has one.
    """

    t: float
    me: UnitView
    leader: UnitView | None
    enemies: tuple[UnitView, ...]
    allies: tuple[UnitView, ...]
    grid: GridView
    pois: Mapping[str, tuple[int, int]] = field(default_factory=lambda: _EMPTY_POIS)
    objective: ObjectiveView | None = None
    neutrals: tuple[UnitView, ...] = ()
    orders: str | None = None
    order_serial: int = 0
    ammo: int = 0
    ammo_capacity: int = 0
    ammo_reserve: int = 0
    morale: float = 1.0
    cooldowns: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    """Seconds until each ability is ready (0 = ready)."""
    advice: tuple[tuple[ActionStep, str], ...] | None = None
    """The domain's advice for this moment (legal steps with reasons), worked out on the game
    thread when the snapshot went into a plan request, so the prompt built later on the
    model's thread offers what the advisor said *then*, without calling host code from
    another thread. ``None``: not worked out (the prompt asks the advisor itself)."""

    def unit(self, entity_id: int) -> UnitView | None:
        """Find any known unit (me, leader, ally, enemy or neutral) by entity id."""
        if self.me.id == entity_id:
            return self.me
        if self.leader is not None and self.leader.id == entity_id:
            return self.leader
        for group in (self.enemies, self.allies, self.neutrals):
            for u in group:
                if u.id == entity_id:
                    return u
        return None

    def live_enemies(self) -> tuple[UnitView, ...]:
        return tuple(e for e in self.enemies if e.hp > 0)

    def cooldown(self, name: str) -> float:
        return self.cooldowns.get(name, 0.0)


_EMPTY_POIS: Mapping[str, tuple[int, int]] = MappingProxyType({})

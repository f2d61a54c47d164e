"""World components a host game provides. Plain data; the systems only read them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Position:
    """Where an entity is, in tile units. Fractions mean it is walking between tiles."""

    x: float
    y: float

    @property
    def tile(self) -> tuple[int, int]:
        return (round(self.x), round(self.y))


@dataclass(slots=True)
class Health:
    hp: float
    max_hp: float

    @property
    def alive(self) -> bool:
        return self.hp > 0


@dataclass(slots=True)
class Team:
    """Side an entity fights for. Entities on different sides are hostile to each other.

    To switch sides, replace the component (``esper.add_component``) rather than assigning
    ``side``: perception caches the grouping until components are added or removed.
    """

    side: str


@dataclass(slots=True)
class Name:
    label: str


@dataclass(slots=True)
class Player:
    """Marks the human-controlled entity (the one companions protect and follow)."""


@dataclass(slots=True)
class Ammo:
    rounds: int
    capacity: int
    reserve: int = 0


@dataclass(slots=True)
class Morale:
    """0.0 (broken) .. 1.0 (steady)."""

    value: float = 1.0


@dataclass(slots=True)
class Cooldowns:
    """Game time (seconds) at which each ability is ready again, e.g. ``{"smoke": 12.5}``."""

    ready_at: dict[str, float] = field(default_factory=dict)

    def remaining(self, name: str, now: float) -> float:
        return max(0.0, self.ready_at.get(name, 0.0) - now)


@dataclass(slots=True)
class InCover:
    """Present while the entity is crouched in cover (damage halved)."""


@dataclass(slots=True)
class SmokeCloud:
    """A smoke cloud centred on a tile; blocks line of sight within ``radius`` until it expires."""

    x: int
    y: int
    radius: float
    started_at: float
    expires_at: float


@dataclass(slots=True)
class Orders:
    """The player's standing order to a companion: follow, hold, attack or extract.

    ``serial`` increases on every new order so systems can tell a repeat from a change.
    """

    order: str | None = None
    issued_at: float = 0.0
    serial: int = 0


@dataclass(slots=True)
class MapGrid:
    """Bounds, walls, cover tiles and points of interest. One entity in the world carries it.

    ``version`` must be bumped by the host whenever walls or cover change, so cached
    paths and snapshots can be reused while it does not.
    """

    width: int
    height: int
    walls: frozenset[tuple[int, int]] = frozenset()
    cover: frozenset[tuple[int, int]] = frozenset()
    pois: dict[str, tuple[int, int]] = field(default_factory=dict)
    objective: str = ""
    version: int = 0

    def in_bounds(self, x: int, y: int) -> bool:
        return 0 <= x < self.width and 0 <= y < self.height

    def walkable(self, x: int, y: int) -> bool:
        return self.in_bounds(x, y) and (x, y) not in self.walls


@dataclass(slots=True)
class GameClock:
    """Game time in seconds. The host advances it; the systems read it (one entity carries it).

    Keeping time in a component, not the wall clock, makes seeded runs reproducible.
    """

    t: float = 0.0

"""World components a host game provides. Plain data; the systems only read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    """Side an entity belongs to. How two sides regard each other (hostile, neutral, allied)
    comes from the domain's :class:`~components.factions.Factions`; by default every other
    side is hostile.

    To switch sides, replace the component (``esper.add_component``) rather than assigning
    ``side``: perception caches the grouping until components are added or removed.
    """

    side: str


@dataclass(slots=True)
class Name:
    label: str


@dataclass(slots=True)
class Leader:
    """Marks a unit agents follow and protect (a VIP, a squad leader, the unit a human
    controls). Optional. An agent follows the one its ``Agent.leader`` names, or else the first
    on its side, so a side may have one per squad."""


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
    """A standing order to an agent, as a word of the domain's order vocabulary (the squad
    preset knows ``follow``, ``hold``, ``attack`` and ``objective``; a host may rename or add
    words when it builds its domain). Unknown words reach the prompt but mean nothing to GOAP.

    ``serial`` increases on every new order so systems can tell a repeat from a change.
    """

    order: str | None = None
    issued_at: float = 0.0
    serial: int = 0


def order_key(order: str) -> str:
    """How an order word is looked up in a domain's vocabulary: ``" Hold "`` means ``hold``."""
    return order.strip().lower()


ObjectiveKind = Literal["reach", "hold"]


@dataclass(frozen=True, slots=True)
class Objective:
    """What the agents are there for, as data: a point of interest and what it means.

    ``poi`` names a key of :attr:`MapGrid.pois`. ``kind`` says what counts: ``"reach"`` (get
    there; with a :class:`Leader`, bring the leader along) or ``"hold"`` (get there and stay
    within ``radius``). ``label`` is how the prompt and HUD name it (default: the POI name).
    Whether reaching it ends the round is the host's business.
    """

    poi: str
    kind: ObjectiveKind = "reach"
    radius: float = 1.5
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("reach", "hold"):
            raise ValueError(f"objective kind must be 'reach' or 'hold', got {self.kind!r}")
        if not self.radius > 0:
            raise ValueError(f"objective radius must be > 0, got {self.radius!r}")


@dataclass(slots=True)
class MapGrid:
    """Bounds, walls, cover tiles, points of interest and the objective. Exactly one entity in
    the world carries it.

    ``version`` must be bumped by the host whenever walls or cover change, so cached
    paths and snapshots can be reused while it does not.
    """

    width: int
    height: int
    walls: frozenset[tuple[int, int]] = frozenset()
    cover: frozenset[tuple[int, int]] = frozenset()
    pois: dict[str, tuple[int, int]] = field(default_factory=dict)
    objective: Objective | None = None
    version: int = 0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"MapGrid needs a positive size, got {self.width}x{self.height}")

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

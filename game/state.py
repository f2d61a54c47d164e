"""hello_companion's own components: game state the AI plugin does not need but a renderer does.

Plain data, like ``components/``. The game systems write them; a front end only reads them
(a unit's current path, what it is busy doing and how far along, downed and dead markers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esper_arbiter.systems.planning.behavior_tree import Node

Tile = tuple[int, int]


@dataclass(slots=True)
class Combatant:
    """Per-unit firing stats (the scenario may give enemies worse aim than the rules' default)."""

    accuracy: float
    """Chance that one shot hits, 0..1."""
    damage: float
    """Damage of one hit before cover."""


@dataclass(slots=True)
class Enemy:
    """An enemy driven by a behaviour tree (not an arbiter Agent)."""

    tree: Node
    blackboard: dict[str, Any] = field(default_factory=dict)
    last_think: float = -1.0e9
    trace: list[str] = field(default_factory=list)
    """Nodes the last tick ran through (for a debug overlay)."""
    alerted: bool = False
    """Guards hold their post until they see a hostile, get hurt or hear an alerted ally."""
    alerted_at: float | None = None


@dataclass(slots=True)
class Motion:
    """Where a moving unit is heading: the tiles still to walk (next first) and the goal."""

    path: list[Tile] = field(default_factory=list)
    goal: Tile | None = None


@dataclass(slots=True)
class Activity:
    """How far the unit has got with its current Intent step (ActionSystem's working state).

    ``serial`` is the Intent serial this belongs to; a new serial starts a fresh activity.
    ``progress`` (0..1) is what a renderer draws as a bar for timed steps (reload, revive ...).
    """

    serial: int = -1
    kind: str = ""
    started_at: float = 0.0
    until: float = 0.0
    """End time of a timed step (reload, heal, revive, scan, wait, cover fire)."""
    shots_fired: int = 0
    next_shot_at: float = 0.0
    target: int | None = None
    progress: float = 0.0
    goal: Tile | None = None
    repaths: int = 0


@dataclass(slots=True)
class Downed:
    """At 0 hp a player-side unit goes down; an ally can revive it until ``bleed_out_at``."""

    since: float
    bleed_out_at: float
    reviver: int | None = None
    """Entity currently reviving this unit, if any."""


@dataclass(slots=True)
class Dead:
    """The unit is out of the round (killed, or bled out while downed)."""

    at: float


@dataclass(slots=True)
class Suppressed:
    """Under cover fire: the unit's own shots hit half as often until ``until``."""

    until: float
    by: int


@dataclass(slots=True)
class PlayerInput:
    """What drives the player: the autopilot, or a front end's movement input.

    With ``autopilot`` off a front end sets ``move`` (a direction, e.g. ``(1, 0)`` for D); the
    player then walks that way, and when standing still fires at hostiles in range and sight.
    """

    autopilot: bool = True
    move: tuple[float, float] = (0.0, 0.0)
    fired_orders: set[int] = field(default_factory=set)
    """Indices of scenario autopilot orders already given."""
    next_think_at: float = 0.0
    retreat_ready_at: float = 0.0
    """The autopilot may back off out of sight again from this game time."""

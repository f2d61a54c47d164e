"""How far and how much an agent perceives: the bound that keeps a decision's cost and a
prompt's size the same with 100 or 10,000 units on the map."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sensing:
    """A snapshot lists at most ``max_enemies`` hostile, ``max_allies`` friendly and
    ``max_neutrals`` neutral units, the nearest ones within ``radius`` tiles, plus the units
    that matter whatever their distance (the target of the agent's current step). An agent may
    override the radius with ``Agent(sense_radius=...)``.

    ``max_speed`` is the fastest any unit moves, in tiles per game second. Perception buckets
    units in a grid it rebuilds every quarter second and allows, in each search, for units
    having moved that far since: a lower figure prunes more cells (the idle 1,000-agent crowd
    of ``bench/arbiter_overhead.py`` costs about a quarter less at 4 tiles/s than at 8), and a
    unit faster than it may be left out of a snapshot's nearest for up to a quarter second.
    The squad preset sets its rules' ``move_speed``."""

    radius: float = 24.0
    max_enemies: int = 8
    max_allies: int = 8
    max_neutrals: int = 8
    max_speed: float = 8.0

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"sensing radius must be > 0, got {self.radius!r}")
        if not self.max_speed > 0:
            raise ValueError(f"Sensing.max_speed must be > 0 (tiles per second), "
                             f"got {self.max_speed!r}")
        for name in ("max_enemies", "max_allies", "max_neutrals"):
            if getattr(self, name) < 0:
                raise ValueError(f"Sensing.{name} must be >= 0")


DEFAULT_SENSING = Sensing()

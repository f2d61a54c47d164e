"""How far and how much an agent perceives: the bound that keeps a decision's cost and a
prompt's size the same with 100 or 10,000 units on the map."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sensing:
    """A snapshot lists at most ``max_enemies`` hostile, ``max_allies`` friendly and
    ``max_neutrals`` neutral units, the nearest ones within ``radius`` tiles, plus the units
    that matter whatever their distance (the target of the agent's current step). An agent may
    override the radius with ``Agent(sense_radius=...)``."""

    radius: float = 24.0
    max_enemies: int = 8
    max_allies: int = 8
    max_neutrals: int = 8

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"sensing radius must be > 0, got {self.radius!r}")
        for name in ("max_enemies", "max_allies", "max_neutrals"):
            if getattr(self, name) < 0:
                raise ValueError(f"Sensing.{name} must be >= 0")


DEFAULT_SENSING = Sensing()

"""Tunable combat and movement rules shared by the planners, the validator and a host game.

A host that plays by different numbers gives its domain its own :class:`Rules` (subclass it
to add numbers of your own tools); these defaults are the squad-tactics preset's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rules:
    move_speed: float = 4.0
    """Tiles per second."""
    fire_range: float = 8.0
    """Tiles; shooting also needs line of sight."""
    burst_shots: int = 3
    shot_interval: float = 0.35
    shot_damage: float = 12.0
    hit_chance: float = 0.75
    cover_damage_factor: float = 0.5
    reload_time: float = 1.5
    smoke_range: float = 8.0
    smoke_radius: float = 1.5
    smoke_duration: float = 8.0
    smoke_cooldown: float = 12.0
    heal_amount: float = 30.0
    heal_cooldown: float = 10.0
    heal_reach: float = 1.5
    revive_reach: float = 1.5
    revive_time: float = 2.0
    scan_time: float = 0.8
    max_wait: float = 10.0
    max_cover_fire: float = 6.0
    follow_distance: float = 2.5
    low_hp_fraction: float = 0.35


DEFAULT_RULES = Rules()

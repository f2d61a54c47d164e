"""Shared state of one simulated round and the combat rules every game system applies.

A :class:`SimContext` is what the game's processors share: the rules, the one seeded
``random.Random`` all game randomness comes from, the event log, the fixed time step and the
round's result. Combat helpers (:meth:`SimContext.fire`, :meth:`SimContext.damage`) live here so
the player, companions and enemies all shoot by exactly the same rules.

Everything here runs inside the session's esper world (the session switches to it first).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import esper

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.agent import Agent, Intent, IntentStatus, Mode
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.components.world import (
    Ammo,
    GameClock,
    Health,
    InCover,
    MapGrid,
    Orders,
    Position,
    SmokeCloud,
    Team,
)
from esper_arbiter.game.events import GameEventLog
from esper_arbiter.game.state import Combatant, Dead, Downed, Motion, Suppressed
from esper_arbiter.systems.planning.pathfinding import line_of_sight
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.queries import Membership

Tile = tuple[int, int]

SUPPRESSED_ACCURACY = 0.5
"""Multiplier on the hit chance of a unit under cover fire."""
RANGE_FALLOFF = 0.5
"""Hit chance falls linearly with distance, to ``1 - RANGE_FALLOFF`` of it at full range."""


@dataclass(frozen=True, slots=True)
class RoundResult:
    """How a round ended: ``outcome`` is ``"extracted"`` or ``"defeat"``."""

    outcome: str
    t: float
    reason: str = ""


class SimContext:
    """Everything the game systems of one round share (see module docstring)."""

    def __init__(
        self,
        rules: Rules,
        rng: random.Random,
        events: GameEventLog,
        clock: GameClock,
        grid: MapGrid,
        player: int,
        extraction_tile: Tile,
        bleed_out_s: float,
        revive_hp_fraction: float,
    ) -> None:
        self.rules = rules
        self.rng = rng
        self.events = events
        self.clock = clock
        self.map = grid
        self.player = player
        self.extraction_tile = extraction_tile
        self.bleed_out_s = bleed_out_s
        self.revive_hp_fraction = revive_hp_fraction
        self.dt = 0.0
        self.result: RoundResult | None = None
        self._grid_key: tuple[object, ...] | None = None
        self._grid: GridView | None = None
        self._grid_checked: tuple[float, int] | None = None
        self._clouds = Membership(SmokeCloud)

    @property
    def t(self) -> float:
        return self.clock.t

    # -- the map as seen now -------------------------------------------------------------

    def grid_view(self) -> GridView:
        """Walls, cover and the live smoke clouds, as the pathfinder and sight checks want them.

        Rebuilt only when the map version or the set of clouds changed, and checked once per
        frame: every walk, path and sight check of a big fight asks for it.
        """
        m = self.map
        now = self.clock.t
        # The same clouds as at the last look (a set comparison: components come and go all
        # frame long in a fight, and each such change empties esper's query cache).
        same_clouds = not self._clouds.changed()
        checked = (now, m.version)
        if self._grid is not None and same_clouds and self._grid_checked == checked:
            return self._grid
        self._grid_checked = checked
        smoke = tuple(
            sorted(
                (c.x, c.y, c.radius)
                for _, c in esper.get_component(SmokeCloud)
                if c.expires_at > now
            )
        )
        key = (m.version, m.width, m.height, smoke)
        if self._grid is None or key != self._grid_key:
            self._grid = GridView(m.width, m.height, m.walls, m.cover, smoke, m.version)
            self._grid_key = key
        return self._grid

    def sees(self, a: Tile, b: Tile) -> bool:
        """Line of sight between two tiles (walls and smoke block)."""
        return line_of_sight(self.grid_view(), a, b)

    # -- who is who ----------------------------------------------------------------------

    @staticmethod
    def active(ent: int) -> bool:
        """Alive, on its feet and in the round."""
        hp = esper.try_component(ent, Health)  # None as well for an entity that is gone
        return (
            hp is not None
            and hp.hp > 0
            and not esper.has_component(ent, Downed)
            and not esper.has_component(ent, Dead)
        )

    @staticmethod
    def hostile(a: int, b: int) -> bool:
        ta = esper.try_component(a, Team)
        tb = esper.try_component(b, Team)
        return ta is not None and tb is not None and ta.side != tb.side

    @staticmethod
    def tile_of(ent: int) -> Tile | None:
        pos = esper.try_component(ent, Position)
        return None if pos is None else pos.tile

    # -- combat --------------------------------------------------------------------------

    def shot_problem(self, shooter: int, target: int) -> str | None:
        """Why ``shooter`` cannot fire at ``target`` right now, or ``None`` if it can."""
        if not esper.entity_exists(target) or not esper.has_component(target, Health):
            return "target gone"
        if not self.active(target):
            return "target down"
        if not self.hostile(shooter, target):
            return "target not hostile"
        a, b = self.tile_of(shooter), self.tile_of(target)
        if a is None or b is None:
            return "target gone"
        if math.dist(a, b) > self.rules.fire_range + 1e-9:
            return "target out of range"
        if not self.sees(a, b):
            return "no line of sight"
        ammo = esper.try_component(shooter, Ammo)
        if ammo is None or ammo.rounds <= 0:
            return "out of ammo"
        return None

    def fire(self, shooter: int, target: int, accuracy_factor: float = 1.0) -> bool:
        """Fire one round (the caller checked :meth:`shot_problem`). Returns whether it hit."""
        ammo = esper.component_for_entity(shooter, Ammo)
        ammo.rounds -= 1
        stats = esper.try_component(shooter, Combatant)
        accuracy = stats.accuracy if stats is not None else self.rules.hit_chance
        damage = stats.damage if stats is not None else self.rules.shot_damage
        supp = esper.try_component(shooter, Suppressed)
        if supp is not None and supp.until > self.clock.t:
            accuracy *= SUPPRESSED_ACCURACY
        sp = esper.component_for_entity(shooter, Position)
        tp = esper.component_for_entity(target, Position)
        reach = max(self.rules.fire_range, 1e-9)
        falloff = 1.0 - RANGE_FALLOFF * min(1.0, math.dist(sp.tile, tp.tile) / reach)
        hit = self.rng.random() < accuracy * accuracy_factor * falloff
        self.events.add(
            self.clock.t, "shot", source=shooter, target=target, x=sp.x, y=sp.y, tx=tp.x,
            ty=tp.y, hit=hit,
        )
        if hit:
            self.damage(target, damage, source=shooter)
        return hit

    def damage(self, target: int, amount: float, source: int | None = None) -> float:
        """Apply ``amount`` damage (halved in cover). Returns the damage dealt.

        At 0 hp a unit of the player's side goes down (revivable); anyone else dies.
        """
        if not self.active(target):
            return 0.0
        hp = esper.component_for_entity(target, Health)
        if esper.has_component(target, InCover):
            amount *= self.rules.cover_damage_factor
        dealt = min(hp.hp, amount)
        hp.hp = max(0.0, hp.hp - amount)
        pos = esper.component_for_entity(target, Position)
        self.events.add(self.clock.t, "hit", source=source, target=target, x=pos.x, y=pos.y,
                        tx=pos.x, ty=pos.y, amount=round(amount, 2))
        if hp.hp <= 0.0:
            self._fall(target)
        return dealt

    def _fall(self, ent: int) -> None:
        now = self.clock.t
        pos = esper.component_for_entity(ent, Position)
        esper.try_remove_component(ent, InCover)
        esper.try_remove_component(ent, Suppressed)
        motion = esper.try_component(ent, Motion)
        if motion is not None:
            motion.path.clear()
            motion.goal = None
        intent = esper.try_component(ent, Intent)
        player_team = esper.try_component(self.player, Team)
        team = esper.try_component(ent, Team)
        revivable = team is not None and player_team is not None and team.side == player_team.side
        if revivable:
            esper.add_component(ent, Downed(since=now, bleed_out_at=now + self.bleed_out_s))
            if intent is not None and intent.status is IntentStatus.RUNNING:
                intent.fail("downed")
            self.events.add(now, "downed", target=ent, x=pos.x, y=pos.y, tx=pos.x, ty=pos.y)
        else:
            self.kill(ent)

    def kill(self, ent: int) -> None:
        """Take ``ent`` out of the round (killed, or bled out)."""
        now = self.clock.t
        pos = esper.component_for_entity(ent, Position)
        esper.try_remove_component(ent, Downed)
        esper.try_remove_component(ent, InCover)
        esper.add_component(ent, Dead(at=now))
        hp = esper.try_component(ent, Health)
        if hp is not None:
            hp.hp = 0.0
        intent = esper.try_component(ent, Intent)
        if intent is not None and intent.status is IntentStatus.RUNNING:
            intent.fail("dead")
        # A dead companion stops thinking; its ArbiterState (metrics) stays for the summary.
        esper.try_remove_component(ent, Agent)
        self.events.add(now, "died", target=ent, x=pos.x, y=pos.y, tx=pos.x, ty=pos.y)
        if ent == self.player and self.result is None:
            self.finish("defeat", "the player died")

    def finish(self, outcome: str, reason: str) -> None:
        """End the round (first call wins)."""
        if self.result is None:
            self.result = RoundResult(outcome, self.clock.t, reason)
            self.events.add(self.clock.t, outcome, target=self.player, text=reason)

    # -- orders --------------------------------------------------------------------------

    def give_order(self, companion: int, order: str | None) -> bool:
        """Set ``companion``'s standing order (a new serial, so the arbiter replans at once).

        Returns False when the entity cannot take orders (gone, dead or no Orders component).
        """
        orders = esper.try_component(companion, Orders) if esper.entity_exists(companion) else None
        if orders is None or esper.has_component(companion, Dead):
            return False
        orders.order = order
        orders.issued_at = self.clock.t
        orders.serial += 1
        pos = esper.component_for_entity(companion, Position)
        self.events.add(self.clock.t, "order", source=self.player, target=companion, x=pos.x,
                        y=pos.y, tx=pos.x, ty=pos.y, text=order or "none")
        return True


def issue(intent: Intent, step: ActionStep, now: float, label: str, mode: Mode) -> None:
    """Hand ``step`` to the ActionSystem through ``intent`` (new serial, RUNNING)."""
    intent.step = step
    intent.status = IntentStatus.RUNNING
    intent.serial += 1
    intent.issued_at = now
    intent.mode = mode
    intent.label = label
    intent.reason = ""

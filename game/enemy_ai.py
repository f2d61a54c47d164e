"""EnemyAISystem: enemies act through a behaviour tree, ticked on the same snapshot agents get.

Enemies are not arbiter Agents: each carries an :class:`~game.state.Enemy` with its own tree
instance. An enemy starts on guard and does nothing until it is *alerted*: a hostile comes into
sight within ``alert_range``, it takes damage, or an alerted ally within ``call_range`` calls
out. Without this every enemy would charge the player from the first frame.

The tree is ticked when the enemy's Intent is idle, done or failed, and also every
``think_interval`` seconds while it walks or waits. A new decision replaces a Wait or Scan; it
cuts a walk short only when it is a reaction (shoot, reload, throw, heal, revive), so an enemy
never dithers between two walks; a burst, a reload or a throw is never interrupted.
"""

from __future__ import annotations

import math

import esper

from esper_arbiter.components.actions import (
    Attack,
    CoverFire,
    Heal,
    Reload,
    Revive,
    Scan,
    ThrowSmoke,
    Wait,
)
from esper_arbiter.components.agent import Intent, IntentStatus, Mode, think_phase
from esper_arbiter.components.world import Health, Position, Team
from esper_arbiter.game.sim import SimContext, issue
from esper_arbiter.game.state import Enemy
from esper_arbiter.systems.perception import build_snapshot
from esper_arbiter.systems.planning.behavior_tree import tick_tree
from esper_arbiter.systems.queries import components

ENEMY_AI_PRIORITY = 90
"""After the arbiter (100), before the ActionSystem (50)."""

_UNINTERRUPTIBLE = (Attack, CoverFire, ThrowSmoke, Reload, Heal, Revive)
"""Running steps no new decision replaces."""
_REACTIONS = _UNINTERRUPTIBLE
"""Steps that may cut a running move short."""
_IDLE = (Wait, Scan)
"""Running steps any new decision replaces."""
MIN_THINKS_PER_FRAME = 64
THINK_SHARE_PER_FRAME = 0.1
"""At most this share of the guards (and at least ``MIN_THINKS_PER_FRAME``) think in one
frame; on average about one in fifteen does."""
ALERT_CHECK_INTERVAL = 0.25
"""Seconds between checks whether a guard noticed something."""


def _spread(ent: int) -> float:
    """A factor in [0.75, 1.25) fixed per entity, to keep a crowd's timers out of step."""
    return 0.75 + 0.5 * think_phase(ent)


class EnemyAISystem(esper.Processor):
    """Writes each live enemy's Intent from its behaviour tree."""

    def __init__(
        self, ctx: SimContext, think_interval: float = 0.5, alert_range: float | None = None,
        call_range: float = 3.5,
    ) -> None:
        self.ctx = ctx
        self.think_interval = think_interval
        self.alert_range = ctx.rules.fire_range if alert_range is None else alert_range
        self.call_range = call_range
        self._next_alert_check = 0.0
        self._seen = 0
        """Guards counted last frame (sets this frame's thinking budget)."""

    def process(self, *args: object, **kwargs: object) -> None:
        ctx = self.ctx
        if ctx.result is not None:
            return
        now = ctx.t
        if now >= self._next_alert_check:
            self._next_alert_check = now + ALERT_CHECK_INTERVAL
            self._raise_alerts(now, list(components(Enemy, Intent, Position, Health)))
        # A frame thinks for at most a share of the guards: when a crowd's bursts end together
        # the rest wait a frame or two (keeping their step) instead of stalling this one.
        budget = max(MIN_THINKS_PER_FRAME, int(self._seen * THINK_SHARE_PER_FRAME))
        thinks = seen = 0
        for ent, (enemy, intent, _pos, hp) in components(Enemy, Intent, Position, Health):
            seen += 1
            # Cheapest tests first: most guards of a big fight are busy or down this frame.
            if not enemy.alerted or hp.hp <= 0 or thinks >= budget:
                continue
            running = intent.status is IntentStatus.RUNNING and intent.step is not None
            if running and (
                isinstance(intent.step, _UNINTERRUPTIBLE)
                or now - enemy.last_think < self.think_interval * _spread(ent)
            ):
                continue
            if not ctx.active(ent):
                continue
            thinks += 1
            snapshot = build_snapshot(ent, now)
            if snapshot is None:
                continue
            _, step, trace = tick_tree(enemy.tree, snapshot, enemy.blackboard)
            enemy.last_think = now
            enemy.trace = trace
            if step is None:
                # Not one second for everybody, so idle guards that started together drift
                # apart (the thinking budget above is what bounds a frame).
                step = Wait(seconds=round(_spread(ent), 2))
            if running and (
                step == intent.step
                or (not isinstance(intent.step, _IDLE) and not isinstance(step, _REACTIONS))
            ):
                continue  # keep walking: only a reaction (shoot, reload ...) breaks off a move
            issue(intent, step, now, "BT", Mode.BEHAVIOR_TREE)
        self._seen = seen

    def _raise_alerts(
        self, now: float, enemies: list[tuple[int, tuple[Enemy, Intent, Position, Health]]]
    ) -> None:
        """Alert every guard that is hurt, sees a hostile or hears an alerted ally.

        Units are bucketed on a coarse grid so a crowd costs a few neighbours per guard, not
        every unit in the world.
        """
        ctx = self.ctx
        waiting = [
            (ent, enemy, pos.tile) for ent, (enemy, _i, pos, hp) in enemies
            if not enemy.alerted and hp.hp > 0 and ctx.active(ent)
        ]
        if not waiting:
            return
        cell = max(1.0, self.alert_range, self.call_range)
        callers: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for ent, (enemy, _i, pos, hp) in enemies:
            if enemy.alerted and hp.hp > 0 and ctx.active(ent):
                t = pos.tile
                callers.setdefault((int(t[0] // cell), int(t[1] // cell)), []).append(t)
        units: dict[tuple[int, int], list[tuple[str, tuple[int, int]]]] = {}
        for ent, (pos, team, hp) in components(Position, Team, Health):
            if hp.hp > 0 and ctx.active(ent):
                t = pos.tile
                units.setdefault((int(t[0] // cell), int(t[1] // cell)), []).append(
                    (team.side, t)
                )
        for ent, enemy, here in waiting:
            if self._notices(ent, here, cell, callers, units):
                enemy.alerted = True
                enemy.alerted_at = now

    def _notices(
        self, ent: int, here: tuple[int, int], cell: float,
        callers: dict[tuple[int, int], list[tuple[int, int]]],
        units: dict[tuple[int, int], list[tuple[str, tuple[int, int]]]],
    ) -> bool:
        ctx = self.ctx
        hp = esper.component_for_entity(ent, Health)
        if hp.hp < hp.max_hp:
            return True
        side = esper.component_for_entity(ent, Team).side
        cx, cy = int(here[0] // cell), int(here[1] // cell)
        near = [(cx + dx, cy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        for key in near:
            for t in callers.get(key, ()):
                if t != here and math.dist(here, t) <= self.call_range:
                    return True
        for key in near:
            for other_side, t in units.get(key, ()):
                if (
                    other_side != side
                    and math.dist(here, t) <= self.alert_range
                    and ctx.sees(here, t)
                ):
                    return True
        return False

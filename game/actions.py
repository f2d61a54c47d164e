"""ActionSystem: carries out every unit's Intent over game time and reports done or failed.

One rule book for everyone: the player's autopilot, the companions' arbiter and the enemies'
behaviour trees all write an :class:`~components.agent.Intent`; this system walks, shoots,
reloads and revives for them, frame by frame, and calls ``intent.finish()`` or
``intent.fail(reason)``. A step advances only when it is really over (a burst fired, a tile
reached), never once per frame.

Per-step rules (numbers from :class:`~esper_arbiter.systems.planning.rules.Rules`):

* MoveTo / Retreat: walk the A* path at ``move_speed`` tiles/s; re-path when a tile ahead is
  blocked; fail when the goal cannot be reached.
* Approach: walk toward the target until it is within ``fire_range`` and in sight.
* TakeCover: walk to the tile, then crouch (InCover, damage halved) if it is a cover tile.
* Attack: a burst of ``burst_shots`` rounds, ``shot_interval`` apart, each needing sight, range
  and ammo; done when the burst is over or the target falls.
* CoverFire: slower, less accurate shots for ``seconds`` that suppress the target.
* ThrowSmoke: within ``smoke_range`` and off cooldown: a cloud that blocks sight.
* Reload, Heal, Revive, Scan, Wait: timed, with the checks a player would expect.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import esper

from esper_arbiter.components.actions import (
    ActionStep,
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    Reload,
    Retreat,
    Revive,
    Scan,
    TakeCover,
    ThrowSmoke,
    Wait,
)
from esper_arbiter.components.agent import Intent, IntentStatus
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    Health,
    InCover,
    Position,
    SmokeCloud,
)
from esper_arbiter.game.sim import SimContext
from esper_arbiter.game.state import Activity, Dead, Downed, Motion, Suppressed
from esper_arbiter.systems.planning.pathfinding import find_path
from esper_arbiter.systems.queries import components

Tile = tuple[int, int]

ACTION_PRIORITY = 50
"""Below the arbiter (100) and the enemy AI (90): acts on this frame's decisions."""

THROW_TIME = 0.4
"""Seconds to throw a smoke grenade."""
HEAL_TIME = 1.0
"""Seconds to apply a medkit."""
APPROACH_TIMEOUT = 15.0
"""An Approach that has not closed in by then fails (the brain gets to rethink)."""
COVER_FIRE_INTERVAL_FACTOR = 2.0
COVER_FIRE_ACCURACY = 0.5
SUPPRESS_FOR = 1.5
"""Seconds a cover-fire round keeps its target suppressed."""
_EPS = 1e-6


_Handler = Callable[[int, Intent, Position, Activity, ActionStep], None]


def _ignore(_e: int, _i: Intent, _p: Position, _a: Activity, _s: ActionStep) -> None:
    """A step of no kind the host knows: it runs until the arbiter replaces it."""


class ActionSystem(esper.Processor):
    """Executes each unit's running Intent (see module docstring)."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self._handlers: dict[type, _Handler] = {
            MoveTo: self._walk_to, Retreat: self._walk_to, TakeCover: self._take_cover,
            Approach: self._approach, Attack: self._burst,
            CoverFire: self._cover_fire, ThrowSmoke: self._smoke_step,
            Reload: self._reload_step, Heal: self._heal, Revive: self._revive,
            Scan: self._pause_step, Wait: self._pause_step,
        }
        """Per step class, the method carrying it forward a frame (see :meth:`advance`)."""

    def process(self, *args: object, **kwargs: object) -> None:
        if self.ctx.result is not None:
            return
        running = IntentStatus.RUNNING
        for ent, (intent, pos) in components(Intent, Position):
            if intent.status is not running or intent.step is None:
                continue  # the cheap test first: in a big fight most units wait or lie down
            if esper.has_component(ent, Dead) or esper.has_component(ent, Downed):
                continue
            activity = esper.try_component(ent, Activity)
            if activity is None:
                activity = Activity()
                esper.add_component(ent, activity)
            if activity.serial != intent.serial:
                self._start(ent, intent, activity)
                if intent.status is not IntentStatus.RUNNING:
                    continue
            self.advance(ent, intent, pos, activity)

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self, ent: int, intent: Intent, activity: Activity) -> None:
        """Reset the working state for a new step and run its up-front checks."""
        step = intent.step
        assert step is not None
        now = self.ctx.t
        activity.serial = intent.serial
        activity.kind = step.act
        activity.started_at = now
        activity.until = now
        activity.shots_fired = 0
        activity.next_shot_at = now
        activity.target = getattr(step, "target_id", None)
        activity.progress = 0.0
        activity.goal = None
        activity.repaths = 0
        if not isinstance(step, (TakeCover, Attack, CoverFire, Reload, Heal, Scan, Wait, Revive,
                                 ThrowSmoke)):
            esper.try_remove_component(ent, InCover)
        motion = esper.try_component(ent, Motion)
        if motion is not None and not isinstance(step, (MoveTo, Retreat, TakeCover, Approach)):
            motion.path.clear()
            motion.goal = None
        problem = self._precheck(ent, step, activity)
        if problem is not None:
            intent.fail(problem)

    def _precheck(self, ent: int, step: ActionStep, activity: Activity) -> str | None:
        ctx, rules, now = self.ctx, self.ctx.rules, self.ctx.t
        if isinstance(step, (MoveTo, Retreat, TakeCover)):
            if not ctx.map.walkable(step.x, step.y):
                return f"tile ({step.x}, {step.y}) is not walkable"
        elif isinstance(step, (Approach, Attack, CoverFire)):
            if not esper.entity_exists(step.target_id) or not esper.has_component(
                step.target_id, Health
            ):
                return "target gone"
            if not ctx.active(step.target_id):
                return "target down"
            if not ctx.hostile(ent, step.target_id):
                return "target not hostile"
            if isinstance(step, CoverFire):
                activity.until = now + max(0.0, min(step.seconds, rules.max_cover_fire))
        elif isinstance(step, ThrowSmoke):
            cds = esper.try_component(ent, Cooldowns)
            if cds is not None and cds.remaining("smoke", now) > 0:
                return "smoke on cooldown"
            if not ctx.map.in_bounds(step.x, step.y):
                return "smoke target out of bounds"
            here = ctx.tile_of(ent)
            if here is None or math.dist(here, (step.x, step.y)) > rules.smoke_range + _EPS:
                return "smoke target out of range"
            activity.until = now + THROW_TIME
        elif isinstance(step, Reload):
            ammo = esper.try_component(ent, Ammo)
            if ammo is None:
                return "no weapon"
            if ammo.rounds < ammo.capacity and ammo.reserve <= 0:
                return "no reserve ammo"
            activity.until = now + (rules.reload_time if ammo.rounds < ammo.capacity else 0.0)
        elif isinstance(step, Heal):
            cds = esper.try_component(ent, Cooldowns)
            if cds is not None and cds.remaining("heal", now) > 0:
                return "heal on cooldown"
            problem = self._reach_problem(ent, step.target_id, rules.heal_reach)
            if problem is not None:
                return problem
            if not ctx.active(step.target_id):
                return "target down (revive instead)"
            activity.until = now + HEAL_TIME
        elif isinstance(step, Revive):
            problem = self._reach_problem(ent, step.target_id, rules.revive_reach)
            if problem is not None:
                return problem
            downed = esper.try_component(step.target_id, Downed)
            if downed is None:
                return "target is not downed"
            downed.reviver = ent
            activity.until = now + rules.revive_time
        elif isinstance(step, Scan):
            activity.until = now + rules.scan_time
        elif isinstance(step, Wait):
            activity.until = now + max(0.0, min(step.seconds, rules.max_wait))
        return None

    def _reach_problem(self, ent: int, target: int, reach: float) -> str | None:
        if ent != target and (
            not esper.entity_exists(target) or not esper.has_component(target, Health)
        ):
            return "target gone"
        if esper.has_component(target, Dead):
            return "target dead"
        if self.ctx.hostile(ent, target):
            return "target is hostile"
        a, b = self.ctx.tile_of(ent), self.ctx.tile_of(target)
        if a is None or b is None:
            return "target gone"
        if math.dist(a, b) > reach + _EPS:
            return "target too far"
        return None

    # -- per-frame work ------------------------------------------------------------------

    def advance(self, ent: int, intent: Intent, pos: Position, activity: Activity) -> None:
        """Carry ``intent.step`` forward by one fixed step."""
        step = intent.step
        assert step is not None
        if activity.until > activity.started_at:
            span = activity.until - activity.started_at
            activity.progress = min(1.0, (self.ctx.t - activity.started_at) / span)
        # One dict look-up by the step's class instead of a chain of isinstance tests: the
        # loop runs for every busy unit every frame (a step of a subclass is looked up once
        # along its MRO, then remembered).
        handler = self._handlers.get(type(step))
        if handler is None:
            handler = self._handler_for(type(step))
        handler(ent, intent, pos, activity, step)

    def _handler_for(self, kind: type) -> _Handler:
        for base in kind.__mro__:
            found = self._handlers.get(base)
            if found is not None:
                self._handlers[kind] = found
                return found
        self._handlers[kind] = _ignore
        return _ignore

    def _walk_to(self, ent: int, intent: Intent, pos: Position, _a: Activity,
                 step: ActionStep) -> None:
        assert isinstance(step, (MoveTo, Retreat))
        self._walk_step(ent, intent, pos, (step.x, step.y))

    def _take_cover(self, ent: int, intent: Intent, pos: Position, _a: Activity,
                    step: ActionStep) -> None:
        assert isinstance(step, TakeCover)
        ctx = self.ctx
        state = self.walk(ent, pos, (step.x, step.y), ctx.rules.move_speed * ctx.dt)
        if state == "unreachable":
            intent.fail(f"no path to ({step.x}, {step.y})")
        elif state == "arrived":
            if (step.x, step.y) in ctx.map.cover:
                esper.add_component(ent, InCover())
                intent.finish()
            else:
                intent.fail(f"no cover at ({step.x}, {step.y})")

    def _smoke_step(self, ent: int, intent: Intent, _p: Position, activity: Activity,
                    step: ActionStep) -> None:
        assert isinstance(step, ThrowSmoke)
        if self.ctx.t + _EPS >= activity.until:
            self._throw_smoke(ent, step)
            intent.finish()

    def _reload_step(self, ent: int, intent: Intent, pos: Position, activity: Activity,
                     _s: ActionStep) -> None:
        ctx, now = self.ctx, self.ctx.t
        if now + _EPS >= activity.until:
            ammo = esper.component_for_entity(ent, Ammo)
            take = min(ammo.capacity - ammo.rounds, ammo.reserve)
            ammo.rounds += take
            ammo.reserve -= take
            if take:
                ctx.events.add(now, "reload", source=ent, x=pos.x, y=pos.y, tx=pos.x,
                               ty=pos.y, amount=ammo.rounds)
            intent.finish()

    def _pause_step(self, _e: int, intent: Intent, _p: Position, activity: Activity,
                    _s: ActionStep) -> None:
        if self.ctx.t + _EPS >= activity.until:
            intent.finish()

    # -- movement ------------------------------------------------------------------------

    def _walk_step(self, ent: int, intent: Intent, pos: Position, goal: Tile) -> bool:
        """Walk toward ``goal``; True once there. Fails the intent when unreachable."""
        state = self.walk(ent, pos, goal, self.ctx.rules.move_speed * self.ctx.dt)
        if state == "arrived":
            intent.finish()
            return True
        if state == "unreachable":
            intent.fail(f"no path to ({goal[0]}, {goal[1]})")
        return False

    def walk(
        self, ent: int, pos: Position, goal: Tile, budget: float,
        stop_at: Callable[[Tile], bool] | None = None,
    ) -> str:
        """Move ``pos`` up to ``budget`` tiles along a path to ``goal``.

        Returns ``"arrived"``, ``"moving"``, ``"stopped"`` (``stop_at(tile)`` was true on a tile
        centre reached on the way) or ``"unreachable"``. The unit first re-centres on its current
        tile when it stands between tiles, so it only ever crosses legal 8-connected steps (no
        cutting past a wall corner).
        """
        motion = esper.try_component(ent, Motion)
        if motion is None:
            motion = Motion()
            esper.add_component(ent, motion)
        grid = self.ctx.grid_view()
        stale = motion.goal != goal or (motion.path and not grid.walkable(*motion.path[0]))
        if stale and not self._plan_path(pos, motion, goal):
            return "unreachable"
        replanned = False
        while budget > _EPS:
            if not motion.path:
                motion.goal = goal
                return "arrived" if self._at(pos, goal) else self._plan_or_fail(pos, motion, goal)
            nxt = motion.path[0]
            if not grid.walkable(*nxt):
                if replanned or not self._plan_path(pos, motion, goal):
                    return "unreachable"
                replanned = True
                continue
            dx, dy = nxt[0] - pos.x, nxt[1] - pos.y
            d = math.hypot(dx, dy)
            if d <= budget:
                pos.x, pos.y = float(nxt[0]), float(nxt[1])
                budget -= d
                motion.path.pop(0)
                if stop_at is not None and motion.path and stop_at(nxt):
                    motion.path.clear()
                    motion.goal = None
                    return "stopped"
            else:
                pos.x += dx / d * budget
                pos.y += dy / d * budget
                budget = 0.0
        if not motion.path and self._at(pos, goal):
            return "arrived"
        return "moving"

    def _plan_or_fail(self, pos: Position, motion: Motion, goal: Tile) -> str:
        return "moving" if self._plan_path(pos, motion, goal) and motion.path else "unreachable"

    def _plan_path(self, pos: Position, motion: Motion, goal: Tile) -> bool:
        here = pos.tile
        path = find_path(self.ctx.grid_view(), here, goal)
        if path is None:
            motion.path = []
            motion.goal = None
            return False
        if not self._at(pos, here):
            path.insert(0, here)
        motion.path = path
        motion.goal = goal
        return True

    @staticmethod
    def _at(pos: Position, tile: Tile) -> bool:
        return abs(pos.x - tile[0]) < _EPS and abs(pos.y - tile[1]) < _EPS

    def _approach(
        self, ent: int, intent: Intent, pos: Position, activity: Activity, step: ActionStep
    ) -> None:
        assert isinstance(step, Approach)
        target = step.target_id
        ctx = self.ctx
        if not ctx.active(target):
            intent.fail("target down" if esper.entity_exists(target) else "target gone")
            return
        here, there = pos.tile, ctx.tile_of(target)
        assert there is not None
        centred = self._at(pos, here)
        if centred and math.dist(here, there) <= ctx.rules.fire_range and ctx.sees(here, there):
            self._stop(ent)
            intent.finish()
            return
        if ctx.t - activity.started_at > APPROACH_TIMEOUT:
            intent.fail("could not close in on the target")
            return
        reach = ctx.rules.fire_range
        if centred and math.dist(here, there) <= reach and self._in_smoke(there):
            # Nobody sees into the cloud until it clears: in range is as close as it pays to
            # get (walking on only walks into the target's own gun when the smoke lifts). The
            # step holds here until the target can be seen, and ends then: ending it now
            # would hand its brain a target still hidden, which orders the same approach
            # again, every frame.
            self._stop(ent)
            return

        def in_position(tile: Tile) -> bool:
            return math.dist(tile, there) <= reach and ctx.sees(tile, there)

        state = self.walk(ent, pos, there, ctx.rules.move_speed * ctx.dt, in_position)
        if state == "unreachable":
            intent.fail("target unreachable")
        elif state in ("arrived", "stopped"):
            intent.finish()

    def _in_smoke(self, tile: Tile) -> bool:
        """Whether ``tile`` lies inside a smoke cloud that has not cleared."""
        return any(math.dist(tile, (x, y)) <= r for x, y, r in self.ctx.grid_view().smoke)

    def _stop(self, ent: int) -> None:
        motion = esper.try_component(ent, Motion)
        if motion is not None:
            motion.path.clear()
            motion.goal = None

    # -- shooting ------------------------------------------------------------------------

    def _burst(self, ent: int, intent: Intent, _pos: Position, activity: Activity,
               step: ActionStep) -> None:
        assert isinstance(step, Attack)
        target = step.target_id
        ctx, rules, now = self.ctx, self.ctx.rules, self.ctx.t
        while activity.shots_fired < rules.burst_shots and now + _EPS >= activity.next_shot_at:
            problem = ctx.shot_problem(ent, target)
            if problem is not None:
                if problem in ("target down", "target gone") and activity.shots_fired > 0:
                    intent.finish()  # the burst did its job
                else:
                    intent.fail(problem)
                return
            ctx.fire(ent, target)
            activity.shots_fired += 1
            activity.next_shot_at += rules.shot_interval
            activity.progress = activity.shots_fired / rules.burst_shots
            if not ctx.active(target):
                intent.finish()
                return
        if activity.shots_fired >= rules.burst_shots and now + _EPS >= activity.next_shot_at:
            intent.finish()

    def _cover_fire(self, ent: int, intent: Intent, _pos: Position, activity: Activity,
                    step: ActionStep) -> None:
        assert isinstance(step, CoverFire)
        target = step.target_id
        ctx, rules, now = self.ctx, self.ctx.rules, self.ctx.t
        interval = rules.shot_interval * COVER_FIRE_INTERVAL_FACTOR
        while now + _EPS >= activity.next_shot_at and activity.next_shot_at < activity.until:
            problem = ctx.shot_problem(ent, target)
            if problem is not None:
                if problem in ("target down", "target gone") and activity.shots_fired > 0:
                    intent.finish()
                else:
                    intent.fail(problem)
                return
            ctx.fire(ent, target, COVER_FIRE_ACCURACY)
            if ctx.active(target):
                supp = esper.try_component(target, Suppressed)
                if supp is None:
                    esper.add_component(target, Suppressed(until=now + SUPPRESS_FOR, by=ent))
                else:  # renewed in place: adding a component empties every esper query
                    supp.until, supp.by = now + SUPPRESS_FOR, ent
            activity.shots_fired += 1
            activity.next_shot_at += interval
        if now + _EPS >= activity.until:
            intent.finish()

    # -- utility steps -------------------------------------------------------------------

    def _throw_smoke(self, ent: int, step: ThrowSmoke) -> None:
        ctx, rules, now = self.ctx, self.ctx.rules, self.ctx.t
        esper.create_entity(
            SmokeCloud(step.x, step.y, rules.smoke_radius, now, now + rules.smoke_duration)
        )
        cds = esper.try_component(ent, Cooldowns)
        if cds is None:
            cds = Cooldowns()
            esper.add_component(ent, cds)
        cds.ready_at["smoke"] = now + rules.smoke_cooldown
        pos = esper.component_for_entity(ent, Position)
        ctx.events.add(now, "smoke", source=ent, x=pos.x, y=pos.y, tx=step.x, ty=step.y,
                       amount=rules.smoke_radius)

    def _heal(self, ent: int, intent: Intent, _pos: Position, activity: Activity,
              step: ActionStep) -> None:
        assert isinstance(step, Heal)
        target = step.target_id
        ctx, rules, now = self.ctx, self.ctx.rules, self.ctx.t
        if now + _EPS < activity.until:
            return
        problem = self._reach_problem(ent, target, rules.heal_reach)
        if problem is None and not ctx.active(target):
            problem = "target down (revive instead)"
        if problem is not None:
            intent.fail(problem)
            return
        hp = esper.component_for_entity(target, Health)
        gained = min(rules.heal_amount, hp.max_hp - hp.hp)
        hp.hp += gained
        cds = esper.try_component(ent, Cooldowns)
        if cds is None:
            cds = Cooldowns()
            esper.add_component(ent, cds)
        cds.ready_at["heal"] = now + rules.heal_cooldown
        pos = esper.component_for_entity(target, Position)
        ctx.events.add(now, "heal", source=ent, target=target, x=pos.x, y=pos.y, tx=pos.x,
                       ty=pos.y, amount=round(gained, 2))
        intent.finish()

    def _revive(self, ent: int, intent: Intent, _pos: Position, activity: Activity,
                step: ActionStep) -> None:
        assert isinstance(step, Revive)
        target = step.target_id
        ctx, rules, now = self.ctx, self.ctx.rules, self.ctx.t
        downed = esper.try_component(target, Downed)
        if downed is None:
            if not esper.entity_exists(target):  # it left the game (the host deleted it)
                intent.fail("target gone")
            else:
                intent.fail("target dead" if esper.has_component(target, Dead) else
                            "target is not downed")
            return
        problem = self._reach_problem(ent, target, rules.revive_reach)
        if problem is not None:
            downed.reviver = None
            intent.fail(problem)
            return
        downed.reviver = ent
        if now + _EPS < activity.until:
            return
        esper.remove_component(target, Downed)
        hp = esper.component_for_entity(target, Health)
        hp.hp = max(1.0, round(hp.max_hp * ctx.revive_hp_fraction, 2))
        pos = esper.component_for_entity(target, Position)
        ctx.events.add(now, "revived", source=ent, target=target, x=pos.x, y=pos.y, tx=pos.x,
                       ty=pos.y, amount=hp.hp)
        intent.finish()

"""PlayerSystem: drives the player, by autopilot (headless runs) or by a front end's input.

Autopilot: walk to the extraction point around the wall, stop to fire a burst at the nearest
hostile in range and sight, reload when empty (or when low and nobody is in sight), and give
the companions the scenario's orders (``follow`` early, ``attack`` when a hostile is first seen,
``extract`` near the exit) so that the arbiter's urgent LLM requests happen in every round.

Manual: a front end sets :attr:`game.state.PlayerInput.move`; the player walks that way at
``move_speed`` (sliding along walls) and, when standing still, returns fire on its own.
"""

from __future__ import annotations

import math

import esper

from esper_arbiter.components.actions import (
    ActionStep,
    Attack,
    MoveTo,
    Reload,
    Retreat,
    Revive,
    TakeCover,
)
from esper_arbiter.components.agent import Intent, IntentStatus, Mode
from esper_arbiter.components.world import Ammo, Health, InCover, Orders, Position
from esper_arbiter.game.scenario import AutopilotOrder
from esper_arbiter.game.sim import SimContext, issue
from esper_arbiter.game.state import Dead, Downed, Enemy, Motion, PlayerInput
from esper_arbiter.systems.planning.pathfinding import step_distances

Tile = tuple[int, int]

PLAYER_PRIORITY = 400
"""Before perception (300): the world moves, then the AI looks at it."""

NEAR_EXIT = 6.0
"""Tiles from the extraction point at which the ``near_exit`` trigger fires (when no hostile
is in sight: the player does not send the companion off in the middle of a fight)."""
SIGHT_RANGE_BONUS = 4.0
"""The ``enemy_seen`` trigger looks this much further than the firing range."""
LOW_AMMO = 10
"""A magazine this low is topped up when no hostile is in sight."""
COVER_BELOW_HP = 0.6
"""Below this share of max hp (or when outnumbered) the autopilot fights from cover."""
COVER_SEARCH_STEPS = 3
"""How far (in steps) the autopilot goes for cover."""
RETREAT_BELOW_HP = 0.3
"""Below this share of max hp the autopilot backs out of every hostile's sight."""
RETREAT_SEARCH_STEPS = 6
RETREAT_COOLDOWN = 8.0
"""After backing off, the autopilot stands and fights for this long before backing off again."""
RUSH_AFTER = 40.0
"""Game seconds after which the autopilot stops fighting and only heads for the exit."""
REVIVE_DETOUR = 8.0
"""The autopilot goes back for a downed companion this close (tiles) when nobody shoots."""


class PlayerSystem(esper.Processor):
    """Writes the player's Intent (autopilot) or moves it directly (manual input)."""

    def __init__(
        self, ctx: SimContext, orders: tuple[AutopilotOrder, ...] = (),
        think_interval: float = 0.25,
    ) -> None:
        self.ctx = ctx
        self.orders = orders
        self.think_interval = think_interval

    def process(self, *args: object, **kwargs: object) -> None:
        ctx = self.ctx
        player = ctx.player
        if ctx.result is not None or not ctx.active(player):
            return
        inp = esper.try_component(player, PlayerInput)
        intent = esper.try_component(player, Intent)
        if inp is None or intent is None:
            return
        if inp.autopilot:
            self._give_orders(inp)
            self._autopilot(inp, intent)
        else:
            self._manual(inp, intent)

    # -- autopilot -----------------------------------------------------------------------

    def _autopilot(self, inp: PlayerInput, intent: Intent) -> None:
        """Decide when idle; while walking, look again every ``think_interval`` (to react:
        fight, take cover, back off, reload, go back for a downed ally). A reaction is never
        interrupted, so the player cannot dither between taking cover and walking on."""
        now = self.ctx.t
        running = intent.status is IntentStatus.RUNNING and intent.step is not None
        if running and (not isinstance(intent.step, MoveTo) or now < inp.next_think_at):
            return
        inp.next_think_at = now + self.think_interval
        step = self.decide(inp)
        if running and step == intent.step:
            return
        if isinstance(step, Retreat):
            inp.retreat_ready_at = now + RETREAT_COOLDOWN
        issue(intent, step, now, "autopilot", Mode.GOAP)

    def _rushing(self) -> bool:
        return self.ctx.t >= RUSH_AFTER

    def decide(self, inp: PlayerInput | None = None) -> ActionStep:
        """The autopilot's next step: fight what is in sight (from cover when hurt or
        outnumbered, backing off when badly hurt), else reload, revive or walk out. After
        :data:`RUSH_AFTER` seconds it only heads for the exit."""
        ctx = self.ctx
        player = ctx.player
        ammo = esper.try_component(player, Ammo)
        rounds = ammo.rounds if ammo is not None else 0
        reserve = ammo.reserve if ammo is not None else 0
        x, y = ctx.extraction_tile
        if self._rushing():
            return MoveTo(x=x, y=y)
        target = self.nearest_visible_hostile(ctx.rules.fire_range)
        hp = esper.component_for_entity(player, Health)
        retreat_ready = inp is None or ctx.t >= inp.retreat_ready_at
        if target is not None and hp.hp < RETREAT_BELOW_HP * hp.max_hp and retreat_ready:
            safe = self._hidden_tile()
            if safe is not None:
                return Retreat(x=safe[0], y=safe[1])
        if target is not None and not esper.has_component(player, InCover):
            target_tile = ctx.tile_of(target)
            cover = self._cover_nearby(target_tile) if target_tile is not None else None
            if cover is not None and (hp.hp < COVER_BELOW_HP * hp.max_hp or self._outnumbered()):
                return TakeCover(x=cover[0], y=cover[1])
        if target is not None and rounds > 0:
            return Attack(target_id=target)
        if rounds == 0 and reserve > 0:
            return Reload()
        if target is None:
            downed = self._downed_ally_nearby()
            if downed is not None:
                here = ctx.tile_of(player)
                there = ctx.tile_of(downed)
                assert here is not None and there is not None
                if math.dist(here, there) <= ctx.rules.revive_reach:
                    return Revive(target_id=downed)
                return MoveTo(x=there[0], y=there[1])
            if rounds < LOW_AMMO and reserve > 0:
                return Reload()
        return MoveTo(x=x, y=y)

    def _cover_nearby(self, target: Tile) -> Tile | None:
        """The cover tile fewest steps away (at most :data:`COVER_SEARCH_STEPS`) from which
        ``target`` can still be shot, if any."""
        ctx = self.ctx
        here = ctx.tile_of(ctx.player)
        if here is None:
            return None
        # A walk of a few steps, not of the whole map (a 10,000-unit map has 140,000 tiles).
        steps = step_distances(ctx.grid_view(), here, COVER_SEARCH_STEPS)
        cover = ctx.map.cover
        best: tuple[int, int, int] | None = None
        for (x, y), n in steps.items():
            if (
                (x, y) in cover
                and (best is None or (n, y, x) < best)
                and math.dist((x, y), target) <= ctx.rules.fire_range
                and ctx.sees((x, y), target)
            ):
                best = (n, y, x)
        return None if best is None else (best[2], best[1])

    def _hidden_tile(self) -> Tile | None:
        """The nearest tile (at most :data:`RETREAT_SEARCH_STEPS` away) that no active hostile
        within fire range of it can see, preferring tiles closer to the extraction point on
        ties. (A hostile farther off cannot shoot there, and would not notice the player either:
        guards are alerted within fire range.)"""
        ctx = self.ctx
        here = ctx.tile_of(ctx.player)
        if here is None:
            return None
        fire_range = ctx.rules.fire_range
        reach = fire_range + RETREAT_SEARCH_STEPS * math.sqrt(2.0)
        hostiles = [
            pos.tile for ent, (_e, pos) in esper.get_components(Enemy, Position)
            if math.dist(here, pos.tile) <= reach and ctx.active(ent)
        ]
        steps = step_distances(ctx.grid_view(), here, RETREAT_SEARCH_STEPS)
        ex = ctx.extraction_tile
        best: tuple[int, float, int, int] | None = None
        for tile, n in steps.items():
            if n == 0 or n > RETREAT_SEARCH_STEPS:
                continue
            key = (n, math.dist(tile, ex), tile[1], tile[0])
            if (best is None or key < best) and not any(
                math.dist(h, tile) <= fire_range and ctx.sees(h, tile) for h in hostiles
            ):
                best = key
        return None if best is None else (best[3], best[2])

    def _outnumbered(self) -> bool:
        """Two or more hostiles in sight and range."""
        ctx = self.ctx
        here = ctx.tile_of(ctx.player)
        if here is None:
            return False
        seen = 0
        for ent, (_enemy, pos) in esper.get_components(Enemy, Position):
            if (
                ctx.active(ent)
                and math.dist(here, pos.tile) <= ctx.rules.fire_range
                and ctx.sees(here, pos.tile)
            ):
                seen += 1
        return seen >= 2

    def _downed_ally_nearby(self) -> int | None:
        """A downed ally within :data:`REVIVE_DETOUR` tiles (the player goes back for them)."""
        ctx = self.ctx
        here = ctx.tile_of(ctx.player)
        if here is None:
            return None
        for ent, (downed, pos) in esper.get_components(Downed, Position):
            del downed
            if ent != ctx.player and not ctx.hostile(ctx.player, ent) and math.dist(
                here, pos.tile
            ) <= REVIVE_DETOUR:
                return ent
        return None

    def nearest_visible_hostile(self, reach: float) -> int | None:
        """Closest active hostile within ``reach`` tiles and in sight of the player."""
        ctx = self.ctx
        here = ctx.tile_of(ctx.player)
        if here is None:
            return None
        best: tuple[float, int] | None = None
        for ent, (_enemy, pos) in esper.get_components(Enemy, Position):
            if not ctx.active(ent) or not ctx.hostile(ctx.player, ent):
                continue
            d = math.dist(here, pos.tile)
            if d <= reach + 1e-9 and (best is None or (d, ent) < best) and ctx.sees(here, pos.tile):
                best = (d, ent)
        return None if best is None else best[1]

    def _give_orders(self, inp: PlayerInput) -> None:
        ctx, now = self.ctx, self.ctx.t
        for i, order in enumerate(self.orders):
            if i in inp.fired_orders:
                continue
            due = False
            if order.at is not None:
                due = now >= order.at
            elif order.when == "enemy_seen":
                due = (
                    self.nearest_visible_hostile(ctx.rules.fire_range + SIGHT_RANGE_BONUS)
                    is not None
                )
            elif order.when == "near_exit":
                here = ctx.tile_of(ctx.player)
                due = (
                    here is not None
                    and math.dist(here, ctx.extraction_tile) <= NEAR_EXIT
                    and self.nearest_visible_hostile(ctx.rules.fire_range) is None
                )
            if due:
                inp.fired_orders.add(i)
                for ent, _ in esper.get_component(Orders):
                    if not esper.has_component(ent, Dead):
                        ctx.give_order(ent, order.order)

    # -- manual control ------------------------------------------------------------------

    def _manual(self, inp: PlayerInput, intent: Intent) -> None:
        ctx, now = self.ctx, self.ctx.t
        dx, dy = inp.move
        norm = math.hypot(dx, dy)
        if norm > 1e-9:
            if intent.status is IntentStatus.RUNNING:
                intent.status = IntentStatus.IDLE  # walking cancels whatever it was doing
            motion = esper.try_component(ctx.player, Motion)
            if motion is not None:
                motion.path.clear()
                motion.goal = None
            esper.try_remove_component(ctx.player, InCover)
            pos = esper.component_for_entity(ctx.player, Position)
            step = ctx.rules.move_speed * ctx.dt / norm
            self._slide(pos, dx * step, dy * step)
            return
        if intent.status is IntentStatus.RUNNING:
            return
        pos = esper.component_for_entity(ctx.player, Position)
        if not (abs(pos.x - round(pos.x)) < 1e-6 and abs(pos.y - round(pos.y)) < 1e-6):
            # Settle on the nearest tile centre before acting (shots go tile to tile).
            x, y = pos.tile
            issue(intent, MoveTo(x=x, y=y), now, "player", Mode.GOAP)
            return
        ammo = esper.try_component(ctx.player, Ammo)
        target = self.nearest_visible_hostile(ctx.rules.fire_range)
        if target is not None and ammo is not None and ammo.rounds > 0:
            issue(intent, Attack(target_id=target), now, "player", Mode.GOAP)
        elif ammo is not None and ammo.rounds == 0 and ammo.reserve > 0:
            issue(intent, Reload(), now, "player", Mode.GOAP)

    def _slide(self, pos: Position, dx: float, dy: float) -> None:
        """Move by (dx, dy), one axis at a time, never onto a wall or off the map."""
        m = self.ctx.map
        nx = pos.x + dx
        if m.walkable(round(nx), round(pos.y)):
            pos.x = nx
        ny = pos.y + dy
        if m.walkable(round(pos.x), round(ny)):
            pos.y = ny

"""Tests of esper_arbiter.systems.planning: pathfinding, GOAP and the behaviour trees.

``hello_snapshot`` builds the hello_companion situation directly from components (no game
import), so planner tests do not depend on the scenario loader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from esper_arbiter.components.actions import (
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
from esper_arbiter.components.snapshot import GridView, ObjectiveView, UnitView, WorldSnapshot
from esper_arbiter.systems.domain import Domain, default_domain
from esper_arbiter.systems.planning.pathfinding import distance, reachable
from esper_arbiter.systems.planning.rules import DEFAULT_RULES as R
from esper_arbiter.systems.planning.tools import ToolRegistry


def domain_with(tools: ToolRegistry) -> Domain:
    """The squad preset with ``tools`` as its vocabulary."""
    return default_domain().replace(tools=tools)


WIDTH, HEIGHT = 20, 10
WALL: frozenset[tuple[int, int]] = frozenset((6, y) for y in range(1, 9))
COVER: frozenset[tuple[int, int]] = frozenset({(4, 5), (5, 1), (8, 2), (10, 6), (13, 4), (16, 7)})
DOOR = (15, 8)

PLAYER_ID, COMPANION_ID = 1, 2
RIVAL_ID, GRUNT_ID, SNIPER_ID = 10, 11, 12


def hello_grid(
    smoke: Iterable[tuple[int, int, float]] = (),
    walls: frozenset[tuple[int, int]] = WALL,
    cover: frozenset[tuple[int, int]] = COVER,
    version: int = 0,
) -> GridView:
    return GridView(WIDTH, HEIGHT, walls, cover, tuple(smoke), version)


def unit(
    uid: int, x: int, y: int, team: str, hp: float = 100.0, max_hp: float = 100.0,
    name: str = "", in_cover: bool = False,
) -> UnitView:
    return UnitView(uid, x, y, hp, max_hp, team, in_cover, name)


def default_enemies() -> tuple[UnitView, ...]:
    return (
        unit(RIVAL_ID, 12, 2, "hostile", 60, 60, "Rival"),
        unit(GRUNT_ID, 14, 6, "hostile", 40, 40, "Grunt"),
        unit(SNIPER_ID, 17, 3, "hostile", 40, 40, "Sniper"),
    )


def hello_snapshot(
    *,
    me: tuple[int, int] = (2, 3),
    me_hp: float = 80.0,
    me_in_cover: bool = False,
    leader: tuple[int, int] | None = (2, 2),
    player_hp: float = 100.0,
    enemies: tuple[UnitView, ...] | None = None,
    ammo: int = 30,
    reserve: int = 90,
    orders: str | None = None,
    cooldowns: Mapping[str, float] | None = None,
    grid: GridView | None = None,
    objective: str = "extract",
    t: float = 0.0,
) -> WorldSnapshot:
    """The hello_companion opening (player (2,2), companion (2,3), Rival (12,2) ...), with
    whatever the test changes."""
    pl = None if leader is None else unit(PLAYER_ID, *leader, "player", player_hp, 100.0, "Player")
    return WorldSnapshot(
        t=t,
        me=unit(COMPANION_ID, *me, "player", me_hp, 80.0, "Companion", me_in_cover),
        leader=pl,
        enemies=default_enemies() if enemies is None else enemies,
        allies=(),
        grid=hello_grid() if grid is None else grid,
        pois={"breach_door": DOOR},
        objective=ObjectiveView(objective, "reach", *DOOR) if objective else None,
        orders=orders,
        ammo=ammo,
        ammo_capacity=30,
        ammo_reserve=reserve,
        cooldowns=dict(cooldowns or {}),
    )


def enemy_view(snap: WorldSnapshot, enemy_id: int) -> WorldSnapshot:
    """The same world seen by hostile ``enemy_id``: its foes are the player and companion."""
    me = next(e for e in snap.enemies if e.id == enemy_id)
    foes = tuple(u for u in (snap.leader, snap.me) if u is not None)
    allies = tuple(e for e in snap.enemies if e.id != enemy_id)
    return replace(snap, me=me, leader=snap.leader, enemies=foes, allies=allies, orders=None)


def legality_problem(step: object, snap: WorldSnapshot) -> str | None:
    """Why ``step`` could not be carried out in ``snap`` (None when it can), by the rules the
    brief sets for every proposed step. Independent of the validator on purpose."""
    g, me = snap.grid, snap.me
    here = (me.x, me.y)
    tracks_ammo = snap.ammo_capacity > 0 or snap.ammo > 0
    if isinstance(step, MoveTo | Retreat | TakeCover):
        t = (step.x, step.y)
        if not g.walkable(*t):
            return f"{step} not walkable"
        if not reachable(g, here, t):
            return f"{step} unreachable"
        if isinstance(step, TakeCover) and t not in g.cover:
            return f"{step} not cover"
        return None
    if isinstance(step, Approach | Attack | CoverFire):
        tgt = next((e for e in snap.enemies if e.id == step.target_id), None)
        if tgt is None or tgt.hp <= 0 or tgt.team == me.team:
            return f"{step} target not a live hostile"
        if isinstance(step, Approach) and not reachable(g, here, tgt.pos):
            return f"{step} target unreachable"
        if isinstance(step, Attack | CoverFire) and tracks_ammo and snap.ammo <= 0:
            return f"{step} without ammo"
        if isinstance(step, CoverFire) and not 0 < step.seconds <= R.max_cover_fire:
            return f"{step} too long"
        return None
    if isinstance(step, ThrowSmoke):
        if not g.in_bounds(step.x, step.y) or (step.x, step.y) in g.walls:
            return f"{step} off map or on a wall"
        if distance(here, (step.x, step.y)) > R.smoke_range:
            return f"{step} out of throwing range"
        return None if snap.cooldown("smoke") <= 0 else f"{step} smoke not ready"
    if isinstance(step, Heal | Revive):
        allies = [me, *snap.allies, *(() if snap.leader is None else (snap.leader,))]
        tgt = next((u for u in allies if u.id == step.target_id), None)
        if tgt is None or tgt.team != me.team:
            return f"{step} target not an ally"
        reach = R.heal_reach if isinstance(step, Heal) else R.revive_reach
        if distance(here, tgt.pos) > reach:
            return f"{step} out of reach"
        if isinstance(step, Heal):
            if tgt.hp <= 0:
                return f"{step} target is down"
            return None if snap.cooldown("heal") <= 0 else f"{step} heal not ready"
        return None if tgt.hp <= 0 else f"{step} target not down"
    if isinstance(step, Wait):
        return None if 0 < step.seconds <= R.max_wait else f"{step} bad duration"
    if isinstance(step, Reload | Scan):
        return None
    return f"unknown step {step!r}"

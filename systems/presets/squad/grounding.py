"""The squad preset's preparers: what to do first when a planned step cannot run yet.

Each function is a :data:`~systems.planning.tools.Preparer` for one or more of the preset's
tools (see :mod:`systems.planning.grounding`). They reuse the grounding GOAP already has
(:class:`~systems.presets.squad.percept.Percept`), so a model's ``Attack(#4)`` from across the
map means what GOAP's approach-then-attack means: close in until #4 is in range and in sight,
then fire.

* Attack / CoverFire: reload when the magazine is empty; approach the target when it is out of
  range or sight and can be walked to.
* Heal / Revive: walk to a free tile beside the ally when out of reach; wait out a heal cooldown.
* ThrowSmoke: walk until the tile is within throwing range; wait out the cooldown. Its
  ``defer`` (a step that can run now but is better later) fights on while the cloud would
  blind my own fire, and times smoke over the leader's way; its ``moot`` skips a cloud that
  would blind nobody any more (the enemy it was for has died since the plan was written).

A cooldown is waited out only when it ends within ``Rules.max_wait`` seconds (one Wait step);
anything longer is not "soon", and the step is skipped.
"""

from __future__ import annotations

import math

from esper_arbiter.components.actions import (
    ActionStep,
    Approach,
    Attack,
    MoveTo,
    ThrowSmoke,
    Wait,
)
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.presets.squad.percept import Percept, covers

_EPS = 1e-9


def _wait_out(snapshot: WorldSnapshot, ability: str, rules: Rules) -> Wait | None:
    left = snapshot.cooldown(ability)
    if left <= 0 or left > rules.max_wait + _EPS:
        return None
    return Wait(seconds=round(max(0.1, min(left + 0.05, rules.max_wait)), 2))


def prepare_engage(step: ActionStep, snapshot: WorldSnapshot, rules: Rules) -> ActionStep | None:
    """Reload, or approach the target until it is in range and in sight."""
    target_id = getattr(step, "target_id", None)
    if not isinstance(target_id, int):
        return None
    p = Percept(snapshot, rules)
    target = next((h for h in p.hostiles if h.id == target_id), None)
    if target is None:
        return None  # dead, gone or not an enemy: nothing brings it within reach
    if not p.has_ammo:
        return p.reload_step()
    in_range = pf.distance(p.pos, target.pos) <= rules.fire_range + _EPS
    if in_range and pf.line_of_sight(p.grid, p.pos, target.pos):
        return None
    if not p.can_reach(target.pos) and not p.can_get_next_to(target.pos):
        return None
    return Approach(target_id=target_id)


def prepare_ally_reach(step: ActionStep, snapshot: WorldSnapshot,
                       rules: Rules) -> ActionStep | None:
    """Heal / Revive: wait out the heal cooldown, or walk next to the ally."""
    target_id = getattr(step, "target_id", None)
    if not isinstance(target_id, int):
        return None
    if step.act == "Heal":
        wait = _wait_out(snapshot, "heal", rules)
        if wait is not None:
            return wait
    unit = snapshot.unit(target_id)
    if unit is None or unit.id == snapshot.me.id:
        return None
    p = Percept(snapshot, rules)
    reach = rules.revive_reach if step.act == "Revive" else rules.heal_reach
    if pf.distance(p.pos, unit.pos) <= reach + _EPS:
        return None
    tile = p.tile_next_to(unit.pos)
    if tile is None or tile == p.pos:
        return None
    return MoveTo(x=tile[0], y=tile[1])


def prepare_smoke(step: ActionStep, snapshot: WorldSnapshot, rules: Rules) -> ActionStep | None:
    """Wait out the smoke cooldown, or walk to the nearest tile within throwing range."""
    if not isinstance(step, ThrowSmoke):
        return None
    wait = _wait_out(snapshot, "smoke", rules)
    if wait is not None:
        return wait
    if snapshot.cooldown("smoke") > 0:
        return None
    me = (snapshot.me.x, snapshot.me.y)
    goal = (step.x, step.y)
    if math.dist(me, goal) <= rules.smoke_range + _EPS:
        return None
    best: tuple[int, float, int, int] | None = None
    for tile, n in pf.step_distances(snapshot.grid, me).items():
        d = math.dist(tile, goal)
        if d <= rules.smoke_range - 0.5:
            key = (n, d, tile[1], tile[0])
            if best is None or key < best:
                best = key
    return None if best is None else MoveTo(x=best[3], y=best[2])


def defer_smoke(step: ActionStep, snapshot: WorldSnapshot, rules: Rules) -> ActionStep | None:
    """Hold a smoke that would blind my own fight, or that covers the leader's way before
    the leader is about to walk into it.

    A plan is written seconds before its steps come up. Smoke offered while an enemy was out
    of my reach may come up once I am trading fire with it (or with another enemy whose line
    of fire with me the cloud would cross): thrown then, the cloud blinds my own fire, the
    enemy lives on, and GOAP walks out of position, into the open, to find it again. So while
    the cloud would cut a fight I am in, fight first: the meanwhile step is a burst at that
    enemy (as the advice never offers such smoke); the smoke goes once the fight is over, or
    when I am hurt or out of rounds and getting away is what it is for.

    A cloud lasts ``smoke_duration``; thrown when the plan happens to arrive (a fast model:
    seconds into the round) it has cleared before the leader reaches the stretch the enemy
    covers. When the enemy the cloud would blind (the live one nearest it) has neither the
    leader nor me in its sights yet, the leader's walk to the objective says when it will:
    until that is less than half a cloud's life away, wait (a second or two at a time, so a
    leader who changes course is seen). Smoke against an enemy already firing goes now."""
    if not isinstance(step, ThrowSmoke):
        return None
    foe = Percept(snapshot, rules).smoke_blinds_my_fight((step.x, step.y))
    if foe is not None:
        return Attack(target_id=foe.id)
    leader, goal, grid = snapshot.leader, snapshot.objective, snapshot.grid
    live = [e for e in snapshot.enemies if e.hp > 0]
    if leader is None or leader.hp <= 0 or goal is None or not live:
        return None
    cloud = (step.x, step.y)
    threat = min(live, key=lambda e: (pf.distance(e.pos, cloud), e.id))
    if pf.distance(threat.pos, cloud) > rules.smoke_radius + 1.5:
        return None  # not a cloud on an enemy: nothing to time
    if any(covers(grid, rules, threat.pos, who) for who in (leader.pos, snapshot.me.pos)):
        return None
    route = pf.find_path(grid, leader.pos, (goal.x, goal.y)) or []
    ahead = next((i for i, tile in enumerate(route) if covers(grid, rules, threat.pos, tile)),
                 None)
    if ahead is None:
        return None  # the way never passes its sights
    lead = ahead / rules.move_speed - rules.smoke_duration / 2
    if lead <= 0.5:
        return None
    return Wait(seconds=round(min(max(lead, 1.0), 2.0), 1))


SMOKE_ON_ENEMY_SLACK = 1.5
"""A cloud whose centre lies within ``smoke_radius`` plus this of a live enemy is smoke on
that enemy (the advice throws it on a tile next to it)."""


def moot_smoke(step: ActionStep, snapshot: WorldSnapshot, rules: Rules) -> str | None:
    """Why a smoke would blind nobody now, or ``None`` when it still would.

    A plan's smoke was meant for an enemy: the one it lands on, or one whose line of fire
    with the leader, me or the leader's way to the objective it crosses. When the plan comes
    to it and no live enemy is any of these (the one it was for has died since), the cloud
    only hides the next enemy from my own fire (GOAP then walks out past the cloud, into the
    open, to find it) and spends the cooldown a later smoke needs."""
    if not isinstance(step, ThrowSmoke):
        return None
    p = Percept(snapshot, rules)
    if not p.hostiles:
        return "no enemy left to blind"
    tile = (step.x, step.y)
    reach = rules.smoke_radius + SMOKE_ON_ENEMY_SLACK
    if any(pf.distance(h.pos, tile) <= reach for h in p.hostiles):
        return None
    cloud = ((step.x, step.y, rules.smoke_radius),)
    guarded = [p.pos]
    leader = p.leader
    if leader is not None and leader.hp > 0:
        guarded.append(leader.pos)
        if p.objective is not None:
            guarded.extend((pf.find_path(p.grid, leader.pos, p.objective) or [])[::2])
    for h in p.hostiles:
        for who in guarded:
            if covers(p.grid, rules, h.pos, who) and pf.smoke_blocks(cloud, h.pos, who):
                return None
    return f"the cloud would blind no enemy now (none within {reach:g} tiles of ({step.x}, " \
        f"{step.y}), none whose line of fire it crosses)"


__all__ = ["defer_smoke", "moot_smoke", "prepare_ally_reach", "prepare_engage",
           "prepare_smoke"]

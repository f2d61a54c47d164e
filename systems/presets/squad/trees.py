"""The squad preset's behaviour trees: an agent's safety net, and a simple hostile NPC.

Both are built only from the kernel's nodes (:mod:`systems.planning.behavior_tree`) and
ground their steps with the same :class:`~systems.presets.squad.percept.Percept` helpers GOAP
uses, so every step they propose is legal against the snapshot they were ticked with
(targets alive and
hostile, tiles walkable and reachable, ammo for shooting, cooldowns for smoke and heal).

The trees are memoryless and reactive: each tick re-reads the snapshot from the top, so the
most urgent branch that can act wins. One tree instance can be ticked for many agents.
"""

from __future__ import annotations

from collections.abc import Callable

from esper_arbiter.components.actions import ActionStep, Scan, Wait
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.behavior_tree import (
    Action,
    BtContext,
    Condition,
    Node,
    Selector,
    Sequence,
)
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.presets.squad.percept import Percept

_PERCEPT_KEY = "percept"

IDLE_WAIT_S = 1.0
"""How long an idle agent waits before the tree is ticked again (clamped to ``max_wait``)."""


def percept(ctx: BtContext, rules: Rules) -> Percept:
    """The :class:`Percept` for this tick's snapshot, read once and kept on the blackboard."""
    p = ctx.blackboard.get(_PERCEPT_KEY)
    if isinstance(p, Percept) and p.snapshot is ctx.snapshot and p.rules is rules:
        return p
    p = Percept(ctx.snapshot, rules)
    ctx.blackboard[_PERCEPT_KEY] = p
    return p


def _cond(name: str, rules: Rules, pred: Callable[[Percept], bool]) -> Condition:
    return Condition(name, lambda ctx: pred(percept(ctx, rules)))


def _act(name: str, rules: Rules, make: Callable[[Percept], ActionStep | None]) -> Action:
    return Action(name, lambda ctx: make(percept(ctx, rules)))


def _leader_downed(p: Percept) -> bool:
    return p.leader is not None and p.leader.hp <= 0


def _leader_reachable(p: Percept) -> bool:
    return p.leader is not None and p.can_get_next_to(p.leader.pos)


def _far_from_leader(p: Percept) -> bool:
    pl = p.leader
    return pl is not None and pl.hp > 0 and pf.distance(p.pos, pl.pos) > p.rules.follow_distance


def _under_fire_or_hurt(p: Percept) -> bool:
    """Someone has me in sight and range, or I am hurt and someone can see me."""
    return bool(p.in_range) or (p.low_hp and bool(p.visible))


def _wait(p: Percept) -> ActionStep:
    return Wait(seconds=max(0.1, min(IDLE_WAIT_S, p.rules.max_wait)))


def _scan_if_enemies_unseen(p: Percept) -> ActionStep | None:
    return Scan() if p.hostiles and not p.visible else None


def _shoot_or_reload(rules: Rules) -> Node:
    return Selector("shoot_or_reload", [
        _act("attack", rules, Percept.attack_step),
        _act("reload", rules, Percept.reload_step),
    ])


def squad_tree(rules: Rules = DEFAULT_RULES) -> Node:
    """A squad agent's fallback brain, most urgent branch first:

    1. revive a downed leader when a tile next to them is reachable (walk there first);
    2. take cover when under fire or hurt in sight of an enemy (if reachable cover exists);
    3. return fire at the nearest enemy in sight and range (Reload when empty);
    4. stay near the leader (MoveTo a free tile beside them);
    5. head for the objective when there is one and no leader to stay with;
    6. otherwise Scan when enemies are known but unseen, else Wait.
    """
    return Selector("squad", [
        Sequence("revive_leader", [
            _cond("leader_downed", rules, _leader_downed),
            _cond("leader_reachable", rules, _leader_reachable),
            Selector("revive_or_go", [
                _act("revive", rules, Percept.revive_step),
                _act("go_to_leader", rules, Percept.move_next_to_leader),
            ]),
        ]),
        Sequence("take_cover", [
            _cond("under_fire_or_hurt", rules, _under_fire_or_hurt),
            _act("take_cover", rules, Percept.take_cover_step),
        ]),
        Sequence("return_fire", [
            _cond("enemy_in_range", rules, lambda p: bool(p.in_range)),
            _shoot_or_reload(rules),
        ]),
        Sequence("stay_near_leader", [
            _cond("far_from_leader", rules, _far_from_leader),
            _act("move_to_leader", rules, Percept.move_next_to_leader),
        ]),
        Sequence("head_for_objective", [
            _cond("no_leader", rules, lambda p: p.leader is None),
            _act("go_to_objective", rules, Percept.move_to_objective_step),
        ]),
        Selector("idle", [
            _act("scan", rules, _scan_if_enemies_unseen),
            _act("wait", rules, _wait),
        ]),
    ])


def enemy_tree(rules: Rules = DEFAULT_RULES) -> Node:
    """A hostile NPC's brain, ticked with a snapshot built for that NPC (its ``enemies`` are the
    units of sides hostile to it):

    1. take cover when hurt (low hp) and cover is reachable;
    2. shoot the nearest hostile in sight and range (Reload when empty);
    3. approach the nearest reachable hostile when none is in range;
    4. otherwise Wait.
    """
    return Selector("enemy", [
        Sequence("cover_when_hurt", [
            _cond("low_hp", rules, lambda p: p.low_hp and bool(p.hostiles)),
            _act("take_cover", rules, Percept.take_cover_step),
        ]),
        Sequence("shoot", [
            _cond("target_in_range", rules, lambda p: bool(p.in_range)),
            _shoot_or_reload(rules),
        ]),
        Sequence("hunt", [
            _cond("nothing_in_range", rules, lambda p: not p.in_range),
            _act("approach", rules, Percept.approach_step),
        ]),
        _act("wait", rules, _wait),
    ])

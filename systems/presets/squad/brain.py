"""The squad-tactics preset's GOAP brain: its symbolic actions, goals and grounders.

Actions and goals are written over the preset's :class:`~systems.presets.squad.facts.Fact`
bits; each action has a grounder that turns it into a legal step with the
:class:`~systems.presets.squad.percept.Percept` helpers. A host extends the brain by passing
extra actions, goals and grounders to :func:`squad_brain` (or to
:func:`~systems.presets.squad.squad_domain`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from esper_arbiter.components.actions import ActionStep, Scan, Wait
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.planning.goap import GoapAction, GoapBrain, GoapGoal, Grounder
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.presets.squad.facts import (
    DEFAULT_ORDERS,
    FACT_NAMES,
    Fact,
    extract_facts,
)
from esper_arbiter.systems.presets.squad.percept import Percept

F = Fact


def squad_actions() -> tuple[GoapAction, ...]:
    """The preset's symbolic actions (each has a grounder of the same name)."""
    return (
        GoapAction("move_to_leader", {F.LEADER_REACHABLE: True, F.AT_LEADER: False},
                   {F.NEAR_LEADER: True, F.AT_LEADER: True, F.IN_COVER: False}, 2.0),
        GoapAction("revive_leader", {F.LEADER_DOWNED: True, F.AT_LEADER: True},
                   {F.LEADER_DOWNED: False}, 2.0),
        GoapAction("heal_leader",
                   {F.LEADER_HURT: True, F.LEADER_DOWNED: False, F.AT_LEADER: True,
                    F.HEAL_READY: True},
                   {F.LEADER_HURT: False, F.HEAL_READY: False}, 1.0),
        GoapAction("heal_in_cover", {F.LOW_HP: True, F.HEAL_READY: True, F.IN_COVER: True},
                   {F.LOW_HP: False, F.HEAL_READY: False}, 1.0),
        GoapAction("heal_unseen", {F.LOW_HP: True, F.HEAL_READY: True, F.ENEMY_VISIBLE: False},
                   {F.LOW_HP: False, F.HEAL_READY: False}, 1.0),
        GoapAction("take_cover", {F.COVER_AVAILABLE: True, F.IN_COVER: False},
                   {F.IN_COVER: True}, 2.0),
        GoapAction("retreat", {F.ENEMY_VISIBLE: True},
                   {F.ENEMY_VISIBLE: False, F.ENEMY_IN_RANGE: False, F.IN_COVER: False}, 3.0),
        GoapAction("throw_smoke", {F.SMOKE_READY: True, F.ENEMY_VISIBLE: True},
                   {F.ENEMY_VISIBLE: False, F.ENEMY_IN_RANGE: False, F.LEADER_EXPOSED: False,
                    F.SMOKE_READY: False}, 2.5),
        GoapAction("reload", {F.HAS_AMMO: False, F.CAN_RELOAD: True},
                   {F.HAS_AMMO: True, F.CAN_RELOAD: False}, 1.0),
        GoapAction("approach", {F.ENEMY_KNOWN: True, F.ENEMY_IN_RANGE: False,
                                F.ORDER_HOLD: False},
                   {F.ENEMY_VISIBLE: True, F.ENEMY_IN_RANGE: True, F.IN_COVER: False}, 3.0),
        GoapAction("attack", {F.ENEMY_IN_RANGE: True, F.HAS_AMMO: True},
                   {F.ENEMY_SUPPRESSED: True}, 1.0),
        GoapAction("cover_fire", {F.ENEMY_IN_RANGE: True, F.HAS_AMMO: True},
                   {F.ENEMY_SUPPRESSED: True, F.LEADER_EXPOSED: False}, 1.5),
        GoapAction("move_to_objective",
                   {F.ORDER_OBJECTIVE: True, F.OBJECTIVE_REACHABLE: True, F.AT_OBJECTIVE: False},
                   {F.AT_OBJECTIVE: True, F.NEAR_LEADER: False, F.AT_LEADER: False}, 3.0),
        GoapAction("escort_to_objective",
                   {F.OBJECTIVE_REACHABLE: True, F.AT_OBJECTIVE: False, F.NEAR_LEADER: True},
                   {F.AT_OBJECTIVE: True}, 3.0),
        # No leader to bring along: head for the objective directly.
        GoapAction("go_to_objective",
                   {F.LEADER_PRESENT: False, F.OBJECTIVE_REACHABLE: True, F.AT_OBJECTIVE: False},
                   {F.AT_OBJECTIVE: True}, 3.0),
        GoapAction("hold_position", {}, {F.HOLDING: True}, 1.0),
        GoapAction("scan", {}, {F.AREA_SCANNED: True}, 1.0),
    )


def squad_goals() -> tuple[GoapGoal, ...]:
    """The preset's goals, from most to least urgent when tied.

    All priorities are numbers gated by facts, so the ranking is cached per fact state.
    """
    hurt_seen = F.LOW_HP | F.ENEMY_VISIBLE
    return (
        GoapGoal("revive_leader", {F.LEADER_DOWNED: False}, 100.0, when=F.LEADER_DOWNED),
        # At the objective the agent holds there: leaving for cover and coming back would
        # make "reach_objective" and "survive" undo each other forever.
        GoapGoal("recover", {F.LOW_HP: False, F.IN_COVER: True}, 92.0, when=hurt_seen,
                 unless=F.AT_OBJECTIVE),
        GoapGoal("survive", {F.IN_COVER: True}, 90.0, when=hurt_seen, unless=F.AT_OBJECTIVE),
        GoapGoal("evade", {F.ENEMY_VISIBLE: False}, 88.0, when=hurt_seen,
                 unless=F.IN_COVER | F.AT_OBJECTIVE),
        GoapGoal("heal_self", {F.LOW_HP: False}, 80.0, when=F.LOW_HP),
        GoapGoal("engage", {F.ENEMY_SUPPRESSED: True}, 75.0,
                 when=F.ORDER_ATTACK | F.ENEMY_KNOWN),
        GoapGoal("reach_objective", {F.AT_OBJECTIVE: True}, 75.0, when=F.ORDER_OBJECTIVE),
        GoapGoal("heal_leader", {F.LEADER_HURT: False}, 72.0, when=F.LEADER_HURT),
        GoapGoal("follow_orders", {F.NEAR_LEADER: True}, 70.0,
                 when=F.ORDER_FOLLOW | F.LEADER_PRESENT, unless=F.LEADER_DOWNED),
        GoapGoal("protect_leader", {F.LEADER_EXPOSED: False}, 68.0,
                 when=F.LEADER_EXPOSED, unless=F.ORDER_HOLD),
        GoapGoal("engage", {F.ENEMY_SUPPRESSED: True}, 65.0, when=F.ENEMY_IN_RANGE),
        GoapGoal("hold_position", {F.HOLDING: True}, 60.0, when=F.ORDER_HOLD),
        GoapGoal("engage", {F.ENEMY_SUPPRESSED: True}, 50.0, when=F.ENEMY_VISIBLE),
        GoapGoal("stay_with_leader", {F.NEAR_LEADER: True}, 40.0,
                 when=F.LEADER_PRESENT, unless=F.ORDER_HOLD | F.LEADER_DOWNED),
        GoapGoal("escort_to_objective", {F.AT_OBJECTIVE: True}, 30.0,
                 when=F.OBJECTIVE_KNOWN,
                 unless=F.ORDER_HOLD | F.ORDER_OBJECTIVE),
        GoapGoal("overwatch", {F.AREA_SCANNED: True}, 1.0),
    )


def _smoke(p: Percept, goal: str) -> ActionStep | None:
    protect = p.leader.pos if goal == "protect_leader" and p.leader is not None else None
    return p.smoke_step(protect)


def _hold(p: Percept, _goal: str) -> ActionStep | None:
    return Wait(seconds=min(1.0, p.rules.max_wait))


def _heal_self(p: Percept, _goal: str) -> ActionStep | None:
    return p.heal_self_step()


def _move_to_leader(p: Percept, goal: str) -> ActionStep | None:
    return p.move_next_to_leader()


def squad_grounders() -> dict[str, Grounder[Percept]]:
    """Grounding function per action name of :func:`squad_actions`."""
    return {
        "move_to_leader": _move_to_leader,
        "revive_leader": lambda p, _g: p.revive_step(),
        "heal_leader": lambda p, _g: p.heal_leader_step(),
        "heal_in_cover": _heal_self,
        "heal_unseen": _heal_self,
        "take_cover": lambda p, _g: p.take_cover_step(),
        "retreat": lambda p, _g: p.retreat_step(),
        "throw_smoke": _smoke,
        "reload": lambda p, _g: p.reload_step(),
        "approach": lambda p, _g: p.approach_step(),
        "attack": lambda p, _g: p.attack_step(),
        "cover_fire": lambda p, _g: p.cover_fire_step(),
        "move_to_objective": lambda p, _g: p.move_to_objective_step(),
        "escort_to_objective": lambda p, _g: p.escort_step(),
        "go_to_objective": lambda p, _g: p.move_to_objective_step(),
        "hold_position": _hold,
        "scan": lambda _p, _g: Scan(),
    }


FactReader = Callable[[Percept], int]
"""A host's own facts: the bits (from ``HOST_FACT_BASE`` up) true in a percept's snapshot."""


def squad_reader(
    rules: Rules = DEFAULT_RULES,
    orders: Mapping[str, int] = DEFAULT_ORDERS,
    extra_facts: FactReader | None = None,
) -> Callable[[WorldSnapshot], tuple[Percept, int]]:
    """Reads a snapshot into the preset's percept and fact state (the brain's ``read``);
    ``extra_facts`` adds a host's own bits."""

    def read(snapshot: WorldSnapshot) -> tuple[Percept, int]:
        p = Percept(snapshot, rules)
        state = extract_facts(p, orders)
        if extra_facts is not None:
            state |= extra_facts(p)
        return p, state

    return read


def squad_brain(
    rules: Rules = DEFAULT_RULES,
    *,
    orders: Mapping[str, int] = DEFAULT_ORDERS,
    extra_actions: Sequence[GoapAction] = (),
    extra_goals: Sequence[GoapGoal] = (),
    extra_grounders: Mapping[str, Grounder[Percept]] | None = None,
    extra_facts: FactReader | None = None,
    fact_names: Mapping[int, str] | None = None,
) -> GoapBrain[Percept]:
    """The preset's brain, with a host's own actions, goals, grounders and facts added.

    Extra goals rank with the preset's by priority; an extra action needs a grounder of the
    same name in ``extra_grounders``; ``extra_facts(percept)`` returns the host's fact bits
    that hold in a snapshot (how a goal such as "vault hacked" becomes satisfied).
    ``fact_names`` names those bits for the HUD and logs.
    """
    grounders = squad_grounders()
    grounders.update(extra_grounders or {})
    names = dict(FACT_NAMES)
    names.update(fact_names or {})
    return GoapBrain(
        (*squad_actions(), *extra_actions),
        (*squad_goals(), *extra_goals),
        grounders,
        # orders become facts in the brain itself (GoapBrain.order_facts), not in the reader
        squad_reader(rules, {}, extra_facts),
        fact_names=names,
        order_facts=orders,
    )

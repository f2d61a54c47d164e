"""The companion's decision logic written as a py_trees tree: what a py_trees user would tick.

Our companion decides with GOAP: the most urgent unsatisfied goal that has a plan, and that
plan's first action, grounded on the grid. A behaviour tree cannot search, so a py_trees author
writes the same logic as a priority selector: one branch per goal, in the brain's priority
order, each gated by the goal's own ``when`` / ``unless`` / "not yet satisfied" test (read
from the very same :class:`GoapGoal` objects), then the first action GOAP's A* would pick in
each fact situation, written out by hand as guarded options (``OPTIONS``). Every leaf uses the
same facts (the brain's own ``read``) and the same grounding functions, so the tree's steps are
the steps GOAP would issue; ``bench/vs_py_trees.py`` measures how often they agree.

Like :meth:`GoapBrain.decide`, a goal whose chosen first action cannot be grounded yields to
the next goal (the options' guards are exclusive, so a failed grounding fails the branch).

The plumbing is the cheapest py_trees offers, so the comparison does not flatter us: one tree
per agent ticked with ``tick_once()`` (no ``BehaviourTree`` visitors), and leaves that read a
plain per-agent context object instead of the py_trees blackboard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import py_trees
from py_trees.common import Status

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.planning.goap import GoapBrain, GoapGoal
from esper_arbiter.systems.presets.squad.facts import Fact as F

Guard = Callable[[int], bool]


def _all(*bits: int, without: int = 0) -> Guard:
    need = 0
    for b in bits:
        need |= b
    return lambda s: (s & need) == need and not s & without


ALWAYS: Guard = lambda s: True  # noqa: E731

_ENGAGE: list[tuple[Guard, str]] = [
    (_all(F.ENEMY_IN_RANGE, F.HAS_AMMO), "attack"),
    (lambda s: not s & F.HAS_AMMO and bool(s & F.CAN_RELOAD) and (
        bool(s & F.ENEMY_IN_RANGE) or (bool(s & F.ENEMY_KNOWN) and not s & F.ORDER_HOLD)),
     "reload"),
    (_all(F.HAS_AMMO, F.ENEMY_KNOWN, without=F.ENEMY_IN_RANGE | F.ORDER_HOLD), "approach"),
]

OPTIONS: dict[str, list[tuple[Guard, str]]] = {
    "revive_leader": [
        (_all(F.AT_LEADER), "revive_leader"),
        (_all(F.LEADER_REACHABLE, without=F.AT_LEADER), "move_to_leader"),
    ],
    "recover": [
        (_all(F.HEAL_READY, F.IN_COVER), "heal_in_cover"),
        (_all(F.HEAL_READY, F.COVER_AVAILABLE, without=F.IN_COVER), "take_cover"),
    ],
    "survive": [(_all(F.COVER_AVAILABLE, without=F.IN_COVER), "take_cover")],
    "evade": [(_all(F.SMOKE_READY), "throw_smoke"), (ALWAYS, "retreat")],
    "heal_self": [
        (_all(F.HEAL_READY, F.IN_COVER), "heal_in_cover"),
        (_all(F.HEAL_READY, without=F.ENEMY_VISIBLE), "heal_unseen"),
        (_all(F.HEAL_READY, F.COVER_AVAILABLE), "take_cover"),
        (_all(F.HEAL_READY, F.SMOKE_READY, F.ENEMY_VISIBLE), "throw_smoke"),
        (_all(F.HEAL_READY, F.ENEMY_VISIBLE), "retreat"),
    ],
    "engage": _ENGAGE,
    "reach_objective": [
        (_all(F.OBJECTIVE_REACHABLE, without=F.AT_OBJECTIVE), "move_to_objective"),
    ],
    "heal_leader": [
        (_all(F.AT_LEADER, F.HEAL_READY), "heal_leader"),
        (_all(F.LEADER_REACHABLE, F.HEAL_READY, without=F.AT_LEADER), "move_to_leader"),
    ],
    "follow_orders": [(_all(F.LEADER_REACHABLE, without=F.AT_LEADER), "move_to_leader")],
    "protect_leader": [
        (_all(F.ENEMY_IN_RANGE, F.HAS_AMMO), "cover_fire"),
        (_all(F.SMOKE_READY, F.ENEMY_VISIBLE), "throw_smoke"),
        (_all(F.CAN_RELOAD, F.ENEMY_IN_RANGE, without=F.HAS_AMMO), "reload"),
        (_all(F.HAS_AMMO, F.ENEMY_KNOWN, without=F.ENEMY_IN_RANGE | F.ORDER_HOLD), "approach"),
        (_all(F.CAN_RELOAD, F.ENEMY_KNOWN,
              without=F.HAS_AMMO | F.ENEMY_IN_RANGE | F.ORDER_HOLD), "reload"),
    ],
    "hold_position": [(ALWAYS, "hold_position")],
    "stay_with_leader": [(_all(F.LEADER_REACHABLE, without=F.AT_LEADER), "move_to_leader")],
    "escort_to_objective": [
        (_all(F.NEAR_LEADER, F.OBJECTIVE_REACHABLE, without=F.AT_OBJECTIVE),
         "escort_to_objective"),
        (_all(F.OBJECTIVE_REACHABLE, without=F.LEADER_PRESENT | F.AT_OBJECTIVE),
         "go_to_objective"),
        (_all(F.LEADER_PRESENT, F.LEADER_REACHABLE, F.OBJECTIVE_REACHABLE,
              without=F.AT_LEADER | F.AT_OBJECTIVE), "move_to_leader"),
    ],
    "overwatch": [(ALWAYS, "scan")],
}
"""Per goal, the first action GOAP's A* picks, by fact situation, cheapest plan first (ties
broken as the planner breaks them: the earlier action in the brain's list)."""


class Context:
    """One agent's tick: the snapshot in, the percept and facts read once, the step out."""

    __slots__ = ("facts", "percept", "snapshot", "step")

    def __init__(self) -> None:
        self.snapshot: WorldSnapshot | None = None
        self.percept: Any = None
        self.facts = 0
        self.step: ActionStep | None = None


class ReadFacts(py_trees.behaviour.Behaviour):
    """Reads the snapshot into percept + facts (the brain's ``read``); fails when down."""

    def __init__(self, ctx: Context, brain: GoapBrain[Any]) -> None:
        super().__init__("read_facts")
        self.ctx, self.read = ctx, brain.read

    def update(self) -> Status:
        ctx = self.ctx
        snap = ctx.snapshot
        if snap is None or snap.me.hp <= 0:
            return Status.FAILURE
        ctx.percept, ctx.facts = self.read(snap)
        return Status.SUCCESS


class GoalActive(py_trees.behaviour.Behaviour):
    """SUCCESS when the goal counts now (its when / unless) and is not yet satisfied."""

    def __init__(self, ctx: Context, goal: GoapGoal) -> None:
        super().__init__(f"{goal.name}?")
        self.ctx, self.goal = ctx, goal

    def update(self) -> Status:
        s, g, snap = self.ctx.facts, self.goal, self.ctx.snapshot
        assert snap is not None
        if g.satisfied(s) or g.priority_for(s, snap) <= 0:
            return Status.FAILURE
        return Status.SUCCESS


class Guarded(py_trees.behaviour.Behaviour):
    """SUCCESS when this option's guard holds and no earlier option's did."""

    def __init__(self, ctx: Context, name: str, guard: Guard, earlier: list[Guard]) -> None:
        super().__init__(name)
        self.ctx, self.guard, self.earlier = ctx, guard, list(earlier)

    def update(self) -> Status:
        s = self.ctx.facts
        if self.guard(s) and not any(g(s) for g in self.earlier):
            return Status.SUCCESS
        return Status.FAILURE


class Ground(py_trees.behaviour.Behaviour):
    """Grounds the action with the brain's own grounder: RUNNING with the step, or FAILURE."""

    def __init__(self, ctx: Context, brain: GoapBrain[Any], action: str, goal: str) -> None:
        super().__init__(action)
        self.ctx, self.ground, self.goal = ctx, brain.grounders[action], goal

    def update(self) -> Status:
        step = self.ground(self.ctx.percept, self.goal)
        if step is None:
            return Status.FAILURE
        self.ctx.step = step
        return Status.RUNNING


def companion_tree(brain: GoapBrain[Any]) -> tuple[py_trees.behaviour.Behaviour, Context]:
    """One agent's tree and the context its leaves read (set ``ctx.snapshot``, tick)."""
    ctx = Context()
    order = sorted(range(len(brain.goals)),
                   key=lambda i: (-float(brain.goals[i].priority), i))  # type: ignore[arg-type]
    branches: list[py_trees.behaviour.Behaviour] = []
    for i in order:
        goal = brain.goals[i]
        options: list[py_trees.behaviour.Behaviour] = []
        earlier: list[Guard] = []
        for guard, action in OPTIONS[goal.name]:
            options.append(py_trees.composites.Sequence(f"{goal.name}:{action}", False, [
                Guarded(ctx, f"when {action}", guard, earlier),
                Ground(ctx, brain, action, goal.name),
            ]))
            earlier.append(guard)
        branches.append(py_trees.composites.Sequence(goal.name, False, [
            GoalActive(ctx, goal),
            py_trees.composites.Selector(f"{goal.name} how", False, options),
        ]))
    root = py_trees.composites.Sequence("companion", False, [
        ReadFacts(ctx, brain),
        py_trees.composites.Selector("goals by priority", False, branches),
    ])
    return root, ctx


def tick(root: py_trees.behaviour.Behaviour, ctx: Context, snapshot: WorldSnapshot
         ) -> ActionStep | None:
    """Tick one agent's tree for ``snapshot``; the step it chose (None: nothing to do)."""
    ctx.snapshot, ctx.step = snapshot, None
    root.tick_once()
    return ctx.step

"""The behaviour-tree kernel's node types, and the companion and enemy trees built from them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.components.actions import (
    ActionStep,
    Approach,
    Attack,
    MoveTo,
    Reload,
    Revive,
    Scan,
    TakeCover,
    Wait,
)
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.behavior_tree import (
    Action,
    BtContext,
    Condition,
    Node,
    Selector,
    Sequence,
    Status,
    tick_tree,
)
from esper_arbiter.systems.planning.rules import DEFAULT_RULES
from esper_arbiter.systems.planning.validation import validate_step
from esper_arbiter.systems.presets.squad import enemy_tree
from esper_arbiter.systems.presets.squad import squad_tree as default_companion_tree
from tests.planning import (
    COMPANION_ID,
    PLAYER_ID,
    RIVAL_ID,
    enemy_view,
    hello_grid,
    hello_snapshot,
    legality_problem,
    unit,
)
from tests.planning.test_goap import situations

SNAP = hello_snapshot()


class Fixed(Node):
    """A leaf that returns scripted statuses and records its lifecycle calls."""

    def __init__(self, name: str, *statuses: Status) -> None:
        super().__init__(name)
        self.script = list(statuses)
        self.calls: list[str] = []

    def initialise(self, ctx: BtContext) -> None:
        self.calls.append("initialise")

    def update(self, ctx: BtContext) -> Status:
        self.calls.append("update")
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def terminate(self, ctx: BtContext, status: Status) -> None:
        self.calls.append(f"terminate:{status.value}")


S, F, R = Status.SUCCESS, Status.FAILURE, Status.RUNNING


# -- kernel node types ---------------------------------------------------------------------


def test_sequence_succeeds_only_when_every_child_does() -> None:
    a, b = Fixed("a", S), Fixed("b", S)
    status, _, trace = tick_tree(Sequence("seq", [a, b]), SNAP)
    assert status is S and trace == ["seq", "a", "b"]


def test_sequence_stops_at_the_first_failure_or_running_child() -> None:
    status, _, trace = tick_tree(Sequence("seq", [Fixed("a", S), Fixed("b", F), Fixed("c", S)]),
                                 SNAP)
    assert status is F and trace == ["seq", "a", "b"]
    status, _, trace = tick_tree(Sequence("seq", [Fixed("a", R), Fixed("b", S)]), SNAP)
    assert status is R and trace == ["seq", "a"]


def test_selector_returns_the_first_child_that_does_not_fail() -> None:
    status, _, trace = tick_tree(Selector("sel", [Fixed("a", F), Fixed("b", S), Fixed("c", S)]),
                                 SNAP)
    assert status is S and trace == ["sel", "a", "b"]
    status, _, _ = tick_tree(Selector("sel", [Fixed("a", F), Fixed("b", R)]), SNAP)
    assert status is R
    status, _, _ = tick_tree(Selector("sel", [Fixed("a", F), Fixed("b", F)]), SNAP)
    assert status is F


def test_condition_reads_the_snapshot() -> None:
    healthy = Condition("healthy", lambda ctx: ctx.snapshot.me.hp > 50)
    assert tick_tree(healthy, hello_snapshot(me_hp=80))[0] is S
    assert tick_tree(healthy, hello_snapshot(me_hp=20))[0] is F


def test_action_proposes_a_step_or_fails() -> None:
    status, step, _ = tick_tree(Action("scan", lambda ctx: Scan()), SNAP)
    assert status is R and step == Scan()
    status, step, _ = tick_tree(Action("never", lambda ctx: None), SNAP)
    assert status is F and step is None


def test_lifecycle_initialise_once_per_run_and_terminate_on_leaving_running() -> None:
    leaf = Fixed("leaf", R, R, S)
    ctx = BtContext(snapshot=SNAP)
    assert leaf.tick(ctx) is R
    assert leaf.tick(ctx) is R
    assert leaf.tick(ctx) is S
    assert leaf.calls == ["initialise", "update", "update", "update", "terminate:success"]
    leaf.tick(ctx)  # a fresh run initialises again
    assert leaf.calls[-3:] == ["initialise", "update", "terminate:success"]


def test_action_lifecycle_across_ticks() -> None:
    events: list[str] = []
    steps: list[ActionStep | None] = [Wait(seconds=1.0), Wait(seconds=1.0), None]

    class Recorded(Action):
        def initialise(self, ctx: BtContext) -> None:
            events.append("initialise")

        def terminate(self, ctx: BtContext, status: Status) -> None:
            events.append(f"terminate:{status.value}")

    node = Recorded("wait", lambda ctx: steps.pop(0))
    assert [tick_tree(node, SNAP)[0] for _ in range(3)] == [R, R, F]
    assert events == ["initialise", "terminate:failure"]


def test_composites_need_children() -> None:
    with pytest.raises(ValueError, match="at least one child"):
        Sequence("empty", [])
    with pytest.raises(ValueError, match="at least one child"):
        Selector("empty", [])


# -- the companion tree ---------------------------------------------------------------------


def companion(snap: WorldSnapshot) -> tuple[ActionStep, list[str]]:
    status, step, trace = tick_tree(default_companion_tree(), snap)
    assert status is R and step is not None
    assert legality_problem(step, snap) is None, legality_problem(step, snap)
    assert validate_step(step, snap) is None, validate_step(step, snap)
    return step, trace


def test_companion_revives_an_adjacent_downed_player() -> None:
    step, trace = companion(hello_snapshot(player_hp=0))
    assert step == Revive(target_id=PLAYER_ID)
    assert "revive" in trace


def test_companion_walks_to_a_downed_player_it_can_reach() -> None:
    step, _ = companion(hello_snapshot(leader=(9, 5), player_hp=0))
    assert isinstance(step, MoveTo)
    assert pf.distance((step.x, step.y), (9, 5)) <= DEFAULT_RULES.revive_reach


def test_companion_takes_cover_under_fire() -> None:
    step, _ = companion(hello_snapshot(me=(7, 3)))
    assert step == TakeCover(x=8, y=2)


def test_companion_returns_fire_from_cover_and_reloads_when_empty() -> None:
    step, _ = companion(hello_snapshot(me=(8, 2), me_in_cover=True))
    assert step == Attack(target_id=RIVAL_ID)
    step, _ = companion(hello_snapshot(me=(8, 2), me_in_cover=True, ammo=0))
    assert step == Reload()


def test_companion_without_cover_returns_fire_in_the_open() -> None:
    step, _ = companion(hello_snapshot(me=(7, 3), grid=hello_grid(cover=frozenset())))
    assert step == Attack(target_id=RIVAL_ID)


def test_companion_stays_near_the_player() -> None:
    step, _ = companion(hello_snapshot(me=(2, 8)))
    assert isinstance(step, MoveTo)
    assert pf.distance((step.x, step.y), (2, 2)) <= 1.5


def test_companion_idles_with_scan_or_wait() -> None:
    step, _ = companion(hello_snapshot())  # enemies known, all behind the wall
    assert step == Scan()
    step, _ = companion(hello_snapshot(enemies=()))
    assert isinstance(step, Wait)


# -- the enemy tree -------------------------------------------------------------------------


def enemy(snap: WorldSnapshot) -> ActionStep:
    status, step, _ = tick_tree(enemy_tree(), snap)
    assert status is R and step is not None
    assert legality_problem(step, snap) is None, legality_problem(step, snap)
    assert validate_step(step, snap) is None, validate_step(step, snap)
    return step


def test_enemy_approaches_when_no_target_is_in_sight() -> None:
    step = enemy(enemy_view(hello_snapshot(), RIVAL_ID))
    assert isinstance(step, Approach)
    assert step.target_id in (PLAYER_ID, COMPANION_ID)


def test_enemy_shoots_the_nearest_hostile_in_range() -> None:
    step = enemy(enemy_view(hello_snapshot(me=(8, 2)), RIVAL_ID))
    assert step == Attack(target_id=COMPANION_ID)


def test_enemy_takes_cover_when_hurt() -> None:
    snap = hello_snapshot(me=(8, 3), enemies=(unit(RIVAL_ID, 12, 2, "hostile", 10, 60),))
    step = enemy(enemy_view(snap, RIVAL_ID))
    assert step == TakeCover(x=13, y=4)


# -- every proposal is legal -----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(situations(), st.booleans())
def test_every_tree_step_is_legal(snap: WorldSnapshot, as_enemy: bool) -> None:
    if as_enemy:
        live = [e for e in snap.enemies if e.hp > 0 and e.team != snap.me.team]
        if not live:
            return
        snap = enemy_view(snap, live[0].id)
        tree = enemy_tree()
    else:
        tree = default_companion_tree()
    _, step, _ = tick_tree(tree, snap)
    if step is None:
        return
    assert legality_problem(step, snap) is None, (step, legality_problem(step, snap))
    assert validate_step(step, snap) is None, (step, validate_step(step, snap))

"""Plan validation: one test per rejection reason, plans followed step by step, accepted plans
really executable, and untrusted input never making the validator raise."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from esper_arbiter.components.snapshot import GridView, WorldSnapshot
from esper_arbiter.systems.planning.pathfinding import find_path
from esper_arbiter.systems.planning.rules import DEFAULT_RULES
from esper_arbiter.systems.planning.validation import (
    MAX_CHECKED_STEPS,
    PlanValidation,
    StepError,
    ValidationCode,
    validate_plan,
    validate_step,
)
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY as DEFAULT_REGISTRY
from tests.planning.snapshots import (
    COMPANION_ID,
    COVER,
    ENEMY_IDS,
    GRUNT_ID,
    PLAYER_ID,
    RIVAL_ID,
    SNIPER_ID,
    hello_snapshot,
    unit,
    with_enemy,
)

C = ValidationCode


def sealed() -> WorldSnapshot:
    """The wall at x=6 closed top to bottom: the right half cannot be reached on foot."""
    walls = frozenset((6, y) for y in range(10))
    return hello_snapshot(grid=GridView(20, 10, walls, COVER))


def far_player() -> WorldSnapshot:
    return hello_snapshot(leader=unit(PLAYER_ID, 10, 5, hp=60, max_hp=100))


def downed_buddy() -> WorldSnapshot:
    return hello_snapshot(allies=(unit(9, 3, 3, hp=0, max_hp=50),))


# (id, plan, snapshot factory, expected code, text the message must contain)
CASES: list[tuple[str, object, Any, ValidationCode, str]] = [
    ("unknown tool", [{"act": "Shoot", "target_id": 3}], hello_snapshot, C.UNKNOWN_TOOL,
     "unknown tool 'Shoot'"),
    ("misspelt tool", [{"act": "Atack", "target_id": 3}], hello_snapshot, C.UNKNOWN_TOOL,
     "did you mean Attack?"),
    ("missing arg", [{"act": "MoveTo", "x": 3}], hello_snapshot, C.MISSING_ARG,
     "missing argument 'y'"),
    ("missing act", [{"x": 3, "y": 2}], hello_snapshot, C.MISSING_ARG, 'missing "act"'),
    ("extra arg", [{"act": "Reload", "target_id": 3}], hello_snapshot, C.EXTRA_ARG,
     "unexpected argument 'target_id'; Reload takes no arguments"),
    ("string coordinate", [{"act": "MoveTo", "x": "3", "y": 2}], hello_snapshot,
     C.BAD_ARG_TYPE, "x must be an integer, got '3' (a string)"),
    ("bool coordinate", [{"act": "MoveTo", "x": True, "y": 2}], hello_snapshot,
     C.BAD_ARG_TYPE, "x must be an integer, got True (a boolean)"),
    ("fractional coordinate", [{"act": "MoveTo", "x": 3.5, "y": 2}], hello_snapshot,
     C.BAD_ARG_TYPE, "x must be an integer"),
    ("nan seconds", [{"act": "Wait", "seconds": math.nan}], hello_snapshot, C.BAD_ARG_TYPE,
     "seconds must be a number"),
    ("act not a string", [{"act": 5}], hello_snapshot, C.BAD_ARG_TYPE, '"act" must be'),
    ("x out of bounds", [{"act": "MoveTo", "x": 20, "y": 2}], hello_snapshot, C.OUT_OF_BOUNDS,
     "tile (20, 2) is outside the 20x10 map"),
    ("negative y", [{"act": "ThrowSmoke", "x": 3, "y": -1}], hello_snapshot, C.OUT_OF_BOUNDS,
     "outside"),
    ("wall", [{"act": "MoveTo", "x": 6, "y": 4}], hello_snapshot, C.ON_OBSTACLE,
     "step 1 MoveTo(x=6, y=4): tile (6, 4) is a wall"),
    ("walled-off tile", [{"act": "MoveTo", "x": 12, "y": 2}], sealed, C.UNREACHABLE,
     "tile (12, 2) cannot be reached on foot from (2, 3)"),
    ("walled-off enemy", [{"act": "Approach", "target_id": RIVAL_ID}], sealed, C.UNREACHABLE,
     f"#{RIVAL_ID} at (12, 2) cannot be reached"),
    ("not cover", [{"act": "TakeCover", "x": 4, "y": 4}], hello_snapshot, C.NOT_COVER,
     "tile (4, 4) is not a cover tile; nearest cover: (5, 5)"),
    ("no such target", [{"act": "Attack", "target_id": 42}], hello_snapshot, C.TARGET_MISSING,
     "no unit #42 in sight (live enemies: #3, #4, #5)"),
    ("dead enemy", [{"act": "Attack", "target_id": RIVAL_ID}],
     lambda: with_enemy(hello_snapshot(), RIVAL_ID, hp=0), C.TARGET_DEAD,
     f"enemy #{RIVAL_ID} is already dead"),
    ("healing the downed", [{"act": "Heal", "target_id": 9}], downed_buddy, C.TARGET_DEAD,
     "#9 is down (hp 0): Revive, not Heal"),
    ("shooting the player", [{"act": "Attack", "target_id": PLAYER_ID}], hello_snapshot,
     C.TARGET_NOT_HOSTILE, f"#{PLAYER_ID} is your leader, not an enemy"),
    ("shooting oneself", [{"act": "CoverFire", "target_id": COMPANION_ID, "seconds": 2}],
     hello_snapshot, C.TARGET_NOT_HOSTILE, "is you, not an enemy"),
    ("healing an enemy", [{"act": "Heal", "target_id": RIVAL_ID}], hello_snapshot,
     C.TARGET_NOT_ALLY, "is an enemy"),
    ("reviving the living", [{"act": "Revive", "target_id": PLAYER_ID}], hello_snapshot,
     C.TARGET_NOT_DOWNED, "is not down (hp 100/100)"),
    ("heal out of reach", [{"act": "Heal", "target_id": PLAYER_ID}], far_player,
     C.OUT_OF_REACH, "is 8.2 tiles from (2, 3); Heal reaches 1.5"),
    ("no ammo", [{"act": "Attack", "target_id": RIVAL_ID}], lambda: hello_snapshot(ammo=0),
     C.NO_AMMO, "no ammo loaded (0/30): Reload first"),
    ("smoke cooldown", [{"act": "ThrowSmoke", "x": 9, "y": 2}],
     lambda: hello_snapshot(cooldowns={"smoke": 4.0}), C.COOLDOWN,
     "smoke is on cooldown for 4.0s more"),
    ("heal cooldown", [{"act": "Heal", "target_id": COMPANION_ID}],
     lambda: hello_snapshot(cooldowns={"heal": 2.5}), C.COOLDOWN, "heal is on cooldown"),
    ("wait too long", [{"act": "Wait", "seconds": 30}], hello_snapshot, C.BAD_VALUE,
     "seconds=30 is outside 0.1-10"),
    ("wait zero", [{"act": "Wait", "seconds": 0}], hello_snapshot, C.BAD_VALUE, "outside"),
    ("cover fire too long", [{"act": "CoverFire", "target_id": RIVAL_ID, "seconds": 7.5}],
     hello_snapshot, C.BAD_VALUE, "seconds=7.5 is outside 0.5-6"),
    ("empty list", [], hello_snapshot, C.EMPTY_PLAN, "no steps"),
    ("empty steps", {"steps": []}, hello_snapshot, C.EMPTY_PLAN, "no steps"),
    ("too long", [{"act": "Scan"}] * 9, hello_snapshot, C.PLAN_TOO_LONG,
     "the plan has 9 steps; at most 8 are allowed"),
    ("a string", "MoveTo 3 2", hello_snapshot, C.NOT_A_PLAN, "got a string"),
    ("null", None, hello_snapshot, C.NOT_A_PLAN, "got null"),
    ("a bare step", {"act": "Scan"}, hello_snapshot, C.NOT_A_PLAN,
     'wrap it as {"steps": [...]}'),
    ("steps not a list", {"steps": "Scan"}, hello_snapshot, C.NOT_A_PLAN,
     '"steps" must be a list'),
    ("step not an object", ["Scan"], hello_snapshot, C.NOT_A_PLAN,
     "step 1 is a string, not an object"),
]


@pytest.mark.parametrize(("plan", "snap", "code", "text"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rejection_reason(plan: object, snap: Any, code: ValidationCode, text: str) -> None:
    result = validate_plan(plan, snap())
    assert not result.ok
    assert [e.code for e in result.errors] == [code], result.errors
    assert text in result.errors[0].message


STEP_ONLY = {C.NO_LINE_OF_SIGHT}
"""Codes only an issue-time check gives (see test_validate_step_checks_the_line_of_fire)."""


def test_every_code_has_a_case() -> None:
    assert {c[3] for c in CASES} | STEP_ONLY == set(ValidationCode)


def test_a_good_plan_is_accepted_and_typed() -> None:
    plan = {"steps": [
        {"act": "TakeCover", "x": 5, "y": 2},
        {"act": "Attack", "target_id": RIVAL_ID},
        {"act": "CoverFire", "target_id": GRUNT_ID, "seconds": 2},
        {"act": "ThrowSmoke", "x": 9, "y": 2},
        {"act": "MoveTo", "x": 6, "y": 0},
        {"act": "Wait", "seconds": 1.5},
    ], "rationale": "hold the corner"}
    result = validate_plan(plan, hello_snapshot())
    assert result.ok and result.errors == ()
    assert result.steps[0] == TakeCover(5, 2)
    assert result.steps[-1] == Wait(1.5)
    assert result.summary() == "ok (6 steps)"


def test_integral_floats_are_accepted_as_ints_and_ints_as_seconds() -> None:
    result = validate_plan([{"act": "MoveTo", "x": 3.0, "y": 2}, {"act": "Wait", "seconds": 2}],
                           hello_snapshot())
    assert result.ok
    assert result.steps == (MoveTo(3, 2), Wait(2.0))
    move, wait = result.steps
    assert isinstance(move, MoveTo) and type(move.x) is int
    assert isinstance(wait, Wait) and type(wait.seconds) is float


def test_every_bad_step_is_reported_with_its_index() -> None:
    plan = [
        {"act": "MoveTo", "x": 6, "y": 4},
        {"act": "Scan"},
        {"act": "Attack", "target_id": PLAYER_ID},
        {"act": "Fly"},
        {"act": "Wait", "seconds": 3},
    ]
    result = validate_plan(plan, hello_snapshot())
    assert [(e.index, e.code) for e in result.errors] == [
        (0, C.ON_OBSTACLE), (2, C.TARGET_NOT_HOSTILE), (3, C.UNKNOWN_TOOL)]
    assert [e.message.split()[1] for e in result.errors] == ["1", "3", "4"]
    assert result.steps == (Scan(), Wait(3.0))  # the legal ones, for display or salvage
    assert "step 1 MoveTo(x=6, y=4): tile (6, 4) is a wall" in result.summary()


def test_independent_problems_of_one_step_are_all_reported() -> None:
    snap = with_enemy(hello_snapshot(ammo=0), RIVAL_ID, hp=0)
    result = validate_plan([{"act": "Attack", "target_id": RIVAL_ID}], snap)
    assert {e.code for e in result.errors} == {C.TARGET_DEAD, C.NO_AMMO}
    missing_and_extra = validate_plan([{"act": "MoveTo", "x": 3, "z": 1}], hello_snapshot())
    assert {e.code for e in missing_and_extra.errors} == {C.MISSING_ARG, C.EXTRA_ARG}


def test_too_long_plans_also_report_their_bad_steps_and_honour_max_steps() -> None:
    result = validate_plan([{"act": "Scan"}, {"act": "Fly"}, {"act": "Scan"}],
                           hello_snapshot(), max_steps=2)
    assert [e.code for e in result.errors] == [C.PLAN_TOO_LONG, C.UNKNOWN_TOOL]
    assert "at most 2" in result.errors[0].message


def test_absurdly_long_plans_are_checked_only_up_to_a_bound() -> None:
    result = validate_plan([{"act": "Fly"}] * 100_000, hello_snapshot())
    assert result.errors[0].code is C.PLAN_TOO_LONG
    assert len(result.errors) == 1 + MAX_CHECKED_STEPS


# -- following the plan ---------------------------------------------------------------------


def test_reach_is_measured_from_where_the_agent_will_be() -> None:
    snap = far_player()  # player at (10, 5), agent at (2, 3)
    assert validate_plan([{"act": "Heal", "target_id": PLAYER_ID}], snap).errors[0].code is (
        C.OUT_OF_REACH)
    walk_then_heal = [{"act": "MoveTo", "x": 9, "y": 5}, {"act": "Heal", "target_id": PLAYER_ID}]
    assert validate_plan(walk_then_heal, snap).ok
    smoke = [{"act": "MoveTo", "x": 14, "y": 8}, {"act": "ThrowSmoke", "x": 19, "y": 9}]
    assert validate_plan(smoke, hello_snapshot()).ok


def test_a_far_smoke_is_accepted_and_checked_again_just_before_it_is_thrown() -> None:
    """ThrowSmoke walks into throwing range first (its prepare), so a far tile is no reason
    to reject a plan; the re-check at issue time still refuses it from here."""
    far = [{"act": "ThrowSmoke", "x": 19, "y": 9}, {"act": "Heal", "target_id": COMPANION_ID}]
    assert validate_plan(far, hello_snapshot()).ok
    err = validate_step(ThrowSmoke(19, 9), hello_snapshot())
    assert err is not None and err.code is C.OUT_OF_REACH and "ThrowSmoke reaches 8" in str(err)
    heal_far = validate_plan([{"act": "Heal", "target_id": PLAYER_ID}], far_player())
    assert heal_far.errors[0].code is C.OUT_OF_REACH  # a target's reach stays strict


def test_after_approach_reach_is_left_to_issue_time() -> None:
    plan = [{"act": "Approach", "target_id": RIVAL_ID}, {"act": "ThrowSmoke", "x": 19, "y": 9}]
    assert validate_plan(plan, hello_snapshot()).ok
    # ... and validate_step catches it when the step is about to run from (2, 3).
    err = validate_step(ThrowSmoke(19, 9), hello_snapshot())
    assert err is not None and err.code is C.OUT_OF_REACH


def test_a_second_smoke_waits_for_the_cooldown() -> None:
    twice = [{"act": "ThrowSmoke", "x": 9, "y": 2}] * 2
    result = validate_plan(twice, hello_snapshot())
    assert [(e.index, e.code) for e in result.errors] == [(1, C.COOLDOWN)]
    assert "12.0s more" in result.errors[0].message
    short = [twice[0], {"act": "Wait", "seconds": 10}, twice[1]]
    assert "2.0s more" in validate_plan(short, hello_snapshot()).errors[0].message
    long_enough = [twice[0], {"act": "Wait", "seconds": 10}, {"act": "Wait", "seconds": 2},
                   twice[1]]
    assert validate_plan(long_enough, hello_snapshot()).ok


def test_walking_time_counts_toward_a_cooldown() -> None:
    # 17 tiles at 4 tiles/s is at least 4.25 s; with 8 s of waiting, 12.25 s >= 12 s.
    plan = [{"act": "ThrowSmoke", "x": 9, "y": 2}, {"act": "MoveTo", "x": 19, "y": 9},
            {"act": "Wait", "seconds": 8}, {"act": "ThrowSmoke", "x": 15, "y": 8}]
    assert validate_plan(plan, hello_snapshot()).ok
    plan[2] = {"act": "Wait", "seconds": 7}
    assert validate_plan(plan, hello_snapshot()).errors[0].code is C.COOLDOWN


def test_a_cooldown_can_be_waited_out() -> None:
    snap = hello_snapshot(cooldowns={"smoke": 5.0})
    plan = [{"act": "Wait", "seconds": 6}, {"act": "ThrowSmoke", "x": 9, "y": 2}]
    assert validate_plan(plan, snap).ok


def test_reload_makes_attacking_legal_again() -> None:
    snap = hello_snapshot(ammo=0)
    assert validate_plan([{"act": "Reload"}, {"act": "Attack", "target_id": RIVAL_ID}], snap).ok


def test_a_host_that_does_not_track_ammo_gets_no_ammo_checks() -> None:
    snap = hello_snapshot(ammo=0, ammo_capacity=0, ammo_reserve=0)
    assert validate_plan([{"act": "Attack", "target_id": RIVAL_ID}], snap).ok


def test_revive_a_downed_ally_next_to_the_agent() -> None:
    result = validate_plan([{"act": "Revive", "target_id": 9}], downed_buddy())
    assert result.ok and result.steps == (Revive(9),)


# -- accepted plans are executable --------------------------------------------------------


@st.composite
def schema_step(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    """One step drawn from the narrowed schema (what a grammar-constrained model can write)."""
    branch = draw(st.sampled_from(schema["anyOf"]))
    step: dict[str, Any] = {"act": branch["properties"]["act"]["const"]}
    for name, prop in branch["properties"].items():
        if name != "act":
            step[name] = draw(st.sampled_from(prop["enum"]))
    return step


SNAPSHOTS = {
    "opening": hello_snapshot(),
    "rival dead, low ammo": with_enemy(hello_snapshot(ammo=0), RIVAL_ID, hp=0),
    "far player, smoke cooling": hello_snapshot(
        leader=unit(PLAYER_ID, 10, 5, hp=40, max_hp=100), cooldowns={"smoke": 3.0}),
    "buddy down": hello_snapshot(allies=(unit(9, 3, 4, hp=0, max_hp=50),)),
    "sealed": sealed(),
}


@st.composite
def schema_plans(draw: st.DrawFn) -> tuple[WorldSnapshot, list[dict[str, Any]]]:
    snap = SNAPSHOTS[draw(st.sampled_from(sorted(SNAPSHOTS)))]
    schema = DEFAULT_REGISTRY.step_schema(snap)
    return snap, draw(st.lists(schema_step(schema), min_size=1, max_size=8))


@settings(max_examples=300, deadline=None)
@given(case=schema_plans())
def test_accepted_plans_are_executable(
        case: tuple[WorldSnapshot, list[dict[str, Any]]]) -> None:
    """Walk an accepted plan the way a host would: every move has a path, every shot a live
    hostile target and a loaded gun, every smoke and heal is in reach and off cooldown."""
    snap, plan = case
    result = validate_plan({"steps": plan}, snap)
    if not result.ok:
        return
    rules = DEFAULT_RULES
    pos: tuple[int, int] | None = snap.me.pos
    loaded = snap.ammo > 0
    clock = 0.0  # game time that has certainly passed
    smoke_ready_at = snap.cooldown("smoke")
    heal_ready_at = snap.cooldown("heal")
    enemies = {e.id: e for e in snap.enemies}
    for step in result.steps:
        if isinstance(step, (MoveTo, Retreat, TakeCover)):
            assert find_path(snap.grid, snap.me.pos, (step.x, step.y)) is not None
            if isinstance(step, TakeCover):
                assert (step.x, step.y) in snap.grid.cover
            if pos is not None:
                clock += max(abs(step.x - pos[0]), abs(step.y - pos[1])) / rules.move_speed
            pos = (step.x, step.y)
        elif isinstance(step, Approach):
            assert enemies[step.target_id].alive
            assert find_path(snap.grid, snap.me.pos, enemies[step.target_id].pos) is not None
            pos = None
        elif isinstance(step, (Attack, CoverFire)):
            target = enemies[step.target_id]
            assert target.alive and target.team != snap.me.team
            assert loaded
            clock += step.seconds if isinstance(step, CoverFire) else 0.0
        elif isinstance(step, Reload):
            loaded = True
        elif isinstance(step, ThrowSmoke):
            assert clock >= smoke_ready_at
            smoke_ready_at = clock + rules.smoke_cooldown
            if pos is not None and math.dist(pos, (step.x, step.y)) > rules.smoke_range:
                pos = None  # out of reach: the arbiter walks into throwing range first
        elif isinstance(step, (Heal, Revive)):
            ally = snap.unit(step.target_id)
            assert ally is not None and ally.team == snap.me.team
            assert (ally.hp <= 0) == isinstance(step, Revive)
            if isinstance(step, Heal):
                assert clock >= heal_ready_at
                heal_ready_at = clock + rules.heal_cooldown
            if pos is not None:
                assert math.dist(pos, ally.pos) <= 1.5
        elif isinstance(step, Wait):
            clock += step.seconds
    assert len(result.steps) == len(plan) <= 8


# -- validate_step: the re-check just before a step is issued -----------------------------


def test_validate_step_accepts_a_legal_step() -> None:
    snap = with_enemy(hello_snapshot(), RIVAL_ID, x=5, y=4)  # this side of the wall, in sight
    for step in (MoveTo(3, 2), Attack(RIVAL_ID), CoverFire(RIVAL_ID, 2.0), TakeCover(5, 2),
                 Heal(PLAYER_ID), Scan(), Wait(2.0), ThrowSmoke(9, 2)):
        assert validate_step(step, snap) is None, step


def test_validate_step_checks_the_line_of_fire() -> None:
    """A plan may say Attack before it walks into view; when the shot is issued the target must
    be in range and in sight, or the step would only fail in the game."""
    behind_wall = with_enemy(hello_snapshot(), RIVAL_ID, x=8, y=3)  # 6 tiles, wall at x=6
    hidden = validate_step(Attack(RIVAL_ID), behind_wall)
    assert hidden is not None and hidden.code is C.NO_LINE_OF_SIGHT
    assert f"#{RIVAL_ID} is not in sight" in hidden.message
    near = with_enemy(hello_snapshot(), RIVAL_ID, x=2, y=9)  # 6 tiles down x=2, in sight
    assert validate_step(CoverFire(RIVAL_ID, 2.0), near) is None
    beyond = validate_step(Attack(SNIPER_ID), hello_snapshot(me=unit(COMPANION_ID, 7, 3, hp=80)))
    assert beyond is not None and beyond.code is C.OUT_OF_REACH  # (7,3) -> (17,3): 10 tiles
    # ...while the plan-level check leaves sight to issue time.
    assert validate_plan([{"act": "Attack", "target_id": RIVAL_ID}], hello_snapshot()).ok


def test_validate_step_sees_a_target_that_died() -> None:
    snap = with_enemy(hello_snapshot(), RIVAL_ID, hp=0)
    err = validate_step(Attack(RIVAL_ID), snap)
    assert err == StepError(None, C.TARGET_DEAD,
                            f"Attack(target_id={RIVAL_ID}): enemy #{RIVAL_ID} is already dead")


def test_validate_step_sees_a_tile_that_is_now_blocked() -> None:
    snap = hello_snapshot()
    blocked = dataclasses.replace(snap, grid=dataclasses.replace(
        snap.grid, walls=snap.grid.walls | {(3, 2)}, version=1))
    err = validate_step(MoveTo(3, 2), blocked)
    assert err is not None and err.code is C.ON_OBSTACLE
    assert err.message == "MoveTo(x=3, y=2): tile (3, 2) is a wall"


def test_validate_step_sees_ammo_cooldowns_and_distance_now() -> None:
    assert validate_step(Attack(RIVAL_ID), hello_snapshot(ammo=0)).code is C.NO_AMMO  # type: ignore[union-attr]
    assert validate_step(ThrowSmoke(9, 2), hello_snapshot(cooldowns={"smoke": 1})).code is (  # type: ignore[union-attr]
        C.COOLDOWN)
    assert validate_step(Heal(PLAYER_ID), far_player()).code is C.OUT_OF_REACH  # type: ignore[union-attr]


def test_validate_step_knows_only_registered_tools() -> None:
    from esper_arbiter.systems.planning.tools import ToolRegistry

    err = validate_step(Scan(), hello_snapshot(), ToolRegistry())
    assert err is not None and err.code is C.UNKNOWN_TOOL


# -- untrusted input never raises ----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
arg_values = (st.integers(-5, 25) | st.integers() | st.floats() | st.booleans() | st.none()
              | st.text(max_size=3) | st.sampled_from((*ENEMY_IDS, PLAYER_ID, COMPANION_ID)))
plausible_steps = st.fixed_dictionaries(
    {"act": st.sampled_from([*DEFAULT_REGISTRY.names(), "Fly", "moveto"])},
    optional={"x": arg_values, "y": arg_values, "target_id": arg_values, "seconds": arg_values,
              "z": arg_values},
)
plans = (json_values
         | st.lists(plausible_steps | json_values, max_size=12)
         | st.fixed_dictionaries({"steps": st.lists(plausible_steps, max_size=12)}))


@settings(max_examples=400, deadline=None)
@given(plan=plans, snap_key=st.sampled_from(sorted(SNAPSHOTS)))
def test_untrusted_input_never_raises(plan: object, snap_key: str) -> None:
    result = validate_plan(plan, SNAPSHOTS[snap_key])
    assert isinstance(result, PlanValidation)
    assert result.ok == (not result.errors)
    assert all(isinstance(e.code, ValidationCode) and e.message for e in result.errors)
    if result.ok:
        assert isinstance(plan, (list, dict))
        assert 1 <= len(result.steps) <= 8


def test_a_step_written_eight_times_is_one_step_not_a_plan_on_cooldown() -> None:
    from esper_arbiter.systems.planning.validation import collapse_raw_repeats

    smoke = {"act": "ThrowSmoke", "x": 9, "y": 2}
    padded = {"steps": [smoke] * 8 + [{"act": "Scan"}]}
    assert not validate_plan(padded, hello_snapshot()).ok  # the second smoke is on cooldown
    collapsed = validate_plan(collapse_raw_repeats(padded), hello_snapshot())
    assert collapsed.ok and [s.act for s in collapsed.steps] == ["ThrowSmoke", "Scan"]
    assert collapse_raw_repeats("not a plan") == "not a plan"

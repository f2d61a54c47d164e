"""GOAP: the A* planner over facts, and the companion brain's decisions on hello_companion."""

from __future__ import annotations

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
    TakeCover,
    ThrowSmoke,
    Wait,
)
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.goap import (
    GoapAction,
    GoapBrain,
    GoapDecision,
    GoapGoal,
    GoapPlanner,
    describe_facts,
)
from esper_arbiter.systems.planning.rules import DEFAULT_RULES
from esper_arbiter.systems.planning.validation import validate_step
from esper_arbiter.systems.presets.squad import FACT_NAMES, Fact, squad_brain
from esper_arbiter.systems.presets.squad.brain import (
    squad_actions,
    squad_goals,
    squad_grounders,
    squad_reader,
)
from tests.planning import (
    COMPANION_ID,
    COVER,
    DOOR,
    HEIGHT,
    PLAYER_ID,
    RIVAL_ID,
    WALL,
    WIDTH,
    hello_grid,
    hello_snapshot,
    legality_problem,
    unit,
)


def brain_with(goals: object = None) -> GoapBrain:  # type: ignore[type-arg]
    """The squad brain with only ``goals``."""
    return GoapBrain(squad_actions(), tuple(goals) if goals is not None else squad_goals(),  # type: ignore[call-overload]
                     squad_grounders(), squad_reader())


companion_goals = squad_goals

F = Fact


def decide(snap: WorldSnapshot, brain: GoapBrain | None = None) -> GoapDecision:
    """Decide and check the step is legal by our rules and by the plan validator."""
    d = (brain or squad_brain()).decide(snap)
    assert d is not None
    assert legality_problem(d.step, snap) is None, legality_problem(d.step, snap)
    assert validate_step(d.step, snap) is None, validate_step(d.step, snap)
    assert d.plan[0] == d.action
    return d


# -- the planner on its own ----------------------------------------------------------------

A, B, C = F.ENEMY_KNOWN, F.HAS_AMMO, F.ENEMY_SUPPRESSED


def small_planner() -> GoapPlanner:
    return GoapPlanner([
        GoapAction("cheap_two_step_a", {}, {A: True}, 1.0),
        GoapAction("cheap_two_step_b", {A: True}, {C: True}, 1.0),
        GoapAction("expensive_direct", {}, {C: True}, 5.0),
        GoapAction("needs_b", {B: True}, {F.HOLDING: True}, 1.0),
    ])


def test_planner_finds_the_cheapest_plan_not_the_shortest() -> None:
    planner = small_planner()
    goal = GoapGoal("g", {C: True})
    plan = planner.plan(0, goal)
    assert plan is not None
    assert [a.name for a in plan] == ["cheap_two_step_a", "cheap_two_step_b"]


def test_planner_returns_empty_plan_when_satisfied_and_none_when_impossible() -> None:
    planner = small_planner()
    assert planner.plan(C, GoapGoal("g", {C: True})) == ()
    assert planner.plan(0, GoapGoal("hold", {F.HOLDING: True})) is None
    plan = planner.plan(B, GoapGoal("hold", {F.HOLDING: True}))
    assert plan is not None and [a.name for a in plan] == ["needs_b"]


def test_planner_caches_by_state_and_goal() -> None:
    planner = small_planner()
    goal = GoapGoal("g", {C: True})
    first = planner.plan(0, goal)
    assert (planner.hits, planner.misses) == (0, 1)
    assert planner.plan(0, goal) is first
    assert (planner.hits, planner.misses) == (1, 1)
    planner.plan(A, goal)  # a different state is a new search
    assert (planner.hits, planner.misses) == (1, 2)
    planner.clear_cache()
    assert (planner.hits, planner.misses, planner.cache_len) == (0, 0, 0)


def test_planner_respects_its_depth_bound() -> None:
    chain = [
        GoapAction(f"s{i}", {1 << i: True}, {1 << (i + 1): True}, 1.0) for i in range(8)
    ]
    goal = GoapGoal("far", {1 << 8: True})
    assert GoapPlanner(chain, max_depth=4).plan(1, goal) is None
    plan = GoapPlanner(chain, max_depth=8).plan(1, goal)
    assert plan is not None and len(plan) == 8


def test_bad_definitions_are_rejected_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="single Fact bit"):
        GoapAction("bad", {3: True}, {A: True})
    with pytest.raises(ValueError, match="cost"):
        GoapAction("free", {}, {A: True}, 0.0)
    with pytest.raises(ValueError, match="no effects"):
        GoapAction("noop", {A: True}, {})
    with pytest.raises(ValueError, match="desires nothing"):
        GoapGoal("empty", {})
    with pytest.raises(ValueError, match="duplicate"):
        GoapPlanner([GoapAction("x", {}, {A: True}), GoapAction("x", {}, {B: True})])
    with pytest.raises(ValueError, match="no grounder"):
        GoapBrain([GoapAction("mystery", {}, {A: True})], [], {}, squad_reader())


def test_companion_has_at_least_eight_actions_and_the_named_goals() -> None:
    brain = squad_brain()
    assert len(brain.planner.actions) >= 8
    names = {g.name for g in companion_goals()}
    assert {"survive", "revive_leader", "protect_leader", "follow_orders", "engage",
            "reach_objective", "stay_with_leader"} <= names


# -- facts read from a snapshot ------------------------------------------------------------


def test_facts_of_the_opening_position() -> None:
    facts = set(describe_facts(squad_brain().facts(hello_snapshot()), FACT_NAMES))
    assert {"ENEMY_KNOWN", "HAS_AMMO", "NEAR_LEADER", "SMOKE_READY", "HEAL_READY",
            "OBJECTIVE_KNOWN"} <= facts
    # The wall at x=6 hides every enemy from the companion at (2, 3).
    assert "ENEMY_VISIBLE" not in facts
    assert "LEADER_DOWNED" not in facts


def test_smoke_hides_an_enemy_that_would_be_in_sight() -> None:
    brain = squad_brain()
    seen = brain.facts(hello_snapshot(me=(8, 2)))
    assert seen & F.ENEMY_IN_RANGE
    smoked = hello_snapshot(me=(8, 2), grid=hello_grid(smoke=[(10, 2, 1.5)]),
                            enemies=(unit(RIVAL_ID, 12, 2, "hostile", 60, 60),))
    assert not brain.facts(smoked) & F.ENEMY_VISIBLE


# -- decisions ------------------------------------------------------------------------------


def test_low_hp_under_fire_takes_cover_first_then_heals() -> None:
    snap = hello_snapshot(me=(7, 3), me_hp=20)
    d = decide(snap)
    assert d.goal == "recover"
    assert d.plan == ("take_cover", "heal_in_cover")
    assert isinstance(d.step, TakeCover)
    assert (d.step.x, d.step.y) == (8, 2)  # nearest cover, reachable


def test_low_hp_with_medkit_on_cooldown_still_takes_cover() -> None:
    d = decide(hello_snapshot(me=(7, 3), me_hp=20, cooldowns={"heal": 4.0}))
    assert (d.goal, d.plan) == ("survive", ("take_cover",))


def test_low_hp_in_cover_heals_when_the_medkit_is_ready() -> None:
    d = decide(hello_snapshot(me=(8, 2), me_hp=20, me_in_cover=True))
    assert d.action == "heal_in_cover"
    assert d.step == Heal(target_id=COMPANION_ID)


def test_low_hp_without_cover_throws_smoke_between_us_and_the_threat() -> None:
    snap = hello_snapshot(me=(8, 3), me_hp=20, grid=hello_grid(cover=frozenset()),
                          enemies=(unit(RIVAL_ID, 13, 3, "hostile", 60, 60),))
    d = decide(snap)
    assert d.goal == "evade"
    assert isinstance(d.step, ThrowSmoke)
    assert pf.smoke_blocks([(d.step.x, d.step.y, DEFAULT_RULES.smoke_radius)], (8, 3), (13, 3))


def test_low_hp_without_cover_or_smoke_retreats_out_of_sight() -> None:
    snap = hello_snapshot(me=(8, 3), me_hp=20, grid=hello_grid(cover=frozenset()),
                          cooldowns={"smoke": 5.0},
                          enemies=(unit(RIVAL_ID, 13, 3, "hostile", 60, 60),))
    d = decide(snap)
    assert isinstance(d.step, Retreat)
    assert not pf.line_of_sight(snap.grid, (13, 3), (d.step.x, d.step.y))


def test_downed_player_next_to_me_is_revived() -> None:
    d = decide(hello_snapshot(player_hp=0))
    assert d.goal == "revive_leader"
    assert d.step == Revive(target_id=PLAYER_ID)


def test_downed_player_far_away_means_walk_there_then_revive() -> None:
    snap = hello_snapshot(leader=(9, 5), player_hp=0)
    d = decide(snap)
    assert d.plan == ("move_to_leader", "revive_leader")
    assert isinstance(d.step, MoveTo)
    assert pf.distance((d.step.x, d.step.y), (9, 5)) <= DEFAULT_RULES.revive_reach
    path = pf.find_path(snap.grid, (2, 3), (d.step.x, d.step.y))
    assert path is not None and not set(path) & WALL


def test_extract_order_moves_toward_the_door() -> None:
    d = decide(hello_snapshot(orders="objective"))
    assert d.goal == "reach_objective"
    assert d.step == MoveTo(x=DOOR[0], y=DOOR[1])


def test_no_ammo_means_reload_before_attack() -> None:
    d = decide(hello_snapshot(me=(7, 3), ammo=0))
    assert d.goal == "engage"
    assert d.plan == ("reload", "attack")
    assert d.step == Reload()


def test_no_ammo_and_no_reserve_never_shoots() -> None:
    d = decide(hello_snapshot(me=(7, 3), ammo=0, reserve=0))
    assert not isinstance(d.step, Attack | CoverFire)


def test_enemy_in_range_is_attacked_nearest_first() -> None:
    d = decide(hello_snapshot(me=(7, 3)))
    assert d.step == Attack(target_id=RIVAL_ID)


def test_attack_order_approaches_around_the_wall() -> None:
    d = decide(hello_snapshot(orders="attack"))
    assert d.goal == "engage"
    assert d.plan == ("approach", "attack")
    assert d.step == Approach(target_id=RIVAL_ID)


def test_hold_order_never_moves_toward_enemies() -> None:
    d = decide(hello_snapshot(orders="hold"))
    assert d.goal == "hold_position"
    assert isinstance(d.step, Wait)
    d = decide(hello_snapshot(me=(7, 3), orders="hold"))  # enemy in range: fight in place
    assert isinstance(d.step, Attack)


def test_follow_order_and_default_keep_the_companion_near_the_player() -> None:
    snap = hello_snapshot(me=(9, 5), orders="follow")
    d = decide(snap)
    assert d.goal == "follow_orders"
    assert isinstance(d.step, MoveTo)
    assert pf.distance((d.step.x, d.step.y), (2, 2)) <= 1.5
    d = decide(hello_snapshot(me=(2, 8), enemies=()))
    assert d.goal == "stay_with_leader"


def test_exposed_player_gets_cover_fire_on_the_threat() -> None:
    snap = hello_snapshot(me=(8, 5), leader=(8, 3),
                          enemies=(unit(RIVAL_ID, 12, 2, "hostile", 60, 60),))
    d = decide(snap)
    assert d.goal == "protect_leader"
    assert d.step == CoverFire(target_id=RIVAL_ID, seconds=3.0)


def test_escort_leads_toward_the_door_without_leaving_the_player() -> None:
    snap = hello_snapshot(enemies=())
    d = decide(snap)
    assert d.goal == "escort_to_objective"
    assert isinstance(d.step, MoveTo)
    t = (d.step.x, d.step.y)
    assert pf.distance(t, (2, 2)) <= DEFAULT_RULES.follow_distance
    steps = pf.step_distances(snap.grid, DOOR)
    assert steps[t] < steps[(2, 3)]


def test_unchanged_state_is_a_cache_hit() -> None:
    brain = squad_brain()
    snap = hello_snapshot(me=(7, 3), ammo=0)
    first = brain.decide(snap)
    misses = brain.planner.misses
    hits = brain.planner.hits
    again = brain.decide(hello_snapshot(me=(7, 3), ammo=0, t=1.5))
    assert again == first
    assert brain.planner.misses == misses
    assert brain.planner.hits > hits


def test_nothing_plannable_returns_none() -> None:
    assert squad_brain().decide(hello_snapshot(me_hp=0)) is None
    engage_only = brain_with(goals=[g for g in companion_goals() if g.name == "engage"])
    assert engage_only.decide(hello_snapshot(enemies=())) is None
    # The player is sealed in a box: staying with them cannot be grounded.
    box = frozenset((x, y) for x in range(0, 5) for y in range(0, 5)) - {(2, 2)}
    stay_only = brain_with(goals=[g for g in companion_goals() if g.name == "stay_with_leader"])
    assert stay_only.decide(hello_snapshot(me=(9, 7), grid=hello_grid(walls=WALL | box))) is None


def test_dead_enemies_are_never_targets() -> None:
    dead = unit(RIVAL_ID, 9, 3, "hostile", 0, 60)
    alive = unit(11, 13, 3, "hostile", 40, 40)
    d = decide(hello_snapshot(me=(7, 3), enemies=(dead, alive)))
    assert d.step == Attack(target_id=11)


# -- every decision is legal, whatever the situation ---------------------------------------

OPEN = [(x, y) for x in range(WIDTH) for y in range(HEIGHT) if (x, y) not in WALL]
tiles = st.sampled_from(OPEN)


@st.composite
def situations(draw: st.DrawFn) -> WorldSnapshot:
    enemies = tuple(
        UnitView(10 + i, *draw(tiles), draw(st.sampled_from([0.0, 10.0, 60.0])), 60.0,
                 draw(st.sampled_from(["hostile", "hostile", "player"])))
        for i in range(draw(st.integers(0, 4)))
    )
    extra_walls = frozenset(draw(st.sets(tiles, max_size=12)))
    me, pl = draw(tiles), draw(tiles)
    walls = (WALL | extra_walls) - {me, pl} - {e.pos for e in enemies}
    smoke = draw(st.lists(st.tuples(st.integers(0, 19), st.integers(0, 9), st.just(1.5)),
                          max_size=2))
    cover = frozenset(draw(st.sets(tiles, max_size=6))) | COVER
    return hello_snapshot(
        me=me,
        me_hp=draw(st.sampled_from([5.0, 20.0, 50.0, 80.0])),
        me_in_cover=draw(st.booleans()),
        leader=draw(st.sampled_from([None, pl, pl])),
        player_hp=draw(st.sampled_from([0.0, 30.0, 100.0])),
        enemies=enemies,
        ammo=draw(st.integers(0, 30)),
        reserve=draw(st.sampled_from([0, 90])),
        orders=draw(st.sampled_from([None, "follow", "hold", "attack", "objective", "dance"])),
        cooldowns={"smoke": draw(st.sampled_from([0.0, 3.0])),
                   "heal": draw(st.sampled_from([0.0, 3.0]))},
        grid=hello_grid(smoke=smoke, walls=walls, cover=cover - walls),
        objective=draw(st.sampled_from(["reach_objective", ""])),
    )


@settings(max_examples=400, deadline=None)
@given(situations())
def test_every_grounded_step_is_legal(snap: WorldSnapshot) -> None:
    d = squad_brain().decide(snap)
    if d is None:
        return
    assert legality_problem(d.step, snap) is None, (d, legality_problem(d.step, snap))
    assert validate_step(d.step, snap) is None, (d, validate_step(d.step, snap))


def test_cover_behind_walls_is_never_chosen() -> None:
    # Cover at (8, 4) is sealed in; the reachable one at (10, 6) is farther but must win.
    seal = frozenset({(7, 3), (8, 3), (9, 3), (7, 4), (9, 4), (7, 5), (8, 5), (9, 5)})
    grid = hello_grid(walls=WALL | seal, cover=frozenset({(8, 4), (10, 6)}))
    snap = hello_snapshot(me=(10, 2), me_hp=20, grid=grid,
                          enemies=(unit(RIVAL_ID, 14, 2, "hostile", 60, 60),))
    d = decide(snap)
    assert d.step == TakeCover(x=10, y=6)


def test_plan_only_names_the_plan_decide_grounds() -> None:
    brain = squad_brain()
    snap = hello_snapshot(me=(7, 3), ammo=0)
    assert brain.plan_only(snap) == ("reload", "attack")
    d = brain.decide(snap)
    assert d is not None and d.plan == ("reload", "attack")
    assert brain.plan_only(hello_snapshot(enemies=(), leader=None, objective="")) == ("scan",)


def test_goal_priority_can_be_a_function_of_the_snapshot() -> None:
    late = GoapGoal("hold_late", {F.HOLDING: True},
                    lambda state, snap: 200.0 if snap.t > 30 else 0.0)
    brain = brain_with(goals=(*companion_goals(), late))
    assert brain.decide(hello_snapshot(t=5.0)).goal != "hold_late"  # type: ignore[union-attr]
    d = brain.decide(hello_snapshot(t=31.0))
    assert d is not None and d.goal == "hold_late" and isinstance(d.step, Wait)


def test_goal_gating_by_when_and_unless() -> None:
    g = GoapGoal("g", {F.HOLDING: True}, 5.0, when=F.ENEMY_KNOWN, unless=F.ORDER_HOLD)
    snap = hello_snapshot()
    assert g.priority_for(F.ENEMY_KNOWN, snap) == 5.0
    assert g.priority_for(0, snap) == 0.0
    assert g.priority_for(F.ENEMY_KNOWN | F.ORDER_HOLD, snap) == 0.0


@settings(max_examples=300, deadline=None)
@given(
    acts=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 63), st.integers(0, 63),
                            st.integers(0, 63)), min_size=1, max_size=8),
    start=st.integers(0, 63), gmask=st.integers(1, 63), gbits=st.integers(0, 63),
)
def test_the_relaxed_check_never_refuses_a_goal_the_search_can_reach(
    acts: list[tuple[int, int, int, int]], start: int, gmask: int, gbits: int
) -> None:
    """The relaxed check may only prove impossibility: whenever a plan exists, it says yes."""
    actions = [GoapAction(f"a{i}", _facts(pm, pb), _facts(em, eb) or {1: True})
               for i, (pm, pb, em, eb) in enumerate(acts)]
    planner = GoapPlanner(actions, max_depth=8, max_expansions=100_000)
    goal = GoapGoal("g", _facts(gmask, gbits), 1.0)
    if cheapest_within(actions, start, goal, 8) is not None:
        assert planner.reachable(start, goal.mask, goal.bits)
    if not planner.reachable(start, goal.mask, goal.bits):
        assert planner.plan(start, goal) is None


# -- the search against a plain reference ----------------------------------------------------

FACT_BITS = 6


def _facts(mask: int, bits: int) -> dict[int, bool]:
    return {1 << i: bool(bits >> i & 1) for i in range(FACT_BITS) if mask >> i & 1}


def cheapest_within(actions: list[GoapAction], start: int, goal: GoapGoal,
                    max_depth: int) -> float | None:
    """Reference: the cheapest cost of any plan of at most ``max_depth`` actions, by
    Bellman-Ford over every state (``cost[s]``: cheapest way to ``s`` in <= k steps)."""
    cost = {start: 0.0}
    best = 0.0 if goal.satisfied(start) else None
    for _ in range(max_depth):
        nxt = dict(cost)
        for s, c in cost.items():
            for a in actions:
                if a.usable(s):
                    t = a.apply(s)
                    if c + a.cost < nxt.get(t, float("inf")):
                        nxt[t] = c + a.cost
        cost = nxt
    for s, c in cost.items():
        if goal.satisfied(s) and (best is None or c < best):
            best = c
    return best


domains = st.lists(
    st.tuples(st.integers(0, 63), st.integers(0, 63), st.integers(1, 63), st.integers(0, 63),
              st.sampled_from([0.5, 1.0, 1.0, 1.5, 2.0, 3.0])),
    min_size=1, max_size=10)


@settings(max_examples=600, deadline=None)
@given(acts=domains, starts=st.lists(st.integers(0, 63), min_size=1, max_size=3),
       goals=st.lists(st.tuples(st.integers(1, 63), st.integers(0, 63)), min_size=1,
                      max_size=3),
       max_depth=st.integers(0, 6))
def test_plans_are_valid_cheapest_and_none_exactly_when_no_plan_fits_the_depth(
    acts: list[tuple[int, int, int, int, float]], starts: list[int],
    goals: list[tuple[int, int]], max_depth: int,
) -> None:
    """One planner asked about several start states and goals in turn (what it remembers of a
    start state between searches must not leak into the next)."""
    actions = [GoapAction(f"a{i}", _facts(pm, pb), _facts(em, eb), cost)
               for i, (pm, pb, em, eb, cost) in enumerate(acts)]
    planner = GoapPlanner(actions, max_depth=max_depth, max_expansions=1_000_000)
    for start in starts:
        for gmask, gbits in goals:
            check_plan(planner, actions, start, GoapGoal("g", _facts(gmask, gbits)))


def check_plan(planner: GoapPlanner, actions: list[GoapAction], start: int,
               goal: GoapGoal) -> None:
    max_depth = planner.max_depth
    plan = planner.plan(start, goal)
    want = cheapest_within(actions, start, goal, max_depth)
    if want is None:
        assert plan is None
        return
    assert plan is not None
    assert (plan == ()) == goal.satisfied(start)
    assert len(plan) <= max_depth
    s = start
    for a in plan:  # executed forward, every step is usable and the goal holds at the end
        assert a.usable(s), (a.name, s)
        s = a.apply(s)
    assert goal.satisfied(s)
    assert sum(a.cost for a in plan) == pytest.approx(want)


def test_a_cheaper_but_longer_way_to_a_need_does_not_hide_a_shorter_one() -> None:
    """The depth bound is exact. Backwards from the goal, the need for M is reached cheaply in
    two steps (via Q) and dearly in one; from M the plan needs three more steps. With room for
    five actions the cheap way wins; with four only the dear way fits, and must be found."""
    m, q, r1, r2, g = 1, 2, 4, 8, 16
    actions = [
        GoapAction("q_to_goal", {q: True}, {g: True}, 1.0),
        GoapAction("m_to_q", {m: True}, {q: True}, 1.0),
        GoapAction("m_to_goal", {m: True}, {g: True}, 5.0),
        GoapAction("r1_to_m", {r1: True}, {m: True}, 1.0),
        GoapAction("r2_to_r1", {r2: True}, {r1: True}, 1.0),
        GoapAction("to_r2", {}, {r2: True}, 1.0),
    ]
    goal = GoapGoal("g", {g: True})
    cheap = GoapPlanner(actions, max_depth=5).plan(0, goal)
    assert cheap is not None
    assert [a.name for a in cheap] == ["to_r2", "r2_to_r1", "r1_to_m", "m_to_q", "q_to_goal"]
    short = GoapPlanner(actions, max_depth=4).plan(0, goal)
    assert short is not None
    assert [a.name for a in short] == ["to_r2", "r2_to_r1", "r1_to_m", "m_to_goal"]
    assert GoapPlanner(actions, max_depth=3).plan(0, goal) is None


def test_a_goal_on_a_fact_no_action_changes_is_refused_without_a_search() -> None:
    planner = GoapPlanner([GoapAction("a", {}, {A: True})], max_expansions=0)
    assert planner.plan(0, GoapGoal("b", {B: True})) is None
    assert planner.plan(B, GoapGoal("b", {B: True})) == ()
    assert planner.plan(0, GoapGoal("a", {A: True})) is None  # the expansion bound

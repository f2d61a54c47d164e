"""The arbiter state machine, driven directly (no esper): modes, counting, cooldown, steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from esper_arbiter.components import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    Approach,
    ArbiterState,
    Attack,
    FailureKind,
    GridView,
    Intent,
    IntentStatus,
    Mode,
    MoveTo,
    ObjectiveView,
    Perception,
    PlanFailure,
    PlanIntent,
    PlanReady,
    Scan,
    UnitView,
    Wait,
    WorldSnapshot,
)
from esper_arbiter.components.actions import ActionStep
from esper_arbiter.systems.domain import default_domain
from esper_arbiter.systems.planning.arbiter import Arbiter
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig
from esper_arbiter.systems.planning.goap import GoapDecision

WALL = frozenset((6, y) for y in range(1, 9))
GRID = GridView(20, 10, WALL, frozenset({(5, 2), (7, 3)}))
ME = UnitView(2, 2, 3, 80, 80, "blue", name="companion")
PLAYER = UnitView(1, 2, 2, 100, 100, "blue", name="player")
RIVAL = UnitView(3, 12, 2, 60, 60, "red", name="Rival")
GRUNT = UnitView(4, 14, 6, 40, 40, "red", name="Grunt")


def snap(t: float = 0.0, **kw: object) -> WorldSnapshot:
    base = WorldSnapshot(
        t=t, me=ME, leader=PLAYER, enemies=(RIVAL, GRUNT), allies=(), grid=GRID,
        objective=ObjectiveView("breach_door", "reach", 15, 8), ammo=30, ammo_capacity=30,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@dataclass
class StubGoap:
    """A GOAP stand-in whose answer the test controls (None = 'no plan')."""

    step: ActionStep | None = field(default_factory=lambda: MoveTo(3, 2))

    def decide(self, s: WorldSnapshot, avoid: object = ()) -> GoapDecision | None:
        if self.step is None or self.step in avoid:  # type: ignore[operator]
            return None
        return GoapDecision(
            goal="stay_with_player", action="follow", step=self.step, plan=("follow",)
        )


def make(goap: StubGoap | None = None, **cfg: float) -> Arbiter:
    domain = default_domain().replace(brain=goap or StubGoap())
    return Arbiter(domain, ArbiterConfig(**cfg), backend_name="scripted")


def tick(
    arb: Arbiter, state: ArbiterState, intent: Intent, s: WorldSnapshot,
    outcome: PlanReady | PlanFailure | None = None, **kw: object,
) -> None:
    arb.update(state, Perception.fixed(s), intent, outcome, **kw)  # type: ignore[arg-type]


def ready(*steps: ActionStep, rid: int = 7) -> PlanReady:
    return PlanReady(rid, PlanIntent(f"p-{rid:04d}", tuple(steps), "llm"), "scripted")


def test_goap_acts_on_the_first_frame() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap())
    assert state.mode is Mode.GOAP
    assert intent.step == MoveTo(3, 2) and intent.status is IntentStatus.RUNNING
    assert intent.label == "GOAP"
    assert state.metrics.goap_actions == 1


def test_goap_to_llm_plan_and_back_advancing_only_on_completion() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    tick(arb, state, intent, snap(1.0), ready(MoveTo(4, 4), Scan()))
    assert state.mode is Mode.EXECUTING_LLM
    assert intent.step == MoveTo(4, 4) and intent.label == "LLM 1/2"
    for t in (1.1, 1.2, 5.0, 9.0):  # still running: the plan must not advance on its own
        tick(arb, state, intent, snap(t))
        assert state.step_index == 0 and intent.step == MoveTo(4, 4)
    intent.finish()
    tick(arb, state, intent, snap(9.1))
    assert intent.step == Scan() and intent.label == "LLM 2/2"
    intent.finish()
    tick(arb, state, intent, snap(9.2))
    assert state.mode is Mode.GOAP and state.plan is None
    assert intent.step == MoveTo(3, 2)
    m = state.metrics
    assert (m.llm_successes, m.llm_steps_executed, m.mode_transitions) == (1, 2, 2)
    kinds = [e.text for e in state.events if e.kind == "transition"]
    assert kinds[0].startswith("GOAP -> ExecutingLLM (plan p-0007, 2 steps")
    assert kinds[1].startswith("ExecutingLLM -> GOAP")
    assert m.finished_mode_time["ExecutingLLM"] > 8.0


def test_failures_are_counted_and_keep_the_mode() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    tick(arb, state, intent, snap(1.0), PlanFailure(1, FailureKind.TIMEOUT, "deadline"))
    assert state.mode is Mode.GOAP
    assert state.metrics.llm_failures == 1 and state.metrics.llm_successes == 0
    assert state.metrics.failures_by_kind == {"timeout": 1}
    # Withdrawn requests are not model failures.
    tick(arb, state, intent, snap(2.0), PlanFailure(2, FailureKind.CANCELLED, "replaced"))
    assert state.metrics.llm_failures == 1
    assert state.metrics.failures_by_kind["cancelled"] == 1


def test_fallback_plan_is_never_an_llm_success() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    fallback = PlanReady(3, PlanIntent("p-0003", (Scan(),), "fallback"), "heuristic")
    tick(arb, state, intent, snap(0.0), fallback)
    assert state.mode is Mode.EXECUTING_LLM
    assert state.metrics.llm_successes == 0
    assert state.metrics.plans_by_source == {"fallback": 1}


def test_plans_are_counted_by_origin_and_only_model_plans_are_llm_successes() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    for i, source in enumerate(("scripted", "llm", "replay", "scripted")):
        plan = PlanReady(i, PlanIntent(f"p-{i}", (Scan(),), source), "x")  # type: ignore[arg-type]
        tick(arb, state, intent, snap(float(i)), plan)
    assert state.metrics.plans_by_source == {"scripted": 2, "llm": 1, "replay": 1}
    assert state.metrics.llm_successes == 2


def test_a_downed_agent_discards_a_plan_instead_of_counting_a_success() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    down = snap(0.0, me=replace(ME, hp=0.0))
    tick(arb, state, intent, down, PlanReady(1, PlanIntent("p-1", (Scan(),)), "x"))
    assert state.mode is Mode.GOAP and state.plan is None
    assert state.metrics.llm_successes == 0 and state.metrics.plans_discarded == 1
    assert state.metrics.llm_failures == 0


def test_time_in_modes_includes_the_current_stay() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    assert state.time_in_modes(12.5)["GOAP"] == 12.5


def test_repeated_llm_failures_enter_bt_then_goap_takes_back() -> None:
    arb, state, intent = make(bt_after_failures=3, bt_hold_s=5.0), ArbiterState(), Intent()
    for i in range(3):
        tick(arb, state, intent, snap(float(i)), PlanFailure(i, FailureKind.PARSE, "junk"))
    assert state.mode is Mode.BEHAVIOR_TREE
    intent.finish()
    tick(arb, state, intent, snap(3.0))
    assert state.mode is Mode.BEHAVIOR_TREE and state.metrics.bt_actions >= 1
    assert intent.label == "BT"
    tick(arb, state, intent, snap(7.5))  # hold (until t=7) is over and GOAP can plan
    assert state.mode is Mode.GOAP
    assert intent.step == MoveTo(3, 2)


def test_bt_when_goap_has_no_plan_and_back_when_it_has() -> None:
    goap = StubGoap(step=None)
    arb, state, intent = make(goap), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    assert state.mode is Mode.BEHAVIOR_TREE
    assert intent.step is not None and state.metrics.bt_actions == 1
    goap.step = Wait(1.0)
    intent.finish()
    tick(arb, state, intent, snap(0.5))
    assert state.mode is Mode.GOAP and intent.step == Wait(1.0)
    assert [e.text.split(" (")[0] for e in state.events if e.kind == "transition"] == [
        "GOAP -> BehaviorTree", "BehaviorTree -> GOAP"
    ]


def test_cooldown_counts_from_the_last_completion() -> None:
    arb = make(llm_cooldown_s=15.0, first_request_at_s=1.0)
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.5), llm_enabled=True)
    assert state.pending_request is None
    tick(arb, state, intent, snap(1.0), llm_enabled=True)
    assert state.pending_request == "periodic" and state.pending_priority == PRIORITY_LOW
    arb.note_request_submitted(state, 1.0, 1)
    # In flight for a while: no second request.
    tick(arb, state, intent, snap(30.0), llm_enabled=True, llm_in_flight=True)
    assert state.pending_request is None
    # Completes at t=31 with a plan that finishes at once.
    tick(arb, state, intent, snap(31.0), ready(Scan()), llm_enabled=True)
    intent.finish()
    tick(arb, state, intent, snap(31.1), llm_enabled=True)
    assert state.mode is Mode.GOAP
    tick(arb, state, intent, snap(45.9), llm_enabled=True)
    assert state.pending_request is None  # 14.9 s after completion
    tick(arb, state, intent, snap(46.0), llm_enabled=True)
    assert state.pending_request == "periodic"


def test_failures_back_off_the_next_request() -> None:
    arb = make(llm_cooldown_s=10.0, failure_backoff_max_s=60.0)
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(2.0), PlanFailure(1, FailureKind.CONNECTION, "refused"),
         llm_enabled=True)
    tick(arb, state, intent, snap(21.0), llm_enabled=True)
    assert state.pending_request is None  # one failure: 20 s instead of 10
    tick(arb, state, intent, snap(22.0), llm_enabled=True)
    assert state.pending_request == "periodic"


def test_player_order_drops_the_plan_and_asks_urgently() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(MoveTo(4, 4), Scan()), llm_enabled=True)
    assert state.mode is Mode.EXECUTING_LLM
    tick(arb, state, intent, snap(0.5, orders="hold", order_serial=1),
         order_serial=1, order="hold", llm_enabled=True, llm_in_flight=False)
    assert state.mode is Mode.GOAP
    assert state.pending_request == "order: hold" and state.pending_priority == PRIORITY_HIGH


def test_step_skipped_when_its_target_died_mid_plan() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    near_grunt = replace(GRUNT, x=4, y=5)  # this side of the wall, in sight and in range
    tick(arb, state, intent, snap(0.0), ready(MoveTo(5, 3), Attack(RIVAL.id), Attack(GRUNT.id)))
    assert intent.step == MoveTo(5, 3)
    dead = replace(RIVAL, hp=0)
    intent.finish()
    tick(arb, state, intent, snap(2.0, enemies=(dead, near_grunt)))
    assert intent.step == Attack(GRUNT.id) and intent.label == "LLM 3/3"
    assert state.metrics.llm_steps_skipped == 1
    assert len(state.rejected_steps) == 1 and state.rejected_steps[0].index == 1
    assert "dead" in state.rejected_steps[0].reason.lower()


def test_plan_ends_when_remaining_steps_became_illegal() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(Scan(), Attack(RIVAL.id)))
    intent.finish()
    tick(arb, state, intent, snap(1.0, enemies=(replace(RIVAL, hp=0), GRUNT)))
    assert state.mode is Mode.GOAP and state.plan is None
    assert intent.step == MoveTo(3, 2)


def test_plan_stale_on_arrival_counts_as_invalid() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    s = snap(0.0, enemies=(replace(RIVAL, hp=0), GRUNT))
    tick(arb, state, intent, s, ready(Attack(RIVAL.id)))
    assert state.mode is Mode.GOAP
    assert state.metrics.llm_failures == 1
    assert state.metrics.failures_by_kind == {"invalid_plan": 1}


def test_a_shot_out_of_range_closes_in_first_and_an_unreachable_one_is_skipped() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(Scan(), Attack(RIVAL.id), Wait(1.0)))
    intent.finish()
    tick(arb, state, intent, snap(1.0))  # the Rival is 10 tiles off, behind the wall
    assert intent.step == Approach(RIVAL.id) and intent.label == "LLM 2/3"
    assert state.metrics.llm_steps_skipped == 0
    # Walled in where nobody can walk: nothing brings it in range, so the shot is skipped.
    box = frozenset((x, y) for x in range(11, 14) for y in range(1, 4) if (x, y) != (12, 2))
    boxed = replace(GRID, walls=GRID.walls | box)
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0, grid=boxed), ready(Scan(), Attack(RIVAL.id), Wait(1.0)))
    intent.finish()
    tick(arb, state, intent, snap(1.0, grid=boxed))
    assert intent.step == Wait(1.0) and intent.label == "LLM 3/3"
    assert "beyond fire range" in state.rejected_steps[0].reason
    # A plan none of whose steps can run or be prepared cannot start: an invalid plan.
    tick(arb, state, intent, snap(2.0, grid=boxed), ready(Attack(RIVAL.id), rid=8))
    assert state.metrics.failures_by_kind == {"invalid_plan": 1}


def test_failed_step_advances_the_plan_with_its_reason() -> None:
    arb, state, intent = make(), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(MoveTo(5, 3), Scan()))
    intent.fail("path blocked")
    tick(arb, state, intent, snap(1.0))
    assert intent.step == Scan()
    assert state.rejected_steps[0].reason == "failed in game: path blocked"
    assert state.metrics.llm_steps_executed == 0


def test_metrics_add_up_over_a_squad() -> None:
    from esper_arbiter.components import ArbiterMetrics

    a, b = ArbiterMetrics(llm_requests=2, goap_actions=5), ArbiterMetrics(llm_requests=1)
    a.failures_by_kind["timeout"] = 1
    b.failures_by_kind.update(timeout=2, parse=1)
    b.finished_mode_time["GOAP"] = 3.5
    total = ArbiterMetrics()
    total.add(a)
    total.add(b)
    assert (total.llm_requests, total.goap_actions) == (3, 5)
    assert total.failures_by_kind == {"timeout": 3, "parse": 1}
    assert total.finished_mode_time["GOAP"] == 3.5


def test_a_request_that_expired_in_the_queue_is_not_a_model_failure() -> None:
    arb, state, intent = make(bt_after_failures=2), ArbiterState(), Intent()
    for i in range(4):
        expired = PlanFailure(i, FailureKind.EXPIRED, "deadline passed in the queue; never ran")
        tick(arb, state, intent, snap(float(i)), expired)
    assert state.mode is Mode.GOAP  # never pushed into the behaviour tree
    assert state.metrics.llm_failures == 0 and state.metrics.llm_expired == 4
    assert state.consecutive_llm_failures == 0


def test_an_old_plan_whose_first_step_is_no_longer_advised_is_stale() -> None:
    """A plan written 10 s ago (smoke on an enemy then out of reach) arrives when the domain
    advises only fighting: it is stale, and GOAP carries on. The same plan fresh, or from a
    domain without advice, runs."""
    from esper_arbiter.components import ThrowSmoke

    smoke = ThrowSmoke(x=11, y=2)
    fight = (Attack(RIVAL.id), "in range")

    def advising(*options: tuple[ActionStep, str]) -> Arbiter:
        arb = make()
        arb.domain = arb.domain.replace(advise=lambda _snap: options)
        return arb

    arb, state, intent = advising(fight), ArbiterState(), Intent()
    tick(arb, state, intent, snap(12.0), ready(smoke), asked_at=2.0)
    assert state.mode is Mode.GOAP
    assert state.metrics.failures_by_kind == {"invalid_plan": 1}
    assert any("written 10.0s ago; ThrowSmoke(x=11, y=2) is no longer among the options "
               "(Attack)" in e.text for e in state.events)

    arb, state, intent = advising(fight), ArbiterState(), Intent()
    tick(arb, state, intent, snap(12.0), ready(smoke), asked_at=9.0)  # 3 s old: fresh
    assert state.mode is Mode.EXECUTING_LLM

    arb, state, intent = advising(fight, (smoke, "blinds #3")), ArbiterState(), Intent()
    tick(arb, state, intent, snap(12.0), ready(smoke), asked_at=2.0)  # still advised
    assert state.mode is Mode.EXECUTING_LLM

    arb, state, intent = make(), ArbiterState(), Intent()
    arb.domain = arb.domain.replace(advise=None)
    tick(arb, state, intent, snap(12.0), ready(smoke), asked_at=2.0)  # no advice: kept
    assert state.mode is Mode.EXECUTING_LLM


def _rethink_gaps(arb: Arbiter, seconds: float,
                  hits: dict[float, float] | None = None) -> list[float]:
    """Game seconds between the periodic re-thinks of an agent whose step keeps running and
    whose brain keeps choosing it (the common case mid-fight), at 30 Hz. ``hits`` maps game
    times to the agent's health from then on (max 100), fed in as ArbiterSystem does."""
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    state.decided_hp = 100.0
    assert intent.status is IntentStatus.RUNNING
    t, last, gaps, last_at, hp = 0.0, state.next_think_at, [], 0.0, 100.0
    pending = sorted((hits or {}).items())
    while t < seconds:
        t += 1 / 30
        while pending and t >= pending[0][0]:
            hp = pending.pop(0)[1]
            arb.on_hit(state, t, hp, 100.0)
        if t < state.wake_at:
            continue  # what ArbiterSystem's fast path does
        tick(arb, state, intent, snap(t, me=replace(ME, x=2 + int(t * 30) % 2)))
        state.decided_hp = hp
        if state.next_think_at != last:
            gaps.append(round(t - last_at, 1))
            last, last_at = state.next_think_at, t
    return gaps


def test_a_step_kept_at_every_rethink_is_looked_at_less_and_less_often() -> None:
    gaps = _rethink_gaps(make(think_interval_s=0.5, think_interval_max_s=2.0,
                              min_commit_s=0.0), 10.0)
    assert gaps[:4] == [0.5, 1.0, 2.0, 2.0], gaps
    assert set(gaps[2:]) == {2.0}  # capped
    # the back-off can be switched off: every re-think after think_interval_s, as before
    flat = _rethink_gaps(make(think_interval_s=0.5, think_interval_max_s=0.5,
                              min_commit_s=0.0), 5.0)
    assert set(flat) == {0.5}, flat


def test_the_first_rethink_of_a_new_step_waits_for_its_commitment() -> None:
    # Before min_commit_s only a step of its kind for another goal could replace it: looking
    # earlier is wasted. The back-off goes on from there.
    gaps = _rethink_gaps(make(think_interval_s=0.5, think_interval_max_s=2.0,
                              min_commit_s=1.0), 6.0)
    assert gaps[:3] == [1.0, 1.0, 2.0], gaps


def test_a_hit_after_a_quiet_spell_ends_the_back_off() -> None:
    arb = make(think_interval_s=0.5, think_interval_max_s=2.0, min_commit_s=0.0)
    gaps = _rethink_gaps(arb, 8.0, hits={4.6: 95.0})
    # backed off to 2 s by t=3.5 (next look due at 5.5); the hit at 4.6 brings that look to
    # 5.1 (0.5 s after the hit), and the back-off starts again from there
    assert gaps == [0.5, 1.0, 2.0, 1.6, 1.0], gaps


def test_the_hits_of_a_fight_leave_the_back_off_alone_until_one_hurts() -> None:
    arb = make(think_interval_s=0.5, think_interval_max_s=2.0, min_commit_s=0.0,
               hit_news_fraction=0.25)
    # under fire all along: a 2-point graze every 0.3 s from t=0.1 (health 100 -> ~84 by
    # t=2.5), then at 4.6 a hit that takes a quarter of max_hp since the agent last decided
    hits = {0.1 + 0.3 * i: 100.0 - 2 * (i + 1) for i in range(8)}
    grazed = _rethink_gaps(arb, 4.5, hits=hits)
    assert grazed == [0.5, 1.0, 2.0], grazed  # the first hit was news (t=0.1); the rest not
    hits[4.6] = 55.0  # 84 when it last decided (t=3.5): 29 points, over a quarter
    hurt = _rethink_gaps(arb, 8.0, hits=hits)
    assert hurt[:4] == [0.5, 1.0, 2.0, 1.6], hurt


def test_a_new_step_starts_the_back_off_again() -> None:
    goap = StubGoap(step=MoveTo(3, 2))
    arb = make(goap, think_interval_s=0.5, think_interval_max_s=2.0, min_commit_s=0.0)
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    for t in (0.5, 1.5):
        tick(arb, state, intent, snap(t, me=replace(ME, x=int(t * 2) % 3)))
    assert state.think_backoff == 2
    goap.step = Scan()
    tick(arb, state, intent, snap(3.5, me=replace(ME, x=5)))
    assert isinstance(intent.step, Scan)
    assert state.think_backoff == 0 and state.next_think_at == 4.0


@dataclass
class GoalGoap:
    """A GOAP stand-in whose step and goal the test sets."""

    step: ActionStep
    goal: str

    def decide(self, s: WorldSnapshot, avoid: object = ()) -> GoapDecision | None:
        return GoapDecision(goal=self.goal, action="walk", step=self.step, plan=("walk",))


def test_a_step_of_the_same_kind_for_another_goal_replaces_the_running_one() -> None:
    goap = GoalGoap(MoveTo(9, 2), "work")  # walking to the forest
    arb = Arbiter(default_domain().replace(brain=goap), ArbiterConfig(min_commit_s=1.0))
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    assert intent.step == MoveTo(9, 2) and intent.serial == 1
    goap.step = MoveTo(8, 3)  # same goal, the spot moved a little: keep walking
    tick(arb, state, intent, snap(1.5, me=replace(ME, x=3)))
    assert intent.step == MoveTo(9, 2) and intent.serial == 1
    goap.step, goap.goal = MoveTo(1, 1), "rest"  # tired now: walk home instead
    tick(arb, state, intent, snap(3.0, me=replace(ME, x=4)))
    assert intent.step == MoveTo(1, 1) and intent.serial == 2
    assert state.step_goal == "rest"


def test_the_next_step_of_its_kind_for_the_same_goal_goes_on_backing_off() -> None:
    """The next burst of a fight, after the last one ended, is a decision that kept the
    course: the look after it comes later still. A step for another goal starts again."""
    goap = GoalGoap(MoveTo(3, 2), "fight")
    arb = make(goap, think_interval_s=0.5, think_interval_max_s=4.0, min_commit_s=0.0)
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    for t in (0.5, 1.5):  # two re-thinks that keep the step
        tick(arb, state, intent, snap(t, me=replace(ME, x=int(t * 2) % 3)))
    assert state.think_backoff == 2
    intent.finish()
    goap.step = MoveTo(4, 2)  # the next one, same kind, same goal
    tick(arb, state, intent, snap(3.5, me=replace(ME, x=5)))
    assert intent.step == MoveTo(4, 2) and intent.serial == 2
    assert state.think_backoff == 3 and state.next_think_at == 7.5  # 4 s, not 0.5 s
    intent.finish()
    goap.step, goap.goal = MoveTo(1, 1), "rest"  # same kind, another goal: news
    tick(arb, state, intent, snap(8.0, me=replace(ME, x=6)))
    assert intent.step == MoveTo(1, 1)
    assert state.think_backoff == 0 and state.next_think_at == 8.5


def test_a_stale_plan_is_asked_again_at_once_and_is_not_held_against_the_model() -> None:
    arb = make(bt_after_failures=2)
    state, intent = ArbiterState(), Intent()
    dead_rival = snap(5.0, enemies=(replace(RIVAL, hp=0), GRUNT))
    for i in range(3):  # three stale plans in a row: the situation moved on each time
        tick(arb, state, intent, dead_rival, ready(Attack(RIVAL.id), rid=10 + i),
             llm_enabled=True)
        assert state.mode is Mode.GOAP  # never BT: the model did not fail, our timing did
        assert state.consecutive_llm_failures == 0
        if i == 0:
            assert state.pending_request == "retry: the last plan arrived stale"
            state.pending_request = None  # the system submitted it
        else:  # one retry per run of stale plans, then the usual cooldown
            assert state.pending_request is None
    assert state.metrics.llm_failures == 3  # still counted: three plans not used
    tick(arb, state, intent, snap(6.0), ready(Scan(), rid=20), llm_enabled=True)
    assert state.mode is Mode.EXECUTING_LLM and state.stale_retries == 0  # a plan used resets


def test_a_step_better_later_is_put_off_within_max_defer_s_then_carried_out() -> None:
    from esper_arbiter.systems.planning.tools import ToolRegistry, ToolSpec

    base = default_domain()
    scan = base.tools.get("Scan")
    assert scan is not None
    later = ToolSpec(scan.name, scan.description, scan.build, scan.args, scan.checks,
                     defer=lambda _s, _snap, _r: Wait(seconds=2.0))
    tools = ToolRegistry([later if spec.name == "Scan" else spec for spec in base.tools])
    arb = Arbiter(base.replace(tools=tools, brain=StubGoap()), ArbiterConfig(max_defer_s=5.0))
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(Scan(), Attack(RIVAL.id)))
    issued = [intent.step]
    for t in (2.0, 4.0, 6.0, 8.0):
        intent.finish()
        tick(arb, state, intent, snap(t))
        issued.append(intent.step)
    # put off three times (2 s each, 6 s > max_defer_s 5), then carried out, then the plan goes on
    assert issued[:4] == [Wait(seconds=2.0)] * 3 + [Scan()], issued
    assert issued[4] == Approach(RIVAL.id)  # the plan's next step (out of range: close in)
    assert state.metrics.llm_steps_skipped == 0


def _with_moot_scan(moot: object) -> Arbiter:
    from esper_arbiter.systems.planning.tools import ToolRegistry, ToolSpec

    base = default_domain()
    scan = base.tools.get("Scan")
    assert scan is not None
    judged = ToolSpec(scan.name, scan.description, scan.build, scan.args, scan.checks,
                      moot=moot)  # type: ignore[arg-type]
    tools = ToolRegistry([judged if spec.name == "Scan" else spec for spec in base.tools])
    return Arbiter(base.replace(tools=tools, brain=StubGoap()))


def test_a_legal_step_whose_moment_has_passed_is_skipped_with_its_reason() -> None:
    # the tool's moot: this Scan has lost its point by the time the plan comes to it
    arb = _with_moot_scan(lambda _s, _snap, _r: "nothing left to look for")
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(Wait(seconds=1.0), Scan(), Wait(seconds=2.0)))
    assert intent.step == Wait(seconds=1.0)
    intent.finish()
    tick(arb, state, intent, snap(1.0))
    assert intent.step == Wait(seconds=2.0)  # the Scan was skipped; the plan goes on
    assert state.mode is Mode.EXECUTING_LLM
    m = state.metrics
    assert (m.llm_steps_executed, m.llm_steps_skipped) == (1, 1)
    assert state.rejected_steps[0].reason == "Scan(): nothing left to look for"
    assert any(e.kind == "rejected" and e.text == "skip step 2/3 Scan(): nothing left to look for"
               for e in state.events)


def test_a_moot_hook_that_fails_or_says_none_keeps_the_step() -> None:
    def broken(_s: object, _snap: object, _r: object) -> str | None:
        raise RuntimeError("a host bug")

    for hook in (broken, lambda _s, _snap, _r: None):
        arb = _with_moot_scan(hook)
        state, intent = ArbiterState(), Intent()
        tick(arb, state, intent, snap(0.0), ready(Scan()))
        assert intent.step == Scan() and state.metrics.llm_steps_skipped == 0


def test_a_plan_every_step_of_which_lost_its_point_is_stale_on_arrival_and_asked_again() -> None:
    """The smoke was for an enemy who died while the model wrote: nothing in the plan has a
    point now. It is not started (it would only skip each step, and leave the agent without
    the model's advice until the next trigger); it is stale, asked again at once with the
    snapshot of now, and not counted toward the model's failures in a row."""
    arb = _with_moot_scan(lambda _s, _snap, _r: "nothing left to look for")
    state, intent = ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0), ready(Scan(), Scan()))
    assert state.mode is Mode.GOAP
    m = state.metrics
    assert (m.llm_steps_executed, m.llm_steps_skipped, m.llm_failures) == (0, 0, 1)
    assert state.consecutive_llm_failures == 0
    assert "stale on arrival: Scan(): nothing left to look for (and 1 more step" in \
        state.last_failure
    assert state.pending_request == "retry: the last plan arrived stale"
    # one legal step with a point left: the plan starts, the moot step is skipped on the way
    arb2 = _with_moot_scan(lambda _s, _snap, _r: "nothing left to look for")
    state2, intent2 = ArbiterState(), Intent()
    tick(arb2, state2, intent2, snap(0.0), ready(Scan(), Wait(seconds=1.0)))
    assert state2.mode is Mode.EXECUTING_LLM and intent2.step == Wait(seconds=1.0)
    assert state2.metrics.llm_steps_skipped == 1


def test_a_plan_opening_with_the_step_goap_is_running_carries_it_on() -> None:
    """The model's plan takes over the very burst GOAP is firing where it is (the host does
    not restart it, so the hand-over costs the fight no time); a different step starts
    afresh."""
    arb, state, intent = make(StubGoap(Scan())), ArbiterState(), Intent()
    tick(arb, state, intent, snap(0.0))
    assert state.mode is Mode.GOAP and intent.step == Scan()
    serial, issued = intent.serial, intent.issued_at
    tick(arb, state, intent, snap(0.5), ready(Scan(), Wait(1.0)))
    assert state.mode is Mode.EXECUTING_LLM and intent.label == "LLM 1/2"
    assert (intent.step, intent.serial, intent.issued_at) == (Scan(), serial, issued)
    intent.finish()
    tick(arb, state, intent, snap(1.0))
    assert intent.step == Wait(1.0) and intent.serial == serial + 1
    assert state.metrics.llm_steps_executed == 1

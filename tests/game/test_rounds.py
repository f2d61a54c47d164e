"""Whole headless rounds of hello_companion through GameSession and the decision log."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import esper
import pytest

from esper_arbiter.components.agent import ArbiterState, Mode
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.components.world import Orders, Position
from esper_arbiter.game.headless import HeadlessReport, run_headless
from esper_arbiter.game.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    build_stress_scenario,
    load_scenario,
)
from esper_arbiter.game.state import Motion
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

DT = 1.0 / 20.0
SUMMARY = re.compile(
    r"^outcome: (extracted|defeat|undecided) at t=\d+\.\d\ds \| transitions \d+ \| "
    r"llm requests \d+ ok \d+( \((llm|replay|scripted|fallback) \d+(, )?\)+)? failed \d+"
    r"( cancelled \d+)?( expired \d+)?( discarded \d+)?( pending \d+)? \| "
    r"goap \d+ \| llm steps \d+ \| bt \d+$"
)
DECISION = re.compile(r"^t=[ \d]{2}\d\.\d\ds \w+#\d+ (\[(GOAP|LLM \d+/\d+|BT)\] +\w+\(.*\)|"
                      r"(skip step|step) \d+/\d+ \w+\(.*\):? .*|"
                      r"\w+\(.*\) failed in game \(.*\); not retried for [\d.]+s|"
                      r"\w+ -> \w+ \(.*\))$")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(DEFAULT_SCENARIO)


def play(
    scenario: Scenario, seed: int, service: PlanService | None,
    config: ArbiterConfig | None = None, seconds: float = 60.0,
) -> tuple[HeadlessReport, list[str], GameSession]:
    session = GameSession(scenario, seed=seed, service=service, config=config)
    lines: list[str] = []
    report = run_headless(session, seconds, DT, lines.append)
    return report, lines, session


@pytest.fixture
def sessions() -> Iterator[list[GameSession]]:
    made: list[GameSession] = []
    yield made
    for s in made:
        s.close()


@pytest.mark.parametrize("backend", ["scripted", "none"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_rounds_end_in_extraction_within_a_minute(
    scenario: Scenario, sessions: list[GameSession], seed: int, backend: str
) -> None:
    service = ScriptedPlanService(seed=seed) if backend == "scripted" else None
    report, lines, session = play(scenario, seed, service)
    sessions.append(session)
    assert report.outcome == "extracted", lines[-1]
    assert report.t < 60.0
    assert SUMMARY.match(lines[-1]), lines[-1]
    assert all(DECISION.match(line) for line in lines[:-1]), [
        line for line in lines[:-1] if not DECISION.match(line)
    ][:3]
    assert session.result is not None and session.result.outcome == "extracted"
    if backend == "none":
        assert report.totals.llm_requests == 0
        assert not any("ExecutingLLM" in line for line in lines)
    else:
        assert report.totals.llm_requests >= 1


def test_the_same_seed_gives_the_same_round(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    runs = []
    for _ in range(2):
        _, lines, session = play(scenario, 4, ScriptedPlanService(seed=4))
        sessions.append(session)
        runs.append((lines, [(e.t, e.kind, e.source, e.target, e.amount) for e in session.events]))
    assert runs[0] == runs[1]
    assert len(runs[0][1]) > 20  # a real round: shots, hits, orders


def test_different_seeds_give_different_rounds(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    events = []
    for seed in (1, 2):
        _, _, session = play(scenario, seed, None)
        sessions.append(session)
        events.append([(e.t, e.kind, e.target) for e in session.events])
    assert events[0] != events[1]


def test_two_sessions_stepped_in_turn_do_not_disturb_each_other(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    a = GameSession(scenario, seed=5, service=ScriptedPlanService(seed=5))
    b = GameSession(scenario, seed=5, service=ScriptedPlanService(seed=5))
    sessions.extend([a, b])
    while a.result is None and a.t < 60:
        a.step(DT)
        b.step(DT)
    alone, _, lone = play(scenario, 5, ScriptedPlanService(seed=5))
    sessions.append(lone)
    assert a.result == b.result
    assert a.result is not None and a.result.t == pytest.approx(alone.t)
    assert [e.text for _, e in a.arbiter_events] == [e.text for _, e in lone.arbiter_events]


def _modes_in_log(lines: list[str]) -> set[str]:
    seen = set()
    for line in lines:
        if "[GOAP]" in line or "GOAP ->" in line or "-> GOAP" in line:
            seen.add(Mode.GOAP.value)
        if "[LLM " in line or "ExecutingLLM" in line:
            seen.add(Mode.EXECUTING_LLM.value)
        if "[BT]" in line or "BehaviorTree" in line:
            seen.add(Mode.BEHAVIOR_TREE.value)
    return seen


def _modes_visited(session: GameSession) -> set[str]:
    session.activate()
    visited = set()
    for _, state in esper.get_component(ArbiterState):
        visited |= {m for m, secs in state.time_in_modes(session.clock.t).items() if secs > 0}
        visited.add(state.mode.value)
    return visited


def test_the_log_shows_goap_and_llm_plans_with_the_scripted_backend(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    report, lines, session = play(scenario, 1, ScriptedPlanService(seed=1))
    sessions.append(session)
    assert any("[GOAP]" in line for line in lines)
    assert any("GOAP -> ExecutingLLM" in line for line in lines)
    assert any(re.search(r"\[LLM 1/\d+\]", line) for line in lines)
    assert report.totals.plans_by_source.get("scripted", 0) >= 1
    assert report.totals.llm_successes == 0  # canned plans are not model successes
    assert report.totals.llm_steps_executed >= 1
    assert _modes_visited(session) <= _modes_in_log(lines)


def test_a_failing_model_sends_the_companion_to_the_behaviour_tree_and_the_log_says_so(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    config = ArbiterConfig(llm_cooldown_s=1.0, bt_after_failures=2, failure_backoff_max_s=1.0)
    service = ScriptedPlanService(seed=2, delay_s=0.5, failure_every=1)
    report, lines, session = play(scenario, 2, service, config)
    sessions.append(session)
    assert any("-> BehaviorTree" in line for line in lines)
    assert any("[BT]" in line for line in lines)
    assert report.totals.bt_actions > 0
    assert report.totals.llm_failures >= 2 and report.totals.llm_successes == 0
    assert re.search(
        r"failed [1-9]\d*( cancelled \d+)?( pending \d+)? \| goap \d+ \| llm steps 0 \| bt [1-9]",
        lines[-1],
    )
    assert _modes_visited(session) <= _modes_in_log(lines)
    assert report.outcome == "extracted"


def test_time_running_out_is_reported_as_undecided(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    report, lines, session = play(scenario, 1, None, seconds=3.0)
    sessions.append(session)
    assert report.outcome == "undecided"
    assert lines[-1].startswith("outcome: undecided at t=3.00s")


# -- the session API a front end uses ------------------------------------------------------


def test_an_order_reaches_the_companion_and_asks_the_model_on_the_next_frame(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    session = GameSession(scenario, seed=1, service=ScriptedPlanService(seed=1, delay_s=5.0))
    sessions.append(session)
    session.step(DT)
    companion = session.companions[0]
    before = esper.component_for_entity(companion, Orders).serial
    assert session.give_order("hold") == 1
    orders = esper.component_for_entity(companion, Orders)
    assert (orders.order, orders.serial) == ("hold", before + 1)
    session.step(DT)  # the companion takes the order and decides to ask
    assert not esper.has_component(companion, LlmTask)
    session.step(DT)  # the request leaves on the frame after (ArbiterSystem._send)
    assert esper.has_component(companion, LlmTask)
    assert any(e.kind == "order" and e.text == "hold" for e in session.events)
    with pytest.raises(ValueError, match="unknown order"):
        session.give_order("dance")


def test_request_plan_needs_a_service(scenario: Scenario, sessions: list[GameSession]) -> None:
    with_llm = GameSession(scenario, seed=1, service=ScriptedPlanService(seed=1, delay_s=5.0))
    without = GameSession(scenario, seed=1, service=None)
    sessions.extend([with_llm, without])
    for s in (with_llm, without):
        s.step(DT)
    assert without.request_plan() is False
    with_llm.step(DT)
    assert with_llm.request_plan() is True
    with_llm.step(DT)
    with_llm.step(DT)  # decided, then sent on the next frame
    assert esper.has_component(with_llm.companions[0], LlmTask)


def test_manual_control_moves_the_player_and_walls_stop_it(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    session = GameSession(scenario, seed=1, service=None, autopilot=False)
    sessions.append(session)
    session.set_player_move(1.0, 0.0)
    for _ in range(40):  # 2 s at 4 tiles/s would be 8 tiles, but the wall is at x=6
        session.step(DT)
    pos = esper.component_for_entity(session.player, Position)
    assert 5.0 <= pos.x < 5.5 and pos.y == 2.0
    session.set_player_move(0.0, 0.0)
    session.step(DT)
    assert esper.component_for_entity(session.player, Position).x == pos.x


def test_a_renderer_can_read_paths_and_events(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    session = GameSession(scenario, seed=1, service=None)
    sessions.append(session)
    session.step(DT)
    session.step(DT)
    assert esper.component_for_entity(session.player, Motion).path  # walking somewhere
    seen = session.events.last_serial
    for _ in range(200):
        session.step(DT)
    new = session.events.since(seen)
    assert any(e.kind == "shot" for e in new)
    assert all(e.serial > seen for e in new)
    assert all(e.amount > 0 for e in new if e.kind == "hit")


def test_closing_a_session_deletes_its_world(scenario: Scenario) -> None:
    session = GameSession(scenario, seed=1, service=None)
    name = session.world_name
    assert name in esper.list_worlds()
    session.close()
    session.close()  # idempotent
    assert name not in esper.list_worlds()
    with pytest.raises(RuntimeError, match="closed"):
        session.step(DT)


def test_a_stress_round_runs(sessions: list[GameSession]) -> None:
    session = GameSession(build_stress_scenario(6, seed=2), seed=2,
                          service=ScriptedPlanService(seed=2))
    sessions.append(session)
    session.run(5.0, DT)
    assert len(session.companions) == 6 and len(session.enemies) == 6
    assert session.totals().goap_actions >= 6


class _Warming(ScriptedPlanService):
    """A scripted service that says it is warming up for its first ``warm_s`` wall seconds."""

    def __init__(self, warm_s: float) -> None:
        super().__init__(seed=1)
        self._ready_at = time.monotonic() + warm_s

    @property  # type: ignore[override]
    def warming_up(self) -> bool:
        return time.monotonic() < self._ready_at


def test_a_round_with_a_live_model_starts_once_the_model_is_warm(
    scenario: Scenario, sessions: list[GameSession]
) -> None:
    """The headless demo and plan_quality.py start a live model's round after its warm-up
    (a game's loading screen), so the first plan is not written for a moment long gone."""
    service = _Warming(0.4)
    session = GameSession(scenario, seed=1, service=service)
    sessions.append(session)
    seen: list[bool] = []
    t0 = time.monotonic()
    run_headless(session, 0.2, DT, lambda _l: None, realtime=True,
                 on_step=lambda _s: seen.append(service.warming_up))
    assert time.monotonic() - t0 >= 0.4 and seen and not any(seen)
    # without a live model (game clock) nothing waits; nor past the limit, nor once told to stop
    cold = GameSession(scenario, seed=1, service=_Warming(30.0))
    sessions.append(cold)
    t0 = time.monotonic()
    assert cold.wait_for_model(0.2) == pytest.approx(0.2, abs=0.15)
    assert cold.wait_for_model(30.0, should_stop=lambda: True) < 0.1
    run_headless(cold, 0.1, DT, lambda _l: None)  # realtime=False: no wait
    assert time.monotonic() - t0 < 1.5

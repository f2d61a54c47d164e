"""The scripted service: deterministic on game time, and its status counts only what the game
actually received."""

from __future__ import annotations

from esper_arbiter.components import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from tests.planning.snapshots import hello_snapshot


def request(t: float, agent: int = 2) -> PlanRequest:
    return PlanRequest(agent_id=agent, snapshot=hello_snapshot(), submitted_at=t)


def test_answers_arrive_on_game_time_and_are_counted_on_delivery() -> None:
    service = ScriptedPlanService(seed=3, delay_s=2.0)
    ticket = service.submit(request(10.0))
    status = service.status()
    assert (status.in_flight, status.plans_ok, status.failures) == (1, 0, 0)
    assert status.recent[-1].outcome == "running"
    assert ticket.poll(10.5) is None  # 0.75 x 2 s is the earliest answer
    outcome = ticket.poll(13.0)
    assert isinstance(outcome, PlanReady) and outcome.plan.source == "scripted"
    assert outcome.plan.steps
    status = service.status()
    assert (status.in_flight, status.plans_ok, status.failures) == (0, 1, 0)
    assert status.recent[-1].outcome == "plan" and status.recent[-1].finished_at == 13.0


def test_a_cancelled_request_is_neither_ok_nor_failed() -> None:
    service = ScriptedPlanService(delay_s=5.0)
    ticket = service.submit(request(0.0))
    ticket.cancel()
    outcome = ticket.poll(100.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CANCELLED
    status = service.status()
    assert (status.in_flight, status.plans_ok, status.failures) == (0, 0, 0)
    assert status.recent[-1].outcome == "cancelled"


def test_injected_failures_cycle_through_kinds() -> None:
    service = ScriptedPlanService(delay_s=0.0, failure_every=1)
    kinds = []
    for i in range(3):
        outcome = service.submit(request(float(i))).poll(float(i))
        assert isinstance(outcome, PlanFailure)
        kinds.append(outcome.kind)
    assert kinds == [FailureKind.TIMEOUT, FailureKind.PARSE, FailureKind.CONNECTION]
    assert service.status().failures == 3


def test_same_seed_same_answers() -> None:
    def run(seed: int) -> list[object]:
        service = ScriptedPlanService(seed=seed, delay_s=2.0)
        tickets = [service.submit(request(float(t), agent=2 + t % 2)) for t in range(6)]
        return [(tk.ready_at, tk.poll(1e9)) for tk in tickets]

    assert run(7) == run(7)
    assert run(7) != run(8)

"""Batches as turns (``batch_mode="turns"``): one conversation that states the shared situation
once, one member's plan per turn, each plan delivered when its own turn ends."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.base import Message
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.llm.test_many_agents import req, wait_until

GOOD = json.dumps({"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]})
BAD = json.dumps({"steps": [{"act": "MoveTo", "x": 6, "y": 3}]})  # a wall tile


def asked(messages: Sequence[Message]) -> int:
    user = messages[-1]["content"]
    m = re.search(r"JSON plan of #(\d+) only", user) or re.search(r"You are #(\d+)\.", user)
    assert m is not None, user
    return int(m.group(1))


class Turns:
    """A model that answers each turn after ``delay_s`` (``bad``: agents given a wall tile)."""

    def __init__(self, delay_s: float = 0.15, bad: Sequence[int] = (), lead_s: float = 0.2
                 ) -> None:
        self.delay_s, self.bad, self.lead_s = delay_s, set(bad), lead_s
        self.asked: list[int] = []

    def __call__(self, messages: Sequence[Message]) -> FakeReply:
        agent = asked(messages)
        first_time = agent not in self.asked
        self.asked.append(agent)
        delay = self.lead_s if agent == 90 else self.delay_s
        return FakeReply(BAD if agent in self.bad and first_time else GOOD, delay_s=delay)


def config(**kw: object) -> ServiceConfig:
    base: dict[str, object] = {"timeout_s": 5.0, "probe_on_start": False, "max_concurrent": 1,
                               "batch_mode": "turns"}
    base.update(kw)
    return ServiceConfig(**base)  # type: ignore[arg-type]


def test_each_plan_is_delivered_when_its_turn_ends_and_each_turn_extends_the_last() -> None:
    model = Turns()
    backend = FakeBackend(model)
    with LlmPlanService(backend, config()) as service:
        assert service.batch_mode == "turns"
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6, 7)}
        done: dict[int, float] = {}
        calls_then: dict[int, int] = {}
        end = time.monotonic() + 5.0
        while len(done) < 3 and time.monotonic() < end:
            for a, t in tickets.items():
                if a not in done and t.poll(0.0) is not None:
                    done[a], calls_then[a] = time.monotonic(), len(backend.calls)
            time.sleep(0.002)
        outcomes = {a: t.poll(0.0) for a, t in tickets.items()}
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    assert model.asked == [90, 2, 6, 7]
    # agent 2's plan was out while agent 7's turn had not even started
    assert done[2] < done[6] < done[7] and calls_then[2] < 4
    first, last = backend.calls[1].messages, backend.calls[3].messages
    assert last[:2] == first and [m["role"] for m in last][-2:] == ["assistant", "user"]
    assert last[2]["content"] == GOOD
    map_line = next(ln for ln in first[1]["content"].splitlines() if ln.startswith("map "))
    assert "\n".join(m["content"] for m in last).count(map_line) == 1
    assert all(o.timing.first_token_at is not None for o in outcomes.values()
               if o is not None)


def test_an_unusable_turn_is_retried_alone_and_left_out_of_the_conversation() -> None:
    model = Turns(bad=(6,))
    backend = FakeBackend(model)
    with LlmPlanService(backend, config()) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6, 7)}
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}
        records = {r.request_id: r for r in service.status().recent}
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    assert model.asked == [90, 2, 6, 7, 6]  # 6 again, alone, after the batch
    turn_7 = backend.calls[3].messages
    assert BAD not in [m["content"] for m in turn_7] and len(turn_7) == 4
    assert records[tickets[6].request_id].batch_size == 1


def test_a_member_whose_turn_comes_after_its_deadline_times_out_alone() -> None:
    model = Turns(delay_s=0.4)
    with LlmPlanService(FakeBackend(model), config()) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        others = [service.submit(req(a)) for a in (2, 6)]
        short = service.submit(req(8, deadline_s=0.5))  # its turn would start after ~1 s
        out = short.wait(5.0)
        assert isinstance(out, PlanFailure) and out.kind is FailureKind.TIMEOUT
        assert "its turn in a batch of 3" in out.message
        assert all(isinstance(t.wait(5.0), PlanReady) for t in others)
    assert 8 not in model.asked


def test_turns_that_cost_as_much_as_singles_switch_batching_off() -> None:
    model = Turns(delay_s=0.05, lead_s=0.05)
    with LlmPlanService(FakeBackend(model), config()) as service:
        for _ in range(4):
            service.plan_blocking(PlanRequest(agent_id=90, snapshot=req(90).snapshot), 5.0)
        for _ in range(3):
            service.submit(req(91))
            wait_until(lambda: service.status().in_flight == 1)
            tickets = [service.submit(req(a)) for a in (2, 6, 7)]
            for t in tickets:
                t.wait(5.0)
        assert service.batch_sizer.settled and service.batch_sizer.value == 1


def test_auto_mode_follows_the_backend_and_a_custom_batch_builder_keeps_arrays() -> None:
    class TurnsBackend(FakeBackend):
        batch_mode = "turns"

    with LlmPlanService(TurnsBackend([GOOD]), ServiceConfig(probe_on_start=False)) as s:
        assert s.batch_mode == "turns"
    with LlmPlanService(FakeBackend([GOOD]), ServiceConfig(probe_on_start=False)) as s:
        assert s.batch_mode == "array"
    from esper_arbiter.systems.llm.batching import build_batch
    with LlmPlanService(TurnsBackend([GOOD]), ServiceConfig(probe_on_start=False),
                        batch=build_batch) as s:
        assert s.batch_mode == "array"
    assert ServiceConfig.from_env({"LLM_BATCH_MODE": "turns"}).batch_mode == "turns"
    bad = ServiceConfig.from_env({"LLM_BATCH_MODE": "both"})
    assert bad.batch_mode == "auto" and bad.problems

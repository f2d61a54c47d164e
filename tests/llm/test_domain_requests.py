"""The service prompts, narrows its schema and validates with the request's own domain.

A host's tool must reach the model's tool list and schema, and a plan using it must be
accepted by the service exactly when the arbiter would accept it: the service never answers
with the preset's vocabulary while the arbiter checks with the host's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from esper_arbiter.components.actions import Step
from esper_arbiter.components.llm import PlanFailure, PlanReady, PlanRequest
from esper_arbiter.components.snapshot import ObjectiveView
from esper_arbiter.components.world import Objective
from esper_arbiter.systems.domain import domain_of
from esper_arbiter.systems.llm.backends.base import Message
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.scripted import ScriptedPlanService, canned_plan
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from esper_arbiter.systems.planning.tools import ArgKind, ArgSpec, Check, ToolSpec
from esper_arbiter.systems.presets.squad import Fact, squad_domain
from tests.planning.snapshots import hello_snapshot


@dataclass(frozen=True, slots=True)
class Hack(Step):
    """A host's own step: hack the terminal at a tile."""

    act: ClassVar[str] = "Hack"
    x: int
    y: int


HACK = ToolSpec("Hack", "hack the terminal at a tile", Hack,
                (ArgSpec("x", ArgKind.X, example=4), ArgSpec("y", ArgKind.Y, example=4)),
                frozenset({Check.WALKABLE}))
DOMAIN = squad_domain(name="heist", extra_tools=[HACK], role="You plan for a burglar.")
REPLY = '{"steps": [{"act": "Hack", "x": 4, "y": 4}, {"act": "Scan"}]}'


def test_a_host_tool_reaches_the_prompt_and_the_schema_and_its_plan_is_accepted() -> None:
    seen: list[Sequence[Message]] = []

    def answer(messages: Sequence[Message]) -> FakeReply:
        seen.append(messages)
        return FakeReply(REPLY)

    config = ServiceConfig(timeout_s=3.0, probe_on_start=False)
    with LlmPlanService(FakeBackend(answer), config) as service:
        request = PlanRequest(agent_id=2, snapshot=hello_snapshot(), domain=DOMAIN)
        outcome = service.plan_blocking(request, timeout=5.0)
    assert isinstance(outcome, PlanReady), outcome
    assert outcome.plan.steps[0] == Hack(4, 4)
    system = seen[0][0]["content"]
    assert system.startswith("You plan for a burglar.") and "Hack(x, y)" in system
    schema = DOMAIN.tools.plan_schema(request.snapshot, request.max_steps, DOMAIN.rules)
    assert '"Hack"' in json.dumps(schema)


def test_the_same_plan_is_refused_for_a_domain_without_the_tool() -> None:
    config = ServiceConfig(timeout_s=3.0, probe_on_start=False)
    with LlmPlanService(FakeBackend([REPLY]), config) as service:
        outcome = service.plan_blocking(PlanRequest(2, hello_snapshot()), timeout=5.0)
    assert isinstance(outcome, PlanFailure) and "unknown tool 'Hack'" in outcome.message


def test_scripted_plans_follow_the_domains_order_words_and_objective() -> None:
    domain = squad_domain(orders={"take": Fact.ORDER_OBJECTIVE, "hold": Fact.ORDER_HOLD})
    snap = hello_snapshot(orders="take", pois={"relay": (9, 5)},
                          objective=ObjectiveView("relay", "hold", 9, 5))
    assert canned_plan(snap, domain)[0] == {"act": "MoveTo", "x": 9, "y": 5}
    # The preset's own words know no "take": no walk to the objective.
    assert canned_plan(snap)[0] != {"act": "MoveTo", "x": 9, "y": 5}
    service = ScriptedPlanService(delay_s=0.0)
    ticket = service.submit(PlanRequest(2, snap, domain=domain))
    outcome = ticket.poll(1.0)
    assert isinstance(outcome, PlanReady) and outcome.plan.source == "scripted"


def test_a_request_without_a_domain_means_the_preset() -> None:
    assert domain_of(PlanRequest(1, hello_snapshot())).name == "squad"
    assert Objective("relay").kind == "reach"


def test_repeated_identical_steps_collapse_into_one() -> None:
    reply = ('{"steps": [{"act": "Scan"}, {"act": "Scan"}, {"act": "Reload"}, '
             '{"act": "Scan"}, {"act": "Scan"}, {"act": "Scan"}]}')
    config = ServiceConfig(timeout_s=3.0, probe_on_start=False)
    with LlmPlanService(FakeBackend([reply]), config) as service:
        outcome = service.plan_blocking(PlanRequest(2, hello_snapshot()), timeout=5.0)
    assert isinstance(outcome, PlanReady)
    assert [s.act for s in outcome.plan.steps] == ["Scan", "Reload", "Scan"]

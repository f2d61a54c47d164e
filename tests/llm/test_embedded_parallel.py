"""Parallel batches on the real SmolLM2-135M model: a batch of three decoded side by side, each
member's plan valid for its own agent; one member stopped alone while the others finish."""

from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the 'embedded' extra)")

from esper_arbiter.components.llm import PlanReady
from esper_arbiter.systems.domain import domain_of
from esper_arbiter.systems.llm.backends.embedded_backend import (
    EmbeddedBackend,
    default_model_path,
)
from esper_arbiter.systems.llm.backends.multiseq import chat_formatter
from esper_arbiter.systems.llm.batching import build_turns
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from esper_arbiter.systems.planning.validation import validate_plan
from tests.llm.test_many_agents import req, wait_until

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(default_model_path() is None, reason="the embedded model is not installed"),
]

AGENTS = (2, 6, 7)


def test_a_batch_of_three_gives_each_member_a_valid_plan_for_its_own_agent() -> None:
    backend = EmbeddedBackend(max_tokens=160, seed=5)
    config = ServiceConfig(timeout_s=300.0, max_concurrent=1, max_batch_size=3,
                           probe_on_start=False, batch_latency_target_s=300.0)
    with LlmPlanService(backend, config) as service:
        assert service.batch_mode == "parallel"
        warm = service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1, timeout=60.0)
        tickets = {a: service.submit(req(a)) for a in AGENTS}
        assert isinstance(warm.wait(300.0), PlanReady)
        outcomes = {a: t.wait(300.0) for a, t in tickets.items()}
        records = {r.request_id: r for r in service.status().recent}
    for agent, out in outcomes.items():
        assert isinstance(out, PlanReady), (agent, out)
        assert records[tickets[agent].request_id].batch_size == 3
        request = req(agent)
        domain = domain_of(request)
        again = validate_plan(json.loads(out.raw)["steps"], request.snapshot, domain.tools,
                              domain.rules, request.max_steps)
        assert again.ok, (agent, out.raw, again.summary())
        assert out.timing.completion_tokens > 0


def test_a_member_stopped_alone_ends_cancelled_and_the_others_still_finish() -> None:
    backend = EmbeddedBackend(max_tokens=160, seed=5)
    llm, _ = backend._ensure_loaded()
    gen = backend._multiseq
    assert gen is not None
    render = chat_formatter(llm)
    assert render is not None
    turns = build_turns([type("E", (), {"request_id": i, "request": req(a)})()
                         for i, a in enumerate(AGENTS)])
    prompts = [gen.tokenize(render(turns.turn(k))) for k in range(3)]
    grammars = [gen.grammar_of(s, True) for s in turns.schemas]
    stops = [threading.Event() for _ in AGENTS]
    finished: list[int] = []

    def emit(k: int, text: str) -> None:
        if k == 1:
            stops[1].set()  # member 1 is stopped after its first piece

    results = gen.run(prompts, grammars, max_tokens=160, temperature=0.2, repeat_penalty=1.0,
                      seed=5, emit=emit, done=lambda k, r: finished.append(k),
                      cancel=threading.Event(), stopped=stops)
    backend._shutdown_worker()
    assert results[1].finish == "cancelled" and results[1].tokens <= 2
    assert sorted(finished) == [0, 1, 2] and finished[0] == 1
    for k in (0, 2):
        assert results[k].finish == "stop", results[k]
        plan = json.loads(results[k].text)
        assert isinstance(plan.get("steps"), list)

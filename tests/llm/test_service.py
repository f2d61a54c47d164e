"""LlmPlanService with a scripted in-process backend: tickets, deadlines, concurrency,
cancellation, crashes, shutdown, status, configuration. (Many agents, batches and priorities:
``test_many_agents.py``.)"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from esper_arbiter.components.actions import Reload, Scan
from esper_arbiter.components.llm import (
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.systems.llm.backends.base import BackendError
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.service import (
    ENV_BATCH_LATENCY_TARGET_MS,
    ENV_DISABLE_BACKGROUND,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_CONCURRENT,
    ENV_TIMEOUT_MS,
    LlmPlanService,
    OfflinePlanService,
    ServiceConfig,
)
from tests.fixtures.frame_loop import run_frames
from tests.planning.snapshots import hello_snapshot

PLAN = '{"steps": [{"act": "Scan"}, {"act": "Reload"}]}'


def req(agent: int = 2, deadline_s: float | None = None) -> PlanRequest:
    return PlanRequest(agent_id=agent, snapshot=hello_snapshot(), deadline_s=deadline_s)


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.002)


def cfg(**kw: object) -> ServiceConfig:
    base: dict[str, object] = {"timeout_s": 2.0, "probe_on_start": False}
    base.update(kw)
    return ServiceConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    before = set(threading.enumerate())
    yield before
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leaked == [], f"threads outlived the service: {leaked}"


def test_submit_returns_unresolved_ticket_then_a_validated_plan(
    threads_before: set[threading.Thread],
) -> None:
    backend = FakeBackend([FakeReply(PLAN, delay_s=0.2)])
    with LlmPlanService(backend, cfg()) as service:
        ticket = service.submit(req())
        assert ticket.poll(0.0) is None
        run = run_frames(ticket, max_wall_s=3.0)
        assert isinstance(run.outcome, PlanReady)
        assert run.ticks >= 5
        plan = run.outcome.plan
        assert plan.steps == (Scan(), Reload())
        assert plan.source == "llm" and plan.plan_id == f"p-{ticket.request_id:04d}"
        assert run.outcome.raw == PLAN
        # the prompt and the snapshot schema reached the backend
        call = backend.calls[0]
        assert call.messages[0]["role"] == "system" and "#2" in call.messages[-1]["content"]
        assert call.schema is not None and call.schema["properties"]["steps"]["maxItems"] == 8
        # the outcome is stable once delivered
        assert ticket.poll(100.0) is run.outcome


def test_concurrency_is_limited_and_every_request_lands() -> None:
    backend = FakeBackend([FakeReply(PLAN, delay_s=0.15)])
    with LlmPlanService(backend, cfg(max_concurrent=2, max_batch_size=1)) as service:
        tickets = [service.submit(req(agent=i)) for i in range(6)]
        time.sleep(0.05)
        status = service.status()
        assert status.in_flight == 2 and status.queue_depth == 4
        assert status.queue_depth_by_priority == {0: 4}
        outcomes = [t.wait(5.0) for t in tickets]
        assert all(isinstance(o, PlanReady) for o in outcomes)
        assert backend.max_active == 2
        assert service.status().plans_ok == 6


def test_env_sets_deadline_and_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TIMEOUT_MS, "400")
    monkeypatch.setenv(ENV_MAX_CONCURRENT, "3")
    config = ServiceConfig.from_env(probe_on_start=False)
    assert config.timeout_s == pytest.approx(0.4) and config.max_concurrent == 3
    with LlmPlanService(FakeBackend([FakeReply(hang=True)]), config) as service:
        run = run_frames(service.submit(req()), max_wall_s=3.0)
        assert isinstance(run.outcome, PlanFailure) and run.outcome.kind is FailureKind.TIMEOUT
        assert "0.40s" in run.outcome.message
        assert run.wall_s < 2.0


@pytest.mark.parametrize("bad", ["", "abc", "-5", "0"])
def test_malformed_env_values_fall_back_to_defaults(bad: str) -> None:
    config = ServiceConfig.from_env({ENV_TIMEOUT_MS: bad, ENV_MAX_CONCURRENT: bad})
    assert config.timeout_s == 60.0 and config.max_concurrent == 2


def test_request_deadline_overrides_service_default() -> None:
    with LlmPlanService(FakeBackend([FakeReply(hang=True)]), cfg(timeout_s=30.0)) as service:
        run = run_frames(service.submit(req(deadline_s=0.3)), max_wall_s=3.0)
        assert isinstance(run.outcome, PlanFailure) and run.outcome.kind is FailureKind.TIMEOUT
        assert run.wall_s < 2.0


def test_slow_drip_times_out_with_the_partial_reply() -> None:
    drip = FakeReply(PLAN, chunks=40, chunk_delay_s=0.05)
    with LlmPlanService(FakeBackend([drip]), cfg()) as service:
        run = run_frames(service.submit(req(deadline_s=0.5)), max_wall_s=3.0)
    assert isinstance(run.outcome, PlanFailure) and run.outcome.kind is FailureKind.TIMEOUT
    assert run.outcome.raw and PLAN.startswith(run.outcome.raw)
    assert run.outcome.timing.first_token_at is not None


def test_request_expires_while_queued() -> None:
    backend = FakeBackend([FakeReply(hang=True)])
    with LlmPlanService(backend, cfg(max_concurrent=1, timeout_s=30.0)) as service:
        blocker = service.submit(req(agent=1))
        wait_until(lambda: service.status().in_flight == 1)
        waiting = service.submit(req(agent=2, deadline_s=0.3))
        run = run_frames(waiting, max_wall_s=3.0)
        assert isinstance(run.outcome, PlanFailure) and run.outcome.kind is FailureKind.EXPIRED
        assert "in the queue; never ran" in run.outcome.message
        assert run.outcome.timing.started_at is None
        assert len(backend.calls) == 1
        assert blocker.poll(0.0) is None


def test_cancel_running_request_frees_its_slot() -> None:
    backend = FakeBackend([FakeReply(hang=True), FakeReply(PLAN)])
    with LlmPlanService(backend, cfg(max_concurrent=1)) as service:
        first = service.submit(req(agent=1))
        wait_until(lambda: service.status().in_flight == 1)
        second = service.submit(req(agent=2))
        first.cancel()
        cancelled = first.poll(0.0)  # resolved at once, not when the task gets round to it
        assert isinstance(cancelled, PlanFailure) and cancelled.kind is FailureKind.CANCELLED
        assert isinstance(second.wait(3.0), PlanReady)
        assert backend.calls[0].cancelled
        assert service.failure_counts() == {FailureKind.CANCELLED: 1}
        assert first.poll(0.0) is cancelled
        assert service.queue.metrics().duplicate_resolves == 0


def test_cancel_queued_request_never_runs_it() -> None:
    backend = FakeBackend([FakeReply(PLAN, delay_s=0.2)])
    with LlmPlanService(backend, cfg(max_concurrent=1)) as service:
        first = service.submit(req(agent=1))
        wait_until(lambda: service.status().in_flight == 1)
        second = service.submit(req(agent=2))
        second.cancel()
        assert isinstance(first.wait(3.0), PlanReady)
        time.sleep(0.1)
        assert len(backend.calls) == 1
        outcome = second.poll(0.0)
        assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CANCELLED


def test_cancel_after_completion_keeps_the_plan() -> None:
    with LlmPlanService(FakeBackend([PLAN]), cfg()) as service:
        ticket = service.submit(req())
        outcome = ticket.wait(3.0)
        ticket.cancel()
        assert ticket.poll(0.0) is outcome and isinstance(outcome, PlanReady)
        assert service.status().failures == 0


@pytest.mark.parametrize(
    ("error", "kind", "needle"),
    [
        (RuntimeError("segfault in sampler"), FailureKind.CRASH, "RuntimeError"),
        (KeyError("choices"), FailureKind.CRASH, "KeyError"),
        (BackendError(FailureKind.CONNECTION, "socket closed"), FailureKind.CONNECTION,
         "socket closed"),
        (BackendError(FailureKind.MODEL_MISSING, "no model"), FailureKind.MODEL_MISSING,
         "no model"),
    ],
)
def test_backend_errors_become_typed_failures(
    error: Exception, kind: FailureKind, needle: str
) -> None:
    with LlmPlanService(FakeBackend([FakeReply("{", error=error)]), cfg()) as service:
        outcome = service.plan_blocking(req(), timeout=3.0)
        assert isinstance(outcome, PlanFailure)
        assert outcome.kind is kind and needle in outcome.message
        assert service.status().failures == 1
        # the service survives a crash
        assert isinstance(service.plan_blocking(req(), timeout=3.0), PlanFailure)


def test_crash_in_prompt_builder_is_a_crash_outcome() -> None:
    def broken(request: PlanRequest) -> list[dict[str, str]]:
        raise ZeroDivisionError("bad template")

    with LlmPlanService(FakeBackend([PLAN]), cfg(), messages=broken) as service:
        outcome = service.plan_blocking(req(), timeout=3.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CRASH
    assert "ZeroDivisionError" in outcome.message


def test_unparseable_and_invalid_replies() -> None:
    replies = ["Sorry, I cannot help with that.",
               '{"steps": [{"act": "Teleport", "x": 1, "y": 1}]}',
               '{"steps": []}']
    with LlmPlanService(FakeBackend(replies), cfg(max_concurrent=1)) as service:
        parse = service.plan_blocking(req(), timeout=3.0)
        unknown = service.plan_blocking(req(), timeout=3.0)
        empty = service.plan_blocking(req(), timeout=3.0)
        counts = service.failure_counts()
    assert isinstance(parse, PlanFailure) and parse.kind is FailureKind.PARSE
    assert "tried: direct, fenced, envelope, balanced, repair" in parse.message
    assert isinstance(unknown, PlanFailure) and unknown.kind is FailureKind.INVALID_PLAN
    assert "Teleport" in unknown.message
    assert isinstance(empty, PlanFailure) and empty.kind is FailureKind.INVALID_PLAN
    assert counts == {FailureKind.PARSE: 1, FailureKind.INVALID_PLAN: 2}


def test_close_cancels_everything_and_joins(threads_before: set[threading.Thread]) -> None:
    backend = FakeBackend([FakeReply(hang=True)])
    service = LlmPlanService(backend, cfg(max_concurrent=2, timeout_s=60.0))
    tickets = [service.submit(req(agent=i)) for i in range(5)]
    time.sleep(0.05)
    service.close()
    for t in tickets:
        outcome = t.poll(0.0)
        assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CANCELLED
    assert backend.closed
    assert all(c.cancelled for c in backend.calls) and len(backend.calls) == 2
    late = service.submit(req())
    outcome = late.poll(0.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.REFUSED
    assert "shut down" in outcome.message
    service.close()  # idempotent


def test_no_task_outlives_close() -> None:
    seen_loops: list[asyncio.AbstractEventLoop] = []

    def capture(messages: object) -> FakeReply:
        seen_loops.append(asyncio.get_running_loop())
        return FakeReply(hang=True)

    service = LlmPlanService(FakeBackend(capture), cfg())
    service.submit(req())
    time.sleep(0.05)
    service.close()
    assert seen_loops and seen_loops[0].is_closed()


def test_plan_blocking_timeout_cancels() -> None:
    with LlmPlanService(FakeBackend([FakeReply(hang=True)]), cfg(timeout_s=30.0)) as service:
        outcome = service.plan_blocking(req(), timeout=0.2)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CANCELLED


def test_status_reports_latency_ttft_tokens_and_records() -> None:
    backend = FakeBackend([FakeReply(PLAN, delay_s=0.05, chunks=4, chunk_delay_s=0.02,
                                     completion_tokens=12)])
    with LlmPlanService(backend, cfg()) as service:
        assert service.plan_blocking(req(agent=7), timeout=3.0) is not None
        status = service.status()
    assert status.backend == "fake" and status.model == "fake-model"
    assert status.requests_total == 1 and status.plans_ok == 1 and status.failures == 0
    assert status.last_latency_s is not None and status.last_latency_s >= 0.05
    assert status.last_ttft_s is not None and status.last_ttft_s >= 0.05
    assert status.last_tokens_per_s is not None and status.last_tokens_per_s > 0
    record = status.recent[-1]
    assert record.agent_id == 7 and record.outcome == "plan"
    assert record.started_at is not None and record.finished_at is not None
    assert record.queued_at <= record.started_at <= record.finished_at


def test_probe_on_start_reports_offline_backend() -> None:
    backend = FakeBackend(online=False, offline_reason="model file x.gguf does not exist")
    with LlmPlanService(backend, ServiceConfig(timeout_s=1.0)) as service:
        deadline = time.monotonic() + 2.0
        while service.status().online and time.monotonic() < deadline:
            time.sleep(0.01)
        status = service.status()
    assert not status.online and status.reason == "model file x.gguf does not exist"


def test_random_submits_and_cancels_resolve_exactly_once() -> None:
    rng = random.Random(1234)

    def script(messages: object) -> FakeReply:
        choice = rng.random()
        if choice < 0.2:
            return FakeReply(hang=True)
        if choice < 0.3:
            return FakeReply("{", error=RuntimeError("boom"))
        if choice < 0.4:
            return FakeReply("no json here", delay_s=rng.random() * 0.05)
        return FakeReply(PLAN, delay_s=rng.random() * 0.05)

    service = LlmPlanService(FakeBackend(script), cfg(max_concurrent=2, timeout_s=0.3))
    tickets = []
    first_seen: dict[int, PlanOutcome] = {}
    for i in range(60):
        tickets.append(service.submit(req(agent=i)))
        if rng.random() < 0.3:
            rng.choice(tickets).cancel()
        for t in tickets:
            o = t.poll(0.0)
            if o is not None:
                assert first_seen.setdefault(t.request_id, o) is o
        time.sleep(0.005)
    deadline = time.monotonic() + 10.0
    while any(t.poll(0.0) is None for t in tickets) and time.monotonic() < deadline:
        time.sleep(0.02)
    for t in tickets:
        o = t.poll(0.0)
        assert o is not None
        assert first_seen.setdefault(t.request_id, o) is o
    status = service.status()
    service.close()
    assert status.settled == len(tickets) == status.requests_total
    assert len({t.request_id for t in tickets}) == len(tickets)


def test_offline_service_resolves_offline_and_explains() -> None:
    service = OfflinePlanService("LLM offline: no ollama and no embedded model")
    outcome = service.submit(req()).poll(0.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.OFFLINE
    status = service.status()
    assert not status.online and "no ollama" in status.reason
    assert status.failures == 1
    service.close()


def test_env_sets_batching_and_background_knobs() -> None:
    config = ServiceConfig.from_env({
        ENV_MAX_BATCH_SIZE: "3", ENV_BATCH_LATENCY_TARGET_MS: "1500",
        ENV_DISABLE_BACKGROUND: "1", ENV_MAX_CONCURRENT: "4",
    })
    assert config.max_batch_size == 3 and config.batch_latency_target_s == pytest.approx(1.5)
    assert config.disable_background and config.max_concurrent == 4 and config.problems == ()
    queue = config.queue_config()
    assert queue.disable_background and queue.max_concurrent == 4
    with LlmPlanService(FakeBackend([PLAN]), replace_probe(config)) as service:
        assert service.batch_sizer.value == 3 and service.batch_sizer.maximum == 3
        assert service.batch_sizer.latency_target_s == pytest.approx(1.5)


@pytest.mark.parametrize("bad", ["abc", "0", "-2", "nan", "2.5"])
def test_malformed_batching_env_values_fall_back_and_say_why(bad: str) -> None:
    config = ServiceConfig.from_env({ENV_MAX_BATCH_SIZE: bad, ENV_BATCH_LATENCY_TARGET_MS: bad})
    assert config.max_batch_size == 4
    if bad != "2.5":  # 2.5 ms is a valid (if silly) latency target
        assert config.batch_latency_target_s == 20.0
        assert any(ENV_BATCH_LATENCY_TARGET_MS in p for p in config.problems)
    assert any(ENV_MAX_BATCH_SIZE in p and "using 4" in p for p in config.problems)


def replace_probe(config: ServiceConfig) -> ServiceConfig:
    import dataclasses

    return dataclasses.replace(config, probe_on_start=False)


def test_a_backend_slow_to_close_is_named_with_why(caplog: pytest.LogCaptureFixture) -> None:
    """A model call that cannot be interrupted (llama.cpp reading a long prompt) outlasts the
    shutdown timeout: close() returns on time and says so in words, not a bare TimeoutError."""

    class SlowToClose(FakeBackend):
        async def aclose(self) -> None:
            await asyncio.sleep(5.0)

    service = LlmPlanService(SlowToClose([FakeReply("{}")]), cfg(shutdown_timeout_s=0.2))
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="esper_arbiter"):
        service.close()
    assert time.monotonic() - t0 < 3.0
    assert any("still busy after 0.2 s" in r.getMessage() and "cannot be interrupted"
               in r.getMessage() for r in caplog.records)

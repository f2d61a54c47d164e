"""``ServiceStatus`` counts what the arbiter counts: cancelled, superseded and refused requests
are reported apart from failures, by every service; the embedded warm-up shows as its own
state while the game already plays."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from esper_arbiter.components.llm import (
    PRIORITY_LOW,
    WITHDRAWN_KINDS,
    FailureKind,
    PlanFailure,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.llm.backends.base import Message
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.recording import RecordingPlanService, ReplayPlanService
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.llm.service import WARMING_UP, LlmPlanService, ServiceConfig
from tests.planning.snapshots import hello_snapshot

PLAN = '{"steps": [{"act": "Scan"}, {"act": "Reload"}]}'


def req(agent: int, priority: int = 5, t: float = 0.0) -> PlanRequest:
    return PlanRequest(agent_id=agent, snapshot=hello_snapshot(), priority=priority,
                       submitted_at=t)


def cfg(**kw: object) -> ServiceConfig:
    base: dict[str, object] = {"timeout_s": 5.0, "probe_on_start": False, "max_concurrent": 1,
                               "max_batch_size": 1}
    base.update(kw)
    return ServiceConfig(**base)  # type: ignore[arg-type]


def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_withdrawn_kinds_match_the_arbiters() -> None:
    from esper_arbiter.systems.planning import arbiter

    assert frozenset(arbiter._NOT_FAILURES) == WITHDRAWN_KINDS


def test_live_service_reports_withdrawn_requests_apart_from_failures() -> None:
    backend = FakeBackend([FakeReply(PLAN, delay_s=1.5)] + [FakeReply(PLAN, delay_s=0.05)] * 3)
    with LlmPlanService(backend, cfg(disable_background=True)) as service:
        busy = service.submit(req(1))  # occupies the only worker ...
        _until(lambda: len(backend.calls) == 1)  # ... once it has it (a loaded machine is slow)
        first = service.submit(req(2))  # queued ...
        newer = service.submit(req(2))  # ... and superseded by the same agent's newer request
        gone = service.submit(req(3))
        gone.cancel()
        refused = service.submit(req(4, PRIORITY_LOW))  # background requests are switched off
        for ticket in (busy, newer):
            assert isinstance(ticket.wait(5.0), PlanReady)
        kinds = {t.request_id: getattr(t.poll(0.0), "kind", None) for t in (first, gone, refused)}
        assert kinds == {first.request_id: FailureKind.SUPERSEDED,
                         gone.request_id: FailureKind.CANCELLED,
                         refused.request_id: FailureKind.REFUSED}
        status = service.status()
    assert (status.plans_ok, status.failures) == (2, 0)
    assert (status.cancelled, status.superseded, status.refused) == (1, 1, 1)
    assert status.withdrawn == 3 and status.settled == status.requests_total == 5


def test_a_real_failure_still_counts_as_one() -> None:
    backend = FakeBackend([FakeReply("not json at all")])
    with LlmPlanService(backend, cfg()) as service:
        outcome = service.plan_blocking(req(1), timeout=5.0)
        assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.PARSE
        status = service.status()
    assert (status.failures, status.withdrawn) == (1, 0)


def test_scripted_and_replay_count_a_cancel_as_withdrawn(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    recorder = RecordingPlanService(ScriptedPlanService(seed=1, delay_s=1.0), path)
    kept = recorder.submit(req(2, t=0.0))
    dropped = recorder.submit(req(3, t=0.0))
    dropped.cancel()
    assert isinstance(kept.poll(5.0), PlanReady)
    scripted: ServiceStatus = recorder.status()
    recorder.close()
    assert (scripted.plans_ok, scripted.failures, scripted.cancelled) == (1, 0, 1)

    replay = ReplayPlanService(path)
    again = replay.submit(req(2, t=0.0))
    assert isinstance(again.poll(5.0), PlanReady)
    withdrawn = replay.submit(req(3, t=0.0))
    withdrawn.cancel()  # the game withdraws it again: neither ok nor failed
    status = replay.status()
    assert (status.plans_ok, status.failures, status.cancelled) == (1, 0, 1)


class _SlowWarmBackend(FakeBackend):
    """A backend whose warm-up waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__([FakeReply(PLAN)])
        self.release = threading.Event()
        self.warmed = threading.Event()

    async def warm_up(self, messages: Sequence[Message]) -> None:
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        self.warmed.set()


def test_the_warm_up_runs_in_the_background_and_shows_in_the_status() -> None:
    backend = _SlowWarmBackend()
    service = LlmPlanService(backend, cfg(warm_up=True))  # returns before the warm-up ends
    try:
        status = service.status()
        assert status.online and status.warming_up and status.reason == WARMING_UP
        backend.release.set()
        assert backend.warmed.wait(5.0)
        for _ in range(200):
            if not service.status().warming_up:
                break
            threading.Event().wait(0.01)
        status = service.status()
        assert status.online and not status.warming_up and status.reason == ""
    finally:
        service.close()


def test_the_hud_shows_warming_up_then_online() -> None:
    from esper_arbiter.game.render.model import llm_panel

    warming = llm_panel(object(), ServiceStatus(backend="embedded", warming_up=True,
                                                reason=WARMING_UP))
    assert warming.state == "WARMING UP" and "warming up" in warming.reason
    online = llm_panel(object(), ServiceStatus(backend="embedded", cancelled=2, refused=1))
    assert online.state == "ONLINE"
    assert ("withdrawn", "cancelled 2  refused 1") in online.rows
    assert ("requests", "0  ok 0  failed 0") in online.rows

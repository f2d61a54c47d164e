"""What a service can do is part of the PlanService protocol, implemented by every service
class (and the test doubles), not looked up with ``getattr``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from esper_arbiter.systems.llm.api import PlanService, paced_by_wall_clock
from esper_arbiter.systems.llm.backends.base import Message
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend
from esper_arbiter.systems.llm.recording import RecordingPlanService, ReplayPlanService
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.llm.service import LlmPlanService, OfflinePlanService, ServiceConfig

ROOT = Path(__file__).resolve().parents[2]


class _SlowWarmBackend(FakeBackend):
    """A backend whose warm-up waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release: asyncio.Event | None = None
        self.max_batch_size = 2

    async def warm_up(self, messages: Sequence[Message]) -> None:
        self.release = asyncio.Event()
        await self.release.wait()


def _services(tmp_path: Path) -> list[PlanService]:
    from tests.systems.test_systems import HungService

    path = tmp_path / "run.jsonl"
    recorder = RecordingPlanService(ScriptedPlanService(), path)
    recorder.close()
    cfg = ServiceConfig(probe_on_start=False)
    return [
        LlmPlanService(FakeBackend(), cfg),
        OfflinePlanService("no model"),
        ScriptedPlanService(),
        RecordingPlanService(ScriptedPlanService(), tmp_path / "again.jsonl"),
        RecordingPlanService(LlmPlanService(FakeBackend(), cfg), tmp_path / "live.jsonl"),
        ReplayPlanService(path),
        HungService(),
    ]


def test_every_service_implements_the_protocol(tmp_path: Path) -> None:
    services = _services(tmp_path)
    try:
        for service in services:
            name = type(service).__name__
            assert isinstance(service, PlanService), name
            assert isinstance(service.backend_name, str), name
            for member in ("available", "game_clock", "warming_up"):
                assert isinstance(getattr(service, member), bool), (name, member)
            assert isinstance(service.max_batch_size, int), name
            assert service.max_batch_size >= 1, name
        live, offline, scripted, rec_scripted, rec_live, replay, _hung = services
        assert [s.available for s in (live, offline, scripted, replay)] == [
            True, False, True, True]
        assert [s.game_clock for s in (live, offline, scripted, rec_scripted, rec_live,
                                       replay)] == [False, False, True, True, False, True]
        assert paced_by_wall_clock(live) and paced_by_wall_clock(rec_live)
        assert not any(paced_by_wall_clock(s) for s in (offline, scripted, rec_scripted,
                                                        replay, None))
    finally:
        for service in services:
            service.close()


def test_warming_up_and_batch_size_of_the_live_service() -> None:
    backend = _SlowWarmBackend()
    service = LlmPlanService(backend, ServiceConfig(probe_on_start=False, warm_up=True,
                                                    max_batch_size=4))
    try:
        assert service.warming_up
        assert service.max_batch_size == 2  # the backend's own bound wins over the config's
        for _ in range(200):
            if backend.release is not None:
                break
            time.sleep(0.005)
        assert backend.release is not None
        service._loop.call_soon_threadsafe(backend.release.set)
        for _ in range(200):
            if not service.warming_up:
                break
            time.sleep(0.005)
        assert not service.warming_up
    finally:
        service.close()
    cold = LlmPlanService(FakeBackend(), ServiceConfig(probe_on_start=False))
    assert not cold.warming_up and cold.max_batch_size == 4
    cold.close()


def test_the_arbiter_reads_available_not_getattr() -> None:
    source = (ROOT / "systems" / "arbiter_system.py").read_text(encoding="utf-8")
    api = (ROOT / "systems" / "llm" / "api.py").read_text(encoding="utf-8")
    for text in (source, api):
        assert 'getattr(service, "available"' not in text
        assert 'getattr(service, "game_clock"' not in text



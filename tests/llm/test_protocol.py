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




class _CountingWarmBackend(FakeBackend):
    """Records each warm-up's system prompt and each model load; loading takes a moment, as a
    real model's does, so a game's ``install`` lands while the service's own warm-up runs."""

    def __init__(self) -> None:
        super().__init__()
        self.warmed: list[str] = []
        self.loads = 0

    async def load(self) -> tuple[bool, str]:
        self.loads += 1
        await asyncio.sleep(0.05)
        return True, ""

    async def warm_up(self, messages: Sequence[Message]) -> None:
        self.warmed.append(messages[0]["content"])


def test_the_model_reads_one_system_prompt_the_games_own() -> None:
    """The service warms up with the preset's prompt as it starts; the game's ``install``
    follows at once with its own. Only the game's is read (each read costs seconds on a small
    CPU, and the first plan of the round waited for both), and asking again for a prompt
    already read reads nothing."""
    from esper_arbiter.components.llm import DEFAULT_MAX_STEPS
    from esper_arbiter.systems.llm import prompt
    from esper_arbiter.systems.presets.squad import squad_domain

    backend = _CountingWarmBackend()
    service = LlmPlanService(backend, ServiceConfig(probe_on_start=False, warm_up=True))
    try:
        domain = squad_domain(role="You guard a caravan.")
        service.warm_for(domain)
        service.warm_for(domain)
        for _ in range(400):
            if not service.warming_up:
                break
            time.sleep(0.005)
        assert not service.warming_up
        assert backend.loads == 1
        assert backend.warmed == [prompt.system_prompt(domain, DEFAULT_MAX_STEPS)]
        assert "You guard a caravan." in backend.warmed[0]
    finally:
        service.close()

    alone = _CountingWarmBackend()  # nobody installs a domain: the preset's prompt is read
    service = LlmPlanService(alone, ServiceConfig(probe_on_start=False, warm_up=True))
    try:
        for _ in range(400):
            if alone.warmed:
                break
            time.sleep(0.005)
        assert alone.warmed == [prompt.system_prompt(None, DEFAULT_MAX_STEPS)]
    finally:
        service.close()

"""Agents that leave with a model request in flight: the service hears of it.

A host deletes an agent's entity at any frame (it died, despawned, the level changed). Its
request must not run on: the live service would spend the model on an answer nobody reads,
and the request would never be counted as anything but "running".
"""

from __future__ import annotations

import time

import esper

import esper_arbiter as ea
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.systems.test_host_contract import arena, step


def _hanging_service() -> LlmPlanService:
    return LlmPlanService(FakeBackend([FakeReply(hang=True)]),
                          ServiceConfig(timeout_s=30.0, probe_on_start=False, max_batch_size=1,
                                        max_concurrent=2))


def _agent() -> int:
    return esper.create_entity(ea.Agent(), ea.Position(2, 6), ea.Health(80, 80), ea.Team("blue"),
                               ea.Ammo(30, 30))


def _settle(service: LlmPlanService, want: int) -> ea.ServiceStatus:
    deadline = time.monotonic() + 5.0
    status = service.status()
    while status.cancelled < want and time.monotonic() < deadline:
        time.sleep(0.01)
        status = service.status()
    return status


def test_a_deleted_agents_request_is_cancelled_in_the_service(world: str) -> None:
    arena()
    stays, leaves = _agent(), _agent()
    esper.create_entity(ea.Position(12, 6), ea.Health(60, 60), ea.Team("red"))
    with _hanging_service() as service:
        ea.install(service=service)
        for _ in range(60):  # 2 s: both agents have asked
            step()
        assert esper.has_component(leaves, LlmTask) and esper.has_component(stays, LlmTask)
        esper.delete_entity(leaves)
        step()
        status = _settle(service, 1)
        assert status.cancelled == 1  # the one that left
        assert status.in_flight + status.queue_depth == 1  # the other one still waits
        assert esper.has_component(stays, LlmTask)


def test_uninstall_and_a_closed_round_withdraw_what_is_in_flight(world: str) -> None:
    arena()
    _agent(), _agent()
    with _hanging_service() as service:
        plugin = ea.install(service=service)
        for _ in range(60):
            step()
        plugin.uninstall()
        status = _settle(service, 2)
        assert (status.cancelled, status.in_flight, status.queue_depth) == (2, 0, 0)


def test_a_round_that_shares_its_service_cancels_its_requests_when_it_closes() -> None:
    from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
    from esper_arbiter.game.world import GameSession

    with _hanging_service() as service:
        session = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1, service=service)
        session.run(3.0, 1 / 30)
        asked = service.status().requests_total
        assert asked >= 1
        session.close()
        status = _settle(service, asked)
        assert status.cancelled == asked and status.in_flight == 0


def test_a_closed_round_is_freed() -> None:
    """A round freezes what it builds (so full collections skip it); closing it must let the
    collector have it back, or every restart keeps the old round in memory."""
    import gc
    import weakref

    from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
    from esper_arbiter.game.world import GameSession

    session = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1)
    session.run(2.0, 1 / 30)
    gone = weakref.ref(session)
    session.close()
    del session
    gc.collect()
    assert gone() is None


def test_an_agent_a_hosts_callback_deletes_mid_frame_is_passed_over(world: str) -> None:
    """The arbiter decides the due agents after it has looked at everyone; a host whose event
    callback deletes another agent (it fell to this decision) must not make the frame trip
    over the one that is gone, and the others still decide."""
    arena()
    first, gone, third = _agent(), _agent(), _agent()
    decided: list[int] = []

    def on_event(ent: int, event: ea.ArbiterEvent) -> None:
        decided.append(ent)
        if ent == first and esper.entity_exists(gone):
            esper.delete_entity(gone, immediate=True)

    ea.install(service=None, on_event=on_event)
    step()  # every agent is due on its first frame: the first one's event deletes the second
    assert not esper.entity_exists(gone)
    assert first in decided and third in decided and gone not in decided
    for _ in range(30):
        step()
    assert esper.component_for_entity(third, ea.Intent).step is not None

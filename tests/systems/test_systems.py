"""The three systems in a bare esper world built here (not through our game)."""

from __future__ import annotations

import esper

from esper_arbiter.components import (
    Agent,
    Ammo,
    ArbiterEvent,
    ArbiterState,
    GameClock,
    Health,
    Intent,
    IntentStatus,
    Leader,
    LlmTask,
    MapGrid,
    Mode,
    Objective,
    Orders,
    Perception,
    PlanOutcome,
    PlanRequest,
    Position,
    Team,
)
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.plugin import install


def populate() -> tuple[int, int, int]:
    esper.create_entity(GameClock(0.0))
    esper.create_entity(
        MapGrid(20, 10, frozenset((6, y) for y in range(1, 9)), frozenset({(5, 2)}),
                {"breach_door": (15, 8)}, Objective("breach_door"))
    )
    player = esper.create_entity(Leader(), Position(2, 2), Health(100, 100), Team("blue"))
    companion = esper.create_entity(
        Agent(), Position(2, 3), Health(80, 80), Team("blue"), Ammo(30, 30), Orders()
    )
    enemy = esper.create_entity(Position(12, 2), Health(60, 60), Team("red"))
    return player, companion, enemy


def step(dt: float = 0.1) -> None:
    for _, clock in esper.get_component(GameClock):
        clock.t += dt
    esper.process()


def test_agents_get_ai_components_and_act_without_a_model(world: str) -> None:
    _, companion, _ = populate()
    install(service=None)
    step()
    intent = esper.component_for_entity(companion, Intent)
    state = esper.component_for_entity(companion, ArbiterState)
    assert intent.step is not None and intent.status is IntentStatus.RUNNING
    assert state.mode in (Mode.GOAP, Mode.BEHAVIOR_TREE)
    assert esper.component_for_entity(companion, Perception).snapshot.me.id == companion
    for _ in range(50):
        step()
    assert not esper.has_component(companion, LlmTask)
    assert state.metrics.llm_requests == 0


def test_scripted_round_trip_through_the_systems(world: str) -> None:
    _, companion, _ = populate()
    events: list[tuple[int, ArbiterEvent]] = []
    install(service=ScriptedPlanService(seed=1, delay_s=1.0),
            on_event=lambda e, ev: events.append((e, ev)))
    state = intent = None
    for _ in range(12):  # first request goes out at t >= 1.0
        step()
    assert esper.has_component(companion, LlmTask)
    state = esper.component_for_entity(companion, ArbiterState)
    intent = esper.component_for_entity(companion, Intent)
    assert state.metrics.llm_requests == 1
    for _ in range(20):  # answered within 1.5 s of game time
        step()
        if state.mode is Mode.EXECUTING_LLM:
            break
    assert state.mode is Mode.EXECUTING_LLM
    assert not esper.has_component(companion, LlmTask)
    assert intent.label.startswith("LLM 1/")
    first = intent.serial
    for _ in range(5):  # the host has not finished the step: nothing advances
        step()
    assert intent.serial == first
    while state.mode is Mode.EXECUTING_LLM:
        intent.finish()
        step()
    assert state.mode is Mode.GOAP
    texts = [ev.text for _, ev in events]
    assert any(t.startswith("GOAP -> ExecutingLLM (plan p-0001") for t in texts)
    assert any(t.startswith("ExecutingLLM -> GOAP") for t in texts)
    assert any(t.startswith("[LLM 1/") for t in texts)
    # A canned plan is counted by its origin, never as a model success.
    assert state.metrics.plans_by_source == {"scripted": 1} and state.metrics.llm_successes == 0


def test_player_order_makes_an_urgent_request(world: str) -> None:
    _, companion, _ = populate()
    seen: list[PlanRequest] = []

    class Spy(ScriptedPlanService):
        def submit(self, request: PlanRequest):  # type: ignore[no-untyped-def]
            seen.append(request)
            return super().submit(request)

    install(service=Spy(delay_s=100.0))
    step()
    assert seen == []  # first periodic request not due yet (t < 1 s)
    orders = esper.component_for_entity(companion, Orders)
    orders.order, orders.serial = "attack", 1
    step()
    assert seen == []  # the order is taken and the request decided on this frame...
    step()  # ...and sent on the next
    assert len(seen) == 1 and seen[0].priority > 0 and seen[0].reason == "order: attack"
    assert seen[0].snapshot.orders == "attack"


class NeverTicket:
    """A request that never completes; counts how often it was polled."""

    def __init__(self) -> None:
        self.polls = 0
        self.cancelled = False

    @property
    def request_id(self) -> int:
        return 1

    def poll(self, now: float) -> PlanOutcome | None:
        self.polls += 1
        return None

    def cancel(self) -> None:
        self.cancelled = True


class HungService:
    backend_name = "hung"
    available = True
    game_clock = False
    warming_up = False
    max_batch_size = 1

    def __init__(self) -> None:
        self.tickets: list[NeverTicket] = []

    def submit(self, request: PlanRequest) -> NeverTicket:
        self.tickets.append(NeverTicket())
        return self.tickets[-1]

    def status(self) -> ServiceStatus:
        return ServiceStatus(backend="hung")

    def close(self) -> None:
        pass


def test_a_hung_request_never_stalls_the_frame_loop(world: str) -> None:
    _, companion, _ = populate()
    service = HungService()
    install(service=service)
    for _ in range(100):
        step()
    assert len(service.tickets) == 1
    assert service.tickets[0].polls >= 85  # polled every frame after submission, never waited on
    intent = esper.component_for_entity(companion, Intent)
    assert intent.step is not None  # GOAP kept acting
    assert esper.component_for_entity(companion, ArbiterState).mode is not Mode.EXECUTING_LLM


def test_urgent_request_cancels_the_one_in_flight(world: str) -> None:
    _, companion, _ = populate()
    service = HungService()
    plugin = install(service=service)
    for _ in range(15):
        step()
    assert len(service.tickets) == 1
    assert plugin.request_plan(companion, "player pressed L")
    step()
    step()  # decided, then sent on the next frame
    assert service.tickets[0].cancelled and len(service.tickets) == 2


def test_systems_run_in_data_flow_order(world: str) -> None:
    install(service=None)
    kinds = [type(p).__name__ for p in esper._processors]
    assert kinds == ["PerceptionSystem", "LlmPollSystem", "ArbiterSystem"]


def test_an_unavailable_service_is_never_asked_and_never_causes_bt(world: str) -> None:
    """No model installed or reachable: the game runs on GOAP/BT without counting failures."""
    _, companion, _ = populate()

    class Unavailable(HungService):
        available = False

    service = Unavailable()
    install(service=service)
    for _ in range(300):  # 30 s of game time: two cooldowns' worth of chances to ask
        step()
    state = esper.component_for_entity(companion, ArbiterState)
    assert service.tickets == []
    assert state.metrics.llm_requests == 0 and state.metrics.llm_failures == 0
    assert state.mode is not Mode.EXECUTING_LLM

"""When the arbiter's model requests leave: on the frame after the agent decided to ask, the
urgent ones all at once, routine ones at most ``max_submits_per_frame`` a frame.

A crowd's decisions cluster on the same frames (think timers fire together), and a request
costs its advice and the hand-over to the service; sending routine requests a frame later,
a few at a time, keeps that cost off the frames that are already the heaviest."""

from __future__ import annotations

import esper

from esper_arbiter.components import (
    PRIORITY_HIGH,
    Agent,
    Ammo,
    ArbiterState,
    GameClock,
    Health,
    Leader,
    LlmTask,
    MapGrid,
    Objective,
    Orders,
    PlanRequest,
    Position,
    Team,
)
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig
from esper_arbiter.systems.plugin import install


class NeverTicket:
    def __init__(self, request: PlanRequest) -> None:
        self.request = request
        self.request_id = id(self)
        self.cancelled = False

    def poll(self, now: float) -> None:
        return None

    def cancel(self) -> None:
        self.cancelled = True


class Recorder:
    """A service that never answers and notes the frame each request arrived on."""

    backend_name = "recorder"
    available = True
    game_clock = False
    warming_up = False
    max_batch_size = 1

    def __init__(self) -> None:
        self.frame = 0
        self.arrivals: list[tuple[int, int, int]] = []
        """(frame, agent, priority) per request."""
        self.tickets: list[NeverTicket] = []

    def submit(self, request: PlanRequest) -> NeverTicket:
        self.arrivals.append((self.frame, request.agent_id, request.priority))
        self.tickets.append(NeverTicket(request))
        return self.tickets[-1]

    def status(self) -> ServiceStatus:
        return ServiceStatus(backend="recorder")

    def close(self) -> None:
        pass


def populate(companions: int) -> list[int]:
    esper.create_entity(GameClock(0.0))
    esper.create_entity(MapGrid(30, 12, frozenset(), frozenset(), {"door": (28, 6)},
                                Objective("door")))
    esper.create_entity(Leader(), Position(2, 2), Health(100, 100), Team("blue"))
    esper.create_entity(Position(25, 2), Health(60, 60), Team("red"))
    return [esper.create_entity(Agent(), Position(2, 3 + (i % 8)), Health(80, 80), Team("blue"),
                                Ammo(30, 30), Orders())
            for i in range(companions)]


def run_until_all_ask(service: Recorder, agents: list[int]) -> None:
    """Until every agent has decided to ask and none has sent it yet (one frame)."""
    while len(asking(agents)) < len(agents):
        run(service, 1)
        assert service.frame < 50, "the agents never asked for a plan together"


def run(service: Recorder, frames: int, dt: float = 0.1) -> None:
    for _ in range(frames):
        service.frame += 1
        for _, clock in esper.get_component(GameClock):
            clock.t += dt
        esper.process()


def asking(agents: list[int]) -> list[int]:
    """Agents that decided to ask and have not sent it yet."""
    states = [(a, esper.try_component(a, ArbiterState)) for a in agents]
    return [a for a, st in states if st is not None and st.pending_request is not None]


def test_a_routine_request_leaves_on_the_frame_after_the_decision(world: str) -> None:
    (agent,) = populate(1)
    service = Recorder()
    install(service=service)
    while not asking([agent]):
        run(service, 1)
        assert service.frame < 50, "the agent never asked for a plan"
    decided_on = service.frame
    assert service.arrivals == [] and not esper.has_component(agent, LlmTask)
    run(service, 1)
    assert [(f, a) for f, a, _ in service.arrivals] == [(decided_on + 1, agent)]
    assert esper.has_component(agent, LlmTask) and asking([agent]) == []
    assert esper.component_for_entity(agent, ArbiterState).metrics.llm_requests == 1


def test_a_crowd_that_asks_together_is_sent_a_few_a_frame(world: str) -> None:
    agents = populate(7)
    service = Recorder()
    install(service=service, config=ArbiterConfig(max_submits_per_frame=3))
    run_until_all_ask(service, agents)
    assert service.arrivals == []
    decided_on = service.frame
    run(service, 3)
    per_frame = [sum(1 for f, _, _ in service.arrivals if f == decided_on + k) for k in (1, 2, 3)]
    assert per_frame == [3, 3, 1]
    assert sorted(a for _, a, _ in service.arrivals) == agents  # each once
    assert all(esper.has_component(a, LlmTask) for a in agents)


def test_urgent_requests_go_out_on_the_next_frame_past_the_cap(world: str) -> None:
    agents = populate(4)
    service = Recorder()
    plugin = install(service=service, config=ArbiterConfig(max_submits_per_frame=1))
    run_until_all_ask(service, agents)
    for agent in agents:  # the player orders everyone about before any routine one left
        assert plugin.request_plan(agent, "the player pressed L")
    run(service, 1)  # every one of them urgent now: all go, the cap of 1 notwithstanding
    assert sorted(service.arrivals) == [(service.frame, a, PRIORITY_HIGH) for a in agents]
    run(service, 3)
    assert len(service.arrivals) == len(agents)  # nothing left over to send twice


def test_an_agent_gone_before_its_request_left_sends_nothing(world: str) -> None:
    agents = populate(3)
    service = Recorder()
    install(service=service)
    run_until_all_ask(service, agents)
    esper.delete_entity(agents[0], immediate=True)
    esper.remove_component(agents[1], Agent)  # no longer an agent of ours
    run(service, 1)
    assert [a for _, a, _ in service.arrivals] == [agents[2]]

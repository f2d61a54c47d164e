"""What a foreign host game hit when it dropped the plugin in, each as a test.

Every test builds a small esper world from the public API only (``esper_arbiter``), the way a
host would, and checks what that host would notice: steps it refuses are not re-issued every
frame, orders take over at once, ``request_plan`` says why it cannot, agents that come and go
or lack a component are handled with one clear message, and neutrals are never targets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import ClassVar

import esper
import pytest

import esper_arbiter as ea
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.presets.squad import Fact, squad_domain


@dataclass(frozen=True, slots=True)
class Chop(ea.Step):
    """A step of a host's own domain (a farm), for the tests of domains from scratch."""

    act: ClassVar[str] = "Chop"


@dataclass(frozen=True, slots=True)
class Rest(ea.Step):
    act: ClassVar[str] = "Rest"


FARM_TOOLS = ea.ToolRegistry([ea.ToolSpec("Chop", "chop wood", Chop),
                              ea.ToolSpec("Rest", "rest a while", Rest)])


def farm_snapshot() -> ea.WorldSnapshot:
    return ea.WorldSnapshot(t=1.0, me=ea.UnitView(1, 2, 2, 10, 10, "farm"), leader=None,
                            enemies=(), allies=(),
                            grid=ea.GridView(8, 8, frozenset(), frozenset()))


def arena(objective: ea.Objective | None = None) -> ea.MapGrid:
    grid = ea.MapGrid(24, 12, pois={"relay": (20, 6)}, objective=objective)
    esper.create_entity(grid)
    esper.create_entity(ea.GameClock(0.0))
    return grid


def step(dt: float = 1 / 30) -> float:
    clock = esper.get_component(ea.GameClock)[0][1]
    clock.t += dt
    esper.process()
    return clock.t


def test_a_step_the_host_refuses_is_not_reissued_every_frame(world: str) -> None:
    arena()
    me = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                             ea.Team("blue"), ea.Ammo(30, 30))
    esper.create_entity(ea.Position(6, 6), ea.Health(60, 60), ea.Team("red"))
    events: list[ea.ArbiterEvent] = []
    ea.install(on_event=lambda _e, ev: events.append(ev))
    refused = 0
    for _ in range(600):  # 20 s at 30 Hz, refusing every Attack ("hold fire")
        step()
        intent = esper.component_for_entity(me, ea.Intent)
        if intent.status is ea.IntentStatus.RUNNING and isinstance(intent.step, ea.Attack):
            intent.fail("hold fire")
            refused += 1
        elif intent.status is ea.IntentStatus.RUNNING:
            intent.finish()
    assert 0 < refused <= 12, f"refused Attack {refused} times in 20 s"
    said = [e.text for e in events if "hold fire" in e.text]
    assert len(said) == refused  # once per refusal, each naming the backoff
    assert all("not retried for" in t for t in said)
    assert esper.component_for_entity(me, ea.ArbiterState).metrics.goap_actions > refused


def test_an_order_preempts_a_running_model_step_of_the_same_kind(world: str) -> None:
    arena(ea.Objective("relay"))
    me = esper.create_entity(ea.Agent(), ea.Position(2, 6), ea.Health(80, 80), ea.Team("blue"),
                             ea.Orders())
    domain = squad_domain(orders={"follow": Fact.ORDER_FOLLOW, "take": Fact.ORDER_OBJECTIVE})
    ea.install(domain=domain, service=ScriptedPlanService(seed=1, delay_s=0.1))
    intent = esper.component_for_entity
    for _ in range(120):
        step()
        if esper.component_for_entity(me, ea.ArbiterState).mode is ea.Mode.EXECUTING_LLM:
            break
    state = esper.component_for_entity(me, ea.ArbiterState)
    assert state.mode is ea.Mode.EXECUTING_LLM
    before = intent(me, ea.Intent).serial
    orders = esper.component_for_entity(me, ea.Orders)
    orders.order, orders.serial = "take", orders.serial + 1
    step()
    now = intent(me, ea.Intent)
    assert state.mode is ea.Mode.GOAP and state.plan is None
    assert now.serial > before and now.label == "GOAP"
    assert now.step == ea.MoveTo(20, 6)  # straight for the relay, not the old walk


def test_request_plan_says_why_when_nothing_would_be_sent(world: str) -> None:
    arena()
    crowd = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 2), ea.Health(10, 10),
                                ea.Team("blue"))
    smart = esper.create_entity(ea.Agent(), ea.Position(3, 2), ea.Health(10, 10),
                                ea.Team("blue"))
    plugin = ea.install()
    step()
    assert plugin.request_plan(smart) is False and "no model service" in plugin.last_refusal
    plugin.uninstall()
    plugin = ea.install(service=ScriptedPlanService())
    assert plugin.request_plan(crowd) is False and "use_llm=False" in plugin.last_refusal
    state = esper.component_for_entity(crowd, ea.ArbiterState)
    assert state.pending_request is None
    assert plugin.request_plan(smart) is True


def test_agents_that_move_between_entities_in_one_frame_are_followed(world: str) -> None:
    arena()
    a = esper.create_entity(ea.Agent(), ea.Position(2, 2), ea.Health(10, 10), ea.Team("blue"))
    b = esper.create_entity(ea.Position(4, 2), ea.Health(10, 10), ea.Team("blue"))
    ea.install()
    step()
    assert esper.has_component(a, ea.Perception)
    esper.remove_component(a, ea.Agent)
    esper.add_component(b, ea.Agent())  # same count of agents as before
    step()
    assert esper.has_component(b, ea.Perception) and esper.has_component(b, ea.Intent)
    assert not esper.has_component(a, ea.Perception)


def test_an_incomplete_agent_is_named_once_and_adopted_once_complete(
    world: str, caplog: pytest.LogCaptureFixture
) -> None:
    arena()
    ent = esper.create_entity(ea.Agent(), ea.Health(10, 10), ea.Team("blue"))
    ea.install()
    with caplog.at_level(logging.WARNING, logger="esper_arbiter"):
        for _ in range(30):
            step()  # must not raise KeyError
    said = [r.getMessage() for r in caplog.records if f"entity {ent}" in r.getMessage()]
    assert len(said) == 1 and "Position" in said[0]
    esper.add_component(ent, ea.Position(3, 3))
    step()
    step()
    assert esper.component_for_entity(ent, ea.Intent).step is not None


def test_no_map_or_clock_is_said_once_and_nothing_breaks(
    world: str, caplog: pytest.LogCaptureFixture
) -> None:
    esper.create_entity(ea.Agent(), ea.Position(2, 2), ea.Health(10, 10), ea.Team("blue"))
    ea.install()
    with caplog.at_level(logging.WARNING, logger="esper_arbiter"):
        for _ in range(10):
            esper.process()
    text = [r.getMessage() for r in caplog.records]
    assert sum("no MapGrid" in t for t in text) == 1
    assert sum("no GameClock" in t for t in text) == 1


def test_neutrals_are_never_offered_as_targets(world: str) -> None:
    arena()
    domain = squad_domain(factions=ea.Factions.of(neutral=["civilian"]))
    me = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                             ea.Team("blue"), ea.Ammo(30, 30))
    civ = esper.create_entity(ea.Position(5, 6), ea.Health(20, 20), ea.Team("civilian"))
    foe = esper.create_entity(ea.Position(9, 6), ea.Health(60, 60), ea.Team("red"))
    ea.install(domain=domain)
    targets: set[int] = set()
    for _ in range(300):
        step()
        intent = esper.component_for_entity(me, ea.Intent)
        tid = getattr(intent.step, "target_id", None)
        if tid is not None:
            targets.add(tid)
        if intent.status is ea.IntentStatus.RUNNING:
            intent.finish()
    assert civ not in targets and foe in targets
    snap = esper.component_for_entity(me, ea.Perception).snapshot
    assert [u.id for u in snap.neutrals] == [civ] and [u.id for u in snap.enemies] == [foe]
    schema = domain.tools.plan_schema(snap, 4, domain.rules)
    assert civ not in [
        i for b in schema["properties"]["steps"]["items"]["anyOf"]
        for i in b["properties"].get("target_id", {}).get("enum", [])
        if b["properties"]["act"]["const"] in ("Attack", "CoverFire", "Approach")
    ]


def test_without_a_leader_or_orders_agents_head_for_the_objective(world: str) -> None:
    arena(ea.Objective("relay"))
    me = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                             ea.Team("blue"))
    ea.install()
    step()
    assert esper.component_for_entity(me, ea.Intent).step == ea.MoveTo(20, 6)


def test_time_in_modes_counts_a_round_that_never_changed_mode(world: str) -> None:
    arena()
    me = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                             ea.Team("blue"))
    ea.install()
    t = 0.0
    for _ in range(90):
        t = step()
    state = esper.component_for_entity(me, ea.ArbiterState)
    assert state.time_in_modes(t)["GOAP"] == pytest.approx(t, abs=0.05)


def test_a_hosts_own_fact_is_read_from_the_snapshot_and_satisfies_its_goal() -> None:
    from tests.planning.snapshots import hello_snapshot

    done = ea.HOST_FACT_BASE
    goal = ea.GoapGoal("host_goal", {done: True}, priority=99.0)
    act = ea.GoapAction("do_it", {done: False}, {done: True})
    wants = squad_domain(extra_actions=[act], extra_goals=[goal],
                         extra_grounders={"do_it": lambda p, g: ea.Scan()})
    assert wants.brain.decide(hello_snapshot()).goal == "host_goal"
    holds = squad_domain(extra_actions=[act], extra_goals=[goal],
                         extra_grounders={"do_it": lambda p, g: ea.Scan()},
                         extra_facts=lambda p: done)
    assert holds.brain.facts(hello_snapshot()) & done
    assert holds.brain.decide(hello_snapshot()).goal != "host_goal"


def test_a_third_party_service_validates_with_the_domain() -> None:
    from tests.planning.snapshots import hello_snapshot

    domain = squad_domain()
    assert domain.validate({"steps": [{"act": "Scan"}]}, hello_snapshot()).ok
    bad = domain.validate([{"act": "Fly"}], hello_snapshot())
    assert not bad.ok and "unknown tool 'Fly'" in bad.summary()


def test_an_agent_carrying_out_a_model_step_costs_what_a_goap_step_costs(
    world: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esper_arbiter.systems.perception import FrameView

    arena(ea.Objective("relay"))
    me = esper.create_entity(ea.Agent(), ea.Position(2, 6), ea.Health(80, 80), ea.Team("blue"))
    ea.install(service=ScriptedPlanService(seed=1, delay_s=0.1))
    builds: list[int] = []
    real = FrameView.snapshot_for

    def counting(self: FrameView, entity: int) -> ea.WorldSnapshot:
        builds.append(entity)
        return real(self, entity)

    monkeypatch.setattr(FrameView, "snapshot_for", counting)

    def run_frames(n: int) -> int:
        builds.clear()
        for _ in range(n):
            step()  # the step keeps running: the host never finishes it
        return len(builds)

    goap = run_frames(60)
    state = esper.component_for_entity(me, ea.ArbiterState)
    for _ in range(300):
        if state.mode is ea.Mode.EXECUTING_LLM:
            break
        step()
    assert state.mode is ea.Mode.EXECUTING_LLM
    llm = run_frames(60)  # 2 s of a running model step
    assert llm <= max(goap, 1) + 2, (goap, llm)
    assert llm <= 8  # a look every ~0.5 s, not a snapshot every frame


def test_dead_enemies_do_not_crowd_live_ones_out_of_a_snapshot(world: str) -> None:
    arena()
    me = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                             ea.Team("blue"))
    for i in range(12):  # a heap of bodies right beside the agent
        esper.create_entity(ea.Position(3 + i % 3, 5 + i // 3), ea.Health(0, 40), ea.Team("red"))
    live = esper.create_entity(ea.Position(12, 6), ea.Health(40, 40), ea.Team("red"))
    ea.install()
    step()
    snap = esper.component_for_entity(me, ea.Perception).snapshot
    assert [u.id for u in snap.enemies] == [live]


# -- mistakes a stranger made on a first game (each was silent, or a traceback frames later) --


def test_install_refuses_a_settings_dict_and_a_second_install(world: str) -> None:
    arena()
    with pytest.raises(TypeError, match=r"ArbiterConfig\(\*\*settings\)"):
        ea.install(config={"think_interval_s": 0.5})  # type: ignore[arg-type]
    plugin = ea.install()
    with pytest.raises(RuntimeError, match=r"already installed.*uninstall"):
        ea.install()
    plugin.uninstall()
    ea.install()  # after uninstall() it may be installed again
    assert len(esper._processors) == 3


@pytest.mark.parametrize(("field", "value"), [
    ("think_interval_s", -1), ("think_interval_s", float("nan")), ("llm_cooldown_s", 0),
    ("max_plan_steps", 0), ("max_decisions_per_frame", 0), ("max_submits_per_frame", 0),
    ("bt_hold_s", -2.0),
    ("max_plan_steps", True),
])
def test_arbiter_config_names_a_value_it_cannot_run_on(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"ArbiterConfig.{field}: expected"):
        ea.ArbiterConfig(**{field: value})  # type: ignore[arg-type]


def test_an_objective_naming_no_point_of_interest_is_said_once(
    world: str, caplog: pytest.LogCaptureFixture,
) -> None:
    arena(ea.Objective("crat"))
    esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                        ea.Team("blue"))
    ea.install()
    with caplog.at_level(logging.WARNING, logger="esper_arbiter"):
        for _ in range(30):
            step()
    said = [r.getMessage() for r in caplog.records if "'crat'" in r.getMessage()]
    assert said == ["the MapGrid's objective names point of interest 'crat', which is not in "
                    "its pois (relay): agents have no objective"]


def test_an_agent_off_the_map_or_in_a_wall_is_said_once(
    world: str, caplog: pytest.LogCaptureFixture,
) -> None:
    esper.create_entity(ea.MapGrid(24, 12, walls=frozenset({(5, 5)})))
    esper.create_entity(ea.GameClock(0.0))
    off = esper.create_entity(ea.Agent(use_llm=False), ea.Position(40, 40), ea.Health(80, 80),
                              ea.Team("blue"))
    wall = esper.create_entity(ea.Agent(use_llm=False), ea.Position(5, 5), ea.Health(80, 80),
                               ea.Team("blue"))
    ea.install()
    with caplog.at_level(logging.WARNING, logger="esper_arbiter"):
        for _ in range(30):
            step()
    said = sorted(r.getMessage() for r in caplog.records
                  if "cannot walk anywhere" in r.getMessage())
    assert said == [
        f"entity {off} is an Agent at (40, 40), outside the 24x12 MapGrid: it cannot walk "
        "anywhere",
        f"entity {wall} is an Agent at (5, 5), inside a wall of the MapGrid: it cannot walk "
        "anywhere",
    ]


def test_a_tool_is_named_as_its_steps_act() -> None:
    with pytest.raises(ValueError, match="builds MoveTo, whose act is 'MoveTo'"):
        ea.ToolSpec("Yell", "shout", ea.MoveTo,
                    (ea.ArgSpec("x", ea.ArgKind.X), ea.ArgSpec("y", ea.ArgKind.Y)))


def test_a_hit_brings_a_backed_off_agent_to_look_again_soon(world: str) -> None:
    arena(ea.Objective("relay"))
    me = esper.create_entity(ea.Agent(use_llm=False), ea.Position(2, 6), ea.Health(80, 80),
                             ea.Team("blue"), ea.Ammo(30, 30))
    ea.install(config=ea.ArbiterConfig(think_interval_s=0.5, think_interval_max_s=4.0))
    t = step()
    state = esper.component_for_entity(me, ea.ArbiterState)
    for _ in range(300):  # the host never finishes the step: the agent only re-thinks it
        t = step()
        if state.think_backoff >= 3:
            break
    assert state.think_backoff >= 3, "a step kept at every re-think should back off"
    assert state.wake_at - t > 1.0
    esper.component_for_entity(me, ea.Health).hp -= 10  # shot
    t = step()
    assert state.think_backoff == 0
    assert state.wake_at - t <= 0.5 * 1.5  # think_interval_s, at most the phase's spread


def test_a_back_off_ceiling_below_the_think_interval_is_refused() -> None:
    with pytest.raises(ValueError, match=r"think_interval_max_s \(0.2\) must be >= "):
        ea.ArbiterConfig(think_interval_s=0.5, think_interval_max_s=0.2)
    assert ea.ArbiterConfig(think_interval_s=0.5, think_interval_max_s=0.5)  # no back-off


def test_the_domain_advisor_runs_on_the_game_thread_and_its_options_reach_the_prompt(
    world: str,
) -> None:
    import threading

    from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend
    from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig

    arena(ea.Objective("relay"))
    me = esper.create_entity(ea.Agent(), ea.Position(2, 6), ea.Health(80, 80), ea.Team("blue"))
    calls: list[int] = []

    def advise(snap: ea.WorldSnapshot) -> list[tuple[ea.ActionStep, str]]:
        # a host's advisor may read its own components: that is only safe on the game thread
        calls.append(threading.get_ident())
        return [(ea.Scan(), f"look around, hp {esper.component_for_entity(me, ea.Health).hp}")]

    backend = FakeBackend(['{"steps": [{"act": "Scan"}]}'] * 4)
    service = LlmPlanService(backend, ServiceConfig(probe_on_start=False, max_concurrent=1))
    ea.install(domain=squad_domain().replace(advise=advise), service=service)
    try:
        for _ in range(300):
            step()
            if backend.calls:
                break
            time.sleep(0.01)  # the service answers on the wall clock
        assert backend.calls, "no request reached the backend"
        esper.component_for_entity(me, ea.Health).hp = 10  # after the request went out
        prompt = "\n".join(m["content"] for m in backend.calls[0].messages)
    finally:
        service.close()
    assert calls and set(calls) == {threading.get_ident()}
    assert "look around, hp 80" in prompt  # what the advisor said when the request went out


def test_the_scripted_service_plans_a_domain_of_your_own_from_its_advice() -> None:
    tools = FARM_TOOLS
    brain = ea.GoapBrain([ea.GoapAction("rest", {}, {1: True})], [ea.GoapGoal("rested", {1: True})],
                         {"rest": lambda _p, _g: Rest()}, lambda snap: (snap, 0))
    farm = ea.Domain("farm", tools, ea.Rules(), brain, ea.bt.Action("rest", lambda _ctx: Rest()),
                     "You are a farm hand.")
    snap = farm_snapshot()
    service = ScriptedPlanService(delay_s=0.0)
    ticket = service.submit(ea.PlanRequest(1, snap, domain=farm))
    out = ticket.poll(1.0)
    assert isinstance(out, ea.PlanFailure) and "farm" in out.message  # no advisor: says so
    advised = farm.replace(advise=lambda _s: [(Chop(), "wood sells"), (Rest(), "tired")])
    out = service.submit(ea.PlanRequest(1, snap, domain=advised)).poll(1.0)
    assert isinstance(out, ea.PlanReady)
    assert out.plan.steps == (Chop(), Rest())


def test_a_domain_s_order_facts_reach_its_brain_without_the_reader_mapping_them() -> None:
    told_to_rest, busy = 1, 2
    brain = ea.GoapBrain(
        [ea.GoapAction("chop", {told_to_rest: False}, {busy: True}),
         ea.GoapAction("rest", {told_to_rest: True}, {busy: True})],
        [ea.GoapGoal("keep_busy", {busy: True}, priority=10.0)],
        {"chop": lambda _p, _g: Chop(), "rest": lambda _p, _g: Rest()},
        lambda snap: (snap, 0),  # the host's reader knows nothing of orders
    )
    tools = FARM_TOOLS
    ea.Domain("farm", tools, ea.Rules(), brain, ea.bt.Action("rest", lambda _ctx: Rest()),
              "You are a farm hand.", orders={"rest": "stop and rest"},
              order_facts={"Rest": told_to_rest})
    snap = farm_snapshot()
    decided = brain.decide(snap)
    assert decided is not None and decided.step == Chop()
    decided = brain.decide(replace(snap, orders=" rest "))
    assert decided is not None and decided.step == Rest()


def test_install_has_the_model_read_the_game_s_own_system_prompt_before_it_is_asked(
    world: str,
) -> None:
    from collections.abc import Sequence

    from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend
    from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig

    class WarmBackend(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.warmed: list[str] = []

        async def warm_up(self, messages: Sequence[dict[str, str]]) -> None:
            self.warmed.append(messages[0]["content"])

    arena()
    backend = WarmBackend()
    service = LlmPlanService(backend, ServiceConfig(probe_on_start=False, warm_up=True))
    try:
        domain = squad_domain().replace(role="You are Brann, a dwarf who guards the mine.")
        ea.install(domain=domain, service=service)
        deadline = time.monotonic() + 5.0
        while len(backend.warmed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        service.close()
    assert len(backend.warmed) == 2, backend.warmed
    assert "Brann" not in backend.warmed[0]  # at start it knows no game yet
    assert backend.warmed[1].startswith("You are Brann")  # install() told it which
    assert not service.warming_up

"""A side with one leader per squad: each agent follows the leader it names.

A host with many squads (the stress round, a strategy game) gives each squad leader
``Leader`` and each member ``Agent(leader=...)``; members walk to *their* leader, not to
whichever leader the side happens to list first.
"""

from __future__ import annotations

import esper

import esper_arbiter as ea


def arena() -> None:
    esper.create_entity(ea.MapGrid(40, 12))
    esper.create_entity(ea.GameClock(0.0))


def unit(x: int, y: int, *extra: object) -> int:
    return esper.create_entity(ea.Position(x, y), ea.Health(80, 80), ea.Team("blue"), *extra)


def run(seconds: float) -> None:
    clock = esper.get_component(ea.GameClock)[0][1]
    for _ in range(int(seconds * 30)):
        clock.t += 1 / 30
        esper.process()
        for ent, intent in esper.get_component(ea.Intent):
            step = intent.step
            if intent.status is ea.IntentStatus.RUNNING and isinstance(step, ea.MoveTo):
                pos = esper.component_for_entity(ent, ea.Position)
                pos.x, pos.y = float(step.x), float(step.y)  # a host that teleports
                intent.finish()


def test_each_member_follows_the_leader_it_names(world: str) -> None:
    arena()
    west = unit(2, 6, ea.Leader())
    east = unit(37, 6, ea.Leader())
    a = unit(20, 3, ea.Agent(use_llm=False, leader=west))
    b = unit(20, 9, ea.Agent(use_llm=False, leader=east))
    c = unit(20, 6, ea.Agent(use_llm=False))  # names none: the side's first leader
    ea.install()
    run(2.0)
    snap = {e: esper.component_for_entity(e, ea.Perception).snapshot for e in (a, b, c)}
    assert snap[a].leader is not None and snap[a].leader.id == west
    assert snap[b].leader is not None and snap[b].leader.id == east
    assert snap[c].leader is not None and snap[c].leader.id == min(west, east)
    pos = {e: esper.component_for_entity(e, ea.Position) for e in (a, b)}
    assert pos[a].x < 8, f"a walked to x={pos[a].x}, not to its leader in the west"
    assert pos[b].x > 31, f"b walked to x={pos[b].x}, not to its leader in the east"


def test_a_leader_that_loses_leader_leaves_its_squad_without_one(world: str) -> None:
    arena()
    sergeant = unit(2, 6, ea.Leader())
    unit(37, 6, ea.Leader())
    member = unit(20, 6, ea.Agent(use_llm=False, leader=sergeant))
    ea.install()
    run(0.2)
    esper.remove_component(sergeant, ea.Leader)  # fell, or was demoted by the host
    run(0.2)
    snap = esper.component_for_entity(member, ea.Perception).snapshot
    assert snap.leader is None  # not silently re-assigned to the other squad's leader


def test_a_leader_that_is_an_agent_itself_follows_no_one(world: str) -> None:
    arena()
    unit(2, 6, ea.Leader())
    sergeant = esper.create_entity()
    esper.add_component(sergeant, ea.Position(30, 6))
    esper.add_component(sergeant, ea.Health(80, 80))
    esper.add_component(sergeant, ea.Team("blue"))
    esper.add_component(sergeant, ea.Leader())
    esper.add_component(sergeant, ea.Agent(use_llm=False, leader=sergeant))
    ea.install()
    run(0.2)
    assert esper.component_for_entity(sergeant, ea.Perception).snapshot.leader is None


def test_a_decision_budget_spreads_a_crowd_that_wakes_together(world: str) -> None:
    """200 agents spawned in one frame: with ``max_decisions_per_frame=50`` the first frame
    decides for 50 of them, the next for the next 50 (those held back go first), and after
    four frames everyone has a step."""
    from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

    esper.create_entity(ea.MapGrid(60, 40, pois={"exit": (58, 20)},
                                   objective=ea.Objective("exit")))
    esper.create_entity(ea.GameClock(0.0))
    crowd = [unit(2 + i % 20, 2 + i // 20, ea.Agent(use_llm=False)) for i in range(200)]
    ea.install(config=ArbiterConfig(max_decisions_per_frame=50))
    clock = esper.get_component(ea.GameClock)[0][1]
    decided: list[int] = []
    for _ in range(4):
        clock.t += 1 / 30
        esper.process()
        decided.append(sum(esper.component_for_entity(e, ea.Intent).step is not None
                           for e in crowd))
    assert decided == [50, 100, 150, 200]

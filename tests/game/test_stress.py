"""The squads stress round: many small fights, each squad following its own leader."""

from __future__ import annotations

import math
import time

import esper
import pytest

from esper_arbiter.components import Agent, Leader, Perception, Position
from esper_arbiter.game.stress import MAX_SQUAD, build_squad_scenario
from esper_arbiter.game.world import GameSession


def test_every_squad_has_one_leader_and_the_counts_add_up() -> None:
    sc = build_squad_scenario(95, seed=3, squad=10)
    assert len(sc.companions) == 95 and len(sc.enemies) == 95
    leaders = [u for u in sc.companions if u.leads]
    assert len(leaders) == 10  # nine squads of ten, one of five
    names = {u.name for u in leaders}
    assert all(u.leader in names for u in sc.companions if not u.leads)
    assert all(u.order == "hold" for u in leaders)
    tiles = [u.pos for u in (sc.player, *sc.companions, *sc.enemies)]
    assert len(set(tiles)) == len(tiles)  # nobody spawns on anybody
    assert all(0 <= x < sc.width and 0 <= y < sc.height for x, y in tiles)
    assert not set(tiles) & sc.walls
    assert build_squad_scenario(95, seed=3, squad=10) == sc  # same inputs, same round


def test_a_thousand_agents_build_in_well_under_a_second() -> None:
    t0 = time.perf_counter()
    build_squad_scenario(1000, seed=1)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("n, squad", [(0, 10), (10, 0), (10, MAX_SQUAD + 1), (10_000, 1)])
def test_impossible_layouts_say_why(n: int, squad: int) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        build_squad_scenario(n, squad=squad)


def test_squads_follow_their_own_leader_into_their_own_fight() -> None:
    session = GameSession(build_squad_scenario(60, seed=2, squad=10), seed=2)
    try:
        for _ in range(90):
            session.step(1 / 30)
        session.activate()
        followed: dict[int, set[int]] = {}
        for ent, (agent, perception) in esper.get_components(Agent, Perception):
            if agent.leader is None or agent.leader == ent:
                continue
            leader = perception.snapshot.leader
            assert leader is not None and leader.id == agent.leader
            assert esper.has_component(agent.leader, Leader)
            followed.setdefault(agent.leader, set()).add(ent)
        assert len(followed) == 6  # six squads, each its own leader
        # each squad stays around its own sector: members nearer their leader than the map
        for lead, members in followed.items():
            lp = esper.component_for_entity(lead, Position)
            spread = [math.dist((lp.x, lp.y), (p.x, p.y)) for p in
                      (esper.component_for_entity(m, Position) for m in members)]
            assert sum(spread) / len(spread) < 8, f"squad of {lead} spread {spread}"
        assert session.events.counts.get("shot", 0) > 20  # and the squads are fighting
    finally:
        session.close()

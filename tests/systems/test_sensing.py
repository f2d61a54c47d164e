"""Sensing's ``max_speed``: what perception's spatial index allows for between its rebuilds."""

from __future__ import annotations

from dataclasses import replace

import esper
import pytest

import esper_arbiter as ea
from esper_arbiter.components.agent import Perception
from esper_arbiter.components.sensing import Sensing
from esper_arbiter.systems.planning.rules import DEFAULT_RULES
from esper_arbiter.systems.presets.squad import squad_domain


def test_a_speed_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="max_speed"):
        Sensing(max_speed=0.0)


def test_the_squad_preset_senses_at_the_speed_its_rules_walk() -> None:
    assert squad_domain().sensing.max_speed == DEFAULT_RULES.move_speed
    fast = replace(DEFAULT_RULES, move_speed=6.0)
    assert squad_domain(rules=fast).sensing.max_speed == 6.0
    assert squad_domain(sensing=Sensing(radius=30.0)).sensing.max_speed == Sensing().max_speed


def test_a_unit_moving_at_the_stated_speed_is_nearest_as_soon_as_it_is(world: str) -> None:
    """Between two rebuilds of the index a unit may walk ``max_speed`` tiles a second; one that
    crossed into a nearer cell meanwhile is still listed first."""
    esper.create_entity(ea.MapGrid(80, 40))
    for x in range(80):  # a crowd far off, so the index searches by cells, not by a full scan
        for y in range(30, 40):
            esper.create_entity(ea.Position(float(x), float(y)), ea.Health(50, 50),
                                ea.Team("blue"))
    clock = ea.GameClock(0.0)
    esper.create_entity(clock)
    me = esper.create_entity(ea.Agent(), ea.Position(10.0, 10.0), ea.Health(50, 50),
                             ea.Team("blue"))
    esper.create_entity(ea.Position(12.5, 10.0), ea.Health(50, 50), ea.Team("blue"))
    runner_pos = ea.Position(16.0, 10.0)
    runner = esper.create_entity(runner_pos, ea.Health(50, 50), ea.Team("blue"))
    sensing = Sensing(max_allies=1, max_speed=16.0)
    ea.install(domain=squad_domain(sensing=sensing), service=None)
    esper.process()  # the first frame buckets everyone
    perception = esper.component_for_entity(me, Perception)
    assert [u.x for u in perception.snapshot.allies] == [12]  # the walker at 2.5 tiles
    for _ in range(7):  # 0.23 s at 30 Hz: the index is not rebuilt meanwhile
        clock.t += 1 / 30
        runner_pos.x -= 16.0 / 30  # 3.7 tiles in all: at 12.3, nearer than the walker
        esper.process()
    assert [u.id for u in perception.snapshot.allies] == [runner]

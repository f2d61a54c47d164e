"""A small arena for rule tests: one esper world with only the game's ActionSystem and
VitalsSystem, so a test orders units around by hand and watches what the rules do."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import esper
import pytest

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.agent import Intent, Mode
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    GameClock,
    Health,
    Leader,
    MapGrid,
    Name,
    Position,
    Team,
)
from esper_arbiter.game.actions import ACTION_PRIORITY, ActionSystem
from esper_arbiter.game.events import GameEventLog
from esper_arbiter.game.sim import SimContext, issue
from esper_arbiter.game.state import Activity, Combatant, Motion
from esper_arbiter.game.vitals import VITALS_PRIORITY, VitalsSystem
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

Tile = tuple[int, int]
DT = 1.0 / 30.0
_ids = itertools.count(1)


class Arena:
    """A fresh esper world with a map, a clock, a player and the game's rule systems."""

    def __init__(
        self,
        width: int = 12,
        height: int = 8,
        walls: frozenset[Tile] = frozenset(),
        cover: frozenset[Tile] = frozenset(),
        player_at: Tile = (0, 0),
        exit_at: Tile | None = None,
        seed: int = 0,
        rules: Rules = DEFAULT_RULES,
        bleed_out_s: float = 12.0,
    ) -> None:
        self.world = f"test-arena-{next(_ids)}"
        self.previous = esper.current_world
        esper.switch_world(self.world)
        self.rules = rules
        self.map = MapGrid(width, height, walls, cover, {"door": exit_at or (width - 1, 0)})
        esper.create_entity(self.map)
        self.clock = GameClock(0.0)
        esper.create_entity(self.clock)
        self.events = GameEventLog()
        self.player = self.spawn("player", player_at, "blue", hp=100.0)
        esper.add_component(self.player, Leader())
        self.ctx = SimContext(
            rules=rules, rng=random.Random(seed), events=self.events, clock=self.clock,
            grid=self.map, player=self.player, extraction_tile=exit_at or (width - 1, 0),
            bleed_out_s=bleed_out_s, revive_hp_fraction=0.3,
        )
        self.actions = ActionSystem(self.ctx)
        esper.add_processor(self.actions, ACTION_PRIORITY)
        esper.add_processor(VitalsSystem(self.ctx), VITALS_PRIORITY)
        self.frames = 0

    def spawn(
        self, name: str, at: Tile, side: str, hp: float = 50.0, rounds: int = 30,
        capacity: int = 30, reserve: int = 30, accuracy: float = 1.0, damage: float = 10.0,
    ) -> int:
        return esper.create_entity(
            Position(float(at[0]), float(at[1])), Health(hp, hp), Team(side), Name(name),
            Ammo(rounds, capacity, reserve), Combatant(accuracy, damage), Cooldowns(),
            Intent(), Motion(), Activity(),
        )

    def order(self, ent: int, step: ActionStep) -> Intent:
        intent = esper.component_for_entity(ent, Intent)
        issue(intent, step, self.clock.t, "test", Mode.GOAP)
        return intent

    def step(self) -> None:
        esper.switch_world(self.world)
        self.frames += 1
        self.clock.t = self.frames * DT
        self.ctx.dt = DT
        esper.process()

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / DT)):
            self.step()

    def run_until(self, done: Callable[[], bool], limit: float = 30.0) -> float:
        """Step until ``done()``; returns the game time it took. Fails the test at ``limit``."""
        start = self.clock.t
        while not done():
            if self.clock.t - start > limit:
                raise AssertionError(f"condition not reached within {limit} s")
            self.step()
        return self.clock.t - start

    def pos(self, ent: int) -> Position:
        return esper.component_for_entity(ent, Position)

    def hp(self, ent: int) -> Health:
        return esper.component_for_entity(ent, Health)

    def intent(self, ent: int) -> Intent:
        return esper.component_for_entity(ent, Intent)

    def close(self) -> None:
        if esper.current_world == self.world:
            esper.switch_world(self.previous if self.previous != self.world else "default")
        esper.delete_world(self.world)


@pytest.fixture
def make_arena() -> Iterator[Callable[..., Arena]]:
    """Build arenas with :class:`Arena`'s arguments; each is torn down after the test."""
    made: list[Arena] = []

    def make(**kwargs: object) -> Arena:
        arena = Arena(**kwargs)  # type: ignore[arg-type]
        made.append(arena)
        return arena

    yield make
    for arena in reversed(made):
        arena.close()

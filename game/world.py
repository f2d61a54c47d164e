"""GameSession: one hello_companion round in its own esper world, stepped on a fixed time step.

The session builds the entities of a :class:`~game.scenario.Scenario`, installs the arbiter
plugin (Perception 300, LlmPoll 200, Arbiter 100) and the game's own systems (Player 400,
EnemyAI 90, Action 50, Vitals 40), and advances the round with :meth:`GameSession.step`.
It never draws anything: a front end reads components (after :meth:`GameSession.activate`)
and the session's event logs, and talks back only through the small control methods
(:meth:`give_order`, :meth:`request_plan`, :meth:`set_player_move`, :meth:`set_autopilot`).

All game randomness comes from one ``random.Random(seed)`` (:attr:`GameSession.rng`), game time
from one GameClock, so the same scenario, seed, service and time step give the same round.
"""

from __future__ import annotations

import gc
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

import esper

from esper_arbiter.components.agent import (
    Agent,
    ArbiterEvent,
    ArbiterMetrics,
    ArbiterState,
    Intent,
    Mode,
)
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    GameClock,
    Health,
    Leader,
    MapGrid,
    Morale,
    Name,
    Orders,
    Position,
    Team,
)
from esper_arbiter.game.actions import ACTION_PRIORITY, ActionSystem
from esper_arbiter.game.domain import companion_domain, extraction_objective
from esper_arbiter.game.enemy_ai import ENEMY_AI_PRIORITY, EnemyAISystem
from esper_arbiter.game.events import GameEventLog
from esper_arbiter.game.player import PLAYER_PRIORITY, PlayerSystem
from esper_arbiter.game.scenario import ORDERS, Scenario, UnitSpec
from esper_arbiter.game.sim import RoundResult, SimContext
from esper_arbiter.game.state import Activity, Combatant, Dead, Enemy, Motion, PlayerInput
from esper_arbiter.game.vitals import VITALS_PRIORITY, VitalsSystem
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig
from esper_arbiter.systems.planning.goal_fields import cost_field
from esper_arbiter.systems.plugin import ArbiterPlugin, install
from esper_arbiter.systems.presets.squad import enemy_tree

log = logging.getLogger("esper_arbiter.game")

EventListener = Callable[[int, ArbiterEvent], None]

_world_ids = itertools.count(1)

ROUND_GC_THRESHOLD = (10_000, 20, 100)
"""The collector's thresholds while a round runs (Python's default is ``(700, 10, 10)``).

A frame of a big fight allocates hundreds of thousands of short-lived objects: esper empties
every cached query whenever any component is added or removed (a unit falls, a smoke cloud
appears), and each query then rebuilds its list of tuples, which lives until the next
change. At the default thresholds that promotes about a frame's worth of them to the oldest
generation every few milliseconds, so a full collection of everything alive ran more than
once a frame at 10,000 agents (0.65 s each; 1.19 s median frames). With these the young
generations absorb a frame's garbage and a full pass comes every ~2,000 young collections:
0.64 s median frames, no full pass in the measured window. Restored when the round closes.
"""


def round_config(companions: int) -> ArbiterConfig:
    """The arbiter's settings for a round with this many companions: the defaults, with
    decisions spread when a crowd wakes together (at most an eighth of them, 64 at least, in
    one frame; a stress round's first frame at 10,000 agents took 1.4 s without)."""
    return ArbiterConfig(max_decisions_per_frame=max(64, companions // 8))


class GameSession:
    """One round of hello_companion (see module docstring).

    ``service`` is the LLM plan service (``None``: GOAP and behaviour tree only). The session
    closes it on :meth:`close` only when ``own_service`` is true.
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        service: PlanService | None = None,
        *,
        config: ArbiterConfig | None = None,
        autopilot: bool = True,
        on_event: EventListener | None = None,
        own_service: bool = False,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rules = scenario.rules
        self.rng = random.Random(seed)
        """The only source of game randomness (hit rolls ...)."""
        self.service = service
        self.own_service = own_service
        self.events = GameEventLog()
        """Shots, hits, smoke, downed, revived ... (see :mod:`esper_arbiter.game.events`)."""
        self.arbiter_events: deque[tuple[int, ArbiterEvent]] = deque(maxlen=4096)
        """Recent (entity, event) pairs from the arbiter: decisions, mode changes, requests."""
        self.frames = 0
        self._step_base, self._step_k, self._step_dt = 0.0, 0, 0.0
        self._listeners: list[EventListener] = [] if on_event is None else [on_event]
        self._closed = False
        self._previous_world = esper.current_world
        self.world_name = f"hello_companion-{next(_world_ids)}"
        esper.switch_world(self.world_name)
        try:
            self._build(autopilot, config)
        except BaseException:
            self._drop_world()
            raise
        # Everything built so far lives for the whole round: move it out of the collector's
        # way, so a full (generation-2) collection no longer walks it and stalls a frame for
        # tens of milliseconds on a big map.
        gc.collect()
        gc.freeze()
        self._gc_before = gc.get_threshold()
        gc.set_threshold(*ROUND_GC_THRESHOLD)

    # -- construction --------------------------------------------------------------------

    def _build(self, autopilot: bool, config: ArbiterConfig | None) -> None:
        sc, rules = self.scenario, self.rules
        self.player = self._spawn(sc.player)
        esper.add_component(self.player, Leader())
        esper.add_component(self.player, PlayerInput(autopilot=autopilot))
        esper.add_component(self.player, Intent(label="autopilot" if autopilot else "player"))
        companions = []
        by_name: dict[str, int] = {}
        for spec in sc.companions:
            ent = self._spawn(spec)
            by_name[spec.name] = ent
            esper.add_component(ent, Orders(order=spec.order))
            if spec.leads:
                esper.add_component(ent, Leader())
            esper.add_component(ent, Agent(role="squad leader" if spec.leads else "companion",
                                           use_llm=True, leader=ent if spec.leads else None))
            companions.append(ent)
        for spec, ent in zip(sc.companions, companions, strict=True):
            if spec.leader is not None:
                if spec.leader not in by_name:
                    raise ValueError(f"{spec.name} follows {spec.leader!r}, which is not a "
                                     "companion of this scenario")
                esper.component_for_entity(ent, Agent).leader = by_name[spec.leader]
        self.companions: tuple[int, ...] = tuple(companions)
        enemies = []
        for spec in sc.enemies:
            ent = self._spawn(spec)
            esper.add_component(ent, Enemy(tree=enemy_tree(rules)))
            esper.add_component(ent, Intent(mode=Mode.BEHAVIOR_TREE, label="BT"))
            enemies.append(ent)
        self.enemies: tuple[int, ...] = tuple(enemies)
        self.map = MapGrid(
            width=sc.width, height=sc.height, walls=sc.walls, cover=sc.cover,
            pois=dict(sc.pois), objective=extraction_objective(sc.extraction_poi, sc.objective),
        )
        self.map_entity = esper.create_entity(self.map)
        self.clock = GameClock(0.0)
        self.clock_entity = esper.create_entity(self.clock)
        self.ctx = SimContext(
            rules=rules, rng=self.rng, events=self.events, clock=self.clock, grid=self.map,
            player=self.player, extraction_tile=sc.extraction_tile, bleed_out_s=sc.bleed_out_s,
            revive_hp_fraction=sc.revive_hp_fraction,
        )
        # Every squad that has won its fight escorts toward the extraction: build that cost
        # field now, at load, not in the first frame one asks (~0.2 s on a 10,000-unit map).
        cost_field(self.ctx.grid_view(), sc.extraction_tile)
        self.domain = companion_domain(rules)
        self.plugin: ArbiterPlugin = install(
            domain=self.domain, service=self.service,
            config=config if config is not None else round_config(len(sc.companions)),
            on_event=self._on_arbiter_event
        )
        esper.add_processor(PlayerSystem(self.ctx, sc.autopilot_orders), PLAYER_PRIORITY)
        esper.add_processor(EnemyAISystem(self.ctx), ENEMY_AI_PRIORITY)
        self.actions = ActionSystem(self.ctx)
        esper.add_processor(self.actions, ACTION_PRIORITY)
        esper.add_processor(VitalsSystem(self.ctx), VITALS_PRIORITY)
        self.names: dict[int, str] = {}
        for ent, name in esper.get_component(Name):
            self.names[ent] = name.label

    def _spawn(self, spec: UnitSpec) -> int:
        rules = self.rules
        return esper.create_entity(
            Position(float(spec.x), float(spec.y)),
            Health(spec.hp, spec.hp),
            Team(spec.side),
            Name(spec.name),
            Ammo(spec.ammo, spec.capacity, spec.reserve),
            Combatant(
                accuracy=rules.hit_chance if spec.accuracy is None else spec.accuracy,
                damage=rules.shot_damage if spec.damage is None else spec.damage,
            ),
            Morale(spec.morale),
            Cooldowns(),
            Motion(),
            Activity(),
        )

    # -- running -------------------------------------------------------------------------

    @property
    def t(self) -> float:
        """Game time in seconds."""
        return self.clock.t

    @property
    def result(self) -> RoundResult | None:
        """``None`` while the round runs; then how it ended (``extracted`` / ``defeat``)."""
        return self.ctx.result

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_for_model(self, limit_s: float,
                       should_stop: Callable[[], bool] | None = None) -> float:
        """Before the round starts: wait (blocking, up to ``limit_s`` wall seconds) while the
        plan service warms up, that is loads its model and reads the system prompt; returns
        the seconds waited (0 without a service or once it is warm).

        A game loads its model behind a loading screen; a round that starts while the model
        is still reading its prompt gets its first plan late (on SmolLM2 with one thread:
        about 4 s of warm-up, then the plan), and a plan written for a moment that has
        passed is stale and not used. Never call this once the round runs: it blocks."""
        service = self.service
        if service is None or limit_s <= 0:
            return 0.0
        start = time.monotonic()
        while service.warming_up and time.monotonic() - start < limit_s:
            if should_stop is not None and should_stop():
                break
            time.sleep(0.02)
        waited = time.monotonic() - start
        if waited >= 0.05:
            log.info("the round started once the model was warm (%.1f s)", waited)
        return waited

    def activate(self) -> None:
        """Make this session's world esper's current world (before reading components)."""
        self._check_open()
        if esper.current_world != self.world_name:
            esper.switch_world(self.world_name)

    def step(self, dt: float) -> None:
        """Advance the round by one fixed step of ``dt`` seconds (no-op once it has ended).

        The clock moves first, then every system runs once in priority order.
        """
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt!r}")
        self.activate()
        if self.ctx.result is not None:
            return
        self.frames += 1
        # t = base + k * dt while dt stays the same: no drift from summing 1/30 a thousand times.
        if dt != self._step_dt:
            self._step_base, self._step_k, self._step_dt = self.clock.t, 0, dt
        self._step_k += 1
        self.clock.t = self._step_base + self._step_k * dt
        self.ctx.dt = dt
        esper.process()

    def run(self, seconds: float, dt: float) -> RoundResult | None:
        """Step until the round ends or ``seconds`` of game time have passed."""
        steps = round(seconds / dt)
        for _ in range(steps):
            if self.ctx.result is not None:
                break
            self.step(dt)
        return self.ctx.result

    # -- control (front end, tests) ------------------------------------------------------

    def give_order(self, order: str | None, companion: int | None = None) -> int:
        """Give ``order`` (follow, hold, attack, extract; ``None`` clears) to one companion or,
        by default, all of them. Returns how many took it. The arbiter replans at once."""
        if order is not None and order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
        self.activate()
        targets = self.companions if companion is None else (companion,)
        return sum(1 for ent in targets if self.ctx.give_order(ent, order))

    def request_plan(self, entity: int | None = None, reason: str = "player asked") -> bool:
        """Ask for an urgent LLM plan for ``entity`` (default: the first live companion).
        False when there is no LLM service or no such agent."""
        self.activate()
        if entity is None:
            entity = next(
                (c for c in self.companions if esper.has_component(c, Agent)), None
            )
            if entity is None:
                return False
        return self.plugin.request_plan(entity, reason)

    def set_autopilot(self, on: bool) -> None:
        """Switch the player between the autopilot and manual input."""
        self.activate()
        inp = esper.component_for_entity(self.player, PlayerInput)
        inp.autopilot = on
        inp.move = (0.0, 0.0)
        intent = esper.component_for_entity(self.player, Intent)
        intent.label = "autopilot" if on else "player"

    def set_player_move(self, dx: float, dy: float) -> None:
        """Manual movement direction for the next steps (e.g. ``(0, -1)`` for W); ``(0, 0)``
        stops. Only used with the autopilot off."""
        self.activate()
        esper.component_for_entity(self.player, PlayerInput).move = (float(dx), float(dy))

    # -- reading -------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        """Also call ``listener(entity, event)`` for every arbiter event from now on."""
        self._listeners.append(listener)

    def name_of(self, entity: int) -> str:
        return self.names.get(entity, f"entity{entity}")

    def totals(self) -> ArbiterMetrics:
        """Arbiter metrics summed over all companions (dead ones included)."""
        self.activate()
        total = ArbiterMetrics()
        for _, state in esper.get_component(ArbiterState):
            total.add(state.metrics)
        return total

    def alive(self, entity: int) -> bool:
        """True while ``entity`` is in the round (standing or downed, not dead)."""
        self.activate()
        hp = esper.try_component(entity, Health)
        return hp is not None and not esper.has_component(entity, Dead)

    def units(self) -> Iterator[int]:
        """Player, companions and enemies, in entity order."""
        yield self.player
        yield from self.companions
        yield from self.enemies

    def _on_arbiter_event(self, entity: int, event: ArbiterEvent) -> None:
        self.arbiter_events.append((entity, event))
        for listener in self._listeners:
            listener(entity, event)

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Delete this session's esper world and close the service if the session owns it;
        a shared service instead gets the round's requests still in flight cancelled, so it
        stops planning for a world that is gone. Idempotent."""
        if self._closed:
            return
        self._closed = True
        gc.set_threshold(*self._gc_before)
        if not self.own_service and self.service is not None:
            # The service outlives this round: withdraw what the round still has in flight.
            try:
                if esper.current_world != self.world_name:
                    esper.switch_world(self.world_name)
                self.plugin.cancel_requests()
            except Exception:
                log.exception("cancelling the round's LLM requests failed")
        if self.own_service and self.service is not None:
            try:
                self.service.close()
            except Exception:  # closing must not mask the round's own outcome
                log.exception("closing the LLM service failed")
        self._drop_world()
        # The round's objects were frozen at the start (see __init__); frozen objects are
        # never collected, so without this every closed round stayed in memory for good (a
        # restart loop, or a soak of many rounds, grew by ~0.2 MB a round). The next round
        # collects them and freezes its own.
        gc.unfreeze()

    def _drop_world(self) -> None:
        if esper.current_world == self.world_name:
            back = self._previous_world
            if back == self.world_name or back not in esper.list_worlds():
                back = "default"
            esper.switch_world(back)
        if self.world_name in esper.list_worlds():
            esper.delete_world(self.world_name)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this GameSession is closed")

    def __enter__(self) -> GameSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""The heist round: the world, the host's systems (walking, shooting, hacking, guards,
civilians, the outcome) and a headless runner.

A crew of AI agents (side ``crew``) must hack the vault terminal, take the loot and leave by
the exit, past security guards (side ``security``, driven by this game) and wandering
civilians (side ``civilian``, neutral to everyone). The arbiter decides; this module carries
out each ``Intent`` and sometimes refuses one (no shot with a civilian in the line of fire).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import esper

import esper_arbiter as ea
from examples.heist.domain import CIVILIAN, CREW, SECURITY, HackTerminal, heist_domain
from examples.heist.geometry import Tile, between, clear_shot, distance, find_path
from examples.heist.layout import BANK, parse

TARGETING_STEPS = (ea.Attack, ea.CoverFire, ea.Approach)
"""Steps whose ``target_id`` is someone to shoot at or close in on."""

_world_ids = itertools.count(1)


@dataclass(slots=True)
class HeistConfig:
    """Everything a round depends on. The defaults are the standard bank round."""

    seed: int = 1
    layout: str = BANK
    tick_rate: int = 30
    hack_time: float = 3.0
    crew_hp: float = 100.0
    guard_hp: float = 60.0
    civilian_hp: float = 30.0
    guard_damage: float = 8.0
    guard_hit_chance: float = 0.45
    guard_shot_interval: float = 0.9
    guard_range: float = 7.0
    civilians_wander: bool = True
    guards_patrol: bool = True
    guards_shoot: bool = True
    loot_radius: float = 1.5
    exit_radius: float = 1.5


# -- the host's own components ------------------------------------------------------------------


@dataclass(slots=True)
class Doing:
    """How far along this game is with an agent's current step (keyed by ``Intent.serial``)."""

    serial: int
    started: float
    path: list[Tile] | None = None
    goal: Tile | None = None
    next_at: float = 0.0
    shots: int = 0


@dataclass(slots=True)
class Wanderer:
    """A unit this game walks about: civilians, and guards on patrol."""

    home: Tile
    radius: int
    speed: float
    moves: bool
    path: list[Tile] = field(default_factory=list)
    rest_until: float = 0.0


@dataclass(slots=True)
class Guard:
    next_shot: float = 0.0


@dataclass(slots=True)
class Vault:
    terminal: Tile
    door: Tile
    loot: Tile
    progress: float = 0.0
    progressed_frame: int = -1
    opened_at: float | None = None
    opened_by: int | None = None
    opened_in_mode: ea.Mode | None = None
    looted_by: int | None = None
    looted_at: float | None = None


@dataclass(slots=True)
class Outcome:
    result: str
    """``win``, ``loss`` or ``timeout``."""
    t: float
    why: str
    metrics: ea.ArbiterMetrics
    refusals: int

    def line(self) -> str:
        m = self.metrics
        return (
            f"outcome: {self.result} at t={self.t:.2f}s ({self.why}) | transitions "
            f"{m.mode_transitions} | plan requests {m.llm_requests} plans accepted "
            f"{sum(m.plans_by_source.values())} (model {m.llm_successes}) failed "
            f"{m.llm_failures} cancelled {m.llm_cancelled} | goap {m.goap_actions} | llm steps "
            f"{m.llm_steps_executed} | bt {m.bt_actions} | refused by the host {self.refusals}"
        )


@dataclass(slots=True)
class HeistLog:
    """What happened, for the console and for tests."""

    lines: list[str] = field(default_factory=list)
    issued: list[tuple[float, int, ea.Step, ea.Mode]] = field(default_factory=list)
    """Every step the host was handed: (time, entity, step, mode)."""
    refusals: Counter[tuple[int, ea.Step]] = field(default_factory=Counter)
    refusal_reasons: Counter[str] = field(default_factory=Counter)
    first_step_frame: dict[int, int] = field(default_factory=dict)
    """Frame at which each agent was first handed a step."""


# -- the round -----------------------------------------------------------------------------------


class HeistGame:
    """One round in its own esper world. Use as a context manager (or call :meth:`close`)."""

    def __init__(
        self,
        config: HeistConfig | None = None,
        *,
        service: ea.PlanService | None = None,
        arbiter_config: ea.ArbiterConfig | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = config if config is not None else HeistConfig()
        self.rng = random.Random(self.cfg.seed)
        self.domain = heist_domain()
        self.rules = self.domain.rules
        self.dt = 1.0 / self.cfg.tick_rate
        self.frame = 0
        self.log = HeistLog()
        self.echo = echo
        self.outcome: Outcome | None = None
        self.doing: dict[int, Doing] = {}

        self._previous_world = esper.current_world
        self.world = f"heist-{next(_world_ids)}"
        esper.switch_world(self.world)

        layout = parse(self.cfg.layout)
        for needed in ("exit", "terminal", "vault_door", "vault"):
            if needed not in layout.pois:
                raise ValueError(f"the map has no {needed!r}")
        self.clock = ea.GameClock(0.0)
        esper.create_entity(self.clock)
        self.grid = ea.MapGrid(
            layout.width, layout.height, walls=frozenset(layout.walls),
            cover=frozenset(layout.cover), pois=dict(layout.pois),
            objective=ea.Objective("terminal", label="the vault terminal"),
        )
        self.vault = Vault(layout.pois["terminal"], layout.pois["vault_door"], layout.pois["vault"])
        esper.create_entity(self.grid, self.vault)

        self.crew: list[int] = []
        for i, (x, y) in enumerate(layout.crew, 1):
            self.crew.append(esper.create_entity(
                ea.Agent(role="crew"), ea.Position(x, y),
                ea.Health(self.cfg.crew_hp, self.cfg.crew_hp), ea.Team(CREW),
                ea.Ammo(12, 12, 60), ea.Cooldowns(), ea.Name(f"crew-{i}"),
            ))
        self.guards: list[int] = []
        for i, (x, y, patrols) in enumerate(layout.guards, 1):
            self.guards.append(esper.create_entity(
                ea.Position(x, y), ea.Health(self.cfg.guard_hp, self.cfg.guard_hp),
                ea.Team(SECURITY), ea.Name(f"guard-{i}"), Guard(),
                Wanderer((x, y), 4, 2.0, patrols and self.cfg.guards_patrol),
            ))
        self.civilians: list[int] = []
        for i, (x, y) in enumerate(layout.civilians, 1):
            self.civilians.append(esper.create_entity(
                ea.Position(x, y), ea.Health(self.cfg.civilian_hp, self.cfg.civilian_hp),
                ea.Team(CIVILIAN), ea.Name(f"civilian-{i}"),
                Wanderer((x, y), 5, 1.5, self.cfg.civilians_wander),
            ))
        self.names = {e: esper.component_for_entity(e, ea.Name).label
                      for e in (*self.crew, *self.guards, *self.civilians)}

        self.plugin = ea.install(
            domain=self.domain, service=service, config=arbiter_config, on_event=self._on_event,
        )
        # Below the arbiter (100): they act on this frame's Intent.
        esper.add_processor(_Processor(self._carry_out_intents), priority=50)
        esper.add_processor(_Processor(self._guards), priority=40)
        esper.add_processor(_Processor(self._wander), priority=30)
        esper.add_processor(_Processor(self._check_outcome), priority=10)

    # -- running -------------------------------------------------------------------------------

    def __enter__(self) -> HeistGame:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave and delete this round's esper world (the service is left to its owner)."""
        if esper.current_world == self.world:
            esper.switch_world(self._previous_world)
        if self.world in esper.list_worlds():
            esper.delete_world(self.world)

    def step(self) -> None:
        """One fixed simulation step."""
        esper.switch_world(self.world)
        self.clock.t += self.dt
        self.frame += 1
        esper.process()

    def run(self, seconds: float) -> Outcome:
        """Play until the round ends or ``seconds`` of game time have passed."""
        while self.outcome is None and self.clock.t < seconds - 1e-9:
            self.step()
        if self.outcome is None:
            self.outcome = self._end("timeout", f"{seconds:g} s are up")
        return self.outcome

    # -- what tests and the console read -------------------------------------------------------

    @property
    def t(self) -> float:
        return self.clock.t

    def metrics(self) -> ea.ArbiterMetrics:
        total = ea.ArbiterMetrics()
        for ent in self.crew:
            state = esper.try_component(ent, ea.ArbiterState)
            if state is not None:
                total.add(state.metrics)
        return total

    def hp(self, ent: int) -> float:
        return esper.component_for_entity(ent, ea.Health).hp

    def _say(self, text: str) -> None:
        line = f"t={self.clock.t:6.2f}s {text}"
        self.log.lines.append(line)
        if self.echo is not None:
            self.echo(line)

    def _who(self, ent: int) -> str:
        return f"{self.names.get(ent, 'entity')}#{ent}"

    def _on_event(self, ent: int, event: ea.ArbiterEvent) -> None:
        line = f"t={event.t:6.2f}s {self._who(ent):<11} {event.text}"
        self.log.lines.append(line)
        if self.echo is not None:
            self.echo(line)

    def _end(self, result: str, why: str) -> Outcome:
        return Outcome(result, self.clock.t, why, self.metrics(), self.log.refusals.total())

    # -- carrying out Intent ---------------------------------------------------------------------

    def _carry_out_intents(self) -> None:
        for ent, (intent, pos, health) in esper.get_components(ea.Intent, ea.Position, ea.Health):
            if intent.status is not ea.IntentStatus.RUNNING or intent.step is None:
                continue
            if health.hp <= 0:
                continue
            doing = self.doing.get(ent)
            if doing is None or doing.serial != intent.serial:
                doing = Doing(intent.serial, self.clock.t)
                self.doing[ent] = doing
                self.log.issued.append((self.clock.t, ent, intent.step, intent.mode))
                self.log.first_step_frame.setdefault(ent, self.frame)
            self._carry_out(ent, intent, intent.step, doing, pos)

    def _refuse(self, ent: int, intent: ea.Intent, step: ea.Step, reason: str) -> None:
        self.log.refusals[(ent, step)] += 1
        self.log.refusal_reasons[reason] += 1
        self._say(f"{self._who(ent):<11} host refuses {ea.describe_step(step)}: {reason}")
        intent.fail(reason)

    def _carry_out(
        self, ent: int, intent: ea.Intent, step: ea.Step, d: Doing, pos: ea.Position
    ) -> None:
        r, t = self.rules, self.clock.t
        if isinstance(step, ea.MoveTo | ea.Retreat):
            self._walk_then(ent, intent, step, d, pos, (step.x, step.y), intent.finish)
        elif isinstance(step, ea.TakeCover):
            def crouch() -> None:
                esper.add_component(ent, ea.InCover())
                intent.finish()
            self._walk_then(ent, intent, step, d, pos, (step.x, step.y), crouch)
        elif isinstance(step, HackTerminal):
            if (step.x, step.y) != self.vault.terminal:
                self._refuse(ent, intent, step, f"there is no terminal at ({step.x}, {step.y})")
            elif self.vault.opened_at is not None:
                self._refuse(ent, intent, step, "the vault is already open")
            else:
                self._walk_then(ent, intent, step, d, pos, (step.x, step.y),
                                lambda: self._hack(ent, intent))
        elif isinstance(step, ea.Approach):
            self._approach(ent, intent, step, d, pos)
        elif isinstance(step, ea.Attack | ea.CoverFire):
            self._shoot(ent, intent, step, d, pos)
        elif isinstance(step, ea.ThrowSmoke):
            esper.create_entity(ea.SmokeCloud(step.x, step.y, r.smoke_radius, t,
                                              t + r.smoke_duration))
            self._cool_down(ent, "smoke", r.smoke_cooldown)
            intent.finish()
        elif isinstance(step, ea.Reload):
            if t - d.started >= r.reload_time:
                ammo = esper.component_for_entity(ent, ea.Ammo)
                take = min(ammo.capacity - ammo.rounds, ammo.reserve)
                ammo.rounds += take
                ammo.reserve -= take
                intent.finish()
        elif isinstance(step, ea.Heal):
            other = esper.try_component(step.target_id, ea.Health)
            there = esper.try_component(step.target_id, ea.Position)
            if other is None or there is None or distance(
                    (pos.x, pos.y), (there.x, there.y)) > r.heal_reach + 0.5:
                self._refuse(ent, intent, step, "nobody to heal within reach")
            else:
                other.hp = min(other.max_hp, other.hp + r.heal_amount)
                self._cool_down(ent, "heal", r.heal_cooldown)
                intent.finish()
        elif isinstance(step, ea.Revive):
            other = esper.try_component(step.target_id, ea.Health)
            if other is None or other.hp > 0:
                self._refuse(ent, intent, step, "nobody down to revive")
            elif t - d.started >= r.revive_time:
                other.hp = other.max_hp * 0.3
                self._say(f"{self._who(step.target_id):<11} is back on their feet")
                intent.finish()
        elif isinstance(step, ea.Scan):
            if t - d.started >= r.scan_time:
                intent.finish()
        elif isinstance(step, ea.Wait):
            if t - d.started >= step.seconds:
                intent.finish()
        else:
            self._refuse(ent, intent, step, f"this bank has no use for {step.act}")

    def _cool_down(self, ent: int, ability: str, seconds: float) -> None:
        cds = esper.try_component(ent, ea.Cooldowns)
        if cds is not None:
            cds.ready_at[ability] = self.clock.t + seconds

    def _walk_then(
        self, ent: int, intent: ea.Intent, step: ea.Step, d: Doing, pos: ea.Position,
        goal: Tile, arrived: Callable[[], None],
    ) -> None:
        done = self._walk(ent, d, pos, goal, self.rules.move_speed)
        if done is None:
            self._refuse(ent, intent, step, f"no way to ({goal[0]}, {goal[1]})")
        elif done:
            arrived()

    def _walk(self, ent: int, d: Doing, pos: ea.Position, goal: Tile, speed: float) -> bool | None:
        """Walk toward ``goal``: True on arrival, False on the way, None when walled off."""
        if d.path is None or d.goal != goal:
            path = find_path(pos.tile, goal, self.grid.width, self.grid.height, self.grid.walls)
            if path is None:
                return None
            d.path, d.goal = path, goal
        if d.path and esper.has_component(ent, ea.InCover):
            esper.remove_component(ent, ea.InCover)
        _advance(pos, d.path, speed * self.dt)
        return not d.path

    def _hack(self, ent: int, intent: ea.Intent) -> None:
        v = self.vault
        if v.progressed_frame != self.frame:  # two hackers do not hack twice as fast
            v.progressed_frame = self.frame
            v.progress += self.dt
        if v.progress < self.cfg.hack_time:
            return
        v.opened_at, v.opened_by, v.opened_in_mode = self.clock.t, ent, intent.mode
        self.grid.walls = self.grid.walls - {v.door}
        self.grid.pois = {k: p for k, p in self.grid.pois.items() if k != "terminal"}
        self.grid.objective = ea.Objective("vault", label="the loot in the vault")
        self.grid.version += 1
        self._say(f"{self._who(ent):<11} hacked the terminal ({intent.label}): the vault is open")
        intent.finish()
        # Anyone else hacking is done too.
        for other, other_intent in esper.get_component(ea.Intent):
            if other != ent and isinstance(other_intent.step, HackTerminal) \
                    and other_intent.status is ea.IntentStatus.RUNNING:
                other_intent.finish()

    def _unit(self, ent: int) -> tuple[ea.Position, ea.Health, ea.Team] | None:
        if not esper.entity_exists(ent):
            return None
        pos = esper.try_component(ent, ea.Position)
        health = esper.try_component(ent, ea.Health)
        team = esper.try_component(ent, ea.Team)
        if pos is None or health is None or team is None:
            return None
        return pos, health, team

    def _approach(
        self, ent: int, intent: ea.Intent, step: ea.Approach, d: Doing, pos: ea.Position
    ) -> None:
        target = self._unit(step.target_id)
        if target is None or target[1].hp <= 0:
            self._refuse(ent, intent, step, "the target is gone")
            return
        there = target[0].tile
        if distance((pos.x, pos.y), there) <= self.rules.fire_range and clear_shot(
                pos.tile, there, self.grid.walls, self._smoke()):
            intent.finish()
            return
        if self.clock.t - d.started > 8.0:
            self._refuse(ent, intent, step, "could not close in")
            return
        if self._walk(ent, d, pos, there, self.rules.move_speed) is None:
            self._refuse(ent, intent, step, "no way to the target")

    def _civilian_in_line(self, a: Tile, b: Tile) -> bool:
        line = set(between(a, b))
        if not line:
            return False
        for ent in self.civilians:
            pos = esper.component_for_entity(ent, ea.Position)
            if self.hp(ent) > 0 and pos.tile in line:
                return True
        return False

    def _smoke(self) -> list[tuple[int, int, float]]:
        t = self.clock.t
        return [(c.x, c.y, c.radius) for _, c in esper.get_component(ea.SmokeCloud)
                if c.expires_at > t]

    def _shoot(
        self, ent: int, intent: ea.Intent, step: ea.Attack | ea.CoverFire, d: Doing,
        pos: ea.Position,
    ) -> None:
        r, t = self.rules, self.clock.t
        suppress = isinstance(step, ea.CoverFire)
        if isinstance(step, ea.CoverFire) and t - d.started >= step.seconds:
            intent.finish()
            return
        if t < d.next_at:
            return
        target = self._unit(step.target_id)
        if target is None or target[1].hp <= 0:
            if d.shots:
                intent.finish()
            else:
                self._refuse(ent, intent, step, "the target is gone")
            return
        there = target[0].tile
        if distance(pos.tile, there) > r.fire_range:
            self._refuse(ent, intent, step, "out of range")
            return
        if not clear_shot(pos.tile, there, self.grid.walls, self._smoke()):
            self._refuse(ent, intent, step, "no line of sight")
            return
        if self._civilian_in_line(pos.tile, there):
            self._refuse(ent, intent, step, "civilian in the line of fire")
            return
        ammo = esper.component_for_entity(ent, ea.Ammo)
        if ammo.rounds <= 0:
            self._refuse(ent, intent, step, "out of ammo")
            return
        ammo.rounds -= 1
        d.shots += 1
        chance = r.hit_chance * (0.5 if suppress else 1.0)
        if self.rng.random() < chance:
            damage = r.shot_damage * (r.cover_damage_factor
                                      if esper.has_component(step.target_id, ea.InCover) else 1)
            self._damage(step.target_id, damage, by=ent)
        d.next_at = t + r.shot_interval * (1.5 if suppress else 1.0)
        if not suppress and d.shots >= r.burst_shots:
            intent.finish()

    def _damage(self, ent: int, amount: float, by: int) -> None:
        health = esper.component_for_entity(ent, ea.Health)
        if health.hp <= 0:
            return
        health.hp = max(0.0, health.hp - amount)
        if health.hp <= 0:
            self._say(f"{self._who(ent):<11} is down (shot by {self._who(by)})")

    # -- the game's own NPCs ----------------------------------------------------------------------

    def _guards(self) -> None:
        t = self.clock.t
        for ent, (guard, pos, health) in esper.get_components(Guard, ea.Position, ea.Health):
            if health.hp <= 0:
                continue
            target = self._guard_target(pos) if self.cfg.guards_shoot else None
            if target is None:
                continue
            wanderer = esper.try_component(ent, Wanderer)
            if wanderer is not None:  # stand and shoot
                wanderer.path.clear()
                wanderer.rest_until = t + 1.0
            if t >= guard.next_shot:
                guard.next_shot = t + self.cfg.guard_shot_interval
                if self.rng.random() < self.cfg.guard_hit_chance:
                    damage = self.cfg.guard_damage * (
                        self.rules.cover_damage_factor
                        if esper.has_component(target, ea.InCover) else 1.0)
                    self._damage(target, damage, by=ent)

    def _guard_target(self, pos: ea.Position) -> int | None:
        """The nearest standing crew member a guard has a clean shot at."""
        best: tuple[float, int] | None = None
        smoke = self._smoke()
        for ent in self.crew:
            if self.hp(ent) <= 0:
                continue
            there = esper.component_for_entity(ent, ea.Position).tile
            dist = distance(pos.tile, there)
            if dist > self.cfg.guard_range:
                continue
            if not clear_shot(pos.tile, there, self.grid.walls, smoke):
                continue
            if self._civilian_in_line(pos.tile, there):
                continue  # security holds fire too
            if best is None or dist < best[0]:
                best = (dist, ent)
        return None if best is None else best[1]

    def _wander(self) -> None:
        t = self.clock.t
        for _ent, (w, pos, health) in esper.get_components(Wanderer, ea.Position, ea.Health):
            if not w.moves or health.hp <= 0 or t < w.rest_until:
                continue
            if not w.path:
                goal = (w.home[0] + self.rng.randint(-w.radius, w.radius),
                        w.home[1] + self.rng.randint(-w.radius, w.radius))
                path = find_path(pos.tile, goal, self.grid.width, self.grid.height,
                                 self.grid.walls)
                if path is None or len(path) > 3 * w.radius:
                    w.rest_until = t + 0.3
                    continue
                w.path = path
            _advance(pos, w.path, w.speed * self.dt)
            if not w.path:
                w.rest_until = t + self.rng.uniform(1.0, 3.0)

    # -- the outcome -------------------------------------------------------------------------------

    def _check_outcome(self) -> None:
        if self.outcome is not None:
            return
        v, t = self.vault, self.clock.t
        standing = [e for e in self.crew if self.hp(e) > 0]
        if not standing:
            self.outcome = self._end("loss", "the whole crew is down")
            self._say(self.outcome.line())
            return
        if v.opened_at is not None and v.looted_by is None:
            for ent in standing:
                if distance(_tile(ent), v.loot) <= self.cfg.loot_radius:
                    v.looted_by, v.looted_at = ent, t
                    self.grid.objective = ea.Objective("exit", label="the exit")
                    self._say(f"{self._who(ent):<11} has the loot: everyone to the exit")
                    break
        if v.looted_by is not None:
            exit_tile = self.grid.pois["exit"]
            if all(distance(_tile(e), exit_tile) <= self.cfg.exit_radius for e in standing):
                self.outcome = self._end(
                    "win", f"{len(standing)} of {len(self.crew)} crew out with the loot")


class _Processor(esper.Processor):
    """An esper processor that calls one of the game's methods."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def process(self, *args: object, **kwargs: object) -> None:
        self.fn()


def _advance(pos: ea.Position, path: list[Tile], budget: float) -> None:
    """Walk ``budget`` tiles along ``path`` (consumed as tiles are reached)."""
    while budget > 0 and path:
        nx, ny = path[0]
        gap = distance((pos.x, pos.y), (nx, ny))
        if gap <= budget:
            pos.x, pos.y = float(nx), float(ny)
            budget -= gap
            path.pop(0)
        else:
            pos.x += (nx - pos.x) / gap * budget
            pos.y += (ny - pos.y) / gap * budget
            budget = 0.0


def _tile(ent: int) -> Tile:
    # Tiles, not exact positions: the arbiter counts an agent within the objective's radius
    # by its tile and stops walking it there, so a fractional position may never arrive.
    return esper.component_for_entity(ent, ea.Position).tile

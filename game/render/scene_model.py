"""The scene part of the frame model: what the map shows, as plain data.

:func:`build_scene` reads the session's components once per type and returns a
:class:`SceneModel`: the units (with their mode badges, activities and timers), smoke, shots,
floating numbers, lines of sight, and the plans drawn on the map (:func:`plan_marks`: each
remaining step chained from where the agent stands). :mod:`game.render.world` and
:mod:`game.render.overlays` draw it; nothing here imports pygame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import esper

from esper_arbiter.components.actions import (
    ActionStep,
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    Retreat,
    Revive,
    TakeCover,
    ThrowSmoke,
)
from esper_arbiter.components.agent import ArbiterState, Intent, IntentStatus, Mode
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.components.world import Ammo, Health, InCover, MapGrid, Position, SmokeCloud
from esper_arbiter.game.render import theme
from esper_arbiter.game.render.render_state import Point, RenderMemory, Tile, ViewState
from esper_arbiter.game.render.theme import RGB
from esper_arbiter.game.state import Activity, Dead, Downed, Motion, Suppressed
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.planning.pathfinding import line_of_sight

SHOT_FADE_S = 0.3
FLOAT_TEXT_S = 1.1
SMOKE_FADE_IN_S = 0.3
SMOKE_FADE_OUT_S = 2.0
TIMED_ACTS = frozenset({"Reload", "Heal", "Revive", "Scan", "Wait", "CoverFire", "ThrowSmoke"})


@dataclass(slots=True)
class ModeBadge:
    """The ring and label over an AI agent."""

    label: str
    """``GOAP``, ``LLM 2/4`` or ``BT``."""
    mode: Mode
    color: RGB
    in_flight: bool
    """An LLM request of this agent is in flight (LlmTask present)."""


@dataclass(slots=True)
class UnitModel:
    entity: int
    name: str
    role: str
    """``player``, ``companion`` or ``enemy``."""
    x: float
    y: float
    hp: float
    max_hp: float
    ammo: int
    capacity: int
    reserve: int
    downed: bool = False
    dead: bool = False
    in_cover: bool = False
    suppressed: bool = False
    selected: bool = False
    activity: str = ""
    progress: float = -1.0
    """0..1 for a timed step in progress (reload, revive ...), else -1."""
    badge: ModeBadge | None = None
    bleed_out: float = 0.0
    """0..1 of the downed timer that is left."""


@dataclass(slots=True)
class PlanMark:
    """One remaining step of an agent's plan as drawn on the map.

    ``kind``: ``path`` (MoveTo), ``cover`` (TakeCover), ``retreat`` (Retreat), ``approach``,
    ``attack`` (Attack / CoverFire), ``smoke`` (ThrowSmoke), ``support`` (Heal / Revive).
    ``points`` are tile coordinates from where the step starts to its target.
    """

    kind: str
    step: int
    """1-based step number in the plan (0: a GOAP/BT step, not part of a plan)."""
    active: bool
    points: tuple[Point, ...]
    radius: float = 0.0


@dataclass(slots=True)
class AgentPlan:
    entity: int
    mode: Mode
    color: RGB
    selected: bool
    marks: list[PlanMark]


@dataclass(slots=True)
class Smoke:
    x: float
    y: float
    radius: float
    alpha: float


@dataclass(slots=True)
class Shot:
    x: float
    y: float
    tx: float
    ty: float
    hit: bool
    age: float
    """0 (just fired) .. 1 (gone)."""


@dataclass(slots=True)
class FloatText:
    x: float
    y: float
    text: str
    color: RGB
    age: float


@dataclass(slots=True)
class SceneModel:
    width: int
    height: int
    walls: frozenset[Tile]
    cover: frozenset[Tile]
    pois: dict[str, Tile]
    exit_tile: Tile
    units: list[UnitModel]
    smoke: list[Smoke]
    shots: list[Shot]
    floats: list[FloatText]
    plans: list[AgentPlan]
    sight: list[tuple[Point, Point]]
    overlays: bool


def badge_for(state: ArbiterState, in_flight: bool) -> ModeBadge:
    """The overlay badge of an agent: its label and the colour of its mode."""
    return ModeBadge(state.label, state.mode, theme.MODE_COLORS[state.mode], in_flight)


class _Frame:
    """The components one frame reads, fetched once per type (not per entity)."""

    __slots__ = ("activities", "ammo", "health", "intents", "motions", "positions")

    def __init__(self) -> None:
        self.positions: dict[int, Position] = dict(esper.get_component(Position))
        self.health: dict[int, Health] = dict(esper.get_component(Health))
        self.ammo: dict[int, Ammo] = dict(esper.get_component(Ammo))
        self.intents: dict[int, Intent] = dict(esper.get_component(Intent))
        self.activities: dict[int, Activity] = dict(esper.get_component(Activity))
        self.motions: dict[int, Motion] = dict(esper.get_component(Motion))

    def point(self, ent: int) -> Point | None:
        pos = self.positions.get(ent)
        return None if pos is None else (pos.x, pos.y)


def build_scene(
    session: GameSession,
    view: ViewState,
    selected: int | None,
    states: dict[int, ArbiterState],
    tasks: dict[int, LlmTask],
    memory: RenderMemory,
    now: float,
) -> SceneModel:
    m = session.map
    comps = _Frame()
    dead = {e for e, _ in esper.get_component(Dead)}
    downed = dict(esper.get_component(Downed))
    in_cover = {e for e, _ in esper.get_component(InCover)}
    suppressed = {e for e, s in esper.get_component(Suppressed) if s.until > now}
    companions = set(session.companions)
    units: list[UnitModel] = []
    for ent in session.units():
        pos = comps.positions.get(ent)
        hp = comps.health.get(ent)
        if pos is None or hp is None:
            continue
        ammo = comps.ammo.get(ent)
        role = (
            "player" if ent == session.player else "companion" if ent in companions else "enemy"
        )
        unit = UnitModel(
            entity=ent, name=session.name_of(ent), role=role, x=pos.x, y=pos.y, hp=hp.hp,
            max_hp=hp.max_hp, ammo=ammo.rounds if ammo else 0,
            capacity=ammo.capacity if ammo else 0, reserve=ammo.reserve if ammo else 0,
            dead=ent in dead, downed=ent in downed, in_cover=ent in in_cover,
            suppressed=ent in suppressed, selected=ent == selected,
        )
        d = downed.get(ent)
        if d is not None:
            total = max(1e-6, d.bleed_out_at - d.since)
            unit.bleed_out = max(0.0, min(1.0, (d.bleed_out_at - now) / total))
        if not unit.dead and not unit.downed:
            _activity(comps.intents.get(ent), comps.activities.get(ent), unit)
        state = states.get(ent)
        if state is not None and not unit.dead:
            unit.badge = badge_for(state, ent in tasks)
        units.append(unit)
    grid = memory.movement_grid(m)
    plans: list[AgentPlan] = []
    if view.overlays:
        for ent, state in states.items():
            if ent in dead or ent in downed:
                continue
            marks = plan_marks(ent, state, grid, memory, session.rules.smoke_radius, comps)
            if marks:
                plans.append(AgentPlan(ent, state.mode, theme.MODE_COLORS[state.mode],
                                       ent == selected, marks))
    return SceneModel(
        width=m.width, height=m.height, walls=m.walls, cover=m.cover, pois=dict(m.pois),
        exit_tile=session.scenario.extraction_tile, units=units, smoke=_smoke(now),
        shots=_shots(session, now), floats=_floats(session, now), plans=plans,
        sight=_sight(session, selected, m, now) if view.overlays else [],
        overlays=view.overlays,
    )


def _activity(intent: Intent | None, act: Activity | None, unit: UnitModel) -> None:
    if intent is None or intent.step is None or intent.status is not IntentStatus.RUNNING:
        return
    unit.activity = intent.step.act
    if (
        act is not None and act.serial == intent.serial and act.kind in TIMED_ACTS
        and act.until > act.started_at
    ):
        unit.progress = max(0.0, min(1.0, act.progress))


def _tile(p: Point) -> Tile:
    return (round(p[0]), round(p[1]))


def plan_marks(
    ent: int, state: ArbiterState, grid: GridView, memory: RenderMemory,
    smoke_radius: float = 1.5, comps: _Frame | None = None,
) -> list[PlanMark]:
    """The agent's remaining plan steps (ExecutingLLM) or its current step (GOAP / BT) as map
    marks, chained from where the agent stands: each move starts where the previous one ends.
    The step being walked uses the unit's real path (Motion); later legs a cached A* path."""
    comps = comps if comps is not None else _Frame()
    start = comps.point(ent)
    if start is None:
        return []
    intent = comps.intents.get(ent)
    steps: list[tuple[int, ActionStep, bool]] = []
    if state.mode is Mode.EXECUTING_LLM and state.plan is not None:
        for i in range(state.step_index, len(state.plan.steps)):
            steps.append((i + 1, state.plan.steps[i], i == state.step_index))
    elif intent is not None and intent.step is not None and (
        intent.status is IntentStatus.RUNNING
    ):
        steps.append((0, intent.step, True))
    marks: list[PlanMark] = []
    cursor: Point = start
    motion = comps.motions.get(ent)
    for number, step, active in steps:
        mark, cursor = _mark(number, step, active, cursor, grid, memory, motion, smoke_radius,
                             comps)
        if mark is not None:
            marks.append(mark)
    return marks


def _mark(
    number: int, step: ActionStep, active: bool, cursor: Point, grid: GridView,
    memory: RenderMemory, motion: Motion | None, smoke_radius: float, comps: _Frame,
) -> tuple[PlanMark | None, Point]:
    if isinstance(step, (MoveTo, TakeCover, Retreat)):
        goal = (step.x, step.y)
        end = (float(goal[0]), float(goal[1]))
        kind = "path" if isinstance(step, MoveTo) else (
            "cover" if isinstance(step, TakeCover) else "retreat")
        pts: list[Point] = [cursor]
        if active and motion is not None and motion.path and motion.goal == goal:
            pts.extend((float(x), float(y)) for x, y in motion.path)
        else:
            path = memory.path(grid, _tile(cursor), goal)
            if path:
                pts.extend((float(x), float(y)) for x, y in path)
        if pts[-1] != end:
            pts.append(end)
        return PlanMark(kind, number, active, tuple(pts)), end
    if isinstance(step, ThrowSmoke):
        target = (float(step.x), float(step.y))
        return PlanMark("smoke", number, active, (cursor, target), radius=smoke_radius), cursor
    if isinstance(step, (Attack, CoverFire, Approach, Heal, Revive)):
        where = comps.point(step.target_id)
        if where is None:
            return None, cursor
        kind = (
            "attack" if isinstance(step, (Attack, CoverFire))
            else "approach" if isinstance(step, Approach) else "support"
        )
        return PlanMark(kind, number, active, (cursor, where)), cursor
    return None, cursor


def _smoke(now: float) -> list[Smoke]:
    out = []
    for _, c in esper.get_component(SmokeCloud):
        if c.expires_at <= now:
            continue
        fade_in = min(1.0, max(0.0, (now - c.started_at) / SMOKE_FADE_IN_S))
        fade_out = min(1.0, max(0.0, (c.expires_at - now) / SMOKE_FADE_OUT_S))
        out.append(Smoke(float(c.x), float(c.y), c.radius, min(fade_in, fade_out)))
    return out


def _shots(session: GameSession, now: float) -> list[Shot]:
    return [
        Shot(e.x, e.y, e.tx, e.ty, e.hit, max(0.0, (now - e.t) / SHOT_FADE_S))
        for e in session.events.recent(now, SHOT_FADE_S)
        if e.kind == "shot"
    ]


def _floats(session: GameSession, now: float) -> list[FloatText]:
    out = []
    for e in session.events.recent(now, FLOAT_TEXT_S):
        age = max(0.0, (now - e.t) / FLOAT_TEXT_S)
        if e.kind == "hit" and e.amount > 0:
            out.append(FloatText(e.tx, e.ty, f"-{e.amount:g}", theme.DAMAGE_TEXT, age))
        elif e.kind == "heal" and e.amount > 0:
            out.append(FloatText(e.tx, e.ty, f"+{e.amount:g}", theme.HEAL_TEXT, age))
        elif e.kind == "downed":
            out.append(FloatText(e.tx, e.ty, "DOWN", theme.WARN, age))
        elif e.kind == "revived":
            out.append(FloatText(e.tx, e.ty, "UP", theme.HEAL_TEXT, age))
        elif e.kind == "reload":
            out.append(FloatText(e.x, e.y, "reload", theme.AMMO, age))
        elif e.kind == "order" and e.text:
            out.append(FloatText(e.tx, e.ty, f"{e.text}!", theme.TEXT, age))
    return out


def _sight(session: GameSession, selected: int | None, m: MapGrid, now: float) -> list[
    tuple[Point, Point]
]:
    """Lines of sight from the selected agent to the enemies it can see and shoot."""
    if selected is None or not esper.entity_exists(selected):
        return []
    me = esper.try_component(selected, Position)
    if me is None or esper.has_component(selected, Dead):
        return []
    smoke = tuple(
        (c.x, c.y, c.radius) for _, c in esper.get_component(SmokeCloud) if c.expires_at > now
    )
    grid = GridView(m.width, m.height, m.walls, m.cover, smoke, m.version)
    reach = session.rules.fire_range
    a = me.tile
    out: list[tuple[Point, Point]] = []
    for ent in session.enemies:
        if not esper.entity_exists(ent) or esper.has_component(ent, Dead):
            continue
        pos = esper.try_component(ent, Position)
        if pos is None:
            continue
        b = pos.tile
        if math.dist(a, b) <= reach and line_of_sight(grid, a, b):
            out.append(((me.x, me.y), (pos.x, pos.y)))
    return out

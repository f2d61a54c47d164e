"""The frame model: what one frame shows, as plain data computed from esper_arbiter.components.

:func:`build_frame` reads a :class:`~game.world.GameSession`'s components and logs (never
calling game logic) and returns a :class:`FrameModel`: the scene (units, smoke, shots, floating
numbers, mode badges, the plans drawn on the map) and the HUD (selected agent, plan, LLM status,
request timeline, event log). The drawing modules turn it into pixels; tests assert on it
directly, so "the companion shows a green ``LLM 2/4`` ring and its plan's smoke target" is a
check on data, not on pixels.

Nothing here imports pygame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import esper

from esper_arbiter.components.actions import (
    ActionStep,
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    PlanIntent,
    Retreat,
    Revive,
    TakeCover,
    ThrowSmoke,
    describe_step,
)
from esper_arbiter.components.agent import Agent, ArbiterState, Intent, IntentStatus, Mode
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.components.world import Ammo, Health, InCover, MapGrid, Position, SmokeCloud
from esper_arbiter.game.render import theme
from esper_arbiter.game.render.theme import RGB
from esper_arbiter.game.state import Activity, Dead, Downed, Motion, PlayerInput, Suppressed
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import PlanService, ServiceStatus
from esper_arbiter.systems.llm.timeline import concurrency_pct
from esper_arbiter.systems.planning.pathfinding import find_path, line_of_sight

Point = tuple[float, float]
Tile = tuple[int, int]

CONTROLS: tuple[tuple[str, str], ...] = (
    ("WASD / arrows", "move the player (takes over from the autopilot)"),
    ("Space", "hand the player back to the autopilot"),
    ("1 2 3 4", "order the selected companion: follow, hold, attack, extract"),
    ("L", "ask the language model for a plan now"),
    ("Tab", "select the next AI agent (Shift+Tab: previous)"),
    ("O", "mode overlays on / off"),
    ("P", "pause"),
    ("R", "restart the round (same seed)"),
    ("F12", "screenshot"),
    ("H", "this help"),
    ("Esc", "quit"),
)
"""Key, action: the start card and the help overlay list these."""

ORDER_KEYS: tuple[str, ...] = ("follow", "hold", "attack", "extract")
"""Order given by keys 1-4, in that order."""

SHOT_FADE_S = 0.3
FLOAT_TEXT_S = 1.1
SMOKE_FADE_IN_S = 0.3
SMOKE_FADE_OUT_S = 2.0
TIMELINE_SPAN_S = 30.0
LOG_KINDS = frozenset({"transition", "rejected", "grounded", "outcome", "request", "order"})
TIMED_ACTS = frozenset({"Reload", "Heal", "Revive", "Scan", "Wait", "CoverFire", "ThrowSmoke"})


# ----------------------------------------------------------------------------------------
# View state (owned by the app) and render memory (owned by the renderer)
# ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class ViewState:
    """What the user chose to see: selection, toggles, overlays shown over the game."""

    selected: int | None = None
    overlays: bool = True
    show_help: bool = False
    show_start: bool = False
    paused: bool = False
    toast: str = ""
    fps: float = 0.0
    log_lines: int = 8
    """How many event-log lines the layout has room for."""


class RenderMemory:
    """What the renderer remembers between frames: each agent's last plan (shown greyed once it
    ended) and the walking paths of plan legs (computed once per plan, not per frame)."""

    def __init__(self, max_paths: int = 4096) -> None:
        self.last_plan: dict[int, PlanIntent] = {}
        self._paths: dict[tuple[Tile, Tile, int], tuple[Tile, ...] | None] = {}
        self._max_paths = max_paths
        self._grid: GridView | None = None
        self._grid_key: tuple[int, int, int, frozenset[Tile]] | None = None

    def movement_grid(self, m: MapGrid) -> GridView:
        """A walls-only GridView of ``m``, rebuilt only when the map changes."""
        key = (m.version, m.width, m.height, m.walls)
        if self._grid is None or key != self._grid_key:
            self._grid = GridView(m.width, m.height, m.walls, m.cover, (), m.version)
            self._grid_key = key
            self._paths.clear()
        return self._grid

    def path(self, grid: GridView, start: Tile, goal: Tile) -> tuple[Tile, ...] | None:
        key = (start, goal, grid.version)
        if key not in self._paths:
            if len(self._paths) >= self._max_paths:
                self._paths.clear()
            found = find_path(grid, start, goal)
            self._paths[key] = None if found is None else tuple(found)
        return self._paths[key]


class StatusPoller:
    """Calls ``service.status()`` at most once per ``interval_s`` of wall time (the HUD never
    asks per agent or per frame); ``refresh()`` forces the next call."""

    def __init__(
        self, service: PlanService | None, interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.clock = clock
        self.calls = 0
        self._last: ServiceStatus | None = None
        self._at = -math.inf

    def refresh(self) -> None:
        self._at = -math.inf

    def get(self) -> ServiceStatus | None:
        if self.service is None:
            return None
        now = self.clock()
        if self._last is None or now - self._at >= self.interval_s:
            try:
                self._last = self.service.status()
            except Exception as exc:  # a broken service must not take the HUD down
                self._last = ServiceStatus(
                    backend=getattr(self.service, "backend_name", "?"), online=False,
                    reason=f"status() failed: {exc}",
                )
            self._at = now
            self.calls += 1
        return self._last


# ----------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# HUD
# ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class PlanLine:
    index: int
    """0-based step index."""
    text: str
    state: str
    """``done``, ``active``, ``pending`` or ``rejected``."""
    reason: str = ""


@dataclass(slots=True)
class AgentPanel:
    entity: int
    name: str
    label: str
    mode: Mode
    color: RGB
    order: str
    hp: float
    max_hp: float
    ammo: str
    current: str
    """The step it is carrying out now."""
    in_flight: str
    """``""`` or a description of the request in flight."""
    time_in_modes: list[tuple[str, float, RGB]]
    metrics: list[tuple[str, str]]
    last_failure: str
    plan_title: str
    plan_note: str
    plan_lines: list[PlanLine]


@dataclass(slots=True)
class LlmPanel:
    backend: str
    model: str
    online: bool
    state: str
    state_color: RGB
    reason: str
    rows: list[tuple[str, str]]


@dataclass(slots=True)
class TimelineBar:
    request_id: int
    agent_id: int
    lane: int
    queued: float
    """Fractions 0..1 of the panel's time span (0 = ``span_s`` ago, 1 = now)."""
    started: float | None
    first_token: float | None
    end: float
    outcome: str
    color: RGB
    running: bool
    mine: bool
    """The request belongs to the selected agent."""


@dataclass(slots=True)
class TimelineModel:
    span_s: float
    clock: str
    """``wall`` (real services) or ``game`` (the scripted backend answers on game time)."""
    bars: list[TimelineBar]
    lanes: int
    concurrency_pct: float
    total: int


@dataclass(slots=True)
class LogLine:
    t: float
    who: str
    text: str
    color: RGB
    mine: bool


@dataclass(slots=True)
class TopBar:
    title: str
    scenario: str
    t: float
    seed: int
    state: str
    state_color: RGB
    control: str
    fps: float
    agents: int


@dataclass(slots=True)
class Banner:
    title: str
    subtitle: str
    color: RGB


@dataclass(slots=True)
class HudModel:
    top: TopBar
    agent: AgentPanel | None
    llm: LlmPanel
    timeline: TimelineModel
    log: list[LogLine]
    banner: Banner | None
    toast: str
    show_help: bool
    show_start: bool
    controls: tuple[tuple[str, str], ...] = CONTROLS


@dataclass(slots=True)
class FrameModel:
    scene: SceneModel
    hud: HudModel
    selected: int | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------


def _is_agent(ent: int) -> bool:
    """An AI agent: it has an arbiter state, or will get one on the first simulation step
    (the start card is drawn before that step and must already show the companion)."""
    return esper.entity_exists(ent) and (
        esper.has_component(ent, ArbiterState) or esper.has_component(ent, Agent)
    )


def agents_of(session: GameSession) -> list[int]:
    """AI agents that can be selected (companions still in the round), in entity order."""
    session.activate()
    out = []
    for ent in session.companions:
        if _is_agent(ent) and not esper.has_component(ent, Dead):
            out.append(ent)
    return out


def resolve_selection(session: GameSession, selected: int | None) -> int | None:
    """``selected`` if it is still a live agent, else the first live agent (or any companion
    with an arbiter state, so a dead companion's numbers stay readable)."""
    live = agents_of(session)
    if selected is not None and selected in live:
        return selected
    if live:
        return live[0]
    if selected is not None and _is_agent(selected):
        return selected
    for ent in session.companions:
        if _is_agent(ent):
            return ent
    return None


def badge_for(state: ArbiterState, in_flight: bool) -> ModeBadge:
    """The overlay badge of an agent: its label and the colour of its mode."""
    return ModeBadge(state.label, state.mode, theme.MODE_COLORS[state.mode], in_flight)


def build_frame(
    session: GameSession,
    view: ViewState,
    status: ServiceStatus | None,
    memory: RenderMemory | None = None,
) -> FrameModel:
    """Everything one frame shows (see module docstring). Reads components only."""
    session.activate()
    memory = memory if memory is not None else RenderMemory()
    selected = resolve_selection(session, view.selected)
    now = session.t
    states: dict[int, ArbiterState] = dict(esper.get_component(ArbiterState))
    for ent, _agent in esper.get_component(Agent):
        # Before the first step the arbiter has not met its agents yet: show them as they
        # will start (GOAP, nothing counted) rather than as absent.
        if ent not in states:
            states[ent] = ArbiterState(mode_since=now)
    tasks: dict[int, LlmTask] = dict(esper.get_component(LlmTask))
    for ent, state in states.items():
        if state.plan is not None:
            memory.last_plan[ent] = state.plan
    scene = _scene(session, view, selected, states, tasks, memory, now)
    hud = HudModel(
        top=_top(session, view, len(esper.get_component(Agent))),
        agent=None if selected is None else _agent_panel(
            session, selected, states[selected], tasks.get(selected), memory, now
        ),
        llm=llm_panel(session.service, status),
        timeline=build_timeline(status, now, selected),
        log=build_log(session, selected, view.log_lines),
        banner=_banner(session),
        toast=view.toast,
        show_help=view.show_help,
        show_start=view.show_start,
    )
    return FrameModel(scene=scene, hud=hud, selected=selected)


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


def _scene(
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


def _top(session: GameSession, view: ViewState, agents: int) -> TopBar:
    result = session.result
    if result is not None:
        state, color = result.outcome.upper(), (
            theme.GOOD if result.outcome == "extracted" else theme.BAD)
    elif view.paused:
        state, color = "PAUSED", theme.WARN
    else:
        state, color = "LIVE", theme.GOOD
    inp = esper.try_component(session.player, PlayerInput)
    control = "autopilot" if inp is None or inp.autopilot else "manual"
    return TopBar(
        title="hello_companion", scenario=session.scenario.name, t=session.t, seed=session.seed,
        state=state, state_color=color, control=control, fps=view.fps, agents=agents,
    )


def _banner(session: GameSession) -> Banner | None:
    result = session.result
    if result is None:
        return None
    if result.outcome == "extracted":
        return Banner("EXTRACTED", f"t={result.t:.1f}s  -  R: play again   Esc: quit",
                      theme.GOOD)
    why = f"{result.reason}  -  " if result.reason else ""
    return Banner("DEFEAT", f"{why}R: try again   Esc: quit", theme.BAD)


def _agent_panel(
    session: GameSession,
    ent: int,
    state: ArbiterState,
    task: LlmTask | None,
    memory: RenderMemory,
    now: float,
) -> AgentPanel:
    from esper_arbiter.components.world import Orders

    hp = esper.try_component(ent, Health)
    ammo = esper.try_component(ent, Ammo)
    orders = esper.try_component(ent, Orders)
    intent = esper.try_component(ent, Intent)
    m = state.metrics
    tim = state.time_in_modes(now)
    times = [(theme.MODE_SHORT[mode], tim.get(mode.value, 0.0), theme.MODE_COLORS[mode])
             for mode in Mode]
    metrics = [
        ("mode changes", str(m.mode_transitions)),
        ("LLM requests", f"{m.llm_requests}  ok {sum(m.plans_by_source.values())}  "
                         f"failed {m.llm_failures}"
                         + (f"  cancelled {m.llm_cancelled}" if m.llm_cancelled else "")
                         + (f"  expired {m.llm_expired}" if m.llm_expired else "")
                         + (f"  discarded {m.plans_discarded}" if m.plans_discarded else "")),
        ("GOAP actions", str(m.goap_actions)),
        ("LLM steps", f"{m.llm_steps_executed} done  {m.llm_steps_skipped} skipped"
                      + (f"  {m.llm_steps_failed} failed" if m.llm_steps_failed else "")
                      + (f"  {m.llm_steps_grounded} prepared" if m.llm_steps_grounded else "")),
        ("BT actions", str(m.bt_actions)),
        ("refused steps", str(m.host_step_failures)),
        ("plans by origin", ", ".join(f"{k} {v}" for k, v in sorted(m.plans_by_source.items()))
         or "-"),
    ]
    in_flight = ""
    if task is not None:
        in_flight = f"request r{task.request_id} in flight {max(0.0, now - task.submitted_at):.1f}s"
        in_flight += f" ({task.reason})" if task.reason else ""
    current = "-"
    if intent is not None and intent.step is not None:
        current = describe_step(intent.step)
        if intent.status is not IntentStatus.RUNNING:
            current += f" [{intent.status.value}]"
    if esper.has_component(ent, Dead):
        current = "out of the round"
    elif esper.has_component(ent, Downed):
        current = "downed: waiting for a revive"
    title, note, lines = _plan_lines(ent, state, memory)
    return AgentPanel(
        entity=ent, name=session.name_of(ent), label=state.label, mode=state.mode,
        color=theme.MODE_COLORS[state.mode],
        order=(orders.order or "none") if orders is not None else "none",
        hp=hp.hp if hp else 0.0, max_hp=hp.max_hp if hp else 0.0,
        ammo=f"{ammo.rounds}/{ammo.capacity} +{ammo.reserve}" if ammo else "-",
        current=current, in_flight=in_flight, time_in_modes=times, metrics=metrics,
        last_failure=state.last_failure, plan_title=title, plan_note=note, plan_lines=lines,
    )


def _plan_lines(
    ent: int, state: ArbiterState, memory: RenderMemory
) -> tuple[str, str, list[PlanLine]]:
    rejected = {r.index: r.reason for r in state.rejected_steps}
    plan = state.plan
    running = plan is not None and state.mode is Mode.EXECUTING_LLM
    if plan is None:
        plan = memory.last_plan.get(ent)
    if plan is None:
        return "no LLM plan yet", "GOAP / behaviour tree decide step by step", []
    lines = []
    for i, step in enumerate(plan.steps):
        if i in rejected:
            st = "rejected"
        elif not running or i < state.step_index:
            st = "done"
        elif i == state.step_index:
            st = "active"
        else:
            st = "pending"
        lines.append(PlanLine(i, describe_step(step), st, rejected.get(i, "")))
    title = f"plan {plan.plan_id}  ({plan.source}, {len(plan.steps)} steps)"
    note = f"step {state.step_index + 1} of {len(plan.steps)}" if running else "finished"
    if plan.rationale:
        note += f"  -  {plan.rationale}"
    return title, note, lines


def llm_panel(service: object | None, status: ServiceStatus | None) -> LlmPanel:
    """The LLM status panel: backend, model, online or offline and why, the live numbers."""
    if service is None or status is None:
        return LlmPanel(
            backend="none", model="", online=False, state="OFF", state_color=theme.TEXT_DIM,
            reason="no language model: GOAP and the behaviour tree only "
                   "(run with --backend auto, ollama, embedded or scripted)",
            rows=[],
        )

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    rows = [
        ("in flight", str(status.in_flight)),
        ("queue depth", str(status.queue_depth)),
        ("last latency", secs(status.last_latency_s)),
        ("first token", secs(status.last_ttft_s)),
        ("tokens/s", "-" if status.last_tokens_per_s is None
         else f"{status.last_tokens_per_s:.1f}"),
        ("requests", f"{status.requests_total}  ok {status.plans_ok}  failed {status.failures}"),
    ]
    withdrawn = [(name, n) for name, n in (("cancelled", status.cancelled),
                                           ("superseded", status.superseded),
                                           ("refused", status.refused),
                                           ("expired", status.expired)) if n]
    if withdrawn:  # neither ok nor failed: replaced, refused, or expired unseen in the queue
        rows.append(("withdrawn", "  ".join(f"{name} {n}" for name, n in withdrawn)))
    if status.warming_up:
        state, color = "WARMING UP", theme.WARN
    elif status.online:
        state, color = "ONLINE", theme.GOOD
    else:
        state, color = "OFFLINE", theme.BAD
    return LlmPanel(
        backend=status.backend, model=status.model or "-", online=status.online,
        state=state, state_color=color, reason=status.reason, rows=rows,
    )


def build_timeline(
    status: ServiceStatus | None, game_now: float, selected: int | None,
    span_s: float = TIMELINE_SPAN_S, max_lanes: int = 6,
) -> TimelineModel:
    """Bars for the recent requests over the last ``span_s`` seconds, packed into lanes (a
    request goes into the first lane free when it was queued, so overlapping requests stack).

    Live services stamp requests on the monotonic wall clock (``status.now``); scripted and
    replayed ones on game time (``status.clock == "game"``): then game time is the axis, and
    a request whose answer time is still ahead is drawn as running.
    """
    if status is None:
        return TimelineModel(span_s, "wall", [], 0, 0.0, 0)
    clock = "game" if status.clock == "game" or status.now <= 0 else "wall"
    now = status.now if clock == "wall" else game_now
    lo = now - span_s
    bars: list[TimelineBar] = []
    lane_end: list[float] = []
    intervals: list[tuple[float, float]] = []
    records = sorted(status.recent, key=lambda r: (r.queued_at, r.request_id))
    for r in records:
        if r.queued_at > now:
            continue
        running = r.finished_at is None or r.finished_at > now
        end = now if running else float(r.finished_at)  # type: ignore[arg-type]
        started = r.started_at if r.started_at is not None and r.started_at <= now else None
        if started is not None:
            intervals.append((started, end))
        if end < lo:
            continue
        outcome = r.outcome
        if running:
            outcome = "running" if started is not None else "queued"
        lane = next((i for i, e in enumerate(lane_end) if e <= r.queued_at), len(lane_end))
        if lane == len(lane_end):
            lane_end.append(end)
        else:
            lane_end[lane] = end
        if lane >= max_lanes:
            lane = max_lanes - 1

        def frac(v: float | None) -> float | None:
            return None if v is None else max(0.0, min(1.0, (v - lo) / span_s))

        ft = r.first_token_at if r.first_token_at is not None and r.first_token_at <= now else None
        bars.append(TimelineBar(
            request_id=r.request_id, agent_id=r.agent_id, lane=lane,
            queued=frac(r.queued_at) or 0.0, started=frac(started), first_token=frac(ft),
            end=frac(end) or 0.0, outcome=outcome, color=theme.outcome_color(outcome),
            running=running, mine=r.agent_id == selected,
        ))
    pct = status.concurrency_pct if clock == "wall" else concurrency_pct(intervals, lo, now)
    return TimelineModel(span_s, clock, bars, min(max_lanes, len(lane_end)), pct,
                         len(status.recent))


def build_log(session: GameSession, selected: int | None, limit: int) -> list[LogLine]:
    """The latest mode changes (and requests, outcomes, rejected steps, orders), oldest first."""
    out: list[LogLine] = []
    if limit <= 0:
        return out
    for ent, ev in reversed(session.arbiter_events):
        if ev.kind not in LOG_KINDS:
            continue
        if ev.kind == "transition":
            color = theme.MODE_COLORS[ev.mode]
        elif ev.kind == "rejected" or (ev.kind == "outcome" and "failed" in ev.text):
            color = theme.BAD
        elif ev.kind == "order":
            color = theme.TEXT
        else:
            color = theme.TEXT_DIM
        out.append(LogLine(ev.t, f"{session.name_of(ent)}#{ent}", ev.text, color,
                           ent == selected))
        if len(out) >= limit:
            break
    out.reverse()
    return out

"""The frame model: what one frame shows, as plain data computed from esper_arbiter.components.

:func:`build_frame` reads a :class:`~game.world.GameSession`'s components and logs (never
calling game logic) and returns a :class:`FrameModel`: the scene (units, smoke, shots, floating
numbers, mode badges, the plans drawn on the map) and the HUD (selected agent, plan, LLM status,
request timeline, event log). The drawing modules turn it into pixels; tests assert on it
directly, so "the companion shows a green ``LLM 2/4`` ring and its plan's smoke target" is a
check on data, not on pixels.

The model is built in parts: :mod:`game.render.scene_model` (the map: units, smoke, shots,
plans), :mod:`game.render.hud_model` (the panels: agent, LLM status, timeline, log) and
:mod:`game.render.render_state` (what is kept between frames: the view, the render memory,
the status poller). This module puts them together and re-exports their names.

Nothing here imports pygame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import esper

from esper_arbiter.components.agent import Agent, ArbiterState
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.game.render.hud_model import (
    CONTROLS,
    LOG_KINDS,
    TIMELINE_SPAN_S,
    AgentPanel,
    Banner,
    HudModel,
    LlmPanel,
    LogLine,
    PlanLine,
    TimelineBar,
    TimelineModel,
    TopBar,
    build_agent_panel,
    build_banner,
    build_log,
    build_timeline,
    build_top_bar,
    llm_panel,
)
from esper_arbiter.game.render.render_state import (
    Point,
    RenderMemory,
    StatusPoller,
    Tile,
    ViewState,
)
from esper_arbiter.game.render.scene_model import (
    FLOAT_TEXT_S,
    SHOT_FADE_S,
    SMOKE_FADE_IN_S,
    SMOKE_FADE_OUT_S,
    TIMED_ACTS,
    AgentPlan,
    FloatText,
    ModeBadge,
    PlanMark,
    SceneModel,
    Shot,
    Smoke,
    UnitModel,
    badge_for,
    build_scene,
    plan_marks,
)
from esper_arbiter.game.state import Dead
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import ServiceStatus

ORDER_KEYS: tuple[str, ...] = ("follow", "hold", "attack", "extract")
"""Order given by keys 1-4, in that order."""


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
    scene = build_scene(session, view, selected, states, tasks, memory, now)
    hud = HudModel(
        top=build_top_bar(session, view, len(esper.get_component(Agent))),
        agent=None if selected is None else build_agent_panel(
            session, selected, states[selected], tasks.get(selected), memory, now
        ),
        llm=llm_panel(session.service, status),
        timeline=build_timeline(status, now, selected),
        log=build_log(session, selected, view.log_lines),
        banner=build_banner(session),
        toast=view.toast,
        show_help=view.show_help,
        show_start=view.show_start,
    )
    return FrameModel(scene=scene, hud=hud, selected=selected)


__all__ = [
    "CONTROLS", "FLOAT_TEXT_S", "LOG_KINDS", "ORDER_KEYS", "SHOT_FADE_S", "SMOKE_FADE_IN_S",
    "SMOKE_FADE_OUT_S", "TIMED_ACTS", "TIMELINE_SPAN_S", "AgentPanel", "AgentPlan", "Banner",
    "FloatText", "FrameModel", "HudModel", "LlmPanel", "LogLine", "ModeBadge", "PlanLine",
    "PlanMark", "Point", "RenderMemory", "SceneModel", "Shot", "Smoke", "StatusPoller", "Tile",
    "TimelineBar", "TimelineModel", "TopBar", "UnitModel", "ViewState", "agents_of",
    "badge_for", "build_frame", "build_log", "build_timeline", "llm_panel", "plan_marks",
    "resolve_selection",
]

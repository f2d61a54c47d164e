"""Rendering hello_companion headless: mode overlays, plan drawing, HUD panels, screenshots.

Frames are drawn on SDL's dummy driver. Checks go through the HUD/scene model (labels, colours,
plan lines) and through the drawn pixels (the mode colour really is on screen around the agent).
"""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from collections.abc import Callable, Iterator
from pathlib import Path

import esper
import pygame
import pytest

from esper_arbiter.components.actions import Attack, MoveTo, PlanIntent, ThrowSmoke, describe_step
from esper_arbiter.components.agent import ArbiterState, Mode, StepRejection
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.game.render import theme
from esper_arbiter.game.render.layout import compute_layout
from esper_arbiter.game.render.model import (
    FrameModel,
    StatusPoller,
    ViewState,
    build_frame,
    build_timeline,
    llm_panel,
)
from esper_arbiter.game.render.renderer import Renderer
from esper_arbiter.game.scenario import DEFAULT_SCENARIO, build_stress_scenario, load_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import RequestRecord, ServiceStatus
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

DT = 1.0 / 30.0
SIZE = (1280, 720)


@pytest.fixture(scope="module", autouse=True)
def _fonts() -> Iterator[None]:
    pygame.font.init()
    yield


@pytest.fixture
def sessions() -> Iterator[Callable[..., GameSession]]:
    made: list[GameSession] = []

    def make(service: object = None, config: ArbiterConfig | None = None,
             scenario: object = None, seed: int = 1) -> GameSession:
        sc = scenario if scenario is not None else load_scenario(DEFAULT_SCENARIO)
        s = GameSession(sc, seed=seed, service=service, config=config)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make
    for s in reversed(made):
        s.close()


def state_of(session: GameSession, ent: int) -> ArbiterState:
    session.activate()
    return esper.component_for_entity(ent, ArbiterState)


def mode_of(session: GameSession, ent: int) -> Mode | None:
    """The agent's mode (None before the arbiter first saw it)."""
    session.activate()
    state = esper.try_component(ent, ArbiterState)
    return None if state is None else state.mode


def run_until(session: GameSession, done: Callable[[], bool], limit: float = 30.0) -> None:
    while not done():
        assert session.t < limit, f"condition not reached by t={limit}"
        assert session.result is None, f"round ended first: {session.result}"
        session.step(DT)


def draw(session: GameSession, view: ViewState | None = None,
         size: tuple[int, int] = SIZE) -> tuple[pygame.Surface, FrameModel, Renderer]:
    surface = pygame.Surface(size)
    renderer = Renderer()
    status = StatusPoller(session.service, 0.0).get()
    frame = renderer.render(surface, session, view or ViewState(), status, pulse=0.0)
    return surface, frame, renderer


def colour_near(surface: pygame.Surface, renderer: Renderer, session: GameSession, ent: int,
                color: tuple[int, int, int]) -> int:
    """Pixels of exactly ``color`` within a tile and a half of ``ent`` on screen."""
    layout = renderer.layout(surface.get_size(), session.map.width, session.map.height)
    session.activate()
    from esper_arbiter.components.world import Position

    pos = esper.component_for_entity(ent, Position)
    cx, cy = layout.to_px(pos.x, pos.y)
    r = int(layout.tile * 1.5)
    count = 0
    for x in range(max(0, cx - r), min(surface.get_width(), cx + r)):
        for y in range(max(0, cy - r), min(surface.get_height(), cy + r)):
            if tuple(surface.get_at((x, y)))[:3] == color:
                count += 1
    return count


# -- one frame per mode ----------------------------------------------------------------------


def test_goap_frame_shows_a_blue_goap_ring_and_the_current_step(
    sessions: Callable[..., GameSession],
) -> None:
    s = sessions(service=None)
    for _ in range(15):
        s.step(DT)
    companion = s.companions[0]
    surface, frame, renderer = draw(s)
    unit = next(u for u in frame.scene.units if u.entity == companion)
    assert unit.badge is not None
    assert (unit.badge.label, unit.badge.color) == ("GOAP", theme.GOAP_BLUE)
    assert frame.hud.agent is not None and frame.hud.agent.label == "GOAP"
    assert frame.hud.agent.plan_lines == []  # no model plan: GOAP decides step by step
    assert colour_near(surface, renderer, s, companion, theme.GOAP_BLUE) > 20
    assert colour_near(surface, renderer, s, companion, theme.LLM_GREEN) == 0
    # the step GOAP is carrying out is drawn on the map as a mark of the agent
    plans = {p.entity: p for p in frame.scene.plans}
    assert companion in plans and plans[companion].marks[0].step == 0


def test_llm_frame_shows_green_label_with_step_and_the_plan(
    sessions: Callable[..., GameSession],
) -> None:
    s = sessions(service=ScriptedPlanService(1, delay_s=0.5))
    companion = s.companions[0]
    run_until(s, lambda: mode_of(s, companion) is Mode.EXECUTING_LLM)
    state = state_of(s, companion)
    assert state.plan is not None
    surface, frame, renderer = draw(s)
    unit = next(u for u in frame.scene.units if u.entity == companion)
    assert unit.badge is not None
    n = len(state.plan.steps)
    assert unit.badge.label == f"LLM {state.step_index + 1}/{n}"
    assert unit.badge.color == theme.LLM_GREEN
    agent = frame.hud.agent
    assert agent is not None and agent.color == theme.LLM_GREEN
    assert [ln.text for ln in agent.plan_lines] == [describe_step(st) for st in state.plan.steps]
    assert [ln.state for ln in agent.plan_lines].count("active") == 1
    assert agent.plan_lines[state.step_index].state == "active"
    # the remaining steps are drawn on the map with their step numbers
    marks = next(p for p in frame.scene.plans if p.entity == companion).marks
    remaining = list(range(state.step_index + 1, n + 1))
    assert [m.step for m in marks] == remaining[: len(marks)]
    assert marks[0].active
    kinds = {m.kind for m in marks}
    assert kinds & {"smoke", "cover", "attack", "path"}
    assert colour_near(surface, renderer, s, companion, theme.LLM_GREEN) > 20
    # the log shows the mode change in the LLM colour
    assert any("GOAP -> ExecutingLLM" in ln.text and ln.color == theme.LLM_GREEN
               for ln in frame.hud.log)


def test_behaviour_tree_frame_is_amber_after_repeated_model_failures(
    sessions: Callable[..., GameSession],
) -> None:
    config = ArbiterConfig(llm_cooldown_s=1.0, failure_backoff_max_s=2.0,
                           first_request_at_s=0.2)
    s = sessions(service=ScriptedPlanService(1, delay_s=0.5, failure_every=1), config=config)
    companion = s.companions[0]
    run_until(s, lambda: mode_of(s, companion) is Mode.BEHAVIOR_TREE)
    surface, frame, renderer = draw(s)
    unit = next(u for u in frame.scene.units if u.entity == companion)
    assert unit.badge is not None
    assert (unit.badge.label, unit.badge.color) == ("BT", theme.BT_AMBER)
    agent = frame.hud.agent
    assert agent is not None and agent.last_failure
    assert colour_near(surface, renderer, s, companion, theme.BT_AMBER) > 20
    times = {label: secs for label, secs, _ in agent.time_in_modes}
    assert times["GOAP"] > 0.0
    assert any("-> BehaviorTree" in ln.text and ln.color == theme.BT_AMBER
               for ln in frame.hud.log)


def test_in_flight_request_gets_a_marker(sessions: Callable[..., GameSession]) -> None:
    s = sessions(service=ScriptedPlanService(1, delay_s=3.0))
    companion = s.companions[0]
    s.step(DT)
    assert s.request_plan(companion, "test")
    s.step(DT)
    s.step(DT)  # decided, then sent on the next frame
    assert esper.has_component(companion, LlmTask)
    _, frame, _ = draw(s)
    unit = next(u for u in frame.scene.units if u.entity == companion)
    assert unit.badge is not None and unit.badge.in_flight
    assert frame.hud.agent is not None and "in flight" in frame.hud.agent.in_flight
    # the timeline shows it as running (the scripted backend answers on game time)
    assert any(b.running and b.outcome == "running" for b in frame.hud.timeline.bars)


def test_rejected_steps_are_listed_with_their_reason(
    sessions: Callable[..., GameSession],
) -> None:
    s = sessions(service=None)
    s.step(DT)
    companion = s.companions[0]
    state = state_of(s, companion)
    enemy = s.enemies[0]
    state.mode = Mode.EXECUTING_LLM
    state.plan = PlanIntent("p-test", (ThrowSmoke(x=8, y=1), MoveTo(x=4, y=4),
                                       Attack(target_id=enemy)), source="llm")
    state.step_index = 1
    state.rejected_steps = [StepRejection(0, "smoke on cooldown")]
    _, frame, _ = draw(s)
    agent = frame.hud.agent
    assert agent is not None
    assert [ln.state for ln in agent.plan_lines] == ["rejected", "active", "pending"]
    assert agent.plan_lines[0].reason == "smoke on cooldown"
    assert agent.label == "LLM 2/3"
    marks = next(p for p in frame.scene.plans if p.entity == companion).marks
    assert [(m.kind, m.step) for m in marks] == [("path", 2), ("attack", 3)]
    assert marks[0].points[-1] == (4.0, 4.0)
    # the path walks around the wall instead of through it
    walls = s.map.walls
    assert all((round(x), round(y)) not in walls for x, y in marks[0].points)


def test_overlays_off_hides_rings_and_plans(sessions: Callable[..., GameSession]) -> None:
    s = sessions(service=None)
    for _ in range(10):
        s.step(DT)
    surface, frame, renderer = draw(s, ViewState(overlays=False))
    assert frame.scene.plans == [] and frame.scene.sight == []
    assert colour_near(surface, renderer, s, s.companions[0], theme.GOAP_BLUE) == 0


# -- HUD pieces -------------------------------------------------------------------------------


def test_llm_panel_says_offline_and_why() -> None:
    off = llm_panel(object(), ServiceStatus(backend="ollama", model="qwen2.5:1.5b",
                                            online=False,
                                            reason="model qwen2.5:1.5b is not pulled"))
    assert off.state == "OFFLINE" and off.state_color == theme.BAD
    assert "not pulled" in off.reason
    none = llm_panel(None, None)
    assert none.state == "OFF" and "GOAP" in none.reason
    on = llm_panel(object(), ServiceStatus(backend="embedded", model="smollm2", in_flight=2,
                                           queue_depth=3, last_latency_s=1.5, last_ttft_s=0.25,
                                           last_tokens_per_s=42.0))
    rows = dict(on.rows)
    assert (rows["in flight"], rows["queue depth"]) == ("2", "3")
    assert rows["last latency"] == "1.50 s" and rows["first token"] == "0.25 s"
    assert rows["tokens/s"] == "42.0"


def _record(rid: int, q: float, s: float | None, f: float | None, outcome: str,
            agent: int = 2) -> RequestRecord:
    return RequestRecord(rid, agent, 0, q, s, None, f, outcome)


def test_timeline_bars_lanes_and_outcome_colours_on_wall_clock() -> None:
    status = ServiceStatus(
        backend="ollama", now=100.0, concurrency_pct=40.0,
        recent=(
            _record(1, 80.0, 80.5, 84.0, "plan"),
            _record(2, 82.0, 83.0, 86.0, "timeout", agent=3),
            _record(3, 90.0, 90.2, None, "running"),
            _record(4, 10.0, 10.0, 12.0, "plan"),  # long gone: outside the window
        ),
    )
    tl = build_timeline(status, game_now=5.0, selected=2, span_s=30.0)
    assert tl.clock == "wall" and tl.concurrency_pct == 40.0
    bars = {b.request_id: b for b in tl.bars}
    assert set(bars) == {1, 2, 3}
    assert bars[1].color == theme.outcome_color("plan")
    assert bars[2].color == theme.outcome_color("timeout") != bars[1].color
    assert bars[1].lane != bars[2].lane  # they overlap in time: two lanes
    assert bars[3].running and bars[3].end == 1.0
    assert bars[1].mine and not bars[2].mine
    # window 70..100 s: queued at 80 s is a third of the way in, done at 84 s
    assert bars[1].queued == pytest.approx(10 / 30) and bars[1].end == pytest.approx(14 / 30)


def test_timeline_on_game_time_marks_future_answers_running() -> None:
    status = ServiceStatus(backend="scripted", recent=(
        _record(1, 1.0, 1.0, 3.0, "plan"),
        _record(2, 2.0, 2.0, 6.0, "plan"),
    ))
    tl = build_timeline(status, game_now=4.0, selected=None, span_s=30.0)
    assert tl.clock == "game"
    bars = {b.request_id: b for b in tl.bars}
    assert not bars[1].running and bars[1].outcome == "plan"
    assert bars[2].running and bars[2].outcome == "running"
    # 1..3 and 2..4 overlap for 1 s of 3 s busy
    assert tl.concurrency_pct == pytest.approx(100.0 / 3.0)


class _CountingService:
    backend_name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def status(self) -> ServiceStatus:
        self.calls += 1
        return ServiceStatus(backend="fake")


def test_status_is_polled_a_few_times_per_second_not_per_frame() -> None:
    now = [0.0]
    service = _CountingService()
    poller = StatusPoller(service, 0.25, clock=lambda: now[0])  # type: ignore[arg-type]
    for frame in range(60):  # one second at 60 FPS
        now[0] = frame / 60.0
        assert poller.get() is not None
    assert service.calls == 4


@pytest.mark.parametrize("size", [(1280, 720), (800, 600), (1920, 1080), (640, 400),
                                  (1600, 500)])
def test_layout_keeps_panels_apart_at_any_window_size(
    sessions: Callable[..., GameSession], size: tuple[int, int],
) -> None:
    layout = compute_layout(size, 20, 10)
    rects = [layout.top, layout.map_area, layout.log, layout.agent, layout.plan, layout.llm,
             layout.timeline]
    window = pygame.Rect((0, 0), size)
    for i, a in enumerate(rects):
        assert window.contains(a), (size, a)
        for b in rects[i + 1:]:
            assert not a.colliderect(b), (size, a, b)
    assert layout.map_area.contains(layout.map_rect)
    s = sessions(service=ScriptedPlanService(1))
    for _ in range(30):
        s.step(DT)
    surface, frame, _ = draw(s, size=size)
    assert surface.get_size() == size and frame.hud.agent is not None


def test_stress_map_gives_every_agent_a_badge(sessions: Callable[..., GameSession]) -> None:
    s = sessions(service=ScriptedPlanService(1), scenario=build_stress_scenario(12, seed=1))
    for _ in range(10):
        s.step(DT)
    _, frame, _ = draw(s)
    badged = {u.entity for u in frame.scene.units if u.badge is not None}
    assert badged == set(s.companions)
    assert frame.hud.top.agents == 12


def test_screenshot_is_written_and_not_blank(
    sessions: Callable[..., GameSession], tmp_path: Path,
) -> None:
    s = sessions(service=ScriptedPlanService(1))
    for _ in range(60):
        s.step(DT)
    surface, _, _ = draw(s)
    path = tmp_path / "shot.png"
    pygame.image.save(surface, str(path))
    loaded = pygame.image.load(str(path))
    assert loaded.get_size() == SIZE
    colours = {tuple(loaded.get_at((x, y)))[:3] for x in range(0, SIZE[0], 7)
               for y in range(0, SIZE[1], 7)}
    assert len(colours) > 30
    for c in (theme.WALL, theme.COVER, theme.ENEMY):
        assert c in colours or any(
            tuple(loaded.get_at((x, y)))[:3] == c for x in range(0, SIZE[0], 2)
            for y in range(0, SIZE[1], 2)
        )


def test_build_frame_leaves_the_round_untouched(sessions: Callable[..., GameSession]) -> None:
    """Rendering reads components only: drawing every frame gives the same round as not."""
    a = sessions(service=ScriptedPlanService(3), seed=3)
    b = sessions(service=ScriptedPlanService(3), seed=3)
    renderer = Renderer()
    surface = pygame.Surface(SIZE)
    for _ in range(240):
        a.step(DT)
        renderer.render(surface, a, ViewState(), StatusPoller(a.service, 0.0).get())
        b.step(DT)
    log_a = [(e, ev.text) for e, ev in a.arbiter_events]
    log_b = [(e, ev.text) for e, ev in b.arbiter_events]
    assert log_a == log_b
    assert build_frame(a, ViewState(), None).hud.top.t == pytest.approx(b.t)

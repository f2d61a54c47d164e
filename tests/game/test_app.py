"""The windowed app and the front-end command line, on SDL's dummy drivers.

Key presses are real pygame events (``pygame.event.post``) fed through the app's handler, the
way the window loop does it.
"""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import esper
import pygame
import pytest

from esper_arbiter.components.llm import LlmTask
from esper_arbiter.components.world import Orders, Position
from esper_arbiter.game.app import App, display_problem, run_window
from esper_arbiter.game.frontend_cli import (
    ScreenshotPlan,
    add_frontend_arguments,
    parse_window,
    play_headless,
    run_frontend,
    scenario_from_args,
)
from esper_arbiter.game.headless import run_headless
from esper_arbiter.game.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    build_stress_scenario,
    load_scenario,
)
from esper_arbiter.game.state import PlayerInput
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.scripted import ScriptedPlanService

DT = 1.0 / 30.0


@pytest.fixture(scope="module", autouse=True)
def _display() -> Iterator[None]:
    pygame.display.init()
    pygame.font.init()
    pygame.display.set_mode((320, 200))
    yield
    pygame.display.quit()


def factory(scenario: Scenario | None = None, llm: bool = True,
            seed: int = 1) -> Callable[[], GameSession]:
    sc = scenario if scenario is not None else load_scenario(DEFAULT_SCENARIO)

    def make() -> GameSession:
        service = ScriptedPlanService(seed, delay_s=1.0) if llm else None
        return GameSession(sc, seed=seed, service=service)

    return make


@pytest.fixture
def make_app() -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(scenario: Scenario | None = None, llm: bool = True, **kwargs: object) -> App:
        app = App(factory(scenario, llm), show_start=False, **kwargs)  # type: ignore[arg-type]
        apps.append(app)
        return app

    yield make
    for app in reversed(apps):
        app.close()


def press(app: App, key: int, mod: int = 0, up: bool = False) -> None:
    """Post a real key event and feed the queue through the app, like the window loop."""
    pygame.event.clear()
    pygame.event.post(pygame.event.Event(pygame.KEYUP if up else pygame.KEYDOWN, key=key,
                                         mod=mod))
    for event in pygame.event.get():
        app.handle_event(event)


def orders_of(app: App, ent: int) -> Orders:
    app.session.activate()
    return esper.component_for_entity(ent, Orders)


# -- keys -------------------------------------------------------------------------------------


def test_number_keys_order_the_selected_companion_and_ask_for_a_replan(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    app.update(0.2)
    companion = app.selected
    assert companion == app.session.companions[0]
    for key, order in ((pygame.K_3, "attack"), (pygame.K_2, "hold"), (pygame.K_4, "extract"),
                       (pygame.K_1, "follow")):
        before = orders_of(app, companion).serial
        press(app, key)
        o = orders_of(app, companion)
        assert (o.order, o.serial) == (order, before + 1)
    app.update(DT * 2)
    # the order went out as an urgent request to the model
    texts = [ev.text for ent, ev in app.session.arbiter_events if ent == companion]
    assert any("order: follow" in t for t in texts)


def test_tab_cycles_the_selected_agent(make_app: Callable[..., App]) -> None:
    app = make_app(scenario=build_stress_scenario(3, seed=1))
    app.update(DT)
    agents = list(app.session.companions)
    assert app.selected == agents[0]
    press(app, pygame.K_TAB)
    assert app.selected == agents[1]
    press(app, pygame.K_TAB)
    press(app, pygame.K_TAB)
    assert app.selected == agents[0]
    press(app, pygame.K_TAB, mod=pygame.KMOD_SHIFT)
    assert app.selected == agents[2]
    # an order goes to the selected one only
    press(app, pygame.K_2)
    assert orders_of(app, agents[2]).order == "hold"
    assert orders_of(app, agents[0]).order != "hold"
    frame = app.draw(pygame.Surface((1280, 720)))
    assert frame.selected == agents[2] and frame.hud.agent is not None
    assert frame.hud.agent.entity == agents[2]


def test_movement_keys_take_over_from_the_autopilot(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.update(DT)
    s = app.session
    assert app.autopilot
    s.activate()
    x0 = esper.component_for_entity(s.player, Position).x
    press(app, pygame.K_d)
    assert not app.autopilot
    assert esper.component_for_entity(s.player, PlayerInput).move == (1.0, 0.0)
    app.update(0.2)
    s.activate()
    assert esper.component_for_entity(s.player, Position).x > x0
    press(app, pygame.K_d, up=True)
    assert esper.component_for_entity(s.player, PlayerInput).move == (0.0, 0.0)
    press(app, pygame.K_SPACE)
    assert app.autopilot


def test_fixed_step_accumulator_and_pause(make_app: Callable[..., App]) -> None:
    app = make_app(dt=0.05)
    assert app.update(0.12) == 2  # 0.02 s carried over
    assert app.update(0.03) == 1
    assert app.session.t == pytest.approx(0.15)
    press(app, pygame.K_p)
    assert app.view.paused and app.update(1.0) == 0
    press(app, pygame.K_p)
    assert app.update(0.1) == 2
    assert app.update(10.0) <= 6  # a stall never turns into a burst of steps


def test_start_card_waits_for_a_key(make_app: Callable[..., App]) -> None:
    app = App(factory(llm=False), show_start=True)
    try:
        assert app.update(1.0) == 0
        frame = app.draw(pygame.Surface((1280, 720)))
        assert frame.hud.show_start and ("Tab", "select the next AI agent (Shift+Tab: "
                                                "previous)") in frame.hud.controls
        press(app, pygame.K_RETURN)
        assert not app.view.show_start and app.update(0.1) == 3
    finally:
        app.close()


def test_l_asks_the_model_now(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.update(DT)
    companion = app.selected
    assert companion is not None
    press(app, pygame.K_l)
    app.update(DT)  # the companion decides to ask...
    app.update(DT)  # ...and the request goes out on the next frame
    app.session.activate()
    assert esper.has_component(companion, LlmTask)
    assert "asked the language model" in app.view.toast
    offline = make_app(llm=False)
    press(offline, pygame.K_l)
    assert "no language model" in offline.view.toast


def test_help_overlays_restart_and_quit(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.update(1.0)
    press(app, pygame.K_h)
    assert app.view.show_help
    press(app, pygame.K_ESCAPE)  # closes the help, does not quit
    assert not app.view.show_help and app.running
    press(app, pygame.K_o)
    assert not app.draw(pygame.Surface((1280, 720))).scene.overlays
    old = app.session
    press(app, pygame.K_r)
    assert app.session is not old and old.closed and app.session.t == 0.0
    press(app, pygame.K_ESCAPE)
    assert not app.running


def test_f12_writes_a_screenshot(make_app: Callable[..., App], tmp_path: Path) -> None:
    app = make_app(screenshot_dir=tmp_path / "shots")
    app.update(1.0)
    press(app, pygame.K_F12)
    surface = pygame.Surface((1280, 720))
    app.draw(surface)
    path = app.last_screenshot
    assert path is not None and path.exists() and path.parent == tmp_path / "shots"
    img = pygame.image.load(str(path))
    colours = {tuple(img.get_at((x, y)))[:3] for x in range(0, 1280, 9) for y in range(0, 720, 9)}
    assert len(colours) > 30


def test_window_loop_runs_on_the_dummy_driver(tmp_path: Path) -> None:
    shot = tmp_path / "last.png"
    assert run_window(factory(), size=(960, 540), fps=240, max_game_seconds=0.3,
                      show_start=False, final_screenshot=shot) == 0
    assert shot.exists() and pygame.image.load(str(shot)).get_size() == (960, 540)
    pygame.display.init()
    pygame.display.set_mode((320, 200))


# -- headless and command line ----------------------------------------------------------------


def test_30_second_headless_round_with_screenshots_matches_the_plain_log(
    tmp_path: Path,
) -> None:
    plain: list[str] = []
    with factory()() as s:
        run_headless(s, 30.0, DT, plain.append)
    drawn: list[str] = []
    with factory()() as s:
        _, saved = play_headless(
            s, 30.0, DT, drawn.append,
            ScreenshotPlan(final=tmp_path / "end.png", every_s=5.0, folder=tmp_path / "every"),
        )
    assert drawn == plain  # drawing does not change the round
    every = sorted((tmp_path / "every").glob("*.png"))
    assert every and all(p in saved for p in every)
    assert (tmp_path / "end.png").exists()
    img = pygame.image.load(str(tmp_path / "end.png"))
    assert len({tuple(img.get_at((x, y)))[:3] for x in range(0, 1280, 9)
                for y in range(0, 720, 9)}) > 30


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_demo.py", exit_on_error=False)
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", default=str(DEFAULT_SCENARIO))
    add_frontend_arguments(parser)
    return parser


def test_no_display_says_so_and_runs_headless(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert display_problem() is not None
    args = _parser().parse_args(["--seconds", "2", "--screenshot", str(tmp_path / "x.png")])
    lines: list[str] = []
    assert run_frontend(args, factory(), lines.append) == 0
    assert "running headless instead" in caplog.text
    assert lines[-1].startswith("outcome: ")
    assert (tmp_path / "x.png").exists()
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    assert display_problem() is None


@pytest.mark.parametrize("argv", [
    ["--window", "12x"], ["--window", "100x100"], ["--agents", "0"], ["--agents", "many"],
    ["--fps", "0"], ["--screenshot", "out.txt"], ["--screenshot-every", "-1", "d"],
    ["--screenshot-every", "x", "d"],
])
def test_bad_front_end_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        _parser().parse_args(argv)


def test_front_end_flags_parse(tmp_path: Path) -> None:
    args = _parser().parse_args([
        "--window", "1600x900", "--agents", "50", "--fps", "30",
        "--screenshot-every", "2.5", str(tmp_path / "d"), "--screenshot", str(tmp_path / "a.png"),
    ])
    assert args.window == (1600, 900) and args.agents == 50 and args.fps == 30
    assert args.screenshot_every == (2.5, tmp_path / "d")
    assert parse_window("800X600") == (800, 600)
    sc = scenario_from_args(args)
    assert len(sc.companions) == 50 and len(sc.enemies) == 50

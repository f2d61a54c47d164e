"""The windowed game: a fixed-step simulation under a 60 FPS pygame render loop.

:class:`App` holds everything the loop needs (the session, what the user sees, input state) and
is driven by three calls per frame: :meth:`App.handle_event` for each pygame event,
:meth:`App.update` with the real time that passed, :meth:`App.draw` onto a surface. The
simulation advances in fixed steps of ``dt`` game seconds from an accumulator, so the round
plays the same whatever the frame rate; rendering only reads components.

:func:`run_window` opens a resizable window and runs the loop; :func:`display_problem` tells
whether there is a display to open it on.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # the banner would go to stdout

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import esper
import pygame

from esper_arbiter.game.headless import round_outcome, summary_line
from esper_arbiter.game.interrupt import EXIT_INTERRUPTED
from esper_arbiter.game.render.model import (
    ORDER_KEYS,
    FrameModel,
    StatusPoller,
    ViewState,
    agents_of,
    resolve_selection,
)
from esper_arbiter.game.render.renderer import Renderer
from esper_arbiter.game.state import PlayerInput
from esper_arbiter.game.world import GameSession

log = logging.getLogger("esper_arbiter.game.app")

SessionFactory = Callable[[], GameSession]

MAX_FRAME_S = 0.25
"""Real time counted per frame at most (a stall does not turn into a burst of steps)."""
MAX_STEPS_PER_FRAME = 6
"""Fixed steps run per frame at most; a simulation slower than real time plays in slow motion
instead of freezing the window."""
TOAST_S = 2.5
DEFAULT_WINDOW = (1280, 720)
WINDOW_TITLE = "hello_companion - esper-arbiter"

_MOVE_KEYS: dict[int, tuple[int, int]] = {
    pygame.K_w: (0, -1), pygame.K_UP: (0, -1),
    pygame.K_s: (0, 1), pygame.K_DOWN: (0, 1),
    pygame.K_a: (-1, 0), pygame.K_LEFT: (-1, 0),
    pygame.K_d: (1, 0), pygame.K_RIGHT: (1, 0),
}
_ORDER_KEYS: dict[int, str] = {
    pygame.K_1: ORDER_KEYS[0], pygame.K_2: ORDER_KEYS[1],
    pygame.K_3: ORDER_KEYS[2], pygame.K_4: ORDER_KEYS[3],
    pygame.K_KP1: ORDER_KEYS[0], pygame.K_KP2: ORDER_KEYS[1],
    pygame.K_KP3: ORDER_KEYS[2], pygame.K_KP4: ORDER_KEYS[3],
}


def display_problem() -> str | None:
    """Why no window can be opened here, or ``None`` if one probably can.

    An explicit ``SDL_VIDEODRIVER=dummy`` (tests, CI) counts as a display: the window then runs
    on SDL's dummy driver. On Linux and other X11/Wayland systems, no ``DISPLAY`` and no
    ``WAYLAND_DISPLAY`` means no display. Whether opening really works is only known when
    pygame tries (see :func:`run_window`).
    """
    driver = os.environ.get("SDL_VIDEODRIVER", "").strip().lower()
    if driver in ("dummy", "offscreen"):
        return None
    if sys.platform.startswith(("win", "darwin")) or driver in ("windows", "cocoa"):
        return None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "no display found (DISPLAY and WAYLAND_DISPLAY are not set)"
    return None


class App:
    """State and input handling of the windowed game (see module docstring)."""

    def __init__(
        self,
        make_session: SessionFactory,
        *,
        dt: float = 1.0 / 30.0,
        show_start: bool = True,
        screenshot_dir: Path = Path("screenshots"),
        status_interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt!r}")
        self.make_session = make_session
        self.dt = dt
        self.clock = clock
        self.screenshot_dir = screenshot_dir
        self.status_interval_s = status_interval_s
        self.session = make_session()
        self.renderer = Renderer()
        self.poller = StatusPoller(self.session.service, status_interval_s, clock)
        self.view = ViewState(show_start=show_start)
        self.running = True
        self.accumulator = 0.0
        self.held: list[int] = []
        self.want_screenshot = False
        self.last_screenshot: Path | None = None
        self.last_frame: FrameModel | None = None
        self._toast_until = 0.0
        self._slow_warned = False
        self.view.selected = resolve_selection(self.session, None)

    # -- input ---------------------------------------------------------------------------

    def handle_event(self, event: pygame.event.Event) -> None:
        """Apply one pygame event (quit, key press or release)."""
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            self._key_down(event.key, getattr(event, "mod", 0))
        elif event.type == pygame.KEYUP and event.key in _MOVE_KEYS:
            if event.key in self.held:
                self.held.remove(event.key)
            self._apply_move()

    def _key_down(self, key: int, mod: int) -> None:
        view = self.view
        if view.show_start:
            if key == pygame.K_ESCAPE:
                self.running = False
            view.show_start = False
            return
        if view.show_help and key in (pygame.K_h, pygame.K_ESCAPE):
            view.show_help = False
            return
        if key == pygame.K_ESCAPE:
            self.running = False
        elif key == pygame.K_h:
            view.show_help = True
        elif key == pygame.K_p:
            view.paused = not view.paused
            self.toast("paused" if view.paused else "resumed")
        elif key == pygame.K_o:
            view.overlays = not view.overlays
            self.toast(f"mode overlays {'on' if view.overlays else 'off'}")
        elif key == pygame.K_r:
            self.restart()
        elif key == pygame.K_F12:
            self.want_screenshot = True
        elif key == pygame.K_TAB:
            self.cycle_selection(-1 if mod & pygame.KMOD_SHIFT else 1)
        elif key in _ORDER_KEYS:
            self.order(_ORDER_KEYS[key])
        elif key == pygame.K_l:
            self.ask_llm()
        elif key == pygame.K_SPACE:
            self.held.clear()
            self.session.set_autopilot(True)
            self.toast("the autopilot drives the player again")
        elif key in _MOVE_KEYS:
            if key not in self.held:
                self.held.append(key)
            self._apply_move()

    def _apply_move(self) -> None:
        dx = sum(_MOVE_KEYS[k][0] for k in self.held)
        dy = sum(_MOVE_KEYS[k][1] for k in self.held)
        if self.session.closed:
            return
        if self.held and self.autopilot:
            self.session.set_autopilot(False)
            self.toast("you have the player (Space: autopilot)")
        if not self.autopilot:
            self.session.set_player_move(dx, dy)

    @property
    def autopilot(self) -> bool:
        """True while the autopilot drives the player."""
        self.session.activate()
        inp = esper.try_component(self.session.player, PlayerInput)
        return inp is None or inp.autopilot

    # -- commands ------------------------------------------------------------------------

    @property
    def selected(self) -> int | None:
        self.view.selected = resolve_selection(self.session, self.view.selected)
        return self.view.selected

    def cycle_selection(self, direction: int = 1) -> int | None:
        """Select the next (or previous) live AI agent."""
        agents = agents_of(self.session)
        if not agents:
            self.toast("no AI agent to select")
            return None
        current = self.selected
        i = agents.index(current) if current in agents else -1
        self.view.selected = agents[(i + direction) % len(agents)]
        self.toast(f"selected {self._name(self.view.selected)}")
        return self.view.selected

    def order(self, order: str) -> bool:
        """Give the selected companion ``order``; it goes into its snapshot and asks the
        arbiter for an urgent replan."""
        ent = self.selected
        if ent is None:
            self.toast("no companion to order")
            return False
        taken = self.session.give_order(order, ent) > 0
        self.toast(f"{self._name(ent)}: {order}" + ("" if taken else " (cannot take orders)"))
        return taken

    def ask_llm(self) -> bool:
        """Ask for an LLM plan for the selected agent now."""
        ent = self.selected
        ok = ent is not None and self.session.request_plan(ent, "player pressed L")
        if ok:
            self.poller.refresh()
            self.toast(f"asked the language model for a plan for {self._name(ent)}")
        elif self.session.service is None:
            self.toast("no language model in this run (GOAP and behaviour tree only)")
        else:
            self.toast("no agent can take a plan now")
        return bool(ok)

    def restart(self) -> None:
        """A new round from the same scenario and seed."""
        try:
            fresh = self.make_session()
        except Exception as exc:  # keep playing the old round rather than crash
            log.exception("restart failed")
            self.toast(f"restart failed: {exc}")
            return
        old = self.session
        self.session = fresh
        old.close()
        self.renderer.reset()
        self.poller = StatusPoller(fresh.service, self.status_interval_s, self.clock)
        self.accumulator = 0.0
        self.held.clear()
        self.view.paused = False
        self.view.selected = resolve_selection(fresh, None)
        self.toast(f"new round (seed {fresh.seed})")

    def toast(self, text: str) -> None:
        self.view.toast = text
        self._toast_until = self.clock() + TOAST_S
        log.info("%s", text)

    def _name(self, ent: int | None) -> str:
        return "-" if ent is None else f"{self.session.name_of(ent)}#{ent}"

    # -- frame ---------------------------------------------------------------------------

    def update(self, real_dt: float) -> int:
        """Advance the simulation by the real time that passed; returns the steps run."""
        if self.view.toast and self.clock() >= self._toast_until:
            self.view.toast = ""
        if self.view.show_start or self.view.paused or self.session.result is not None:
            self.accumulator = 0.0
            return 0
        self.accumulator += min(max(0.0, real_dt), MAX_FRAME_S)
        steps = 0
        # A hair of tolerance: 0.12 - 0.05 - 0.05 + 0.03 must make a step of 0.05.
        while self.accumulator + 1e-9 >= self.dt and steps < MAX_STEPS_PER_FRAME:
            self.session.step(self.dt)
            self.accumulator -= self.dt
            steps += 1
        if self.accumulator + 1e-9 >= self.dt:
            if not self._slow_warned:
                log.warning("the simulation runs slower than real time here: slow motion")
                self._slow_warned = True
            self.accumulator = 0.0
        return steps

    def draw(self, surface: pygame.Surface) -> FrameModel:
        """Draw the current frame (and take the requested screenshot)."""
        self.last_frame = self.renderer.render(surface, self.session, self.view,
                                               self.poller.get())
        if self.want_screenshot:
            self.want_screenshot = False
            self.screenshot(surface)
        return self.last_frame

    def screenshot(self, surface: pygame.Surface, path: Path | None = None) -> Path | None:
        """Save ``surface`` as a PNG (default: a timestamped file in ``screenshot_dir``)."""
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = self.screenshot_dir / f"hello_companion-{stamp}-t{self.session.t:06.1f}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pygame.image.save(surface, str(path))
        except (OSError, pygame.error) as exc:
            log.error("could not save a screenshot to %s: %s", path, exc)
            self.toast(f"screenshot failed: {exc}")
            return None
        self.last_screenshot = path
        log.warning("screenshot saved to %s", path.resolve())
        self.toast(f"screenshot saved to {path}")
        return path

    def close(self) -> None:
        self.session.close()


def run_window(
    make_session: SessionFactory,
    *,
    dt: float = 1.0 / 30.0,
    fps: int = 60,
    size: tuple[int, int] = DEFAULT_WINDOW,
    screenshot_dir: Path = Path("screenshots"),
    max_game_seconds: float | None = None,
    show_start: bool = True,
    final_screenshot: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    write: Callable[[str], None] | None = None,
) -> int:
    """Open a resizable window and play until the user quits. Returns the exit code: 0, or
    130 when ``should_stop`` ended the loop (Ctrl-C, see :mod:`esper_arbiter.game.interrupt`).

    Raises ``pygame.error`` when no window can be opened (the caller falls back to headless).
    ``max_game_seconds`` ends the loop after that much game time (the CLI passes it on SDL's
    dummy driver, where nobody could close the window). ``final_screenshot`` saves the last
    frame there when the loop ends. ``should_stop`` is asked once per frame. ``write`` receives
    the outcome line of the round on screen when the loop ends (the headless summary line),
    before the session is closed.
    """
    interrupted = False
    pygame.display.init()
    try:
        pygame.font.init()
        screen = pygame.display.set_mode(size, pygame.RESIZABLE)
        pygame.display.set_caption(WINDOW_TITLE)
        pygame.key.set_repeat()  # held keys are tracked as down/up, not as repeats
        app = App(make_session, dt=dt, screenshot_dir=screenshot_dir, show_start=show_start)
        try:
            clock = pygame.time.Clock()
            fps_avg = 0.0
            while app.running:
                if should_stop is not None and should_stop():
                    interrupted = True
                    break
                for event in pygame.event.get():
                    app.handle_event(event)
                real_dt = clock.tick(fps) / 1000.0
                app.update(real_dt)
                if real_dt > 0:
                    fps_avg = 1.0 / real_dt if fps_avg == 0 else 0.9 * fps_avg + 0.1 / real_dt
                app.view.fps = fps_avg
                screen = pygame.display.get_surface() or screen
                app.draw(screen)
                pygame.display.flip()
                if max_game_seconds is not None and app.session.t >= max_game_seconds:
                    app.running = False
            if final_screenshot is not None:
                app.screenshot(screen, final_screenshot)
            outcome, t = round_outcome(app.session, interrupted)
            log.info("window closed at t=%.2fs (%s)", app.session.t, outcome)
            if write is not None:
                write(summary_line(outcome, t, app.session.totals()))
        finally:
            app.close()
    finally:
        pygame.display.quit()
    return EXIT_INTERRUPTED if interrupted else 0

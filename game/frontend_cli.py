"""Command-line face of the front end: window or headless, screenshots, stress maps.

``add_frontend_arguments(parser)`` adds ``--screenshot``, ``--screenshot-every``, ``--agents``,
``--squad-size``,
``--fps`` and ``--window``; ``run_frontend(args, make_session)`` plays the round:

* without ``--headless``, in a resizable window (:mod:`game.app`); on a machine with no display
  it says so on stderr and in the log, and runs headless instead;
* with ``--headless``, printing the decision log exactly like :mod:`game.headless`, and, when
  asked, rendering PNG screenshots offscreen (SDL's dummy drivers): one at the end of the run
  (``--screenshot PATH``) and/or one every S seconds of game time (``--screenshot-every S DIR``).

pygame is imported only when something is drawn, so a plain headless run does not pay for it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esper_arbiter.game.headless import HeadlessReport, run_headless
from esper_arbiter.game.interrupt import EXIT_INTERRUPTED
from esper_arbiter.game.scenario import Scenario, build_stress_scenario, load_scenario
from esper_arbiter.game.stress import MAX_SQUAD, build_squad_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import paced_by_wall_clock

if TYPE_CHECKING:
    import pygame

    from esper_arbiter.game.render.model import FrameModel, ViewState
    from esper_arbiter.game.render.renderer import Renderer

log = logging.getLogger("esper_arbiter.game.frontend")

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
"""pygame is imported lazily below; its import banner would land in the decision log."""

SessionFactory = Callable[[], GameSession]
Writer = Callable[[str], None]

DEFAULT_WINDOW = (1280, 720)
MAX_AGENTS = 10_000
"""Most agents a stress round may have (headless)."""
WINDOW_MAX_AGENTS = 1000
"""Most agents the window draws at a playable frame rate; more need ``--headless``."""
PROG = "run_demo.py"


# ----------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------


def _png_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, expected a .png file path")
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"expected a .png file path, got {text!r}")
    if not path.parent.exists():
        raise argparse.ArgumentTypeError(f"directory {path.parent} does not exist")
    return path


class _EveryAction(argparse.Action):
    """``--screenshot-every SECONDS DIR`` -> ``(seconds, Path)``."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: str | Sequence[Any] | None, option_string: str | None = None,
    ) -> None:
        assert isinstance(values, list) and len(values) == 2
        seconds_text, dir_text = str(values[0]), str(values[1])
        try:
            seconds = float(seconds_text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            parser.error(f"argument --screenshot-every: expected a positive number of seconds, "
                         f"got {seconds_text!r}")
        folder = Path(dir_text).expanduser()
        if folder.exists() and not folder.is_dir():
            parser.error(f"argument --screenshot-every: {folder} exists and is not a directory")
        setattr(namespace, self.dest, (seconds, folder))


def _agents(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_AGENTS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_AGENTS} agents, got {value}")
    return value


def _squad_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_SQUAD:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SQUAD} agents a squad, got {value}")
    return value


def _fps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frames per second as a whole number, got "
                                         f"{text!r}") from None
    if not 10 <= value <= 240:
        raise argparse.ArgumentTypeError(f"expected 10 to 240 frames per second, got {value}")
    return value


def parse_window(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; ``ArgumentTypeError`` for anything else."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        w, h = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got "
                                         f"{text!r}") from None
    if not (480 <= w <= 7680 and 320 <= h <= 4320):
        raise argparse.ArgumentTypeError(f"window {w}x{h} out of range (480x320 to 7680x4320)")
    return (w, h)


def add_frontend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the front end's flags to ``run_demo.py``'s parser."""
    group = parser.add_argument_group("window and screenshots")
    group.add_argument(
        "--screenshot", type=_png_path, default=None, metavar="PATH",
        help="save a PNG of the last frame when the run ends (works with --headless: drawn "
             "offscreen with SDL's dummy driver)",
    )
    group.add_argument(
        "--screenshot-every", nargs=2, action=_EveryAction, default=None,
        metavar=("SECONDS", "DIR"),
        help="save a PNG every SECONDS of game time into DIR (created if missing), e.g. "
             "--screenshot-every 5 shots/",
    )
    group.add_argument(
        "--agents", type=_agents, default=None, metavar="N",
        help=f"stress test: N companions and N enemies on a larger generated map (1 to "
             f"{MAX_AGENTS} headless, {WINDOW_MAX_AGENTS} in the window; replaces --scenario)",
    )
    group.add_argument(
        "--squad-size", type=_squad_size, default=None, metavar="K",
        help="with --agents: squads of K (a leader and K-1 who follow it), one per sector of "
             "a bigger map, each in its own fight; default: every companion follows the player",
    )
    group.add_argument(
        "--fps", type=_fps, default=60, metavar="N",
        help="window frame rate cap (default 60); the simulation keeps its fixed --tick-rate",
    )
    group.add_argument(
        "--window", type=parse_window, default=DEFAULT_WINDOW, metavar="WxH",
        help="window (and screenshot) size in pixels, default 1280x720; the window is "
             "resizable",
    )


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The stress map for ``--agents N``, else the ``--scenario`` file.

    Raises :class:`~esper_arbiter.game.scenario.ScenarioError` (a bad file) or ``ValueError``.
    """
    agents = getattr(args, "agents", None)
    if agents:
        if int(agents) > WINDOW_MAX_AGENTS and not getattr(args, "headless", False):
            raise ValueError(f"the window draws at most {WINDOW_MAX_AGENTS} agents; add "
                             f"--headless for {agents}")
        seed = int(getattr(args, "seed", 0))
        squad = getattr(args, "squad_size", None)
        if squad:
            return build_squad_scenario(int(agents), seed=seed, squad=int(squad))
        return build_stress_scenario(int(agents), seed=seed)
    if getattr(args, "squad_size", None):
        raise ValueError("--squad-size needs --agents N")
    return load_scenario(args.scenario)


# ----------------------------------------------------------------------------------------
# Offscreen rendering
# ----------------------------------------------------------------------------------------


def use_dummy_video() -> None:
    """Make SDL draw without a display (must run before pygame's display is initialised)."""
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    os.environ["SDL_AUDIODRIVER"] = "dummy"
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


class OffscreenRenderer:
    """Draws frames of a session onto an offscreen surface and saves them as PNG files."""

    def __init__(self, size: tuple[int, int] = DEFAULT_WINDOW) -> None:
        import pygame

        from esper_arbiter.game.render.model import ViewState
        from esper_arbiter.game.render.renderer import Renderer

        pygame.font.init()
        self.surface: pygame.Surface = pygame.Surface(size)
        self.renderer: Renderer = Renderer()
        self.view: ViewState = ViewState()
        self._session: GameSession | None = None

    def render(self, session: GameSession, pulse: float = 0.25) -> FrameModel:
        """Draw ``session`` now; the LLM service's status is read once per call."""
        if session is not self._session:
            self.renderer.reset()
            self._session = session
        status = None
        if session.service is not None:
            from esper_arbiter.game.render.model import StatusPoller

            status = StatusPoller(session.service, 0.0).get()
        return self.renderer.render(self.surface, session, self.view, status, pulse=pulse)

    def save(self, path: Path) -> Path:
        import pygame

        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.surface, str(path))
        return path


@dataclass(frozen=True, slots=True)
class ScreenshotPlan:
    final: Path | None = None
    every_s: float | None = None
    folder: Path | None = None


def play_headless(
    session: GameSession,
    seconds: float,
    dt: float,
    write: Writer,
    shots: ScreenshotPlan,
    size: tuple[int, int] = DEFAULT_WINDOW,
    realtime: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[HeadlessReport, list[Path]]:
    """:func:`esper_arbiter.game.headless.run_headless` plus offscreen screenshots.

    Writes the same decision log and summary line; returns the report and the PNG files saved.
    """
    if shots.final is None and shots.every_s is None:
        return run_headless(session, seconds, dt, write, realtime=realtime,
                            should_stop=should_stop), []
    use_dummy_video()
    painter = OffscreenRenderer(size)
    saved: list[Path] = []
    every = shots.every_s
    next_shot = every if every is not None else math.inf
    index = 0

    def periodic(s: GameSession) -> None:
        nonlocal next_shot, index
        if every is None or shots.folder is None or s.t + 1e-9 < next_shot:
            return
        index += 1
        painter.render(s)
        path = shots.folder / f"frame_{index:04d}_t{s.t:07.2f}s.png"
        saved.append(painter.save(path))
        log.info("screenshot %s", path)
        while next_shot <= s.t + 1e-9:
            next_shot += every

    def final(s: GameSession) -> None:
        if shots.final is not None:
            painter.render(s)
            saved.append(painter.save(shots.final))
            log.info("screenshot %s", shots.final)

    report = run_headless(
        session, seconds, dt, write, realtime=realtime, on_step=periodic, on_end=final,
        should_stop=should_stop,
    )
    return report, saved


# ----------------------------------------------------------------------------------------
# Entry
# ----------------------------------------------------------------------------------------


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")


def run_frontend(
    args: argparse.Namespace, make_session: SessionFactory, write: Writer | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Play the round the way ``args`` ask: window, or headless (with screenshots).

    ``make_session()`` must return a fresh :class:`GameSession` on every call (R restarts the
    round with a new one; the old one is closed first thing after). ``should_stop`` (Ctrl-C,
    :mod:`esper_arbiter.game.interrupt`) ends the round early, with its outcome line. Returns
    the exit code: 0, or 130 after an interruption.
    """
    out = write or _stdout
    dt = 1.0 / float(getattr(args, "tick_rate", 30.0))
    size = tuple(getattr(args, "window", DEFAULT_WINDOW))
    assert len(size) == 2
    window_size = (int(size[0]), int(size[1]))
    every = getattr(args, "screenshot_every", None)
    shots = ScreenshotPlan(
        final=getattr(args, "screenshot", None),
        every_s=None if every is None else float(every[0]),
        folder=None if every is None else Path(every[1]),
    )
    if not getattr(args, "headless", False):
        problem = display_problem_or_none()
        if problem is None:
            try:
                return _window(args, make_session, dt, window_size, shots, out, should_stop)
            except _NoWindow as exc:
                problem = str(exc)
        # One line on stderr, through logging (which the CLI configures to stderr).
        log.warning("%s: running headless instead (pass --headless to skip this check)", problem)
    session = make_session()
    realtime = paced_by_wall_clock(session.service)
    if realtime:
        log.info("a live model answers on the wall clock: pacing the headless round to real time")
    try:
        report, saved = play_headless(session, float(args.seconds), dt, out, shots,
                                      window_size, realtime, should_stop)
    finally:
        session.close()
    for path in saved[-1:]:
        log.info("last screenshot: %s", path)
    return EXIT_INTERRUPTED if report.interrupted else 0


class _NoWindow(Exception):
    """The window could not be opened (pygame.error at start-up)."""


def display_problem_or_none() -> str | None:
    from esper_arbiter.game.app import display_problem

    return display_problem()


def _window(
    args: argparse.Namespace, make_session: SessionFactory, dt: float, size: tuple[int, int],
    shots: ScreenshotPlan, write: Writer | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    import pygame

    from esper_arbiter.game.app import run_window

    dummy = os.environ.get("SDL_VIDEODRIVER", "").lower() in ("dummy", "offscreen")
    try:
        pygame.display.init()
        pygame.display.quit()
    except pygame.error as exc:
        raise _NoWindow(f"cannot open a window ({exc})") from None
    if dummy:
        log.warning("SDL_VIDEODRIVER=%s: the window is invisible; it closes after --seconds",
                    os.environ.get("SDL_VIDEODRIVER"))
    folder = shots.folder or Path("screenshots")
    try:
        return run_window(
            make_session, dt=dt, fps=int(getattr(args, "fps", 60)), size=size,
            screenshot_dir=folder, max_game_seconds=float(args.seconds) if dummy else None,
            show_start=not dummy, final_screenshot=shots.final, should_stop=should_stop,
            write=write,
        )
    except pygame.error as exc:
        raise _NoWindow(f"cannot open a window ({exc})") from None

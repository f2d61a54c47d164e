"""Command line of ``run_demo.py``: parse flags, load the scenario, pick the LLM backend, play.

Every bad input (a flag value, a missing or malformed scenario file) ends in one line on stderr
and exit code 2, never a traceback. The decision log is the program's output on stdout;
diagnostics go to ``logging`` on stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from esper_arbiter.game.frontend_cli import add_frontend_arguments, run_frontend, scenario_from_args
from esper_arbiter.game.interrupt import EXIT_INTERRUPTED, StopRequest, sigint_stops
from esper_arbiter.game.llm_flags import (
    add_llm_arguments,
    build_service,
    choose_service,
    flag_error,
)
from esper_arbiter.game.scenario import DEFAULT_SCENARIO, Scenario, ScenarioError
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.factory import ServiceConfigError

log = logging.getLogger("esper_arbiter.game")

PROG = "run_demo.py"
EXIT_USAGE = 2

DESCRIPTION = """\
hello_companion: a small tactical round in which a companion NPC is driven by the esper-arbiter
(instant GOAP planning, language-model plans in the background, a behaviour tree as safety net).
The player walks to the breach door past four enemies; the round ends in extraction or defeat.

With --headless the round runs without a window and prints one line per companion decision and
per mode change, then a summary line. The same --seed (and backend) gives the same round."""

EPILOG = """\
examples:
  run_demo.py --headless --seconds 60 --seed 1 --backend scripted
  run_demo.py --headless --backend scripted --llm-fail-every 2   # watch the fallbacks
  run_demo.py --headless --backend none          # GOAP and behaviour tree only
  run_demo.py --headless --scenario ambush --backend embedded   # where a plan pays
  run_demo.py --headless --scenario my_map.json --log-level INFO

--record RUN.jsonl keeps every round: R (restart) in the window records the next round to
RUN.2.jsonl, then RUN.3.jsonl, ...; replay any of them with --replay. Ctrl-C ends the round
with its outcome line (recordings closed) and exit status 130."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``run_demo.py: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _tick_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 1.0 <= value <= 1000.0:
        raise argparse.ArgumentTypeError(f"expected steps per second between 1 and 1000, got "
                                         f"{text!r}")
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise argparse.ArgumentTypeError(
            f"expected one of DEBUG, INFO, WARNING, ERROR, got {text!r}"
        )
    return level


def build_parser() -> argparse.ArgumentParser:
    """The ``run_demo.py`` argument parser (also used by ``--help``)."""
    parser = _Parser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--headless", action="store_true",
        help="run without a window: print the decision log and the round's outcome",
    )
    parser.add_argument(
        "--seconds", type=_positive_seconds, default=60.0, metavar="S",
        help="stop after S seconds of game time if the round has not ended (default 60)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=1, metavar="N",
        help="seed for all game randomness (hit rolls) and the scripted backend; the same seed "
             "gives the same round (default 1)",
    )
    parser.add_argument(
        "--scenario", default=str(DEFAULT_SCENARIO), metavar="NAME|PATH",
        help="a shipped scenario by name (hello_companion, ambush) or a scenario JSON file "
             "with the map, units and rule overrides (default hello_companion)",
    )
    parser.add_argument(
        "--tick-rate", type=_tick_rate, default=30.0, metavar="HZ",
        help="fixed simulation steps per game second (default 30); part of what makes a run "
             "reproducible",
    )
    parser.add_argument(
        "--log-level", type=_log_level, default="WARNING", metavar="LEVEL",
        help="diagnostics on stderr: DEBUG (every shot and hit), INFO (LLM requests, orders, "
             "rejected steps), WARNING (default) or ERROR",
    )
    add_llm_arguments(parser)
    add_frontend_arguments(parser)
    return parser


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``run_demo.py`` with ``argv`` (default: the process's arguments). Returns the exit
    code: 0 when a round was played (whatever its outcome), 2 on bad input, 130 when Ctrl-C
    stopped it (the outcome line is still printed, recordings closed, threads joined)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a one-line usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=getattr(logging, args.log_level), stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        scenario = scenario_from_args(args)
    except (ScenarioError, ValueError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    try:
        return _start_and_play(args, scenario)
    except KeyboardInterrupt:
        # Ctrl-C while the backend was being chosen (an ollama probe, a --pull), or a second
        # one during the shutdown; what was open has been closed on the way out, no traceback.
        sys.stdout.flush()
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED


def _start_and_play(args: argparse.Namespace, scenario: Scenario) -> int:
    """Build the LLM service, print the startup lines and play; from the first line of the
    round on, Ctrl-C ends the round cleanly (:func:`sigint_stops`)."""
    try:
        choice = choose_service(args)
    except ServiceConfigError as exc:
        sys.stderr.write(f"{PROG}: error: {flag_error(exc)}\n")
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    service, startup = choice.service, list(choice.lines)
    if choice.missing_model and not args.pull:
        startup.append(f"llm: or rerun with --pull to fetch {choice.missing_model}")
    handed_over = False
    try:
        for line in startup:
            _write(line)
        with sigint_stops() as stop:
            handed_over = True  # the round's session owns (and closes) the service now
            return _play(args, scenario, service, stop)
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly, like other command-line tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if not handed_over and service is not None:
            service.close()


def round_record_path(path: Path, round_number: int) -> Path:
    """Where round ``round_number`` (1 = the first) of a ``--record PATH`` run is written:
    ``run.jsonl``, then ``run.2.jsonl``, ``run.3.jsonl`` ... for each restart (R), so every
    round is kept and each file replays on its own with ``--replay``."""
    if round_number <= 1:
        return path
    suffix = path.suffix or ".jsonl"
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.{round_number}{suffix}")


def _play(args: argparse.Namespace, scenario: Scenario, service: PlanService | None,
          stop: StopRequest | None = None) -> int:
    """Play in a window (or headless, with or without screenshots). R in the window restarts
    with a fresh service, so a scripted or replayed round plays out the same again; with
    ``--record`` each round goes to its own file (:func:`round_record_path`)."""
    first = [service]
    rounds = [1]

    def next_service() -> PlanService | None:
        rounds[0] += 1
        record: Path | None = getattr(args, "record", None)
        if record is None:
            return build_service(args)[0]
        path = round_record_path(record, rounds[0])
        svc = build_service(argparse.Namespace(**{**vars(args), "record": path}))[0]
        _write(f"llm: round {rounds[0]}: recording every request to {path}")
        return svc

    def make_session() -> GameSession:
        svc = first.pop() if first else next_service()
        try:
            return GameSession(scenario, seed=args.seed, service=svc, own_service=True)
        except BaseException:
            if svc is not None:
                svc.close()  # no LLM thread outlives a failed start
            raise

    code = run_frontend(args, make_session, _write, stop)
    sys.stdout.flush()
    return code

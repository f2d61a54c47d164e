"""Make the README's screenshots: one per arbiter mode, plus the stress map.

    python docs/make_screenshots.py [--out docs/]

Each picture is a seeded round with the scripted backend, played headless and drawn offscreen
by the same renderer as the window (SDL's dummy driver), at the moment the mode is showing:

* ``screenshot_goap.png``: GOAP in charge while the first model request is in flight;
* ``screenshot_llm.png``: a model plan running (``LLM 2/3``) with its steps drawn on the map;
* ``screenshot_bt.png``: the behaviour tree after three model failures in a row;
* ``screenshot_stress.png``: ``--agents 200``.

The same seed always gives the same pictures.
"""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import esper

from esper_arbiter.components.agent import ArbiterState, Mode
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.game.frontend_cli import OffscreenRenderer
from esper_arbiter.game.scenario import DEFAULT_SCENARIO, build_stress_scenario, load_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

log = logging.getLogger("make_screenshots")

DT = 1.0 / 30.0
SIZE = (1280, 720)
MAX_BYTES = 300_000


def _state(session: GameSession) -> ArbiterState | None:
    session.activate()
    return esper.try_component(session.companions[0], ArbiterState)


def _until(session: GameSession, done: Callable[[], bool], limit: float = 40.0) -> None:
    while not done():
        if session.t >= limit or session.result is not None:
            raise RuntimeError(f"the moment to capture never came (t={session.t:.2f}s)")
        session.step(DT)


def _then(session: GameSession, seconds: float) -> None:
    for _ in range(round(seconds / DT)):
        if session.result is None:
            session.step(DT)


def goap() -> GameSession:
    """GOAP acts while the first model request is still in flight."""
    s = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1,
                    service=ScriptedPlanService(1, delay_s=2.0))

    def moment() -> bool:
        st = _state(s)
        return (st is not None and st.mode is Mode.GOAP and s.t > 1.6
                and esper.has_component(s.companions[0], LlmTask))

    _until(s, moment)
    return s


def llm() -> GameSession:
    """The scripted model's plan is running, at its second step."""
    s = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1,
                    service=ScriptedPlanService(1, delay_s=2.0))

    def moment() -> bool:
        st = _state(s)
        return st is not None and st.mode is Mode.EXECUTING_LLM and st.step_index >= 1

    _until(s, moment)
    _then(s, 0.1)
    return s


def bt() -> GameSession:
    """Every model request fails; after three in a row the behaviour tree takes over."""
    config = ArbiterConfig(llm_cooldown_s=1.0, failure_backoff_max_s=2.0, first_request_at_s=0.2)
    s = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1, config=config,
                    service=ScriptedPlanService(1, delay_s=0.8, failure_every=1))

    def moment() -> bool:
        st = _state(s)
        return st is not None and st.mode is Mode.BEHAVIOR_TREE

    _until(s, moment)
    _then(s, 0.6)
    return s


def stress() -> GameSession:
    s = GameSession(build_stress_scenario(200, seed=1), seed=1,
                    service=ScriptedPlanService(1, delay_s=2.0))
    _then(s, 4.5)
    return s


def _showcase(session: GameSession) -> int | None:
    """The agent to select: on a crowded map one that runs a model plan, else the first."""
    session.activate()
    for ent in session.companions:
        st = esper.try_component(ent, ArbiterState)
        if st is not None and st.mode is Mode.EXECUTING_LLM and st.plan is not None and (
            len(st.plan.steps) >= 2
        ):
            return ent
    return session.companions[0] if session.companions else None


SHOTS: dict[str, Callable[[], GameSession]] = {
    "screenshot_goap.png": goap,
    "screenshot_llm.png": llm,
    "screenshot_bt.png": bt,
    "screenshot_stress.png": stress,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the README screenshots.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: docs/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = 0
    for name, make in SHOTS.items():
        painter = OffscreenRenderer(SIZE)
        with make() as session:
            painter.view.selected = _showcase(session)
            painter.render(session, pulse=0.4)
            path = painter.save(args.out / name)
        size = path.stat().st_size
        log.info("%s: t=%.2fs, %d KB", path, session.t, size // 1024)
        if size > MAX_BYTES:
            log.error("%s is larger than %d KB", path, MAX_BYTES // 1000)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())

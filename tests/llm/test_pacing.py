"""A host loop that runs faster than real time never gets a live model's plans: the service
notices, logs it once and shows it in ``status().pacing``."""

from __future__ import annotations

import logging
import time

import pytest

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.factory import make_service
from esper_arbiter.systems.llm.pacing import (
    PACING_MIN_GAME_S,
    PacingMonitor,
    pacing_problem,
)
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.fixtures.fake_ollama import ChatScript, FakeOllama
from tests.planning.snapshots import hello_snapshot

MODEL = "qwen2.5:1.5b"


def test_the_rule() -> None:
    assert pacing_problem(60.0, 0.12, requests=9, plans=0).startswith(
        "game time runs 500x faster than the wall clock (60.0 game s in 0.12 s; 9 requests, "
        "0 plans)")
    assert pacing_problem(60.0, 60.0) == ""  # real time
    assert pacing_problem(60.0, 30.0) == ""  # twice real time: plans come, later
    assert pacing_problem(PACING_MIN_GAME_S / 2, 0.0) == ""  # too short to judge
    assert "run_demo" not in pacing_problem(60.0, 0.1)


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_monitor_follows_game_time_against_the_wall_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wall = _Clock()
    monitor = PacingMonitor(clock=wall)
    with caplog.at_level(logging.WARNING, logger="esper_arbiter.systems.llm.pacing"):
        monitor.submitted(1.0)
        for frame in range(1, 600):  # 20 game seconds at 30 Hz in 0.6 s of wall time
            wall.t += 0.001
            monitor.polled(1.0 + frame / 30)
        assert "faster than the wall clock" in monitor.warning
        assert "1 requests, 0 plans" in monitor.warning
        monitor.polled(30.0)
    assert len([r for r in caplog.records if "pacing" in r.getMessage()]) == 1

    wall.t += 600.0  # the host slowed down to real time for ten minutes: the warning clears
    monitor.polled(40.0)
    monitor.polled(610.0)
    assert monitor.warning == ""


def test_a_real_time_loop_is_not_reported() -> None:
    wall = _Clock()
    monitor = PacingMonitor(clock=wall)
    monitor.submitted(0.0)
    for frame in range(1, 1800):  # 60 s at 30 Hz, in step with the wall clock
        wall.t += 1 / 30
        monitor.polled(frame / 30)
        if frame % 450 == 0:
            monitor.submitted(frame / 30)
    assert monitor.warning == ""


def test_a_new_round_starts_the_measure_again() -> None:
    wall = _Clock()
    monitor = PacingMonitor(clock=wall)
    monitor.submitted(100.0)
    wall.t += 100.0
    monitor.submitted(0.0)  # game time went back: a new round
    wall.t += 0.01
    monitor.polled(1.0)
    assert monitor.warning == ""


def test_a_fast_loop_against_a_slow_model_shows_in_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """60 game seconds as fast as the loop can go; the model takes 5 s per answer."""
    service = LlmPlanService(FakeBackend([FakeReply('{"steps": [{"act": "Scan"}]}',
                                                    delay_s=5.0)]),
                             ServiceConfig(probe_on_start=False, max_batch_size=1))
    try:
        with caplog.at_level(logging.WARNING):
            t, dt = 0.0, 1 / 30
            ticket = service.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot(),
                                                submitted_at=t))
            start = time.monotonic()
            while t < 60.0:
                t += dt
                if ticket.poll(t) is not None or (int(t) % 15 == 0 and int(t - dt) % 15 != 0):
                    ticket.cancel()
                    ticket = service.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot(),
                                                        submitted_at=t))
            elapsed = time.monotonic() - start
        status = service.status()
        assert elapsed < 5.0 and status.plans_ok == 0
        assert "faster than the wall clock" in status.pacing
        assert "pace the game loop to real time" in status.pacing
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and "pacing" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        service.close()


def test_a_fast_headless_round_on_ollama_shows_in_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: a host loop (here the demo's, unpaced) runs a round against a live
    model that takes a second to answer, through the factory and the official client."""
    from esper_arbiter.game.headless import run_headless
    from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
    from esper_arbiter.game.world import GameSession

    with FakeOllama(models=(MODEL,), scripts=[ChatScript(first_delay_s=1.0)]) as server:
        choice = make_service(backend="ollama", host=server.host, model=MODEL)
        service = choice.service
        assert service is not None and not service.game_clock
        session = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1, service=service,
                              own_service=True)
        try:
            start = time.monotonic()
            report = run_headless(session, 60.0, 1 / 30, lambda _line: None, realtime=False)
            assert time.monotonic() - start < 3.0 and report.totals.llm_requests >= 2
            status = service.status()
            assert status.plans_ok == 0
            assert "faster than the wall clock" in status.pacing, status
        finally:
            session.close()


def test_a_game_clock_service_has_no_pacing_concern() -> None:
    choice = make_service(backend="scripted")
    assert choice.service is not None and choice.service.game_clock
    assert choice.service.status().pacing == ""

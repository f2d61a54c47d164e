"""What a new user meets in the first minutes: ``--record`` plus restarts keeps every round in
its own replayable file, the start card already shows the companion, and a replay's request
timeline runs on the replay's own (game) clock."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from esper_arbiter.game import app as app_module
from esper_arbiter.game.app import App
from esper_arbiter.game.cli import main, round_record_path
from esper_arbiter.game.headless import run_headless
from esper_arbiter.game.render.model import RenderMemory, ViewState, build_frame, build_timeline
from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.recording import ReplayPlanService, load_recording

DT = 1.0 / 20.0
ROUND_STEPS = 160  # 8 game seconds: the scripted backend answers after ~2 s


def test_round_record_paths() -> None:
    assert round_record_path(Path("out/run.jsonl"), 1) == Path("out/run.jsonl")
    assert round_record_path(Path("out/run.jsonl"), 2) == Path("out/run.2.jsonl")
    assert round_record_path(Path("out/run.jsonl"), 3) == Path("out/run.3.jsonl")
    assert round_record_path(Path("rec"), 2) == Path("rec.2.jsonl")


def test_record_then_restart_twice_keeps_and_replays_every_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's window path, with the window replaced by a player who plays a bit, presses R,
    plays, presses R again and plays: three rounds, three files, each replays exactly."""
    record = tmp_path / "run.jsonl"
    played: list[list[str]] = []  # per round: the decision log

    def fake_window(make_session: Callable[[], GameSession], **_kw: object) -> int:
        app = App(make_session, dt=DT, show_start=False)
        try:
            for n in range(3):
                if n:
                    app.restart()  # R: the old round's recording is closed, not reopened
                lines: list[str] = []
                run_headless(app.session, ROUND_STEPS * DT, DT, lines.append)
                played.append(lines)
        finally:
            app.close()
        return 0

    monkeypatch.setattr(app_module, "run_window", fake_window)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    assert main(["--backend", "scripted", "--seed", "3", "--tick-rate", "20",
                 "--record", str(record)]) == 0
    out = capsys.readouterr().out
    assert f"recording every request to {record}" in out
    files = [record, tmp_path / "run.2.jsonl", tmp_path / "run.3.jsonl"]
    for n, path in enumerate(files[1:], start=2):
        assert f"round {n}: recording every request to {path}" in out
    scenario = load_scenario(DEFAULT_SCENARIO)
    for path, lines in zip(files, played, strict=True):
        text = path.read_bytes()
        assert b"\x00" not in text
        recording = load_recording(path)
        assert recording.requests, path
        replayer = ReplayPlanService(path)
        replayed: list[str] = []
        with GameSession(scenario, seed=3, service=replayer, own_service=True) as session:
            run_headless(session, ROUND_STEPS * DT, DT, replayed.append)
        assert replayer.mismatches == 0 and replayer.exhausted == 0, path
        assert replayed == lines, path


def test_the_start_card_shows_the_companion_before_the_first_step() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    with GameSession(scenario, seed=1) as session:
        assert session.t == 0.0
        frame = build_frame(session, ViewState(show_start=True), None, RenderMemory())
        assert frame.hud.show_start
        assert frame.hud.agent is not None
        assert frame.hud.agent.name == "companion" and frame.hud.agent.label
        assert frame.selected in session.companions


def test_a_replays_timeline_runs_on_game_time(tmp_path: Path) -> None:
    """The recording's wall-clock stamps (seconds since its machine booted) must not place
    the bars: the replay's records are in game seconds, up to the game's now."""
    from esper_arbiter.game.cli import build_parser, scenario_from_args
    from esper_arbiter.game.llm_flags import build_service

    path = tmp_path / "run.jsonl"
    args = build_parser().parse_args(["--backend", "scripted", "--record", str(path)])
    service, _ = build_service(args)
    scenario = scenario_from_args(args)
    with GameSession(scenario, seed=1, service=service, own_service=True) as session:
        run_headless(session, 10.0, DT, lambda _line: None)
    replay_args = argparse.Namespace(**{**vars(args), "record": None, "replay": path})
    replayer, _ = build_service(replay_args)
    assert isinstance(replayer, ReplayPlanService)
    with GameSession(scenario, seed=1, service=replayer, own_service=True) as session:
        run_headless(session, 10.0, DT, lambda _line: None)
        status = replayer.status()
        assert status.clock == "game" and status.recent
        for r in status.recent:
            assert 0.0 <= r.queued_at <= session.t
            assert r.finished_at is None or r.queued_at <= r.finished_at
        timeline = build_timeline(status, session.t, None)
    assert timeline.clock == "game"
    assert timeline.bars and all(0.0 <= b.queued <= b.end <= 1.0 for b in timeline.bars)
    assert any(b.end > 0.5 for b in timeline.bars)  # recent bars, not squashed at one edge


def test_scripted_plans_are_legal_on_a_big_stress_map() -> None:
    """``--agents N --backend scripted``: the canned plans throw smoke within range, so the
    service answers no invalid plans (the arbiter may still find one stale on arrival)."""
    from esper_arbiter.game.scenario import build_stress_scenario
    from esper_arbiter.systems.llm.scripted import ScriptedPlanService

    service = ScriptedPlanService(seed=1)
    with GameSession(build_stress_scenario(50, seed=1), seed=1, service=service) as session:
        run_headless(session, 4.0, DT, lambda _line: None)
        status = service.status()
    assert status.plans_ok >= 40 and status.failures == 0

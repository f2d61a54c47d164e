"""run_demo.py's command line: bad values are one-line errors with exit code 2, a good run
prints the decision log and the outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from esper_arbiter.game.cli import main

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--headless", "--tick-rate", "20"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--seconds", "-3"],
         "argument --seconds: expected a positive number of seconds, got '-3'"),
        (["--seconds", "soon"], "argument --seconds: expected a positive number of seconds"),
        (["--seconds", "nan"], "argument --seconds"),
        (["--seed", "abc"], "argument --seed: expected a whole number, got 'abc'"),
        (["--tick-rate", "0"], "argument --tick-rate: expected steps per second between 1"),
        (["--log-level", "LOUD"], "argument --log-level: expected one of DEBUG"),
        (["--backend", "telepathy"], "argument --backend: invalid choice: 'telepathy'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--squad-size", "10"], "--squad-size needs --agents N"),
        (["--agents", "50", "--squad-size", "0"], "argument --squad-size: expected 1 to 69"),
        (["--agents", "10000", "--squad-size", "1"], "the largest is 512 a side"),
    ],
)
def test_a_bad_flag_value_is_one_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main([*FAST, *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("run_demo.py: error: ")
    assert fragment in err
    assert "Traceback" not in err


def test_a_missing_scenario_file_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.json"
    assert main([*FAST, "--backend", "none", "--scenario", str(missing)]) == 2
    _, err = capsys.readouterr()
    assert err == f"run_demo.py: error: {missing}: file not found\n"


def test_a_malformed_scenario_names_the_file_and_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = json.loads((ROOT / "assets" / "hello_companion.json").read_text(encoding="utf-8"))
    data["enemies"][1]["hp"] = "abc"
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main([*FAST, "--backend", "none", "--scenario", str(path)]) == 2
    _, err = capsys.readouterr()
    assert err == (f"run_demo.py: error: {path}: enemies[1].hp: expected a positive number, "
                   "got 'abc'\n")


def test_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out, _ = capsys.readouterr()
    for flag in ("--headless", "--seconds", "--seed", "--backend", "--scenario", "--tick-rate",
                 "--log-level"):
        assert flag in out
    assert "scripted" in out and "none" in out


def test_a_headless_round_prints_decisions_then_the_outcome(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*FAST, "--seconds", "60", "--seed", "1", "--backend", "scripted"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("llm: scripted backend")
    assert any("companion#2 [GOAP]" in line for line in lines)
    assert any("GOAP -> ExecutingLLM" in line for line in lines)
    assert lines[-1].startswith("outcome: extracted at t=")
    assert "Traceback" not in err


def test_without_a_display_it_says_so_and_runs_headless(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--tick-rate", "20", "--seconds", "2", "--backend", "none"]) == 0
    out, _ = capsys.readouterr()
    assert "no display found" in caplog.text and "running headless" in caplog.text
    assert out.splitlines()[-1].startswith("outcome: undecided at t=2.00s")


def test_run_demo_py_as_a_program() -> None:
    bad = subprocess.run(
        [sys.executable, "run_demo.py", "--headless", "--seconds", "-3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "run_demo.py: error: argument --seconds: expected a positive number of seconds, got "
        "'-3' (see --help)"
    ]
    good = subprocess.run(
        [sys.executable, "run_demo.py", "--headless", "--seconds", "60", "--seed", "1",
         "--backend", "scripted", "--tick-rate", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1].startswith("outcome: extracted")


def test_headless_rounds_wait_for_a_live_model_but_not_for_scripted_ones() -> None:
    """A live model answers on the wall clock: the headless loop paces game time to real time
    so plans can arrive. Game-time services (scripted, replay) and no service are not paced."""
    import time

    from esper_arbiter.game.headless import run_headless
    from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
    from esper_arbiter.game.world import GameSession
    from esper_arbiter.systems.llm.api import ServiceStatus, paced_by_wall_clock
    from esper_arbiter.systems.llm.scripted import ScriptedPlanService

    class LiveModel(ScriptedPlanService):
        game_clock = False

        def status(self) -> ServiceStatus:
            return ServiceStatus(backend="live", online=True)

    class DeadModel(LiveModel):
        def status(self) -> ServiceStatus:
            return ServiceStatus(backend="live", online=False, reason="server gone")

    assert not paced_by_wall_clock(None)
    assert not paced_by_wall_clock(ScriptedPlanService())
    assert not paced_by_wall_clock(DeadModel())
    live = LiveModel()
    assert paced_by_wall_clock(live)
    session = GameSession(load_scenario(DEFAULT_SCENARIO), seed=1, service=live)
    try:
        start = time.monotonic()
        run_headless(session, 0.5, 0.05, lambda _line: None, realtime=True)
        assert time.monotonic() - start >= 0.45
    finally:
        session.close()


def test_a_shipped_scenario_is_chosen_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*FAST, "--backend", "none", "--scenario", "ambush", "--seconds", "2"]) == 0
    out, err = capsys.readouterr()
    assert "outcome:" in out and err == ""


def test_an_unknown_scenario_name_is_one_line_listing_the_shipped_ones(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*FAST, "--backend", "none", "--scenario", "ambsuh"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("run_demo.py: error: ambsuh: no such scenario (shipped: ")
    assert "ambush" in err and "hello_companion" in err and "Traceback" not in err

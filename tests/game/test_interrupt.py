"""Ctrl-C ends the demo cleanly, headless and in the window: the outcome line, recordings
closed and replayable, no traceback, exit status 130.

The subprocess tests send a real SIGINT to ``run_demo.py``. The child starts with SIGINT at
its default disposition even if this test process was started with it ignored (a background
job of a non-interactive shell), as a terminal's foreground program would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from esper_arbiter.game.interrupt import EXIT_INTERRUPTED, StopRequest, sigint_stops
from esper_arbiter.systems.llm.recording import load_recording
from tests.fixtures.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX signals")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "run_demo.py", *args], cwd=ROOT, env=full, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint,
    )


def _wait_for_line(stream: object, needle: str, timeout: float) -> list[str]:
    """Read ``stream`` line by line (on a helper thread) until a line contains ``needle``."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            seen.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"{needle!r} never appeared; got {seen!r}"
    return seen


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 30 s after SIGINT; stderr: {err[-2000:]}")
    return proc.returncode, out, err


def test_ctrl_c_ends_a_headless_round_with_its_outcome_line(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    record = tmp_path / "run.jsonl"
    proc = _start(["--headless", "--backend", "ollama", "--seconds", "120", "--tick-rate", "20",
                   "--record", str(record)], {"OLLAMA_HOST": fake_ollama.host})
    assert proc.stdout is not None
    head = _wait_for_line(proc.stdout, "[GOAP]", 30.0)  # paced to real time: still playing
    time.sleep(0.5)
    code, out, err = _interrupt(proc)
    lines = (("".join(head)) + out).splitlines()
    assert code == EXIT_INTERRUPTED, err
    assert lines[-1].startswith("outcome: interrupted at t="), lines[-3:]
    assert "Traceback" not in err and "Exception ignored" not in err, err
    load_recording(record)  # closed and complete: it replays


def test_ctrl_c_ends_the_window(tmp_path: Path) -> None:
    proc = _start(["--backend", "scripted", "--seconds", "600", "--tick-rate", "20"],
                  {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"})
    assert proc.stderr is not None
    _wait_for_line(proc.stderr, "the window is invisible", 30.0)
    time.sleep(1.0)  # the window loop is running
    code, out, err = _interrupt(proc)
    assert code == EXIT_INTERRUPTED, err
    assert out.splitlines()[-1].startswith("outcome: interrupted at t="), out
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_the_window_loop_stops_on_request_even_on_the_start_card() -> None:
    from esper_arbiter.game.app import run_window
    from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
    from esper_arbiter.game.world import GameSession

    scenario = load_scenario(DEFAULT_SCENARIO)
    stop = StopRequest()
    lines: list[str] = []
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    code = run_window(lambda: GameSession(scenario, seed=1), size=(960, 540), fps=60,
                      show_start=True, should_stop=stop, write=lines.append)
    assert code == EXIT_INTERRUPTED
    assert time.monotonic() - started < 10.0
    assert lines == [lines[-1]] and lines[-1].startswith("outcome: interrupted at t=0.00s")


def test_sigint_stops_sets_the_request_then_raises_on_the_second() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler in this test process")
    with sigint_stops() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

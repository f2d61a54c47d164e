"""bench/plan_quality.py: plays the same seeds per side, writes its figures as JSON for
``make proof``, and rejects a bad scenario in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "plan_quality.py"


def _run(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def test_goap_alone_on_both_scenarios_writes_json_with_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = _run("--no-models", "--seeds", "2", "--seconds", "8", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "hello_companion:" in done.stdout and "ambush:" in done.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["benchmark"] == "plan_quality" and data["seeds"] == [1, 2]
    sides = {(s["scenario"], s["side"]): s for s in data["sides"]}
    assert set(sides) == {("hello_companion", "goap"), ("ambush", "goap")}
    for side in sides.values():
        assert side["rounds"] == 2 and len(side["per_round"]) == 2
        assert side["model_steps"] == 0 and side["carried_out_pct"] is None
        assert {"median_player_hp_lost", "median_companion_hp_lost", "won",
                "median_time_to_objective_s"} <= set(side)


def test_an_unknown_scenario_is_a_one_line_error() -> None:
    done = _run("--no-models", "--scenarios", "nowhere")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        done.stderr.strip()] and "no such scenario" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.embedded
def test_the_embedded_model_is_played_against_goap_on_the_same_seed(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = _run("--seeds", "1", "--seconds", "20", "--scenarios", "ambush", "--nice", "0",
                "--json", str(out), timeout=600.0)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    embedded = next(s for s in data["sides"] if s["side"] == "embedded")
    assert embedded["per_round"][0]["seed"] == 1
    assert any(t["name"].startswith("ambush: embedded") for t in data["targets"])


def _side(name: str, player: list[float], companion: list[float], t: float = 18.0) -> object:
    import plan_quality as pq

    f = pq.SideFigures(name, pq.STANDARD)
    for seed, (p, c) in enumerate(zip(player, companion, strict=True), 1):
        f.rounds.append(pq.RoundFigures(seed, "extracted", t, p, c, 0, 0, 0, 0, 0, 0, 0.0))
    return f


def test_the_standard_round_s_bar_counts_the_companion_s_hp_too() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import plan_quality as pq

        goap = _side("goap", [40, 41, 39], [9, 9, 9])
        # the trade the model used to make: the player loses less, the companion 2.5x more
        trade = _side("embedded", [30, 30, 30], [24, 24, 24])
        assert not pq.no_worse(goap, trade)  # type: ignore[arg-type]
        # within the slack the player's HP gets (10 % or 5 HP): met
        near = _side("embedded", [44, 44, 44], [14, 14, 14])
        assert pq.no_worse(goap, near)  # type: ignore[arg-type]
        targets = pq.Targets()
        pq.judge(goap, trade, targets)  # type: ignore[arg-type]
        assert targets.results == [(f"{pq.STANDARD}: embedded no worse than goap", False)]
    finally:
        sys.path.remove(str(SCRIPT.parent))

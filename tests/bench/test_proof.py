"""The proof runner (``bench/proof.py``): its JSON -> markdown rendering, its plots, and every
new benchmark script run in a tiny configuration with ``--json``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


@pytest.fixture
def bench_modules() -> Iterator[None]:
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


def _module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(name)


OUR_DOC: dict[str, Any] = {
    "bench": "demo", "title": "Demo", "command": "python bench/demo.py",
    "summary": "fast enough",
    "targets": [{"name": "ratio >= 10x", "met": True, "figure": "12.0x"},
                {"name": "p99 <= 1.1x", "met": False, "figure": "1.30x"}],
    "tables": [{"title": "Per agent", "columns": ["agents", "us"], "rows": [[100, "1.50"]]}],
    "plots": [], "notes": ["a | note"], "data": {"raw": [1, 2]},
}
FOREIGN_DOC: dict[str, Any] = {
    "benchmark": "plan_quality", "date": "2026-12-01", "seeds": [1, 2], "seconds": 20.0,
    "sides": [{"side": "goap", "won": 2, "per_round": [{"seed": 1}]},
              {"side": "embedded", "won": 1, "carried_out_pct": 85.5, "per_round": []}],
    "targets": [{"name": "embedded carries out >= 80%", "met": True}],
}


def _sections(render: ModuleType) -> list[Any]:
    Section = render.Section
    return [
        Section("demo", "1. Demo", "it is fast", "python bench/demo.py", doc=OUR_DOC,
                seconds=3.0, output="line one\n", images=["benchmarks/demo.png"]),
        Section("quality", "5. Quality", "plans pay", "python bench/plan_quality.py",
                doc=FOREIGN_DOC),
        Section("missing", "6. Missing", "x", "python bench/nope.py",
                problem="bench/nope.py is not in this checkout yet"),
    ]


def test_report_renders_targets_tables_foreign_json_and_missing_benchmarks(
    bench_modules: None,
) -> None:
    render = _module("_render")
    text = render.report(_sections(render), [("CPU", "test")], "quick", 90.0, "make proof")
    assert text.startswith("# Benchmarks\n")
    assert "Reproduce: `make proof` (quick run, 1.5 min here)." in text
    assert "| 1. Demo | ratio >= 10x | 12.0x | met |" in text
    assert "| 1. Demo | p99 <= 1.1x | 1.30x | **MISSED** |" in text
    assert "| agents | us |" in text and "| 100 | 1.50 |" in text
    assert "- a | note" in text
    assert "![1. Demo](benchmarks/demo.png)" in text
    assert "<details><summary>output</summary>" in text and "line one" in text
    # a JSON of another shape: scalars, then each list of objects as a table
    assert "| benchmark | plan_quality |" in text and "| seeds | 1, 2 |" in text
    assert "| side | won | carried_out_pct |" in text
    assert "| embedded | 1 | 85.5 |" in text
    assert "| 5. Quality | embedded carries out >= 80% | - | met |" in text
    # a benchmark that could not run is said so, not dropped
    assert "| 6. Missing | - | - | not run: bench/nope.py is not in this checkout yet |" in text
    assert "**No figures:** bench/nope.py is not in this checkout yet" in text


def test_cells_format_numbers_lists_and_nan(bench_modules: None) -> None:
    cell = _module("_render").cell
    assert cell(float("nan")) == "n/a"
    assert cell(1234.5) == "1,234" or cell(1234.5) == "1,235"
    assert cell(0.123456) == "0.123"
    assert cell(None) == "-" and cell(True) == "yes"
    assert cell([{"a": 1}]) == "(1 items)" and cell({"a": 1}) == "(1 fields)"


def test_plots_are_drawn_as_png(bench_modules: None, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plots = _module("_plots")
    specs = [
        {"file": "line.png", "kind": "line", "title": "t", "xlabel": "x", "ylabel": "y",
         "logx": True, "logy": True,
         "series": [{"label": "a", "x": [100, 1000], "y": [1.0, None]}]},
        {"file": "bar.png", "kind": "bar", "title": "t", "xlabel": "", "ylabel": "y",
         "series": [{"label": "a", "x": ["cold", "cached"], "y": [3.0, 0.5]},
                    {"label": "b", "x": ["cold", "cached"], "y": [9.0, float("nan")]}]},
        {"file": "cdf.png", "kind": "ccdf", "title": "t", "xlabel": "ms", "ylabel": "share",
         "logx": True, "series": [{"label": "a", "y": [0.2, 0.3, 5.0]}, {"label": "e", "y": []}]},
    ]
    for spec in specs:
        path = plots.draw(spec, tmp_path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_round_trip_and_command_line(bench_modules: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    results = _module("_results")
    monkeypatch.setattr(sys, "argv", ["bench/x.py", "--frames", "3", "--json", "out.json"])
    res = results.Results("x", "X")
    assert res.doc["command"] == "python bench/x.py --frames 3"
    assert res.target("fast", False, "2x") is False
    res.table("t", ["a"], [[1]])
    res.write(tmp_path / "x.json")
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["targets"] == [{"name": "fast", "met": False, "figure": "2x"}]
    assert res.targets.missed == ["fast"]
    assert results.percentile([3.0, 1.0, 2.0], 0.99) == 3.0


def test_proof_reports_a_missing_script_instead_of_failing(bench_modules: None,
                                                           tmp_path: Path) -> None:
    proof = _module("proof")
    spec = proof.Spec("nope", "no_such_bench.py", "N", "claim", ("--a",), ("--a",))
    sec = proof.run_one(spec, True, tmp_path)
    assert sec.doc is None and "not in this checkout yet" in sec.problem


def _run(script: str, *args: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{script}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), SDL_VIDEODRIVER="dummy",
               SDL_AUDIODRIVER="dummy")
    done = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["tables"] and doc["command"].startswith("python bench/")
    return doc


def test_vs_py_trees_runs_tiny(tmp_path: Path) -> None:
    pytest.importorskip("py_trees")
    doc = _run("vs_py_trees.py", "--agents", "2", "--frames", "3", "--warmup-s", "0.2",
               "--varied", "20", tmp=tmp_path)
    assert len(doc["targets"]) == 2  # idle and fight
    agreement = doc["tables"][1]["rows"][0]
    assert agreement[1] == "100.0%", agreement  # the tree is GOAP's logic


def test_vs_goap_ai_runs_tiny(tmp_path: Path) -> None:
    # Not importorskip: importing goap-ai runs logging.config.dictConfig, which would take
    # the root logger (and pytest's log capture) away from every test after this one.
    if importlib.util.find_spec("goap") is None:
        pytest.skip("goap-ai is not installed (the bench extra)")
    doc = _run("vs_goap_ai.py", "--states", "10", "--rounds", "1", tmp=tmp_path)
    assert doc["targets"][0]["name"].startswith("cold")


def test_game_scale_runs_tiny(tmp_path: Path) -> None:
    doc = _run("game_scale.py", "--agents", "100", "200", "--crowd-agents", "100",
               "--frames", "2", tmp=tmp_path)
    series = {s["label"].split(",")[0].split(" (")[0]: s["x"] for s in doc["plots"][0]["series"]}
    assert series == {"squads of 10": [100, 200], "one crowd behind the player": [100],
                      "bare esper loop over the same units": [100, 200]}


@pytest.mark.embedded
@pytest.mark.slow
def test_frame_isolation_runs_tiny(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    doc = _run("frame_isolation.py", "--segments", "1", "--segment-s", "1.5", tmp=tmp_path)
    assert {r[0] for r in doc["tables"][0]["rows"]} == {"off", "model", "naive"}


@pytest.mark.embedded
@pytest.mark.slow
def test_batching_on_the_openai_server_runs_tiny(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("fastapi")
    doc = _run("batching.py", "--backend", "openai", "--agents", "2", "--max-tokens", "256",
               tmp=tmp_path)
    assert doc["bench"] == "batching_openai"


def test_proof_passes_only_the_flags_a_foreign_script_lists(bench_modules: None) -> None:
    proof = _module("proof")
    flags = proof.supported_flags(BENCH / "game_scale.py",
                                  ("--frames", "3", "--seeds", "1", "2", "--warmup-s", "1"))
    assert flags == ("--frames", "3", "--warmup-s", "1")

"""Every benchmark takes ``--check`` and then exits non-zero when it misses a target, so a
person or a CI job can gate on it; without the flag it only reports."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
BENCHMARKS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture
def bench_path() -> Iterator[None]:
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


def _load(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(name)


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_has_a_check_flag_and_returns_its_verdict(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    source = path.read_text(encoding="utf-8")
    assert "add_check_flag(" in source, f"{path.name} has no --check"
    assert "targets.finish(args.check)" in source, f"{path.name} ignores --check"
    assert "SystemExit(main())" in source or "sys.exit(main())" in source, (
        f"{path.name} drops main()'s exit status")
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


def test_targets_tally_and_exit_status(bench_path: None, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    targets_module = _load("_targets")
    targets = targets_module.Targets()
    assert targets.met("fast", True) and not targets.met("cheap", False)
    assert targets.finish(check=False) == 0
    assert targets.finish(check=True) == 1
    assert "targets met: 1/2; missed: cheap" in capsys.readouterr().out
    clean = targets_module.Targets()
    clean.met("fast", True)
    assert clean.finish(check=True) == 0


def test_a_missed_target_fails_the_run_only_with_check(
    bench_path: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = _load("queue_overhead")
    small = ["queue_overhead.py", "--ops", "50", "--rounds", "1"]
    monkeypatch.setattr(sys, "argv", [*small, "--check"])
    monkeypatch.setattr(queue, "TARGET_US", float("inf"))  # met on any machine, however busy
    assert queue.main() == 0
    monkeypatch.setattr(queue, "TARGET_US", 0.0)  # nothing is that fast
    assert queue.main() == 1
    assert "missed: worst per-operation cost" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", small)
    assert queue.main() == 0  # without --check: report only

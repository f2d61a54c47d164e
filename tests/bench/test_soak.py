"""The soak (bench/soak.py): a quick run in the default suite keeps the script honest (books
balance, no thread or task left over); the full 30-minute, 50-agent soak is ``-m slow`` (and
``make soak``, which also writes docs/soak.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def soak() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import importlib

        yield importlib.import_module("soak")
    finally:
        sys.path.remove(str(BENCH))


def test_a_short_soak_balances_its_books(soak: ModuleType, tmp_path: Path) -> None:
    figures = soak.run(minutes=0.5, agents=6, fail_rate=1 / 3, seed=3, churn_s=3.0, quiet=True)
    assert figures.service.balance == 0 and figures.service.open == 0
    assert figures.arbiter.balance == 0
    assert figures.arbiter.requests == figures.service.requests > 0
    assert figures.joined > 0 and figures.left > 0
    assert figures.threads["closed"] <= figures.threads["start"]
    assert figures.backend_failed > 0
    assert [p for p in figures.problems() if not p.startswith("RSS")] == []
    text = figures.markdown("bench/soak.py --minutes 0.5")
    assert text.startswith("## Soak") and "resident memory" in text


@pytest.mark.slow
def test_the_full_soak_meets_every_limit(soak: ModuleType) -> None:
    figures = soak.run(minutes=30, agents=50, fail_rate=1 / 3, seed=1, churn_s=10.0)
    print("\n".join(figures.lines()))
    assert figures.problems() == []

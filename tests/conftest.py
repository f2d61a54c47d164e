"""Shared pytest fixtures. Kept small: bigger helpers live in ``tests/fixtures/``.

The suite never needs a display: SDL's dummy drivers are chosen here, for every test and every
subprocess a test starts (the Makefile does not force them, so ``make demo`` opens a window).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from tests.fixtures.fake_ollama import FakeOllama


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A loopback ollama-compatible server (model ``qwen2.5:1.5b`` pulled), stopped after the
    test."""
    with FakeOllama(models=("qwen2.5:1.5b",)) as server:
        yield server

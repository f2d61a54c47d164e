"""Shared pytest fixtures. Kept small: bigger helpers live in ``tests/fixtures/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.fake_ollama import FakeOllama


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A loopback ollama-compatible server (model ``qwen2.5:1.5b`` pulled), stopped after the
    test."""
    with FakeOllama(models=("qwen2.5:1.5b",)) as server:
        yield server

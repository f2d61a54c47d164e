"""Fixtures for the systems tests: each test plays in an esper world of its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import esper
import pytest

_names = itertools.count()


@pytest.fixture
def world() -> Iterator[str]:
    """A fresh esper world, current for the test and deleted after it."""
    name = f"systems-test-{next(_names)}"
    previous = esper.current_world
    esper.switch_world(name)
    yield name
    esper.switch_world(previous)
    esper.delete_world(name)

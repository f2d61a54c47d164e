"""Component queries that stay cheap in a world whose components change every frame.

esper caches each ``get_components(...)`` result as a list of ``(entity, (c1, c2, ...))``
tuples and empties *every* cached query whenever any component is added or removed anywhere.
In a big fight something changes every frame (a unit falls, a cloud of smoke appears), so
every query of every system rebuilds its list each frame, and those lists live until the next
change: at 10,000 agents some 170,000 tuples a frame that outlive the young generations of
Python's collector and drive full collections of everything alive.

:func:`components` answers from esper's cache while that cache is valid, and otherwise walks
esper's component sets without building or keeping a list: each ``(entity, components)``
tuple dies as soon as the loop moves on. The entity ids are copied first, so the loop body may
add and remove components. It reads three esper internals (``_components``, ``_entities``,
``_cache_dirty``, present from esper 3.0 to today's 3.x); where they are missing it falls back
to ``esper.get_components``. ``tests/systems/test_queries.py`` checks it against esper's own
answers, so an esper that changes them fails loudly rather than silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, overload

import esper

_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")
_D = TypeVar("_D")
_E = TypeVar("_E")

_INTERNALS = all(hasattr(esper, name) for name in ("_components", "_entities", "_cache_dirty"))


@overload
def components(a: type[_A], b: type[_B], /) -> Iterable[tuple[int, tuple[_A, _B]]]: ...


@overload
def components(
    a: type[_A], b: type[_B], c: type[_C], /
) -> Iterable[tuple[int, tuple[_A, _B, _C]]]: ...


@overload
def components(
    a: type[_A], b: type[_B], c: type[_C], d: type[_D], /
) -> Iterable[tuple[int, tuple[_A, _B, _C, _D]]]: ...


@overload
def components(
    a: type[_A], b: type[_B], c: type[_C], d: type[_D], e: type[_E], /
) -> Iterable[tuple[int, tuple[_A, _B, _C, _D, _E]]]: ...


def components(*types: type[Any]) -> Iterable[tuple[int, tuple[Any, ...]]]:
    """Every entity with all of ``types`` and those components, as ``esper.get_components``
    gives them (see module docstring for when and why no list is built)."""
    if not _INTERNALS or not esper._cache_dirty:
        return esper.get_components(*types)
    return _walk(types)


def entities_with(component_type: type[Any]) -> frozenset[int]:
    """The ids of every entity that has ``component_type`` (a copy: safe to keep)."""
    if _INTERNALS:
        return frozenset(esper._components.get(component_type, ()))
    return frozenset(e for e, _ in esper.get_component(component_type))


def _walk(types: tuple[type[Any], ...]) -> Iterator[tuple[int, tuple[Any, ...]]]:
    db = esper._components
    sets: list[set[int]] = []
    for t in types:
        found = db.get(t)
        if not found:
            return
        sets.append(found)
    entities = esper._entities
    smallest = sets[0]
    for found in sets[1:]:
        if len(found) < len(smallest):
            smallest = found
    for ent in list(smallest):
        comps = entities.get(ent)
        if comps is None:
            continue
        try:
            row = tuple([comps[t] for t in types])
        except KeyError:  # lacks one of the types, or lost it while the loop ran
            continue
        yield ent, row


class Membership:
    """Which entities carry each of some component types, and whether that changed since the
    last look: a comparison of esper's id sets (in C, no list built), so a frame in which
    only *other* components came and went is recognised as "same units" for the price of a
    set comparison."""

    __slots__ = ("_seen", "types")

    def __init__(self, *types: type[Any]) -> None:
        self.types = types
        self._seen: tuple[frozenset[int], ...] | None = None

    def changed(self) -> bool:
        """True on the first call and whenever an entity gained or lost one of the types."""
        if _INTERNALS:
            db = esper._components
            now = [db.get(t, _NONE) for t in self.types]
        else:
            now = [entities_with(t) for t in self.types]
        seen = self._seen
        if seen is not None and all(a == b for a, b in zip(now, seen, strict=True)):
            return False
        self._seen = tuple(frozenset(s) for s in now)
        return True

    def sets(self) -> tuple[frozenset[int], ...]:
        """Per type, the entities that carry it, as of the last :meth:`changed`."""
        if self._seen is None:
            self.changed()
        assert self._seen is not None
        return self._seen


_NONE: frozenset[int] = frozenset()

"""Component queries that stay cheap in a world whose components change every frame.

esper caches each ``get_components(...)`` result as a list of ``(entity, (c1, c2, ...))``
tuples and empties *every* cached query whenever any component is added or removed anywhere.
In a big fight something changes every frame (a unit falls, one is suppressed, a cloud of
smoke appears), so every query of every system rebuilds its list each frame: at 1,000 agents
a fifth of the whole frame went into rebuilding the same five lists of the same units.

:func:`components` keeps, per query, only *which* entities match, and keeps that for as long
as no entity gained or lost one of the query's own types (a :class:`Membership` check: a
comparison of esper's id sets, in C). Each row's components are read fresh from the entity at
iteration time, so a component the host replaced (``esper.add_component(e, Position(...))``
on an entity that had one) is seen at once, and an entity deleted or stripped while the loop
runs is passed over. Reading a row costs about a quarter of what esper's rebuild does, and no
list of tuples outlives the loop (such lists drove full collections of everything alive at
10,000 agents). The entity ids are copied, so the loop body may add and remove components.
In a quiet world (nothing added or removed since esper built the list) esper's own cached list
is cheaper still, and is used: after a call that found it, and once in a while in a busy world
to notice that it went quiet.

It reads four esper internals (``_components``, ``_entities``, ``_cache_dirty`` and
``_get_components_cache``, present from esper 3.0 to today's 3.x); where they are missing it
falls back to ``esper.get_components``.
``tests/systems/test_queries.py`` checks it against esper's own answers, so an esper that
changes them fails loudly rather than silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import is_, itemgetter, length_hint
from typing import Any, TypeVar, overload

import esper

_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")
_D = TypeVar("_D")
_E = TypeVar("_E")

_INTERNALS = all(hasattr(esper, name) for name in ("_components", "_entities"))
_CACHE_INTERNALS = _INTERNALS and all(
    hasattr(esper, name) for name in ("_cache_dirty", "_get_components_cache"))
_RETRY_LIST = 16
"""In a busy world, one call in this many builds esper's list again, to notice quiet."""


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
    gives them (see module docstring for how the matching entities are kept)."""
    if not _INTERNALS:
        return esper.get_components(*types)
    return _query(types).rows()


def rows_now(*types: type[Any]) -> Iterable[tuple[int, tuple[Any, ...]]]:
    """What :func:`components` gives, for a loop that adds, replaces and removes nothing
    while it runs: in a quiet world esper's own cached list, handed over without the per-row
    look :func:`components` takes to notice the loop body changing the world. Later,
    :func:`still_listed` tells whether that list still holds, and :func:`fresh_row` reads a
    row again where it does not."""
    if not _INTERNALS:
        return esper.get_components(*types)
    query = _query(types)
    cached = esper_cached(types)
    if cached is not None:
        query._misses = 0
        return cached
    return query.rows()


def still_listed(listed: object, *types: type[Any]) -> bool:
    """Is ``listed`` (from :func:`rows_now`) still esper's valid cached answer for ``types``:
    has nothing been added, replaced or removed anywhere since it was made?"""
    return listed is not None and esper_cached(types) is listed


def esper_cached(types: tuple[type[Any], ...]) -> list[tuple[int, tuple[Any, ...]]] | None:
    """esper's cached answer to ``get_components(*types)`` while it is still valid (nothing
    added, replaced or removed since it was built), else None."""
    if not _CACHE_INTERNALS or esper._cache_dirty:
        return None
    found: list[tuple[int, tuple[Any, ...]]] | None = esper._get_components_cache.get(types)
    return found


def _query(types: tuple[type[Any], ...]) -> _Query:
    query = _QUERIES.get(types)
    if query is None:
        query = _QUERIES[types] = _Query(types)
    return query


def fresh_row(entity: int, *types: type[Any]) -> tuple[Any, ...] | None:
    """``entity``'s components of ``types`` as they are now, or None if it is gone or lacks
    one (``esper.try_components`` for any number of types, without its checks)."""
    if not _INTERNALS:
        found = [esper.try_component(entity, t) for t in types]
        return None if any(c is None for c in found) else tuple(found)
    comps = esper._entities.get(entity)
    if comps is None:
        return None
    try:
        return tuple([comps[t] for t in types])
    except KeyError:
        return None


class _Query:
    """The entities matching one query, kept while the query's membership holds."""

    __slots__ = ("_get", "_ids", "_members", "_misses", "types")

    def __init__(self, types: tuple[type[Any], ...]) -> None:
        self.types = types
        self._members = Membership(*types)
        self._ids: list[int] = []
        self._misses = 0
        """Calls in a row that found esper's list for this query gone (a busy world)."""
        getter = itemgetter(*types)
        self._get: Callable[[dict[type[Any], Any]], tuple[Any, ...]] = (
            getter if len(types) > 1 else lambda comps: (getter(comps),)
        )

    def rows(self) -> Iterable[tuple[int, tuple[Any, ...]]]:
        cached = esper_cached(self.types)
        if cached is not None:  # a quiet world: esper's own list is still valid
            self._misses = 0
            return self._listed(cached)
        self._misses += 1
        if _CACHE_INTERNALS and (self._misses == 1 or self._misses % _RETRY_LIST == 0):
            # Just quiet (or, now and then, to find out whether it is again): build esper's
            # list, which the next frames reuse for free while nothing comes or goes.
            return esper.get_components(*self.types)
        if self._members.changed():
            # in esper's order, so a round plays out the same as with esper.get_components
            self._ids = _matching(self.types)
        return self._read(self._ids)

    def _listed(self, rows: list[tuple[int, tuple[Any, ...]]]
                ) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """esper's list, until something comes or goes while the loop runs (the loop body
        deletes a unit): from there on the rest is read fresh, as :meth:`_read` does."""
        cache, types = esper._get_components_cache, self.types
        for i, row in enumerate(rows):
            if esper._cache_dirty or cache.get(types) is not rows:
                yield from self._read([ent for ent, _ in rows[i:]])
                return
            yield row

    def _read(self, ids: list[int]) -> Iterator[tuple[int, tuple[Any, ...]]]:
        # The rows are made by C iterators (zip, map, itemgetter), a little cheaper than a
        # Python loop per entity (~8% on 3,000 rows; most of the cost is fetching each
        # entity's components from memory): this runs over every unit of every system.
        # An entity deleted, or stripped of one of the types, while the loop runs makes them
        # raise KeyError; the reading goes on after it (``keys`` tells how far it got).
        entities = esper._entities
        get = self._get
        start, n = 0, len(ids)
        while start < n:
            part = ids[start:] if start else ids
            keys = iter(part)
            try:
                yield from zip(keys, map(get, map(entities.__getitem__, part)), strict=True)
                return
            except KeyError:
                start += len(part) - length_hint(keys)


_QUERIES: dict[tuple[type[Any], ...], _Query] = {}
"""One per distinct query. Worlds may share them: a query's ids are trusted only while every
type's id set equals the one they were taken from, whichever world that was."""


def entities_with(component_type: type[Any]) -> frozenset[int]:
    """The ids of every entity that has ``component_type`` (a copy: safe to keep)."""
    if _INTERNALS:
        return frozenset(esper._components.get(component_type, ()))
    return frozenset(e for e, _ in esper.get_component(component_type))


def _matching(types: tuple[type[Any], ...]) -> list[int]:
    """The entities carrying all of ``types``, in the order esper's own query visits them
    (its smallest set's, the first of equal ones)."""
    db = esper._components
    sets: list[set[int]] = []
    for t in types:
        found = db.get(t)
        if not found:
            return []
        sets.append(found)
    smallest = min(sets, key=len)
    others = [found for found in sets if found is not smallest]
    return [ent for ent in smallest if all(ent in found for found in others)]


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
        seen = self._seen
        if not _INTERNALS:
            now = tuple(entities_with(t) for t in self.types)
            self._seen = now
            return now != seen
        db = esper._components
        if seen is not None:
            # a plain loop: this runs hundreds of times a frame (every sight check of a big
            # fight asks whether the smoke changed)
            for t, before in zip(self.types, seen, strict=True):
                if db.get(t, _NONE) != before:
                    break
            else:
                return False
        self._seen = tuple(frozenset(db.get(t, _NONE)) for t in self.types)
        return True

    def sets(self) -> tuple[frozenset[int], ...]:
        """Per type, the entities that carry it, as of the last :meth:`changed`."""
        if self._seen is None:
            self.changed()
        assert self._seen is not None
        return self._seen


_NONE: frozenset[int] = frozenset()


class StableRows:
    """One query's rows, kept from call to call while they are still the very same: the same
    entities holding the same component objects. Checking that costs a comparison of id sets
    (:class:`Membership`) and one identity test per component, all in C; reading the rows
    again (what :func:`components` does) and comparing them costs a tuple per entity, about
    1.6 times as much (2,000 units: ~530 against ~870 us), and is done only when the check
    fails (an entity came or went, a component was replaced)."""

    __slots__ = ("_columns", "_getters", "_ids", "_listed", "_members", "_rows", "types")

    def __init__(self, *types: type[Any]) -> None:
        self.types = types
        self._members = Membership(*types)
        self._getters = [itemgetter(t) for t in types]
        self._rows: list[tuple[int, tuple[Any, ...]]] | None = None
        self._ids: list[int] = []
        self._columns: list[list[Any]] = []
        self._listed: object = None
        """esper's cached list for ``types`` when the rows were last known to hold."""

    def get(self) -> tuple[list[tuple[int, tuple[Any, ...]]], bool]:
        """``(rows, same)``: the rows as ``components(*types)`` gives them, and whether they
        are the very list the last call returned (nothing about them changed since).

        In a quiet world this is one look at esper's cache: while esper still holds the very
        list it held when the rows were last checked, no component has been added, replaced
        or removed anywhere since (each of those empties esper's cache), so they hold."""
        rows = self._rows
        if rows is not None and still_listed(self._listed, *self.types):
            return rows, True
        changed = self._members.changed()
        if rows is not None and _INTERNALS and not changed and self._holds():
            self._listed = esper_cached(self.types)
            return rows, True
        new = list(components(*self.types))
        if rows is not None and not _INTERNALS and _same_rows(rows, new):
            return rows, True  # (with esper's internals the check above already said no)
        self._rows = new
        self._ids = [ent for ent, _ in new]
        self._columns = [[comps[i] for _, comps in new] for i in range(len(self.types))]
        self._listed = esper_cached(self.types)
        return new, False

    def _holds(self) -> bool:
        entities = esper._entities
        try:
            dicts = list(map(entities.__getitem__, self._ids))
            for getter, column in zip(self._getters, self._columns, strict=True):
                if not all(map(is_, map(getter, dicts), column)):
                    return False
        except KeyError:  # an entity gone, or one that lost a type (esper out of step)
            return False
        return True


def _same_rows(old: list[tuple[int, tuple[Any, ...]]],
               new: list[tuple[int, tuple[Any, ...]]]) -> bool:
    """The same entities, in the same order, holding the same component objects."""
    if len(old) != len(new):
        return False
    for (e1, c1), (e2, c2) in zip(old, new, strict=True):
        if e1 != e2 or any(a is not b for a, b in zip(c1, c2, strict=True)):
            return False
    return True

"""``systems.queries.components`` answers exactly what esper's own query does: the same
entities, in the same order, with the very same component objects."""

from __future__ import annotations

from dataclasses import dataclass

import esper
from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.systems import queries


@dataclass
class A:
    v: int = 0


@dataclass
class B:
    v: int = 0


@dataclass
class C:
    v: int = 0


KINDS = (A, B, C)
ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "delete", "query", "iterate"]),
              st.integers(0, 5), st.sampled_from(KINDS)),
    max_size=60,
)


def _esper_answer(types: tuple[type, ...]) -> list[tuple[int, tuple[int, ...]]]:
    esper.clear_cache()
    return [(e, tuple(map(id, c))) for e, c in esper.get_components(*types)]


def _our_answer(types: tuple[type, ...]) -> list[tuple[int, tuple[int, ...]]]:
    return [(e, tuple(map(id, c))) for e, c in queries.components(*types)]


def _play(op: str, ent: int, i: int, kind: type, types: tuple[type, ...]) -> bool:
    """One step of a script on ``ent``; False when the entity is gone (nothing happened)."""
    if not esper.entity_exists(ent):
        return False
    if op == "add":
        # a new object each time, equal in value to the one it may replace: an answer must
        # hold the new one
        esper.add_component(ent, kind(i))
    elif op == "remove":
        esper.try_remove_component(ent, kind)
    elif op == "delete":
        esper.delete_entity(ent, immediate=True)
    elif op == "query":
        esper.get_components(*types)  # a query in between: esper's cache is valid again
    return True


@settings(max_examples=150, deadline=None)
@given(script=ops, types=st.sampled_from([(A, B), (A, C), (B, C), (A, B, C)]))
def test_same_answer_as_esper_after_any_changes(
    script: list[tuple[str, int, type]], types: tuple[type, ...]
) -> None:
    esper.switch_world("queries-prop")
    try:
        ents = [esper.create_entity() for _ in range(6)]  # few: matches are common
        for op, i, kind in script:
            if not _play(op, ents[i], i, kind, types):
                continue
            if op == "iterate":
                _our_answer(types)  # ours in between: what it keeps must still be right
            assert _our_answer(types) == _esper_answer(types)
    finally:
        esper.switch_world("default")
        esper.delete_world("queries-prop")


def test_the_loop_may_add_and_remove_components_as_it_goes(world: str) -> None:
    ents = [esper.create_entity(A(i), B(i)) for i in range(50)]
    esper.add_component(ents[0], C())  # the cache is now stale: the walk path runs
    seen = []
    for ent, (a, _b) in queries.components(A, B):
        seen.append(a.v)
        esper.remove_component(ent, B)  # would break a loop over esper's live set
        esper.add_component(ent, C())
    assert sorted(seen) == list(range(50))
    assert queries.entities_with(C) == frozenset(ents)


def test_a_replaced_component_is_seen_at_once(world: str) -> None:
    ents = [esper.create_entity(A(i), B(i)) for i in range(5)]
    list(queries.components(A, B))  # the matching entities are now known
    fresh = A(2)
    esper.add_component(ents[2], fresh)  # same types, same value, another object
    rows = dict(queries.components(A, B))
    assert rows[ents[2]][0] is fresh


def test_an_entity_deleted_while_the_loop_runs_is_passed_over(world: str) -> None:
    queries._QUERIES.clear()  # a first look builds esper's list: the loop reads that one
    ents = [esper.create_entity(A(i), B(i)) for i in range(6)]
    list(queries.components(A, B))
    seen = []
    for _ent, (a, _b) in queries.components(A, B):
        seen.append(a.v)
        if a.v == 0:
            for other in ents[1:3]:
                esper.delete_entity(other, immediate=True)
    assert sorted(seen) == [0, 3, 4, 5]


@settings(max_examples=150, deadline=None)
@given(script=ops, types=st.sampled_from([(A, B), (A, C), (B, C), (A, B, C)]))
def test_stable_rows_are_kept_only_while_they_are_the_very_same(
    script: list[tuple[str, int, type]], types: tuple[type, ...]
) -> None:
    esper.switch_world("stable-prop")
    try:
        ents = [esper.create_entity() for _ in range(6)]
        stable = queries.StableRows(*types)
        last: list[tuple[int, tuple[int, ...]]] | None = None
        for op, i, kind in script:
            if not _play(op, ents[i], i, kind, types):
                continue
            rows, same = stable.get()
            now = [(e, tuple(map(id, c))) for e, c in rows]
            assert now == _esper_answer(types)
            if same:
                assert now == last  # "the same" means the same entities and objects
            last = now
    finally:
        esper.switch_world("default")
        esper.delete_world("stable-prop")


def test_stable_rows_notice_a_replaced_component(world: str) -> None:
    ents = [esper.create_entity(A(i), B(i)) for i in range(5)]
    stable = queries.StableRows(A, B)
    first, _ = stable.get()
    assert stable.get() == (first, True)
    fresh = A(2)  # equal in value to the one it replaces
    esper.add_component(ents[2], fresh)
    rows, same = stable.get()
    assert not same
    assert dict(rows)[ents[2]][0] is fresh


def test_stable_rows_in_a_quiet_world_notice_a_replaced_component(world: str) -> None:
    """While esper keeps its cached list, the rows hold without a look at each unit; the
    replacement that empties esper's cache is still seen at once."""
    ents = [esper.create_entity(A(i), B(i)) for i in range(5)]
    esper.get_components(A, B)  # a host system's query: esper caches it, the world is quiet
    stable = queries.StableRows(A, B)
    first, _ = stable.get()
    assert stable.get() == (first, True)
    fresh = A(2)
    esper.add_component(ents[2], fresh)  # esper's old list is still in its cache, now stale
    rows, same = stable.get()
    assert not same
    assert dict(rows)[ents[2]][0] is fresh
    esper.get_components(A, B)  # quiet again, with a new list
    assert stable.get() == (rows, True)
    newer = B(4)
    esper.add_component(ents[4], newer)
    esper.get_components(A, B)  # a host's query rebuilds esper's list before we look
    rows, same = stable.get()
    assert not same
    assert dict(rows)[ents[4]][1] is newer


def test_a_busy_world_loop_passes_over_units_deleted_or_stripped_ahead_of_it(world: str) -> None:
    ents = [esper.create_entity(A(i), B(i)) for i in range(8)]
    for _ in range(3):  # a busy world: esper's list is gone at every call
        esper.add_component(ents[0], C())
        list(queries.components(A, B))
        esper.remove_component(ents[0], C)
    seen = []
    for _ent, (a, _b) in queries.components(A, B):
        seen.append(a.v)
        if a.v == 1:
            esper.delete_entity(ents[3], immediate=True)
            esper.remove_component(ents[4], B)
            esper.delete_entity(ents[7], immediate=True)  # the last one
    assert seen == [0, 1, 2, 5, 6]

"""Batching: assembly and schema, per-agent routing of a streamed reply, adaptive size."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest

from esper_arbiter.components.actions import Attack, MoveTo, TakeCover
from esper_arbiter.components.llm import PRIORITY_HIGH, PRIORITY_LOW, FailureKind, PlanRequest
from esper_arbiter.components.snapshot import GridView, ObjectiveView, UnitView, WorldSnapshot
from esper_arbiter.systems.llm import prompt
from esper_arbiter.systems.llm.batching import (
    AdaptiveBatchSize,
    AgentPlan,
    AgentReject,
    BatchMember,
    BatchReplyRouter,
    build_batch,
    build_batch_schema,
    build_turns,
    select_batch,
)
from esper_arbiter.systems.llm.budget import measure
from esper_arbiter.systems.llm.request_queue import QueueConfig, RequestQueue
from esper_arbiter.systems.planning.validation import PlanValidation
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY as DEFAULT_REGISTRY

WALLS = frozenset((6, y) for y in range(1, 9))
COVER = frozenset({(3, 5), (5, 2), (9, 4)})
GRID = GridView(20, 10, WALLS, COVER)
PLAYER = UnitView(1, 2, 2, 100, 100, "player", name="player")
RIVAL = UnitView(10, 12, 2, 60, 60, "enemy", name="Rival")
GRUNT = UnitView(11, 14, 6, 40, 40, "enemy", name="Grunt")


def snap(me_id: int, x: int, y: int) -> WorldSnapshot:
    return WorldSnapshot(
        t=4.75,
        me=UnitView(me_id, x, y, 80, 80, "ally", name="companion"),
        leader=PLAYER,
        enemies=(RIVAL, GRUNT),
        allies=(),
        grid=GRID,
        pois={"breach_door": (15, 8)},
        objective=ObjectiveView("breach_door", "reach", 15, 8),
        ammo=30,
        ammo_capacity=30,
    )


@dataclass
class Item:
    request_id: int
    request: PlanRequest


def item(rid: int, agent: int, priority: int = PRIORITY_LOW, pos: tuple[int, int] = (2, 3)) -> Item:
    return Item(rid, PlanRequest(agent_id=agent, snapshot=snap(agent, *pos), priority=priority))


def reply_for(*elements: dict[str, Any]) -> str:
    return json.dumps(list(elements))


# ----------------------------------------------------------------------------- selection


def test_select_batch_prefers_priority_then_given_order_and_sorts_by_agent() -> None:
    items = [item(1, 7), item(2, 3, PRIORITY_HIGH), item(3, 5), item(4, 9), item(5, 4)]
    chosen = select_batch(items, 3)
    # high-priority agent 3 first, then the first two low ones given (7, 5); sorted by id
    assert [i.request.agent_id for i in chosen] == [3, 5, 7]
    assert [i.request.agent_id for i in select_batch(items, 0)] == [3]
    assert len(select_batch(items, 10)) == 5


def test_select_batch_takes_one_request_per_agent() -> None:
    items = [item(1, 4), item(2, 4), item(3, 2)]
    chosen = select_batch(items, 4)
    assert [(i.request.agent_id, i.request_id) for i in chosen] == [(2, 3), (4, 1)]


def test_queue_entries_work_as_batch_items() -> None:
    q = RequestQueue(QueueConfig())
    for agent in (8, 3, 5):
        q.submit(PlanRequest(agent_id=agent, snapshot=snap(agent, 2, 3)))
    entries = q.take_batch(3)
    batch = build_batch(select_batch(entries, 3))
    assert batch.agent_ids == (3, 5, 8)
    assert set(batch.request_ids) == {e.request_id for e in entries}


# ----------------------------------------------------------------------------- prompt + schema


def test_same_requests_in_any_order_give_the_same_prompt_and_schema() -> None:
    a = [item(1, 2, pos=(2, 3)), item(2, 4, pos=(3, 4)), item(3, 3, pos=(1, 6))]
    b1, b2 = build_batch(a), build_batch(list(reversed(a)))
    assert b1.messages == b2.messages
    assert json.dumps(b1.schema, sort_keys=True) == json.dumps(b2.schema, sort_keys=True)
    assert b1.agent_ids == (2, 3, 4)


def test_schema_is_a_fixed_order_tuple_of_each_agents_own_plan_schema() -> None:
    items = [item(1, 4, pos=(3, 4)), item(2, 2, pos=(2, 3))]
    batch = build_batch(items)
    s = batch.schema
    assert s["type"] == "array" and "items" not in s  # llama.cpp would prefer "items"
    assert s["minItems"] == s["maxItems"] == 2
    assert [p["properties"]["agent_id"] for p in s["prefixItems"]] == [{"const": 2}, {"const": 4}]
    for entry, (agent, pos) in zip(s["prefixItems"], [(2, (2, 3)), (4, (3, 4))], strict=True):
        assert entry["required"] == ["agent_id", "steps"]
        own = DEFAULT_REGISTRY.plan_schema(snap(agent, *pos), 8)
        assert entry["properties"]["steps"] == own["properties"]["steps"]
    # the two agents stand on different tiles, so their schemas differ (narrowed per snapshot)
    assert s["prefixItems"][0]["properties"]["steps"] != s["prefixItems"][1]["properties"]["steps"]


def test_anyof_style_schema() -> None:
    per = [(a, DEFAULT_REGISTRY.plan_schema(snap(a, 2, 3))) for a in (2, 5)]
    s = build_batch_schema(per, style="anyOf")
    assert [b["properties"]["agent_id"]["const"] for b in s["items"]["anyOf"]] == [2, 5]
    assert s["minItems"] == s["maxItems"] == 2 and "prefixItems" not in s


def test_plan_schema_without_steps_is_rejected() -> None:
    with pytest.raises(ValueError, match="steps"):
        build_batch_schema([(1, {"type": "object", "properties": {}})])


def line_of(s: WorldSnapshot, prefix: str) -> str:
    return next(ln for ln in prompt.render_snapshot(s).splitlines() if ln.startswith(prefix))


def test_messages_reuse_the_single_agent_system_prompt_and_list_every_agent_once() -> None:
    batch = build_batch([item(1, 2, pos=(2, 3)), item(2, 4, pos=(3, 4))])
    system, user = batch.messages
    assert system == {"role": "system", "content": prompt.system_prompt(None, 8)}
    text = user["content"]
    assert user["role"] == "user"
    assert "Agent #2:" in text and "Agent #4:" in text
    assert text.index("Agent #2:") < text.index("Agent #4:")
    # what both agents see alike (the map, the hostiles, the objective) appears once, shared
    for prefix in ("map ", "enemies: ", "objective: ", "cover: "):
        line = line_of(snap(2, 2, 3), prefix)
        assert text.count(line) == 1 and text.index(line) < text.index("Agent #2:"), prefix
    # each agent's own line is there
    for agent, pos in [(2, (2, 3)), (4, (3, 4))]:
        assert line_of(snap(agent, *pos), "me ") in text
    # each agent's example is made from its own live options (nothing fixed to copy)
    for agent, pos in [(2, (2, 3)), (4, (3, 4))]:
        live = prompt.live_example(snap(agent, *pos))
        assert json.dumps({"agent_id": agent, "steps": live}, separators=(",", ":")) in text


def squad_items(n: int) -> list[Item]:
    """``n`` squad-mates in one world, each listing the others as allies."""
    mates = [UnitView(2 + i, 2 + i, 3 + (i % 2), 80, 80, "ally", name="companion")
             for i in range(n)]
    out = []
    for i, me in enumerate(mates):
        s = replace(snap(me.id, me.x, me.y), me=me,
                    allies=tuple(a for a in mates if a.id != me.id))
        out.append(Item(i + 1, PlanRequest(agent_id=me.id, snapshot=s)))
    return out


def test_a_batch_of_squad_mates_reads_far_fewer_tokens_than_their_single_prompts() -> None:
    items = squad_items(4)
    singles = sum(measure(prompt.build_messages(i.request.snapshot)[1:]) for i in items)
    array = measure(build_batch(items).messages[1:])
    turns = measure(build_turns(items).messages[1:])
    assert array < 0.6 * singles
    assert turns < 0.75 * singles


def test_turns_state_the_shared_situation_once_and_each_member_in_its_own_turn() -> None:
    items = squad_items(3)
    turns = build_turns(items)
    assert turns.agent_ids == (2, 3, 4)
    first = turns.turn(0)
    assert [m["role"] for m in first] == ["system", "user"]
    assert first[0]["content"] == prompt.system_prompt(None, 8)
    map_line = line_of(items[0].request.snapshot, "map ")
    assert map_line in first[1]["content"] and "Agent #2:" in first[1]["content"]
    third = turns.turn(2, [(0, "A0"), (1, "A1")])
    assert [m["role"] for m in third] == ["system", "user", "assistant", "user", "assistant",
                                          "user"]
    # each call's prompt extends the previous call's prompt and answer (a llama.cpp prefix)
    assert third[:2] == first and third[2]["content"] == "A0"
    assert "\n".join(m["content"] for m in third).count(map_line) == 1
    assert "Agent #4:" in third[-1]["content"] and "#4 only" in third[-1]["content"]
    # a member left out (its reply was unusable): the next turn still opens with the shared part
    skipped = turns.turn(1, [])
    assert map_line in skipped[1]["content"] and "Agent #3:" in skipped[1]["content"]
    assert turns.schemas[1] == DEFAULT_REGISTRY.plan_schema(items[1].request.snapshot, 8)


def test_build_batch_rejects_empty_and_duplicate_agents() -> None:
    with pytest.raises(ValueError):
        build_batch([])
    with pytest.raises(ValueError, match="twice"):
        build_batch([item(1, 2), item(2, 2)])


def test_batch_schema_converts_to_a_llama_cpp_grammar_with_one_rule_per_agent() -> None:
    grammar_mod = pytest.importorskip("llama_cpp.llama_grammar")
    batch = build_batch([item(1, 2), item(2, 4, pos=(3, 4)), item(3, 3, pos=(1, 6))])
    gbnf = grammar_mod.json_schema_to_gbnf(json.dumps(batch.schema))
    for i in range(3):
        assert f"tuple-{i}" in gbnf
    assert "tuple-3" not in gbnf


# ----------------------------------------------------------------------------- routing


def three_members() -> list[BatchMember]:
    return [
        BatchMember(101, PlanRequest(agent_id=2, snapshot=snap(2, 2, 3))),
        BatchMember(102, PlanRequest(agent_id=3, snapshot=snap(3, 1, 6))),
        BatchMember(103, PlanRequest(agent_id=4, snapshot=snap(4, 3, 4))),
    ]


GOOD_2 = {
    "agent_id": 2,
    "steps": [{"act": "TakeCover", "x": 3, "y": 5}, {"act": "Attack", "target_id": 10}],
}
GOOD_3 = {"agent_id": 3, "steps": [{"act": "MoveTo", "x": 2, "y": 8}]}
GOOD_4 = {"agent_id": 4, "steps": [{"act": "Attack", "target_id": 11}]}
INTO_WALL_3 = {"agent_id": 3, "steps": [{"act": "MoveTo", "x": 6, "y": 4}]}


def test_each_plan_is_delivered_when_its_object_closes_not_at_the_end() -> None:
    reply = reply_for(GOOD_2, GOOD_3, GOOD_4)
    router = BatchReplyRouter(three_members())
    delivered_at: dict[int, int] = {}
    for i, ch in enumerate(reply):
        for r in router.feed(ch):
            assert isinstance(r, AgentPlan)
            delivered_at[r.agent_id] = i
    first_end = len(json.dumps(GOOD_2)) + 1  # '[' + element
    assert delivered_at[2] == first_end - 1 < len(reply) - 1
    assert delivered_at[2] < delivered_at[3] < delivered_at[4] < len(reply) - 1
    summary = router.finish()
    assert [p.agent_id for p in summary.delivered] == [2, 3, 4]
    assert summary.delivered[0].steps == (TakeCover(3, 5), Attack(10))
    assert summary.delivered[0].request_id == 101
    assert summary.retry == () and summary.problem is None


def test_one_broken_agent_is_retried_the_others_keep_their_plans() -> None:
    reply = reply_for(GOOD_2, INTO_WALL_3, GOOD_4)
    router = BatchReplyRouter(three_members())
    results = []
    for chunk in (reply[i : i + 7] for i in range(0, len(reply), 7)):
        results.extend(router.feed(chunk))
    summary = router.finish()
    assert [(type(r).__name__, r.agent_id) for r in results] == [
        ("AgentPlan", 2), ("AgentReject", 3), ("AgentPlan", 4),
    ]
    rej = summary.rejected[0]
    assert rej.kind is FailureKind.INVALID_PLAN and "wall" in rej.message
    assert rej.validation is not None and not rej.validation.ok
    assert [m.agent_id for m in summary.retry] == [3]
    assert [p.steps for p in summary.delivered] == [(TakeCover(3, 5), Attack(10)), (Attack(11),)]


def test_malformed_and_missing_elements_are_retried() -> None:
    broken = '{"agent_id": 3, "steps": [{"act": "MoveTo", "x": 2 "y": 8}]}'
    reply = "[" + json.dumps(GOOD_4) + ", " + broken  # cut off: agent 2 never comes
    router = BatchReplyRouter(three_members())
    early = router.feed(reply + "]")
    assert [(type(r).__name__, r.agent_id) for r in early] == [("AgentPlan", 4), ("AgentReject", 3)]
    summary = router.finish()
    assert summary.rejected[0].kind is FailureKind.PARSE and summary.rejected[0].raw == broken
    assert [m.agent_id for m in summary.missing] == [2]
    assert [m.agent_id for m in summary.retry] == [2, 3]


def test_wrong_shape_unknown_duplicate_and_stringly_ids() -> None:
    reply = reply_for(
        {"agent_id": "2", "steps": GOOD_2["steps"]},  # id as a string: accepted
        {"agent_id": 2, "steps": GOOD_3["steps"]},  # duplicate: first wins
        {"agent_id": 99, "steps": []},  # unknown
        {"steps": []},  # no id
        {"agent_id": 3, "plan": []},  # no steps
        [1, 2],  # not an object
    )
    router = BatchReplyRouter(three_members())
    router.feed(reply)
    s = router.finish()
    assert [p.agent_id for p in s.delivered] == [2]
    assert [(r.agent_id, r.kind) for r in s.rejected] == [(3, FailureKind.PARSE)]
    assert len(s.stray) == 4
    assert any("duplicate agent_id 2" in x for x in s.stray)
    assert any("unknown agent_id 99" in x for x in s.stray)
    assert [m.agent_id for m in s.retry] == [3, 4]


def test_no_array_at_all_retries_everyone() -> None:
    router = BatchReplyRouter(three_members())
    router.feed("I am sorry, I cannot plan for several companions.")
    s = router.finish()
    assert s.problem == "no JSON array found in the reply"
    assert [m.agent_id for m in s.retry] == [2, 3, 4]
    assert router.finish() is s  # idempotent
    assert router.feed('[{"agent_id": 2}]') == []


def test_a_crashing_validator_does_not_stop_the_other_agents() -> None:
    calls: list[int] = []

    def validate(plan: object, snapshot: WorldSnapshot, *_: object) -> PlanValidation:
        calls.append(snapshot.me.id)
        if snapshot.me.id == 3:
            raise RuntimeError("validator bug")
        return PlanValidation(True, (MoveTo(1, 1),), ())

    router = BatchReplyRouter(three_members(), validate=validate)
    router.feed(reply_for(GOOD_2, GOOD_3, GOOD_4))
    s = router.finish()
    assert calls == [2, 3, 4]
    assert [p.agent_id for p in s.delivered] == [2, 4]
    assert [m.agent_id for m in s.retry] == [3]
    assert any("internal error" in x for x in s.stray)


def test_router_from_a_batch_prompt_and_max_steps_per_member() -> None:
    long_plan = {"agent_id": 2, "steps": [{"act": "Scan"}, {"act": "Wait", "seconds": 1},
                                          {"act": "Scan"}]}
    members = [BatchMember(1, PlanRequest(agent_id=2, snapshot=snap(2, 2, 3), max_steps=2))]
    router = BatchReplyRouter(build_batch(members))
    router.feed(reply_for(long_plan))
    s = router.finish()
    assert isinstance(s.results[0], AgentReject) and "at most 2" in s.results[0].message


# ----------------------------------------------------------------------------- adaptive size


def test_adaptive_size_halves_on_slow_batches_and_grows_back_after_fast_full_ones() -> None:
    a = AdaptiveBatchSize(4, minimum=1, maximum=6, latency_target_s=10.0, grow_after=2)
    assert a.value == 4
    assert a.record(4, 12.0) == 2  # slow: halve
    assert a.record(2, 3.0) == 2  # fast and full: streak 1
    assert a.record(2, 3.0) == 3  # streak 2: +1
    assert a.record(1, 4.0) == 3  # fast but not full: says nothing about size 3
    assert a.record(3, 9.0) == 3  # within target but not fast: streak reset
    assert a.record(3, 2.0) == 3
    assert a.record(3, 2.0) == 4
    for _ in range(10):
        a.record(a.value, 1.0)
    assert a.value == 6  # capped at maximum
    assert [h[2] for h in a.history[:3]] == [2, 2, 3]


def test_adaptive_size_settles_at_one_when_even_single_requests_are_slow() -> None:
    a = AdaptiveBatchSize(8, maximum=8, latency_target_s=5.0)
    sizes = []
    for _ in range(6):
        size = a.value
        a.record(size, 7.0 * size)  # each agent costs 7 s: never under target
        sizes.append(a.value)
    assert sizes == [4, 2, 1, 1, 1, 1]


def test_adaptive_size_slow_small_batch_shrinks_from_the_size_that_ran() -> None:
    a = AdaptiveBatchSize(8, maximum=8, latency_target_s=5.0)
    assert a.record(2, 6.0) == 1


def test_adaptive_size_is_deterministic() -> None:
    seq = [(4, 12.0), (2, 1.0), (2, 1.0), (3, 3.0), (3, 30.0), (1, 0.5), (1, 0.5)]
    runs = []
    for _ in range(2):
        a = AdaptiveBatchSize(4, latency_target_s=10.0)
        runs.append([a.record(s, t) for s, t in seq])
    assert runs[0] == runs[1] == [2, 2, 3, 3, 1, 1, 2]


def test_adaptive_size_settles_at_one_when_batches_cost_more_per_request_than_singles() -> None:
    # The embedded model's figures (bench/batching.py): ~2.5 s per single request, a batch of
    # four ~21 s. Every batch is well under the latency target, yet none pays.
    a = AdaptiveBatchSize(4, maximum=4, latency_target_s=60.0)
    a.record(1, 2.5)
    assert a.single_cost_s == 2.5
    sizes = []
    for _ in range(3):
        sizes.append(a.record(a.value if a.value > 1 else 2, 2.2 * 2.5 * max(a.value, 2)))
        assert not a.settled or len(sizes) == 3
        for _ in range(a.grow_after):  # fast single requests grow it back between batches
            a.record(1, 2.5)
    assert sizes == [1, 1, 1] and a.settled and a.value == 1
    for _ in range(10):  # settled: fast singles no longer grow it
        a.record(1, 2.5)
    assert a.value == 1


def test_adaptive_size_keeps_batches_that_pay_and_a_paying_batch_clears_the_losses() -> None:
    a = AdaptiveBatchSize(4, maximum=4, latency_target_s=60.0)
    for lat in (3.0, 2.0, 2.5):
        a.record(1, lat)
    assert a.single_cost_s == 2.5  # the median of the recent singles
    assert a.record(4, 4.0) == 4  # 1 s per request against 2.5 s: pays
    assert a.record(4, 12.0) == 1  # 3 s per request: does not
    a.record(1, 2.5)
    a.record(1, 2.5)
    assert a.value == 2
    assert a.record(2, 2.0) == 2  # pays again: losses reset
    assert a.record(2, 6.0) == 1
    assert not a.settled  # two losses, but not in a row


def test_adaptive_size_judges_batches_only_once_a_single_request_was_timed() -> None:
    a = AdaptiveBatchSize(4, maximum=4, latency_target_s=60.0)
    assert a.single_cost_s is None
    for _ in range(5):
        assert a.record(4, 40.0) == 4  # no baseline yet: only the latency rule applies
    assert not a.settled


@pytest.mark.parametrize(
    "kwargs",
    [{"minimum": 0}, {"minimum": 3, "maximum": 2}, {"latency_target_s": 0.0}, {"grow_after": 0},
     {"min_gain": 1.0}, {"min_gain": -0.1}, {"settle_after": 0}],
)
def test_adaptive_size_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AdaptiveBatchSize(2, **kwargs)

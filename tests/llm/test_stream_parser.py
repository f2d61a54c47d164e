"""Incremental JSON array parsing: the same elements however the stream is split."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.systems.llm.stream_parser import (
    ElementError,
    JsonArrayStreamParser,
    ParsedElement,
    StreamEvent,
    parse_array,
)

PLANS: list[dict[str, Any]] = [
    {
        "agent_id": 2,
        "steps": [
            {"act": "MoveTo", "x": 3, "y": 2},
            {"act": "ThrowSmoke", "x": 9, "y": 2},
            {"act": "Wait", "seconds": 1.5},
        ],
        "note": 'braces } { and brackets ] [ and an "escaped" quote \\ backslash',
    },
    {
        "agent_id": 5,
        "steps": [{"act": "Attack", "target_id": 12}],
        "why": 'über naïve 🙂 says "}]" and \\"{',
    },
    {"agent_id": 9, "steps": [], "meta": {"nested": [{"deep": [1, 2, {"x": "]}"}]}]}},
]
REPLY = json.dumps(PLANS, indent=1, ensure_ascii=False)


def sig(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    """What must not depend on the split: kind, index, value / raw."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, ParsedElement):
            out.append(("ok", e.index, json.dumps(e.value, sort_keys=True), e.raw, e.repaired))
        else:
            out.append(("err", e.index, e.raw, e.message))
    return out


def feed_split(text: str | bytes, cuts: list[int]) -> tuple[list[StreamEvent], str | None]:
    p = JsonArrayStreamParser()
    events: list[StreamEvent] = []
    prev = 0
    for c in sorted(set(cuts)):
        events.extend(p.feed(text[prev:c]))
        prev = c
    events.extend(p.feed(text[prev:]))
    events.extend(p.finish())
    return events, p.problem


def whole(text: str) -> tuple[list[tuple[Any, ...]], str | None]:
    events, problem = parse_array(text)
    return sig(events), problem


# ----------------------------------------------------------------------------- basics


def test_elements_equal_json_loads_of_the_whole_reply() -> None:
    events, problem = parse_array(REPLY)
    assert problem is None
    assert [e.value for e in events if isinstance(e, ParsedElement)] == PLANS
    assert [e.index for e in events] == [0, 1, 2]
    assert all(json.loads(e.raw) == v for e, v in zip(events, PLANS, strict=True))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "reply",
    [
        REPLY,
        "```json\n" + REPLY + "\n```",
        "<think>I need [a plan] with {braces} and ``` fences</think>\n" + REPLY,
        "Sure! Here are the plans [as requested]:\n" + REPLY + "\nHope this helps {:}",
        '{"plans": ' + REPLY + "}",
        "<think>\n</think>\n\n```json" + REPLY + "```",
    ],
    ids=["bare", "fence", "think", "prose", "envelope", "think+fence"],
)
def test_same_elements_at_every_split_offset(reply: str) -> None:
    expected, problem = whole(reply)
    assert problem is None
    assert [s[0] for s in expected] == ["ok", "ok", "ok"]
    for cut in range(len(reply) + 1):
        events, prob = feed_split(reply, [cut])
        assert sig(events) == expected, cut
        assert prob is None


def test_same_elements_at_every_byte_offset_of_utf8() -> None:
    data = ("<think>ü</think>" + REPLY).encode("utf-8")
    expected, _ = whole(data.decode("utf-8"))
    for cut in range(len(data) + 1):
        events, prob = feed_split(data, [cut])
        assert sig(events) == expected, cut
        assert prob is None


def test_one_byte_at_a_time_emits_each_element_when_its_brace_closes() -> None:
    p = JsonArrayStreamParser()
    emitted_at: list[int] = []
    for i, ch in enumerate(REPLY):
        for _ in p.feed(ch):
            emitted_at.append(i)
    closes = []
    depth = 0
    in_str = esc = False
    for i, ch in enumerate(REPLY):  # reference: where each top-level object's '}' is
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 1 and ch == "}":
                closes.append(i)
    assert emitted_at == closes
    assert p.done  # the closing "]" was the last character fed
    p.feed("")
    assert p.finish() == [] and p.problem is None


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(REPLY)), max_size=12))
def test_random_multi_splits_give_the_same_elements(cuts: list[int]) -> None:
    events, problem = feed_split(REPLY, cuts)
    assert sig(events) == whole(REPLY)[0] and problem is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    elements=st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=5),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_array_of_objects_round_trips(
    elements: list[dict[str, Any]], ascii_only: bool, indent: int | None, cuts: list[int]
) -> None:
    text = json.dumps(elements, ensure_ascii=ascii_only, indent=indent)
    events, problem = feed_split(text, [c for c in cuts if c <= len(text)])
    assert problem is None
    assert all(isinstance(e, ParsedElement) for e in events)
    assert [e.value for e in events] == elements  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- tolerance


def test_scalars_and_strings_with_brackets_in_a_clean_array() -> None:
    events, problem = parse_array('[1, -2.5e3, "a]b,c", null, true, [3, [4]], {"k": "}"}]')
    assert problem is None
    assert [e.value for e in events] == [  # type: ignore[union-attr]
        1, -2500.0, "a]b,c", None, True, [3, [4]], {"k": "}"}
    ]


def test_malformed_element_is_reported_and_the_next_ones_survive() -> None:
    bad = '{"agent_id": 3, "steps": [{"act": "MoveTo", "x": 3 "y": 2}]}'
    reply = f'[{json.dumps(PLANS[0])}, {bad}, {json.dumps(PLANS[1])}]'
    expected, problem = whole(reply)
    assert problem is None
    assert [s[0] for s in expected] == ["ok", "err", "ok"]
    events, _ = parse_array(reply)
    err = events[1]
    assert isinstance(err, ElementError) and err.raw == bad and err.index == 1
    assert "invalid JSON" in err.message
    for cut in range(len(reply) + 1):
        assert sig(feed_split(reply, [cut])[0]) == expected


def test_mismatched_bracket_inside_an_element_is_contained() -> None:
    reply = '[{"agent_id": 1, "steps": [1, 2}, {"agent_id": 2, "steps": []}]'
    events, _ = parse_array(reply)
    assert isinstance(events[0], ElementError)
    assert events[0].raw == '{"agent_id": 1, "steps": [1, 2}'
    assert isinstance(events[1], ParsedElement) and events[1].value == {"agent_id": 2, "steps": []}


def test_trailing_commas_are_repaired_and_flagged() -> None:
    events, problem = parse_array('[{"a": [1, 2,],}, {"b": 1}, ]')
    assert problem is None
    assert isinstance(events[0], ParsedElement) and events[0].repaired
    assert events[0].value == {"a": [1, 2]}
    assert isinstance(events[1], ParsedElement) and not events[1].repaired


def test_missing_comma_between_elements_is_tolerated() -> None:
    events, problem = parse_array('[{"a": 1} {"b": 2}\n{"c": 3}]')
    assert [e.value for e in events] == [{"a": 1}, {"b": 2}, {"c": 3}]  # type: ignore[union-attr]
    assert problem is None


def test_single_bare_object_and_object_per_line() -> None:
    events, problem = parse_array('```json\n{"agent_id": 2, "steps": [{"act": "Scan"}]}\n```')
    assert problem is None
    assert [e.value["agent_id"] for e in events] == [2]  # type: ignore[union-attr]
    events, problem = parse_array('{"agent_id": 2}\n{"agent_id": 5}\n')
    assert problem is None
    assert [e.value["agent_id"] for e in events] == [2, 5]  # type: ignore[union-attr]


def test_braces_in_prose_before_the_array_are_junk() -> None:
    reply = "Using {my judgement} here: " + REPLY
    expected = whole(REPLY)[0]
    for cut in range(len(reply) + 1):
        events, problem = feed_split(reply, [cut])
        assert sig(events) == expected and problem is None


def test_empty_array_and_text_after_the_array() -> None:
    assert parse_array("[]") == ([], None)
    events, problem = parse_array('[{"a": 1}] and then [{"b": 2}]')
    assert [e.value for e in events] == [{"a": 1}] and problem is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("reply", "problem", "kinds"),
    [
        ("", "no JSON array found in the reply", []),
        ("I cannot help with that.", "no JSON array found in the reply", []),
        ("<think>forever", "reply ended inside <think>", []),
        ('[{"a": 1}, {"b": [2, ', "reply ended before the array closed", ["ok", "err"]),
        ('[{"a": 1},', "reply ended before the array closed", ["ok"]),
        ('{"plans": [{"a": 1}}', "array not closed with ']'", ["ok"]),
    ],
)
def test_reply_level_problems(reply: str, problem: str, kinds: list[str]) -> None:
    events, got = parse_array(reply)
    assert got == problem
    assert [("ok" if isinstance(e, ParsedElement) else "err") for e in events] == kinds
    for cut in range(len(reply) + 1):
        ev2, p2 = feed_split(reply, [cut])
        assert sig(ev2) == sig(events) and p2 == problem


def test_truncated_element_keeps_its_raw_text() -> None:
    p = JsonArrayStreamParser()
    assert p.feed('[{"a": 1}, {"b": "cut') != []
    tail = p.finish()
    assert len(tail) == 1 and isinstance(tail[0], ElementError)
    assert tail[0].raw == '{"b": "cut' and "truncated" in tail[0].message
    assert p.feed('more"}]') == [] and p.done


def test_bad_chunk_types_and_deep_nesting_never_raise() -> None:
    p = JsonArrayStreamParser()
    assert p.feed(12345) == []  # type: ignore[arg-type]
    assert p.problem is not None and "int" in p.problem
    deep = "[" + "{" + '"a":[' * 3000 + "1" + "]}" * 0 + "]" * 3000 + "}]"
    events, problem = parse_array(deep)
    assert len(events) == 1 and problem is None


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.sampled_from([*'[]{}",:\\ \nabc01<>/`', "<think>", "</think>", "```", "true"]),
        max_size=60,
    ).map("".join),
    cuts=st.lists(st.integers(0, 130), max_size=5),
)
def test_never_raises_and_is_split_invariant_on_garbage(text: str, cuts: list[int]) -> None:
    a = sig(feed_split(text, [])[0])
    b, _ = feed_split(text, [c for c in cuts if c <= len(text)])
    assert sig(b) == a
    assert [x[1] for x in a] == list(range(len(a)))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_never_raises_on_mutated_replies(data: st.DataObject) -> None:
    text = REPLY
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["del", "ins", "dup"]))
        if op == "del":
            text = text[:i] + text[i + 1 :]
        elif op == "ins":
            text = text[:i] + data.draw(st.sampled_from(list('{}[]",\\:x'))) + text[i:]
        else:
            text = text[:i] + text[i : i + 20] + text[i:]
    raw = text.encode("utf-8")
    cut = data.draw(st.integers(0, len(raw)))
    events, _ = feed_split(raw, [cut])
    assert sig(events) == sig(parse_array(text)[0])

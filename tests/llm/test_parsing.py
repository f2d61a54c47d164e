"""parse_plan_reply: every tier, the failures, and never raising on anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esper_arbiter.systems.llm.parsing import TIERS, parse_plan_reply

STEPS: list[dict[str, Any]] = [
    {"act": "MoveTo", "x": 7, "y": 0},
    {"act": "Attack", "target_id": 3},
    {"act": "Wait", "seconds": 1.5},
]
PLAN = {"steps": STEPS}
PLAN_JSON = json.dumps(PLAN)


@pytest.mark.parametrize(
    ("reply", "tier"),
    [
        (PLAN_JSON, "direct"),
        ("  \n" + PLAN_JSON + "\n", "direct"),
        (json.dumps(STEPS), "direct"),
        ("```json\n" + PLAN_JSON + "\n```", "fenced"),
        ("Sure! Here it is:\n```\n" + PLAN_JSON + "\n```\nGood luck.", "fenced"),
        (json.dumps({"message": {"role": "assistant", "content": PLAN_JSON}}), "envelope"),
        (json.dumps({"model": "x", "response": PLAN_JSON, "done": True}), "envelope"),
        (json.dumps({"response": PLAN}), "envelope"),
        (json.dumps({"message": {"content": "```json\n" + PLAN_JSON + "\n```"}}), "envelope"),
        ("The plan is " + PLAN_JSON + " and that is final.", "balanced"),
        ('Note [see below]: {"answer": ' + PLAN_JSON + "}", "balanced"),
        ("{'steps': [{'act': 'MoveTo', 'x': 7, 'y': 0}, {'act': 'Attack', 'target_id': 3},"
         " {'act': 'Wait', 'seconds': 1.5}]}", "repair"),
        ('{"steps": [{"act": "MoveTo", "x": 7, "y": 0,}, {"act": "Attack", "target_id": 3},'
         ' {"act": "Wait", "seconds": 1.5},],}', "repair"),
        ('{steps: [{act: "MoveTo", x: 7, y: 0}, {act: "Attack", target_id: 3},'
         ' {act: "Wait", seconds: 1.5}]}', "repair"),
        ("Plan:\n{\n  // move first\n  \"steps\": [{\"act\": \"MoveTo\", \"x\": 7, \"y\": 0},"
         " {\"act\": \"Attack\", \"target_id\": 3}, {\"act\": \"Wait\", \"seconds\": 1.5}]\n}",
         "repair"),
    ],
)
def test_each_tier_recovers_the_plan(reply: str, tier: str) -> None:
    result = parse_plan_reply(reply)
    assert result.ok, result.error
    assert result.tier == tier
    assert result.steps == STEPS
    assert result.tried == TIERS[: TIERS.index(tier) + 1]


def test_ndjson_stream_of_envelopes_is_reassembled() -> None:
    half = len(PLAN_JSON) // 2
    lines = [
        json.dumps({"message": {"role": "assistant", "content": PLAN_JSON[:half]}, "done": False}),
        json.dumps({"message": {"role": "assistant", "content": PLAN_JSON[half:]}, "done": False}),
        json.dumps({"message": {"role": "assistant", "content": ""}, "done": True}),
    ]
    result = parse_plan_reply("\n".join(lines))
    assert result.ok and result.tier == "envelope" and result.steps == STEPS


@pytest.mark.parametrize(
    "reply",
    [
        "<think>The Rival is at {12,2}; I should [flank].</think>" + PLAN_JSON,
        "<think>\nlong\nreasoning {\"steps\": []}\n</think>\n\n" + PLAN_JSON,
        "reasoning without an opening tag {\"steps\": []}</think>" + PLAN_JSON,
        "<THINK>shout</THINK>```json\n" + PLAN_JSON + "\n```",
    ],
)
def test_think_blocks_are_stripped(reply: str) -> None:
    result = parse_plan_reply(reply)
    assert result.ok and result.steps == STEPS and result.stripped_think


def test_plan_key_and_single_step_shapes() -> None:
    assert parse_plan_reply(json.dumps({"plan": STEPS, "rationale": "go"})).value == {
        "steps": STEPS, "rationale": "go"}
    assert parse_plan_reply(json.dumps({"plan": PLAN})).steps == STEPS
    assert parse_plan_reply(json.dumps(STEPS[1])).steps == [STEPS[1]]


def test_complete_steps_array_in_an_unclosed_object_is_used() -> None:
    result = parse_plan_reply('{"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]')
    assert result.tier == "balanced"
    assert result.steps == [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]


def test_a_step_inside_a_broken_plan_is_not_taken_for_the_plan() -> None:
    result = parse_plan_reply('{"steps": [{"act": "Scan"}, {"act": "MoveTo" "x": 7}]}')
    assert not result.ok


def test_extra_keys_are_kept_for_the_caller() -> None:
    result = parse_plan_reply(json.dumps({"steps": STEPS, "rationale": "flank left"}))
    assert result.value == {"steps": STEPS, "rationale": "flank left"}


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("<think>I am still thinking about {this}", "only <think>"),
        ("<think>done</think>", "only <think>"),
        ("Move to the door, then shoot the Rival.", "no JSON object or array"),
        ('{"action": "attack", "who": "Rival"}', "not a plan"),
        ("[1, 2, 3]", "not a plan"),
        ('{"steps": [{"act": "MoveTo", "x": 7', "never closes"),
        ('{"steps": [{"act": "MoveTo" "x": 7}]}', "not valid JSON"),
        ("42", "not a plan"),
    ],
)
def test_failures_say_why_and_list_tiers(reply: str, needle: str) -> None:
    result = parse_plan_reply(reply)
    assert not result.ok and result.value is None and result.tier is None
    assert needle in result.error
    assert result.steps == []
    if reply.strip() and "<think>" not in reply:
        assert result.tried == TIERS


@pytest.mark.parametrize("reply", [None, 12, 3.5, ["steps"], {"steps": []}])
def test_non_text_input_is_a_failure_not_an_exception(reply: object) -> None:
    result = parse_plan_reply(reply)
    assert not result.ok and "not text" in result.error


def test_bytes_are_decoded() -> None:
    assert parse_plan_reply(PLAN_JSON.encode()).steps == STEPS


def test_deep_nesting_does_not_raise() -> None:
    assert not parse_plan_reply("[" * 100_000 + "]" * 100_000).ok
    assert not parse_plan_reply("{" * 50_000).ok


def test_apostrophes_in_prose_do_not_hide_the_plan() -> None:
    reply = "I don't think it's safe, so: " + PLAN_JSON + " (that's it)"
    assert parse_plan_reply(reply).steps == STEPS


def test_strings_with_braces_inside_the_plan() -> None:
    plan = {"steps": STEPS, "rationale": "use {cover} and [smoke] \"carefully\""}
    reply = "ok " + json.dumps(plan) + " end"
    result = parse_plan_reply(reply)
    assert result.tier == "balanced" and result.value == plan


# ------------------------------------------------------------------ property-based

_coord = st.integers(min_value=-5, max_value=40)
_step = st.one_of(
    st.builds(lambda x, y: {"act": "MoveTo", "x": x, "y": y}, _coord, _coord),
    st.builds(lambda t: {"act": "Attack", "target_id": t}, st.integers(0, 99)),
    st.builds(lambda s: {"act": "Wait", "seconds": s},
              st.floats(0, 10, allow_nan=False).map(lambda v: round(v, 2))),
    st.just({"act": "Reload"}),
    st.builds(lambda t: {"act": "Scan", "note": t}, st.text(max_size=12)),
)
_plans = st.lists(_step, min_size=1, max_size=8).map(lambda steps: {"steps": steps})
_prose = st.text(
    alphabet=st.characters(blacklist_characters="{}[]`<>", blacklist_categories=("Cs",)),
    max_size=40,
)


def _wrap(plan_json: str, how: str, prose: str) -> str:
    if how == "fence":
        return f"{prose}\n```json\n{plan_json}\n```\n{prose}"
    if how == "think":
        return f"<think>{prose} {{\"steps\": []}}</think>{plan_json}"
    if how == "envelope_message":
        return json.dumps({"message": {"role": "assistant", "content": plan_json}})
    if how == "envelope_response":
        return json.dumps({"response": plan_json, "done": True})
    if how == "prose":
        return f"{prose} {plan_json} {prose}"
    if how == "think_fence":
        return f"<think>{prose}</think>\n```\n{plan_json}\n```"
    return plan_json


@given(
    plan=_plans,
    how=st.sampled_from(["plain", "fence", "think", "envelope_message", "envelope_response",
                         "prose", "think_fence"]),
    prose=_prose,
    indent=st.sampled_from([None, 2]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_valid_plans_survive_wrapping(plan: dict[str, Any], how: str, prose: str,
                                      indent: int | None) -> None:
    reply = _wrap(json.dumps(plan, indent=indent), how, prose)
    result = parse_plan_reply(reply)
    assert result.ok, (reply, result.error)
    assert result.steps == plan["steps"]


@given(st.text(max_size=400))
@settings(max_examples=400, deadline=None)
def test_arbitrary_text_never_raises(text: str) -> None:
    result = parse_plan_reply(text)
    assert result.ok == (result.value is not None)
    if result.ok:
        assert isinstance(result.value, dict) and isinstance(result.value["steps"], list)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(_plans.map(json.dumps))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "truncate", "swap_quote", "dup"]))
        i = draw(st.integers(0, max(0, len(text) - 1)))
        if op == "delete" and text:
            text = text[:i] + text[i + 1:]
        elif op == "insert":
            ch = draw(st.sampled_from(list("{}[],:'\"`<>/ \nx0")))
            text = text[:i] + ch + text[i:]
        elif op == "truncate":
            text = text[:i]
        elif op == "swap_quote":
            text = text.replace('"', "'", draw(st.integers(1, 5)))
        else:
            text = text[:i] + text[i:i + 10] + text[i:]
    return text


@given(_mutated())
@settings(max_examples=400, deadline=None)
def test_mutated_replies_never_raise(text: str) -> None:
    result = parse_plan_reply(text)
    assert isinstance(result.tried, tuple)
    if not result.ok:
        assert result.error

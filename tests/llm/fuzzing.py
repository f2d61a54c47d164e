"""Fuzzing helpers: a corpus of real model replies, mutations of it, and the invariants every
accepted plan must obey.

The corpus (``tests/llm/corpus/smollm2_replies.json``) holds replies the real embedded model
(SmolLM2-135M through llama.cpp) wrote for varied snapshots, with and without the snapshot's
JSON schema; ``tests/llm/make_reply_corpus.py`` regenerates it. Small models fail in recognisable
ways (cut-off objects, repeated keys, wrong types, prose around the JSON), so mutating what one
really wrote reaches the parser's corners faster than random text.

:func:`mutate` applies seeded byte- and structure-level mutations (truncate, flip bytes,
duplicate or delete keys, wrong types, huge numbers, unicode, nested junk, wrappers).
:func:`check_reply` runs one reply through everything that reads model output -- the tolerant
parser, the stream parser (whole and split at random points, as text and as bytes), the batch
router and the validator -- and raises ``AssertionError`` when any of them raised, swallowed an
internal error, or accepted a plan that breaks the validator's invariants
(:func:`assert_plan_is_legal`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.llm.batching import AgentPlan, BatchMember, BatchReplyRouter
from esper_arbiter.systems.llm.parsing import parse_plan_reply
from esper_arbiter.systems.llm.stream_parser import (
    ElementError,
    JsonArrayStreamParser,
    ParsedElement,
    parse_array,
)
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.planning.tools import ArgKind, Check, ToolRegistry, ally_units
from esper_arbiter.systems.planning.validation import collapse_repeats, validate_plan
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY

CORPUS_PATH = Path(__file__).parent / "corpus" / "smollm2_replies.json"

MAX_STEPS = 8


def load_corpus(path: Path = CORPUS_PATH) -> list[str]:
    """The recorded replies (text only)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [str(item["reply"]) for item in data["replies"]]


# -- invariants ----------------------------------------------------------------------------


def assert_plan_is_legal(steps: Sequence[ActionStep], snap: WorldSnapshot,
                         registry: ToolRegistry = SQUAD_REGISTRY,
                         rules: Rules = DEFAULT_RULES) -> None:
    """What an accepted plan must obey, checked independently of the validator's code paths:
    1..MAX_STEPS steps, every tool registered, tiles in bounds (and walkable where the tool
    says so), hostile targets present, hostile and alive, ally targets present and not
    enemies or neutrals, seconds finite and within the rule bounds."""
    assert 1 <= len(steps) <= MAX_STEPS, f"accepted a plan of {len(steps)} steps"
    grid = snap.grid
    enemies = {u.id: u for u in snap.enemies}
    allies = {u.id for u in ally_units(snap)}
    for step in steps:
        spec = registry.get(step.act)
        assert spec is not None, f"accepted unregistered tool {step.act!r}"
        if isinstance(spec.build, type):
            assert isinstance(step, spec.build), f"{step!r} is not a {spec.build.__name__}"
        if spec.tile_args is not None:
            x, y = (getattr(step, name) for name in spec.tile_args)
            assert type(x) is int and type(y) is int, f"{step!r}: tile not integers"
            assert 0 <= x < grid.width and 0 <= y < grid.height, f"{step!r}: out of bounds"
            if Check.WALKABLE in spec.checks:
                assert (x, y) not in grid.walls, f"{step!r}: on a wall"
            if Check.COVER in spec.checks:
                assert (x, y) in grid.cover, f"{step!r}: not cover"
        for arg in spec.args:
            value = getattr(step, arg.name)
            if arg.kind is ArgKind.HOSTILE_ID:
                assert value in enemies, f"{step!r}: target is not an enemy in sight"
                assert enemies[value].hp > 0, f"{step!r}: target is dead"
            elif arg.kind is ArgKind.ALLY_ID:
                assert value in allies and value not in enemies, f"{step!r}: not an ally"
            elif arg.kind is ArgKind.SECONDS:
                lo, hi = arg.seconds_range(rules)
                assert isinstance(value, float) and math.isfinite(value), f"{step!r}: seconds"
                assert lo - 1e-9 <= value <= hi + 1e-9, f"{step!r}: seconds out of range"


# -- one reply through everything ----------------------------------------------------------


@dataclass
class FuzzStats:
    """What a fuzz run saw, for the figures it prints."""

    replies: int = 0
    parsed: int = 0
    accepted: int = 0
    stream_elements: int = 0
    batch_delivered: int = 0
    tiers: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        tiers = ", ".join(f"{k} {v}" for k, v in sorted(self.tiers.items()))
        return (f"{self.replies} replies: {self.parsed} parsed ({tiers}), {self.accepted} "
                f"accepted by the validator, {self.stream_elements} stream elements, "
                f"{self.batch_delivered} batch plans delivered")


def _split_points(rng: random.Random, n: int) -> list[int]:
    k = rng.randrange(0, min(n, 12) + 1)
    return sorted(set(rng.randrange(0, n + 1) for _ in range(k)))


def _chunks(data: Any, points: list[int]) -> list[Any]:
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


def _events_key(events: Sequence[ParsedElement | ElementError]) -> list[tuple[Any, ...]]:
    return [(type(e).__name__, e.index, e.raw) for e in events]


def check_reply(text: str, snap: WorldSnapshot, rng: random.Random,
                stats: FuzzStats | None = None,
                batch_requests: Sequence[PlanRequest] = ()) -> None:
    """Run ``text`` through the parser, the stream parser, the batch router and the validator;
    raise ``AssertionError`` on any broken promise (see the module docstring)."""
    if stats is not None:
        stats.replies += 1
    # 1. The tolerant parser, then the validator.
    parsed = parse_plan_reply(text)
    assert not parsed.error.startswith("parser error"), parsed.error
    if parsed.value is not None:
        assert isinstance(parsed.value.get("steps"), list), parsed.value
        if stats is not None:
            stats.parsed += 1
            stats.tiers[str(parsed.tier)] = stats.tiers.get(str(parsed.tier), 0) + 1
        result = validate_plan(parsed.value, snap, SQUAD_REGISTRY, DEFAULT_RULES, MAX_STEPS)
        assert not any("could not be checked" in e.message for e in result.errors), result
        for err in result.errors:
            assert isinstance(err.message, str) and "\n" not in err.message, err
        if result.ok:
            if stats is not None:
                stats.accepted += 1
            assert_plan_is_legal(result.steps, snap)
            assert_plan_is_legal(collapse_repeats(result.steps), snap)

    # 2. The stream parser: the same events however the reply is split, text or bytes.
    whole, problem = parse_array(text)
    assert problem is None or not problem.startswith("internal"), problem
    points = _split_points(rng, len(text))
    streamed = JsonArrayStreamParser()
    events = []
    for piece in _chunks(text, points):
        events.extend(streamed.feed(piece))
    events.extend(streamed.finish())
    assert _events_key(events) == _events_key(whole), (points, text)
    assert streamed.problem == problem
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no UTF-8 form to stream
        data = None
    if data is not None:
        as_bytes = JsonArrayStreamParser()
        byte_events = []
        for piece in _chunks(data, _split_points(rng, len(data))):
            byte_events.extend(as_bytes.feed(piece))
        byte_events.extend(as_bytes.finish())
        assert _events_key(byte_events) == _events_key(whole), text
    for ev in whole:
        if stats is not None:
            stats.stream_elements += 1
        if isinstance(ev, ParsedElement) and isinstance(ev.value, dict):
            v = validate_plan(ev.value.get("steps"), snap, SQUAD_REGISTRY, DEFAULT_RULES,
                              MAX_STEPS)
            if v.ok:
                assert_plan_is_legal(v.steps, snap)

    # 3. The batch router: every member ends exactly once; delivered plans are legal.
    if batch_requests:
        members = [BatchMember(i + 1, r) for i, r in enumerate(batch_requests)]
        router = BatchReplyRouter(members)
        early: list[Any] = []
        for piece in _chunks(text, _split_points(rng, len(text))):
            early.extend(router.feed(piece))
        summary = router.finish()
        assert not any("internal error" in s for s in summary.stray), summary.stray
        ended = ([r.agent_id for r in summary.delivered] + [r.agent_id for r in summary.rejected]
                 + [m.agent_id for m in summary.missing])
        assert sorted(ended) == sorted(m.agent_id for m in members), summary
        by_agent = {m.agent_id: m for m in members}
        for plan in summary.delivered:
            assert isinstance(plan, AgentPlan)
            if stats is not None:
                stats.batch_delivered += 1
            assert_plan_is_legal(plan.steps, by_agent[plan.agent_id].snapshot)
        # What feed() handed out as it streamed comes first; finish() only adds the rest.
        assert [r.agent_id for r in early] == [r.agent_id for r in summary.results][:len(early)]


# -- mutations -----------------------------------------------------------------------------

JUNK_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, -0.0, 3.0, 1e308, -1e308, 10**30, -(10**30), 10**400,
    "3", "", "x" * 300, "\u0000", "\ud800", "العربية", "🙂" * 5, [], [1, 2], {}, {"act": "Scan"},
    [[[[[]]]]], {"steps": []}, float("inf"), float("-inf"), float("nan"),
)
TOOL_NAMES = (*SQUAD_REGISTRY.names(), "moveto", "Move", "Attack ", "ATTACK", "Fly", "", "Scan\n")
KEYS = ("act", "x", "y", "target_id", "seconds", "steps", "plan", "agent_id", "rationale",
        "plans", "ally_id")


def _walk(value: Any, rng: random.Random, fn: Callable[[Any, random.Random], Any],
          rate: float) -> Any:
    """``value`` with ``fn`` applied to some of its nodes (depth first)."""
    if isinstance(value, dict):
        value = {k: _walk(v, rng, fn, rate) for k, v in value.items()}
    elif isinstance(value, list):
        value = [_walk(v, rng, fn, rate) for v in value]
    return fn(value, rng) if rng.random() < rate else value


def _structural(value: Any, rng: random.Random) -> Any:
    op = rng.randrange(9)
    if op == 0:
        return rng.choice(JUNK_VALUES)
    if isinstance(value, dict):
        out = dict(value)
        if op == 1 and out:
            del out[rng.choice(list(out))]
        elif op == 2:
            out[rng.choice(KEYS)] = rng.choice(JUNK_VALUES)
        elif op == 3:
            out["act"] = rng.choice(TOOL_NAMES)
        elif op == 4:
            out = {"plan": out} if rng.random() < 0.5 else {"steps": [out]}
        return out
    if isinstance(value, list):
        out_list = list(value)
        if op == 5 and out_list:
            out_list.extend([rng.choice(out_list)] * rng.randrange(1, 12))
        elif op == 6 and out_list:
            del out_list[rng.randrange(len(out_list))]
        elif op == 7:
            out_list.insert(rng.randrange(len(out_list) + 1), rng.choice(JUNK_VALUES))
        return out_list
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 10**300:
            return rng.choice((-value, value // 7, "x"))
        return rng.choice((value + rng.randrange(-3, 4), -value, value * 10**rng.randrange(1, 40),
                           float(value), str(value), 10**rng.randrange(10, 4000)))
    return value


def _dumps(value: Any, rng: random.Random) -> str:
    try:
        return json.dumps(value, ensure_ascii=rng.random() < 0.5,
                          indent=rng.choice((None, None, 1, 2)))
    except ValueError:  # an int too large to print
        return json.dumps(repr(value)[:100])


WRAPPERS: tuple[Callable[[str], str], ...] = (
    lambda s: s,
    lambda s: f"```json\n{s}\n```",
    lambda s: f"Here is the plan:\n{s}\nGood luck!",
    lambda s: f"<think>The enemy is near {{maybe}} [sic]</think>\n{s}",
    lambda s: f"</think>{s}",
    lambda s: f"[{s}]",
    lambda s: f'{{"plans": [{s}]}}',
    lambda s: f'{{"message": {{"content": {json.dumps(s)}}}}}',
    lambda s: f"{s}\n{s}",
    lambda s: f"{s},",
    lambda s: s.replace('"', "'"),
)


def _textual(text: str, rng: random.Random) -> str:
    n = len(text)
    op = rng.randrange(12)
    if op == 0 and n:  # truncate
        return text[: rng.randrange(n)]
    if op == 1 and n:  # flip bytes
        data = bytearray(text.encode("utf-8", "surrogatepass"))
        for _ in range(rng.randrange(1, 6)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return data.decode("utf-8", "replace")
    if op == 2:  # insert structural characters
        pos = rng.randrange(n + 1)
        junk = "".join(rng.choice('{}[],:"\\\' \n') for _ in range(rng.randrange(1, 8)))
        return text[:pos] + junk + text[pos:]
    if op == 3 and n:  # delete a span
        a = rng.randrange(n)
        return text[:a] + text[a + rng.randrange(1, 20):]
    if op == 4:  # duplicate a span
        a = rng.randrange(n + 1)
        b = min(n, a + rng.randrange(1, 60))
        return text[:b] + text[a:b] + text[b:]
    if op == 5:  # unicode
        pos = rng.randrange(n + 1)
        uni = rng.choice(("\u202e", "\ufeff", "\u0000", "é", "\U0001f600", "\ud83d", "٣", "\u2028"))
        return text[:pos] + uni * rng.randrange(1, 4) + text[pos:]
    if op == 6:  # nested junk
        depth = rng.choice((3, 50, 2000))
        pos = rng.randrange(n + 1)
        return text[:pos] + "[" * depth + "{" * (depth // 2) + text[pos:]
    if op == 7:  # huge numbers in place of digits
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        if digits:
            i = rng.choice(digits)
            return text[:i] + "9" * rng.choice((20, 400, 5000)) + text[i + 1:]
        return text
    if op == 8:
        return rng.choice(WRAPPERS)(text)
    if op == 9:  # a key repeated with another value
        i = text.find('"', rng.randrange(n + 1)) if n else -1
        j = text.find('"', i + 1) if i >= 0 else -1
        if j > i >= 0:
            key = text[i : j + 1]
            return text[:i] + f"{key}: {_dumps(rng.choice(JUNK_VALUES), rng)}, " + text[i:]
        return text
    if op == 10:  # exponents and specials
        return text.replace("1", rng.choice(("1e400", "NaN", "Infinity", "-0", "1.0", "01")), 1)
    return text + rng.choice(("", "}", "]", "}}]", ",", " trailing prose"))


def mutate(text: str, rng: random.Random, rounds: int | None = None) -> str:
    """A mutated copy of ``text``: sometimes structural (decode, change the JSON, re-encode
    and wrap), then up to a few textual mutations."""
    if rng.random() < 0.5:
        parsed = parse_plan_reply(text)
        if parsed.value is not None:
            value: Any = _walk(parsed.value, rng, _structural, rate=rng.choice((0.05, 0.2, 0.5)))
            if rng.random() < 0.3 and isinstance(value, dict):
                value = value.get("steps", value)
            text = rng.choice(WRAPPERS)(_dumps(value, rng))
    for _ in range(rng.randrange(0, 4) if rounds is None else rounds):
        text = _textual(text, rng)
    return text


def batch_reply(replies: Sequence[str], agent_ids: Sequence[int], rng: random.Random) -> str:
    """A batch reply assembled from single replies (each element tagged with an agent id)."""
    parts = []
    for agent, reply in zip(agent_ids, replies, strict=False):
        parsed = parse_plan_reply(reply)
        value: dict[str, Any] = dict(parsed.value) if parsed.value is not None else {"steps": []}
        value["agent_id"] = agent if rng.random() < 0.8 else rng.choice(JUNK_VALUES)
        parts.append(_dumps(value, rng))
    return "[" + ", ".join(parts) + "]"

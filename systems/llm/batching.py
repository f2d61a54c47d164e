"""Batched planning: several agents in one prompt, their plans routed out one by one.

Three pieces the LLM service plugs together:

1. **Assembly** (:func:`select_batch`, :func:`build_batch`): from the waiting requests take
   up to ``max_batch_size`` (most urgent first, one per agent), sort them by agent id so the
   same input always gives the same prompt, and build the chat messages and the JSON schema of
   the reply. The reply is a bare JSON array with one object per agent, in agent-id order::

       [{"agent_id": 2, "steps": [...]}, {"agent_id": 5, "steps": [...]}]

   The schema is a ``prefixItems`` tuple (one entry per agent: ``agent_id`` as a ``const`` and
   that agent's ``steps`` schema from ``ToolRegistry.plan_schema`` narrowed to its own
   snapshot). llama.cpp's JSON-schema-to-grammar converter (used by ollama and
   llama-cpp-python) turns a ``prefixItems`` array into an exact-length, fixed-order rule; it
   prefers ``items`` when both are present, so the schema has no ``items`` key. ``style=
   "anyOf"`` gives the unordered variant (``items: {anyOf: [...]}`` with min/max items).
   The system message is the single-agent one unchanged (so a llama.cpp prefix cache built by
   single requests is reused); the batch instructions and the snapshots go in the user message,
   with lines common to every agent's snapshot (map, walls, objective, ...) written once.

2. **Routing** (:class:`BatchReplyRouter`): feed it the streamed reply; each agent's element
   is validated (``systems.planning.validation.validate_plan``) against that agent's snapshot
   the moment the element closes, and returned as an :class:`AgentPlan` to deliver at once or
   an :class:`AgentReject`. :meth:`BatchReplyRouter.finish` lists every member without a
   usable plan (missing, malformed, invalid) in ``retry``: the service retries those alone.

3. **Sizing** (:class:`AdaptiveBatchSize`): halves the batch size when a batch runs past the
   latency target, grows it by one after ``grow_after`` fast full batches, and drops to 1 when
   a batch costs more per request than single requests do; after a few such batches in a row
   it settles at 1 (no batching) on that backend.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.llm import FailureKind, PlanRequest
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.domain import Domain, domain_of
from esper_arbiter.systems.llm import prompt as single_prompt
from esper_arbiter.systems.llm.stream_parser import (
    ElementError,
    JsonArrayStreamParser,
    ParsedElement,
)
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.planning.tools import ToolRegistry
from esper_arbiter.systems.planning.validation import (
    PlanValidation,
    collapse_raw_repeats,
    validate_plan,
)

log = logging.getLogger(__name__)

SchemaStyle = Literal["prefixItems", "anyOf"]


class HasRequest(Protocol):
    """Anything that carries a request and its id (a ``QueueEntry``, a service job, ...)."""

    @property
    def request_id(self) -> int: ...

    @property
    def request(self) -> PlanRequest: ...


T = TypeVar("T", bound=HasRequest)


# ------------------------------------------------------------------------------ assembly


def select_batch(items: Sequence[T], max_batch_size: int) -> list[T]:
    """Up to ``max_batch_size`` of ``items``, one per agent, returned sorted by agent id.

    Which ones: highest priority first; within a priority the order given is kept as the
    preference (the request queue hands entries out newest first). When an agent appears
    twice, its first (preferred) request is taken. Only requests of the first one's domain
    join it (one prompt describes one domain). ``max_batch_size < 1`` counts as 1.
    """
    limit = max(1, max_batch_size)
    ranked = sorted(enumerate(items), key=lambda p: (-p[1].request.priority, p[0]))
    chosen: dict[int, T] = {}
    domain: object = None
    for n, (_, item) in enumerate(ranked):
        if n == 0:
            domain = item.request.domain
        elif item.request.domain is not domain:
            continue
        agent = item.request.agent_id
        if agent not in chosen:
            chosen[agent] = item
            if len(chosen) >= limit:
                break
    return [chosen[a] for a in sorted(chosen)]


@dataclass(frozen=True, slots=True)
class BatchMember:
    """One agent in a batch."""

    request_id: int
    request: PlanRequest

    @property
    def agent_id(self) -> int:
        return self.request.agent_id

    @property
    def snapshot(self) -> WorldSnapshot:
        return self.request.snapshot


class _Members:
    """What a batch's two prompt shapes share: their members, and the ids in reply order."""

    __slots__ = ()
    members: tuple[BatchMember, ...]

    @property
    def agent_ids(self) -> tuple[int, ...]:
        return tuple(m.agent_id for m in self.members)

    @property
    def request_ids(self) -> tuple[int, ...]:
        return tuple(m.request_id for m in self.members)

    def __len__(self) -> int:
        return len(self.members)


@dataclass(frozen=True, slots=True)
class BatchPrompt(_Members):
    """Everything a backend needs for one batched call."""

    members: tuple[BatchMember, ...]
    """Sorted by agent id; the reply's order."""
    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any]
    max_steps: int
    """The largest ``max_steps`` among the members (each agent's schema uses its own)."""


def agent_item_schema(
    agent_id: int, plan_schema: dict[str, Any]
) -> dict[str, Any]:
    """One agent's element: ``{"agent_id": <const id>, "steps": <its steps schema>}``.

    ``plan_schema`` is ``ToolRegistry.plan_schema(snapshot, max_steps)`` (an object whose
    ``properties`` has ``steps``)."""
    steps = plan_schema.get("properties", {}).get("steps")
    if not isinstance(steps, dict):
        raise ValueError("plan schema has no 'steps' property")
    return {
        "type": "object",
        "properties": {"agent_id": {"const": agent_id}, "steps": steps},
        "required": ["agent_id", "steps"],
        "additionalProperties": False,
    }


def build_batch_schema(
    per_agent: Sequence[tuple[int, dict[str, Any]]], style: SchemaStyle = "prefixItems"
) -> dict[str, Any]:
    """Schema of the batch reply from ``(agent_id, plan_schema)`` pairs (give them sorted by
    agent id; that order is the reply's order with ``prefixItems``)."""
    items = [agent_item_schema(aid, schema) for aid, schema in per_agent]
    n = len(items)
    if style == "prefixItems":
        # No "items" key: llama.cpp's converter would take it over prefixItems.
        return {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}
    return {"type": "array", "items": {"anyOf": items}, "minItems": n, "maxItems": n}


def split_situations(members: Sequence[BatchMember]) -> tuple[list[str], list[list[str]]]:
    """What a batch states once and what it states per member: the shared situation lines
    (:func:`prompt.shared_lines`) every member's snapshot has alike, in the first member's
    order, and for each member the rest of them plus its own :func:`prompt.member_lines`.
    Deterministic for the same members."""
    ids = [m.agent_id for m in members]
    candidates = [single_prompt.shared_lines(m.snapshot, single_prompt.FULL,
                                             domain_of(m.request)) for m in members]
    common = set(candidates[0]).intersection(*candidates[1:]) if len(members) > 1 else set()
    shared = [line for line in candidates[0] if line in common]
    blocks = []
    for m, lines in zip(members, candidates, strict=True):
        own = [line for line in lines if line not in common]
        blocks.append(own + single_prompt.member_lines(m.snapshot, ids))
    return shared, blocks


def member_example(m: BatchMember) -> str:
    """The member's example element, made from its own live options (a fixed example gets
    copied into every plan)."""
    return json.dumps({"agent_id": m.agent_id,
                       "steps": single_prompt.live_example(m.snapshot, domain_of(m.request))},
                      separators=(",", ":"))


def render_batch_user(members: Sequence[BatchMember]) -> str:
    """The user message: the shared situation once, then each agent's own lines (its state
    and what it sees from where it stands), then the reply instructions."""
    ids = [m.agent_id for m in members]
    shared, blocks = split_situations(members)
    out = [f"Plan for {len(members)} agents: {', '.join(f'#{a}' for a in ids)}."]
    if shared:
        out.append("Shared situation:")
        out.extend(shared)
    for m, lines in zip(members, blocks, strict=True):
        out.append(f"Agent #{m.agent_id}:")
        out.extend(lines)
    example = ", ".join(member_example(m) for m in members)
    max_steps = max((m.request.max_steps for m in members), default=8)
    out.append(
        f"Reply with a JSON array of {len(members)} objects, one per agent in this order: "
        f"[{example}]. Each \"steps\" is that agent's own plan ({max_steps} steps at most)."
    )
    return "\n".join(out)


def batch_domain(members: Sequence[BatchMember]) -> Domain:
    """The one domain every member's request was made for. Raises ``ValueError`` when they
    differ (requests of two domains are never batched together)."""
    domains = {id(domain_of(m.request)): domain_of(m.request) for m in members}
    if len(domains) != 1:
        raise ValueError("a batch mixes requests of different domains")
    return next(iter(domains.values()))


def build_batch(
    items: Sequence[HasRequest],
    *,
    style: SchemaStyle = "prefixItems",
) -> BatchPrompt:
    """Messages and schema for ``items`` (all of them; pick with :func:`select_batch` first).
    Members are sorted by agent id. Raises ``ValueError`` for no items, two items of one
    agent (a programming error: the queue keeps one request per agent) or items of two
    domains."""
    members = _members(items)
    max_steps = max(m.request.max_steps for m in members)
    domain = batch_domain(members)
    schema = build_batch_schema(
        [
            (m.agent_id, domain.tools.plan_schema(m.snapshot, m.request.max_steps, domain.rules))
            for m in members
        ],
        style,
    )
    messages = (
        {"role": "system", "content": single_prompt.system_prompt(domain, max_steps)},
        {"role": "user", "content": render_batch_user(members)},
    )
    return BatchPrompt(members=members, messages=messages, schema=schema, max_steps=max_steps)


@dataclass(frozen=True, slots=True)
class TurnsPrompt(_Members):
    """A batch planned as one conversation, one member per turn (``batch_mode="turns"``).

    The first user message states the shared situation once, then the first member's own
    lines; the model answers that member's plan alone (its own single-agent schema), and the
    next member's lines follow as the next user message, after the answers so far. Every
    call's prompt extends the previous call's prompt and answer, so a backend that keeps the
    longest common token prefix in its KV cache (llama.cpp: llama-cpp-python, its server,
    llama-server, ollama) reads the shared part once and each member's lines once, and each
    plan is delivered when its own turn ends, not after the last member's."""

    members: tuple[BatchMember, ...]
    system: str
    shared: str
    """The header and the shared situation, at the head of the first user message."""
    blocks: tuple[str, ...]
    """Each member's own lines and reply instruction (the user message of its turn)."""
    schemas: tuple[dict[str, Any], ...]
    """Each member's single-agent plan schema."""

    def user(self, k: int, first: bool) -> str:
        return f"{self.shared}\n{self.blocks[k]}" if first else self.blocks[k]

    def turn(self, k: int, answered: Sequence[tuple[int, str]] = ()) -> list[dict[str, str]]:
        """The chat for member ``k`` after the turns ``answered`` ((member index, reply
        text), in order; a member without a usable reply is left out of the conversation)."""
        out = [{"role": "system", "content": self.system}]
        for j, text in answered:
            out.append({"role": "user", "content": self.user(j, len(out) == 1)})
            out.append({"role": "assistant", "content": text})
        out.append({"role": "user", "content": self.user(k, len(out) == 1)})
        return out

    @property
    def messages(self) -> tuple[dict[str, str], ...]:
        """Every user message of the conversation without the answers: what the context must
        hold besides them (:func:`budget.batch_fits` reserves one answer per member)."""
        return tuple([{"role": "system", "content": self.system}]
                     + [{"role": "user", "content": self.user(k, k == 0)}
                        for k in range(len(self.members))])


def build_turns(items: Sequence[HasRequest]) -> TurnsPrompt:
    """The :class:`TurnsPrompt` for ``items`` (members sorted by agent id; the same errors
    as :func:`build_batch`)."""
    members = _members(items)
    domain = batch_domain(members)
    shared, blocks = split_situations(members)
    ids = ", ".join(f"#{m.agent_id}" for m in members)
    head = [f"You plan for {len(members)} squad members, one at a time: {ids}."]
    if shared:
        head += ["Shared situation:", *shared]
    texts = []
    for m, lines in zip(members, blocks, strict=True):
        example = json.dumps({"steps": single_prompt.live_example(m.snapshot, domain)},
                             separators=(",", ":"))
        texts.append("\n".join([f"Agent #{m.agent_id}:", *lines,
                                f"Reply with the JSON plan of #{m.agent_id} only "
                                f"({m.request.max_steps} steps at most), for example {example}"]))
    return TurnsPrompt(
        members=members,
        system=single_prompt.system_prompt(domain, max(m.request.max_steps for m in members)),
        shared="\n".join(head),
        blocks=tuple(texts),
        schemas=tuple(domain.tools.plan_schema(m.snapshot, m.request.max_steps, domain.rules)
                      for m in members),
    )


def _members(items: Sequence[HasRequest]) -> tuple[BatchMember, ...]:
    if not items:
        raise ValueError("a batch needs at least one request")
    members = tuple(
        sorted(
            (BatchMember(i.request_id, i.request) for i in items), key=lambda m: m.agent_id
        )
    )
    ids = [m.agent_id for m in members]
    if len(set(ids)) != len(ids):
        raise ValueError(f"agents appear twice in one batch: {ids}")
    return members


# ------------------------------------------------------------------------------ routing


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """A validated plan for one member: deliver it now."""

    member: BatchMember
    steps: tuple[ActionStep, ...]
    raw: str
    index: int
    """Position of the element in the reply array."""

    @property
    def request_id(self) -> int:
        return self.member.request_id

    @property
    def agent_id(self) -> int:
        return self.member.agent_id


@dataclass(frozen=True, slots=True)
class AgentReject:
    """A member's element was there but unusable: PARSE (malformed / wrong shape) or
    INVALID_PLAN (failed validation, ``validation`` says why)."""

    member: BatchMember
    kind: FailureKind
    message: str
    raw: str
    index: int
    validation: PlanValidation | None = None

    @property
    def request_id(self) -> int:
        return self.member.request_id

    @property
    def agent_id(self) -> int:
        return self.member.agent_id


AgentResult = AgentPlan | AgentReject


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """How a batch reply went, once the stream ended."""

    delivered: tuple[AgentPlan, ...]
    rejected: tuple[AgentReject, ...]
    missing: tuple[BatchMember, ...]
    """Members no element was attributed to."""
    stray: tuple[str, ...]
    """Elements that named no pending member (unknown / duplicate agent, no agent_id)."""
    problem: str | None
    """Reply-level trouble from the stream parser (no array, truncated...)."""
    results: tuple[AgentResult, ...] = field(default=())
    """Every per-agent result, in the order they were produced by the stream."""

    @property
    def retry(self) -> tuple[BatchMember, ...]:
        """Members to retry on their own (rejected + missing), sorted by agent id."""
        members = [r.member for r in self.rejected] + list(self.missing)
        return tuple(sorted(members, key=lambda m: m.agent_id))


PlanValidator = Callable[[object, WorldSnapshot, ToolRegistry, Rules, int], PlanValidation]

# At most 18 digits: a longer run is no agent id (and int() refuses past 4300 digits).
_AGENT_ID_IN_RAW = re.compile(r'"agent_id"\s*:\s*"?(-?\d{1,18})(?!\d)')


class BatchReplyRouter:
    """Turns a streamed batch reply into per-agent results as soon as each element closes.

    Not thread-safe: feed it from the task that reads the stream. Never raises on any input.
    """

    def __init__(
        self,
        members: Sequence[BatchMember] | BatchPrompt,
        *,
        validate: PlanValidator = validate_plan,
    ) -> None:
        ms = members.members if isinstance(members, BatchPrompt) else tuple(members)
        self._members = {m.agent_id: m for m in ms}
        self._pending: dict[int, BatchMember] = dict(self._members)
        domain = batch_domain(ms)
        self._registry = domain.tools
        self._rules = domain.rules
        self._validate = validate
        self._parser = JsonArrayStreamParser()
        self._results: list[AgentResult] = []
        self._stray: list[str] = []
        self._finished: BatchSummary | None = None

    @property
    def pending(self) -> tuple[int, ...]:
        """Agent ids still waiting for their element."""
        return tuple(sorted(self._pending))

    @property
    def text(self) -> str:
        """The reply so far."""
        return self._parser.text

    def feed(self, chunk: str | bytes) -> list[AgentResult]:
        """Add a chunk of the reply; return the results completed by it (deliver the
        :class:`AgentPlan` ones at once)."""
        if self._finished is not None:
            return []
        out: list[AgentResult] = []
        for ev in self._parser.feed(chunk):
            r = self._route(ev)
            if r is not None:
                out.append(r)
        return out

    def finish(self) -> BatchSummary:
        """The stream ended (or was cut): flush, and sum up. Idempotent."""
        if self._finished is None:
            for ev in self._parser.finish():
                self._route(ev)
            delivered = tuple(r for r in self._results if isinstance(r, AgentPlan))
            rejected = tuple(r for r in self._results if isinstance(r, AgentReject))
            missing = tuple(self._pending[a] for a in sorted(self._pending))
            self._finished = BatchSummary(
                delivered=delivered,
                rejected=rejected,
                missing=missing,
                stray=tuple(self._stray),
                problem=self._parser.problem,
                results=tuple(self._results),
            )
        return self._finished

    # ------------------------------------------------------------------ internals

    def _route(self, ev: ParsedElement | ElementError) -> AgentResult | None:
        try:
            result = self._route_unsafe(ev)
        except Exception as exc:  # a bug (or a validator crash) must not stop the others
            log.exception("batch router failed on element %d", ev.index)
            self._stray.append(f"element {ev.index}: internal error {exc!r}")
            return None
        if result is not None:
            self._results.append(result)
            self._pending.pop(result.agent_id, None)
        return result

    def _route_unsafe(self, ev: ParsedElement | ElementError) -> AgentResult | None:
        if isinstance(ev, ElementError):
            m = _AGENT_ID_IN_RAW.search(ev.raw)
            member = self._pending.get(int(m.group(1))) if m is not None else None
            if member is None:
                self._stray.append(f"element {ev.index}: {ev.message} (no pending agent_id)")
                return None
            return AgentReject(member, FailureKind.PARSE, ev.message, ev.raw, ev.index)
        value = ev.value
        if not isinstance(value, dict):
            self._stray.append(
                f"element {ev.index}: expected an object, got {type(value).__name__}"
            )
            return None
        agent_id = _as_agent_id(value.get("agent_id"))
        if agent_id is None:
            self._stray.append(f"element {ev.index}: no usable agent_id")
            return None
        member = self._pending.get(agent_id)
        if member is None:
            why = "duplicate" if agent_id in self._members else "unknown"
            self._stray.append(f"element {ev.index}: {why} agent_id {agent_id}")
            return None
        if "steps" not in value:
            keys = ", ".join(sorted(str(k) for k in value)[:8])
            return AgentReject(
                member,
                FailureKind.PARSE,
                f'agent {agent_id}: element has no "steps" (keys: {keys})',
                ev.raw,
                ev.index,
            )
        validation = self._validate(
            collapse_raw_repeats(value["steps"]), member.snapshot, self._registry, self._rules,
            member.request.max_steps,
        )
        if not validation.ok:
            return AgentReject(
                member,
                FailureKind.INVALID_PLAN,
                f"agent {agent_id}: {validation.summary()}",
                ev.raw,
                ev.index,
                validation,
            )
        return AgentPlan(member, validation.steps, ev.raw, ev.index)


def _as_agent_id(value: object) -> int | None:
    """An agent id from untrusted JSON: an int, an integral float, or a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        return int(value)
    return None


# ------------------------------------------------------------------------------ sizing


class AdaptiveBatchSize:
    """Batch size that follows latency and pays its way.

    ``record(batch_size, latency_s)`` after every call that got a reply (a single request
    counts as a batch of 1). Two rules, both deterministic:

    - **Latency.** Slow (latency > ``latency_target_s``): ``value = max(minimum, min(value,
      batch_size) // 2)``. Fast (latency <= ``grow_margin`` * target) *and* full
      (``batch_size >= value``, so the current size was really tried): one more fast step;
      after ``grow_after`` in a row, ``value += 1`` up to ``maximum``. Anything else resets
      the streak.
    - **Throughput.** A batch must cost less per request than single requests do: with the
      median latency of the last five single requests as the baseline, a batch whose
      ``latency / batch_size`` is above ``(1 - min_gain)`` * baseline did not pay, and the size
      drops to ``minimum``. After ``settle_after`` such batches in a row (no paying batch in
      between) the size *settles* at ``minimum`` for good (:attr:`settled`): on that backend
      batching does not pay (llama.cpp on a CPU reuses the shared prompt prefix between single
      requests, and a batch only adds output to one sequential stream). Batches are compared
      only once a single request has been timed.
    """

    def __init__(
        self,
        initial: int = 4,
        *,
        minimum: int = 1,
        maximum: int = 8,
        latency_target_s: float = 20.0,
        grow_after: int = 2,
        grow_margin: float = 0.8,
        min_gain: float = 0.1,
        settle_after: int = 3,
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        if latency_target_s <= 0:
            raise ValueError("latency_target_s must be > 0")
        if grow_after < 1:
            raise ValueError("grow_after must be >= 1")
        if not 0.0 <= min_gain < 1.0:
            raise ValueError("min_gain must be in [0, 1)")
        if settle_after < 1:
            raise ValueError("settle_after must be >= 1")
        self.minimum = minimum
        self.maximum = maximum
        self.latency_target_s = latency_target_s
        self.grow_after = grow_after
        self.grow_margin = grow_margin
        self.min_gain = min_gain
        self.settle_after = settle_after
        self._value = min(maximum, max(minimum, initial))
        self._streak = 0
        self._singles: list[float] = []
        self._losses = 0
        self.settled = False
        """True once batching was shown not to pay: the size stays at ``minimum``."""
        self.history: list[tuple[int, float, int]] = []
        """(batch_size, latency_s, value after) of the last 64 batches, for logs and the HUD."""

    @property
    def value(self) -> int:
        """The batch size to use next."""
        return self._value

    @property
    def single_cost_s(self) -> float | None:
        """Median latency of the last five single requests (the throughput baseline)."""
        if not self._singles:
            return None
        ordered = sorted(self._singles)
        return ordered[len(ordered) // 2]

    def record(self, batch_size: int, latency_s: float) -> int:
        """Account for one finished call; returns the new :attr:`value`."""
        size = max(1, batch_size)
        if size == 1:
            self._singles.append(latency_s)
            del self._singles[:-5]
        baseline = self.single_cost_s
        unpaid = (
            size > 1
            and baseline is not None
            and latency_s / size > (1.0 - self.min_gain) * baseline
        )
        if self.settled:
            pass
        elif unpaid:
            self._losses += 1
            self._streak = 0
            assert baseline is not None
            log.info(
                "batch of %d took %.2fs per request, single requests %.2fs: batching does not "
                "pay (%d/%d); batch size %d -> %d",
                size, latency_s / size, baseline, self._losses, self.settle_after,
                self._value, self.minimum,
            )
            self._value = self.minimum
            if self._losses >= self.settle_after:
                self.settled = True
                log.warning(
                    "batching does not pay on this backend (%d batches in a row cost more per "
                    "request than single requests): batch size settles at %d",
                    self._losses, self.minimum,
                )
        elif latency_s > self.latency_target_s:
            if size > 1:
                self._losses = 0
            new = max(self.minimum, min(self._value, size) // 2)
            if new != self._value:
                log.info(
                    "batch of %d took %.1fs (> %.1fs target): batch size %d -> %d",
                    size, latency_s, self.latency_target_s, self._value, new,
                )
            self._value = new
            self._streak = 0
        else:
            if size > 1 and baseline is not None:
                self._losses = 0
            if latency_s <= self.grow_margin * self.latency_target_s and size >= self._value:
                self._streak += 1
                if self._streak >= self.grow_after:
                    self._streak = 0
                    if self._value < self.maximum:
                        log.info("fast batches: batch size %d -> %d", self._value,
                                 self._value + 1)
                        self._value += 1
            else:
                self._streak = 0
        self.history.append((size, latency_s, self._value))
        if len(self.history) > 64:
            del self.history[0]
        return self._value

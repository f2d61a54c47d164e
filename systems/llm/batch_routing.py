"""Batch routing: a streamed batch reply turned into per-agent results as elements close.

Feed :class:`BatchReplyRouter` the streamed reply of a :class:`~systems.llm.batch_prompts.
BatchPrompt`; each agent's element is validated (``systems.planning.validation.validate_plan``
or the service's own validator) against that agent's snapshot the moment the element closes,
and returned as an :class:`AgentPlan` to deliver at once or an :class:`AgentReject`.
:meth:`BatchReplyRouter.finish` sums up in a :class:`BatchSummary`, whose ``retry`` lists
every member without a usable plan (missing, malformed, invalid): the service retries those
alone. The router never raises on any input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.llm import FailureKind
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.llm.batch_prompts import BatchMember, BatchPrompt, batch_domain
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

log = logging.getLogger("esper_arbiter.systems.llm.batching")
"""Batching's logger: these lines are batching's, wherever the code lives."""


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

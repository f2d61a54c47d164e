"""LLM request/outcome data shared by the arbiter, the LLM service and the HUD.

Outcomes are typed values, never exceptions: a plan (:class:`PlanReady`) or a failure with a
distinct :class:`FailureKind` (:class:`PlanFailure`). Every request ends in exactly one outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeAlias

from esper_arbiter.components.actions import PlanIntent
from esper_arbiter.components.snapshot import WorldSnapshot

PRIORITY_LOW = 0
"""Periodic background replans."""
DEFAULT_MAX_STEPS = 8
"""Longest plan a request asks for unless it says otherwise."""
PRIORITY_HIGH = 10
"""Orders, a plan invalidated mid-run. Any int is accepted; larger is more urgent."""


class FailureKind(str, Enum):
    """Why a request produced no usable plan. Each is counted separately."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    MODEL_MISSING = "model_missing"
    PARSE = "parse"
    INVALID_PLAN = "invalid_plan"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    REFUSED = "refused"
    TOO_LARGE = "too_large"
    """The prompt cannot fit the model's context even trimmed; the model was never called."""
    EXPIRED = "expired"
    """Its deadline passed while it waited in the queue: the model never saw it, so it is not a
    model failure (counted apart; it never pushes an agent toward the behaviour tree)."""
    OFFLINE = "offline"
    CRASH = "crash"


WITHDRAWN_KINDS = frozenset({
    FailureKind.CANCELLED, FailureKind.SUPERSEDED, FailureKind.REFUSED, FailureKind.EXPIRED,
})
"""Outcomes that say "the question was withdrawn or not accepted", not "the model failed": a
newer request replaced it, the round or the service ended it, background requests are
switched off, or it waited past its deadline in the queue and never reached the model. The
arbiter, the services' ``ServiceStatus`` and the demo's outcome line all count them apart
from failures."""


@dataclass(slots=True)
class RequestTiming:
    """Monotonic wall-clock instants (seconds) of one request's life, plus token counts."""

    queued_at: float = 0.0
    started_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def latency(self) -> float | None:
        """Queued to finished, seconds."""
        return None if self.finished_at is None else self.finished_at - self.queued_at

    @property
    def time_to_first_token(self) -> float | None:
        if self.first_token_at is None or self.started_at is None:
            return None
        return self.first_token_at - self.started_at

    @property
    def tokens_per_second(self) -> float | None:
        if self.finished_at is None or self.first_token_at is None or not self.completion_tokens:
            return None
        span = self.finished_at - self.first_token_at
        return self.completion_tokens / span if span > 0 else None


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """Ask for a plan for agent ``agent_id`` given what it sees now."""

    agent_id: int
    snapshot: WorldSnapshot
    priority: int = PRIORITY_LOW
    reason: str = "periodic"
    submitted_at: float = 0.0
    """Game time of submission (scripted backends use it to stay deterministic)."""
    deadline_s: float | None = None
    """Wall-clock budget for this request; ``None`` takes the service default (LLM_TIMEOUT_MS)."""
    max_steps: int = DEFAULT_MAX_STEPS
    domain: object = None
    """The host's :class:`~systems.domain.Domain` the plan is for (tools, rules, role text):
    the service prompts, narrows the schema and validates with exactly this one. ``None``
    means the squad-tactics preset. Typed ``object`` because components import nothing of the
    systems; ``systems.domain.domain_of(request)`` reads it back."""


@dataclass(frozen=True, slots=True)
class PlanReady:
    """A plan the backend produced and the service pre-validated against the request snapshot."""

    request_id: int
    plan: PlanIntent
    backend: str
    model: str = ""
    timing: RequestTiming = field(default_factory=RequestTiming)
    raw: str = ""


@dataclass(frozen=True, slots=True)
class PlanFailure:
    """No usable plan, and why."""

    request_id: int
    kind: FailureKind
    message: str
    backend: str = ""
    model: str = ""
    timing: RequestTiming = field(default_factory=RequestTiming)
    raw: str = ""


PlanOutcome: TypeAlias = PlanReady | PlanFailure


class PlanTicket(Protocol):
    """Handle for one submitted request. ``poll`` never blocks."""

    @property
    def request_id(self) -> int: ...

    def poll(self, now: float) -> PlanOutcome | None:
        """The outcome if it is ready, else ``None``. ``now`` is game time (used by scripted
        backends for deterministic delays; real backends ignore it)."""
        ...

    def cancel(self) -> None:
        """Ask for cancellation; the ticket then resolves to a CANCELLED failure (or to the
        outcome that was already complete)."""
        ...


@dataclass(slots=True)
class LlmTask:
    """Component: a request of this agent is in flight."""

    ticket: PlanTicket
    request_id: int
    submitted_at: float
    reason: str
    priority: int


@dataclass(slots=True)
class PlanProposal:
    """Component: an outcome arrived this frame; the arbiter consumes and removes it."""

    outcome: PlanOutcome
    received_at: float
    reason: str = ""
    asked_at: float | None = None
    """Game time the request (and the snapshot its plan was written from) was submitted."""

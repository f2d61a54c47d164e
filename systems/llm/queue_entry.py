"""One request's life inside the :class:`~systems.llm.request_queue.RequestQueue`.

A :class:`QueueEntry` is the worker's handle on a request and a small state machine
(:class:`EntryState`: ``QUEUED -> RUNNING -> DONE``; ``QUEUED -> DONE`` for cancel / supersede /
expiry, ``RUNNING -> QUEUED`` only through a solo retry, born ``DONE`` when refused). Only the
queue moves an entry, under its lock; listeners hear about each move as a :class:`QueueEvent`.
:func:`outcome_label` names a terminal outcome the way the queue counts it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from esper_arbiter.components.llm import (
    FailureKind,
    PlanOutcome,
    PlanReady,
    PlanRequest,
    RequestTiming,
)


class EntryState(StrEnum):
    """Where a request is in its life. ``DONE`` is terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class QueueEvent(StrEnum):
    """What a listener is told about (see :meth:`RequestQueue.add_listener`)."""

    QUEUED = "queued"
    STARTED = "started"
    FIRST_TOKEN = "first_token"
    REQUEUED = "requeued"
    RESOLVED = "resolved"


class QueueEntry:
    """One request inside the queue: the worker's handle.

    Read its attributes freely; change its state only through the queue (``finish``,
    ``requeue``, ``mark_first_token``, ``set_cancel_hook``).
    """

    __slots__ = (
        "_cancel_hook",
        "attempts",
        "batch_size",
        "cancel_kind",
        "cancel_message",
        "deadline_at",
        "late_reported",
        "outcome",
        "request",
        "request_id",
        "seq",
        "solo",
        "state",
        "timing",
        "withdrawn",
    )

    def __init__(
        self, request_id: int, request: PlanRequest, seq: int, now: float, deadline_at: float
    ) -> None:
        self.request_id = request_id
        self.request = request
        self.seq = seq
        self.deadline_at = deadline_at
        self.timing = RequestTiming(queued_at=now)
        self.state = EntryState.QUEUED
        self.outcome: PlanOutcome | None = None
        self.cancel_kind: FailureKind | None = None
        """Set when the request was withdrawn while running (CANCELLED or SUPERSEDED)."""
        self.cancel_message = ""
        self._cancel_hook: Callable[[], None] | None = None
        self.attempts = 0
        """How many times a worker took it (2 after a solo retry)."""
        self.batch_size = 1
        self.solo = False
        """Set by ``requeue(solo=True)``: must not go into a batch again."""
        self.withdrawn = False
        """Resolved by the game (cancel / supersede / close) while a worker ran it: stop work."""
        self.late_reported = False

    @property
    def agent_id(self) -> int:
        return self.request.agent_id

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def cancel_requested(self) -> bool:
        """True once the game cancelled (or superseded) this request while it ran."""
        return self.cancel_kind is not None

    @property
    def done(self) -> bool:
        """Has its terminal outcome (a worker should stop spending time on it)."""
        return self.state is EntryState.DONE

    def remaining(self, now: float) -> float:
        """Seconds left until the request's total deadline (may be <= 0)."""
        return self.deadline_at - now

    def __repr__(self) -> str:
        return (
            f"QueueEntry(id={self.request_id}, agent={self.agent_id}, prio={self.priority}, "
            f"state={self.state.value})"
        )


def outcome_label(outcome: PlanOutcome) -> str:
    """``"plan"`` for a plan, else the failure kind's value (``"timeout"``, ...)."""
    return "plan" if isinstance(outcome, PlanReady) else outcome.kind.value


Listener = Callable[[QueueEvent, QueueEntry], None]

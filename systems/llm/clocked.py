"""Tickets that resolve on *game* time: the basis of deterministic scripted and replayed runs.

A real model answers on the wall clock, so two runs differ. A :class:`ClockedTicket` instead
holds its outcome until the game clock passed ``ready_at``; a seeded round that uses one is
reproducible frame for frame.
"""

from __future__ import annotations

from collections.abc import Callable

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanOutcome


class ClockedTicket:
    """Resolves to ``outcome`` once ``poll(now)`` is called with ``now >= ready_at``.

    ``on_resolved(outcome, now)`` (if given) hears the outcome the game actually received, once:
    the answer (with the game time it was delivered), or CANCELLED (``now`` None) when the
    ticket was withdrawn first. Services count from it, so their status never reports an answer
    nobody has seen yet.
    """

    __slots__ = (
        "_cancelled", "_delivered", "_on_resolved", "_outcome", "_ready_at", "_request_id",
    )

    def __init__(
        self,
        request_id: int,
        ready_at: float,
        outcome: PlanOutcome,
        on_resolved: Callable[[PlanOutcome, float | None], None] | None = None,
    ) -> None:
        self._request_id = request_id
        self._ready_at = ready_at
        self._outcome = outcome
        self._on_resolved = on_resolved
        self._cancelled = False
        self._delivered = False

    @property
    def request_id(self) -> int:
        return self._request_id

    @property
    def ready_at(self) -> float:
        return self._ready_at

    @property
    def resolved(self) -> bool:
        return self._delivered or self._cancelled

    def poll(self, now: float) -> PlanOutcome | None:
        if self._cancelled:
            return self._cancelled_outcome()
        if now < self._ready_at:
            return None
        if not self._delivered:
            self._delivered = True
            if self._on_resolved is not None:
                self._on_resolved(self._outcome, now)
        return self._outcome

    def cancel(self) -> None:
        if not self._delivered and not self._cancelled:
            self._cancelled = True
            if self._on_resolved is not None:
                self._on_resolved(self._cancelled_outcome(), None)

    def _cancelled_outcome(self) -> PlanFailure:
        return PlanFailure(
            request_id=self._request_id,
            kind=FailureKind.CANCELLED,
            message="request cancelled before it completed",
            backend=self._outcome.backend,
            model=self._outcome.model,
        )

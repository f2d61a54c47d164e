"""Tickets that resolve on *game* time: the basis of deterministic scripted and replayed runs.

A real model answers on the wall clock, so two runs differ. A :class:`ClockedTicket` instead
holds its outcome until the game clock passed ``ready_at``; a seeded round that uses one is
reproducible frame for frame.
"""

from __future__ import annotations

from dataclasses import replace

from components.llm import FailureKind, PlanFailure, PlanOutcome


class ClockedTicket:
    """Resolves to ``outcome`` once ``poll(now)`` is called with ``now >= ready_at``."""

    __slots__ = ("_cancelled", "_delivered", "_outcome", "_ready_at", "_request_id")

    def __init__(self, request_id: int, ready_at: float, outcome: PlanOutcome) -> None:
        self._request_id = request_id
        self._ready_at = ready_at
        self._outcome = outcome
        self._cancelled = False
        self._delivered = False

    @property
    def request_id(self) -> int:
        return self._request_id

    @property
    def ready_at(self) -> float:
        return self._ready_at

    def poll(self, now: float) -> PlanOutcome | None:
        if self._cancelled:
            return PlanFailure(
                request_id=self._request_id,
                kind=FailureKind.CANCELLED,
                message="request cancelled before it completed",
                backend=self._outcome.backend,
                model=self._outcome.model,
            )
        if now < self._ready_at:
            return None
        self._delivered = True
        return self._outcome

    def cancel(self) -> None:
        if not self._delivered:
            self._cancelled = True


def with_request_id(outcome: PlanOutcome, request_id: int) -> PlanOutcome:
    """Copy of ``outcome`` renumbered for a new request (used when replaying a recording)."""
    return replace(outcome, request_id=request_id)

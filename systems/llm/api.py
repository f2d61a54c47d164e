"""The one interface every LLM planning service implements, and the status it reports.

The arbiter only ever calls :meth:`PlanService.submit` (returns at once) and polls the ticket;
the HUD reads :meth:`PlanService.status`. Scripted, replay, ollama and embedded services all
fit behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from esper_arbiter.components.llm import FailureKind, PlanRequest, PlanTicket

WITHDRAWN_KINDS = frozenset({FailureKind.CANCELLED, FailureKind.SUPERSEDED, FailureKind.REFUSED})
"""Outcomes that say "the question was withdrawn or not accepted", not "the model failed": a
newer request replaced it, the round or the service ended it, or background requests are
switched off. The arbiter, the services' :class:`ServiceStatus` and the demo's outcome line all
count them apart from failures."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished (or running) request, for the HUD's timeline. Times are monotonic seconds."""

    request_id: int
    agent_id: int
    priority: int
    queued_at: float
    started_at: float | None
    first_token_at: float | None
    finished_at: float | None
    outcome: str  # "running" | "plan" | a FailureKind value
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What the HUD's LLM panel shows."""

    backend: str
    model: str = ""
    online: bool = True
    reason: str = ""
    """Why offline (or a warning such as a missing model, or "warming up"), in words a user
    can act on."""
    warming_up: bool = False
    """The backend is still loading its model (and reading the fixed system prompt) in the
    background; requests wait for it. The game plays on GOAP meanwhile."""
    in_flight: int = 0
    queue_depth: int = 0
    queue_depth_by_priority: dict[int, int] = field(default_factory=dict)
    last_latency_s: float | None = None
    last_ttft_s: float | None = None
    last_tokens_per_s: float | None = None
    requests_total: int = 0
    plans_ok: int = 0
    failures: int = 0
    """Requests that ended in a real failure (timeout, connection, parse, invalid plan, ...).
    Withdrawn requests are counted apart, in the three fields below."""
    cancelled: int = 0
    """Requests cancelled (by the game, or when the round or the service ended)."""
    superseded: int = 0
    """Queued requests replaced by a newer request from the same agent."""
    refused: int = 0
    """Requests refused at submit (``DISABLE_BACKGROUND_LLM=1``, or a closed service)."""
    recent: tuple[RequestRecord, ...] = ()
    concurrency_pct: float = 0.0
    """Share of busy time with two or more requests running, 0..100."""
    now: float = 0.0
    """Monotonic 'now' the records are relative to (on ``clock="game"``: the latest game time
    the service has seen)."""
    clock: str = "wall"
    """What the records' times count: ``"wall"`` (monotonic seconds: a live model) or
    ``"game"`` (game seconds: scripted and replayed services answer on game time), so the
    HUD's timeline places the bars on the clock the requests really ran on."""

    @property
    def withdrawn(self) -> int:
        """Requests that ended neither ok nor failed: cancelled + superseded + refused."""
        return self.cancelled + self.superseded + self.refused

    @property
    def settled(self) -> int:
        """Requests with a terminal outcome: ok + failed + withdrawn."""
        return self.plans_ok + self.failures + self.withdrawn


class PlanService(Protocol):
    """Background planner. ``submit`` must return in well under a millisecond.

    Two optional class attributes refine how the rest of the system treats a service:
    ``game_clock = True`` when answers arrive on game time (scripted, replay: a headless run
    need not pace itself, see :func:`paced_by_wall_clock`), and ``available = False`` when it
    can never answer (no model at all: the arbiter then never asks it).
    """

    @property
    def backend_name(self) -> str: ...

    def submit(self, request: PlanRequest) -> PlanTicket: ...

    def status(self) -> ServiceStatus: ...

    def close(self) -> None:
        """Cancel what is in flight and join any threads. Idempotent."""
        ...


def paced_by_wall_clock(service: PlanService | None) -> bool:
    """True when ``service`` answers on the wall clock (a live model), so a headless run must
    pace game time to real time or the round ends before any plan can arrive.

    Services that resolve on game time (scripted, replay) declare ``game_clock = True``; an
    offline service has nothing to wait for.
    """
    if service is None or getattr(service, "game_clock", False):
        return False
    return service.status().online

"""The one interface every LLM planning service implements, and the status it reports.

The arbiter only ever calls :meth:`PlanService.submit` (returns at once) and polls the ticket;
the HUD reads :meth:`PlanService.status`. Scripted, replay, ollama and embedded services all
fit behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from esper_arbiter.components.llm import PlanRequest, PlanTicket


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
    pacing: str = ""
    """Set when the host's game clock outruns the wall clock a live model answers on, so plans
    arrive late or never (see :mod:`esper_arbiter.systems.llm.pacing`); ``""`` otherwise."""
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
    expired: int = 0
    """Requests whose deadline passed while they waited in the queue (never reached the
    model)."""
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
        """Requests that ended neither ok nor failed: cancelled + superseded + refused +
        expired."""
        return self.cancelled + self.superseded + self.refused + self.expired

    @property
    def settled(self) -> int:
        """Requests with a terminal outcome: ok + failed + withdrawn."""
        return self.plans_ok + self.failures + self.withdrawn


@runtime_checkable
class PlanService(Protocol):
    """Background planner. ``submit`` must return in well under a millisecond.

    Besides submitting and reporting, a service says what it can do; the arbiter, the demo's
    headless loop and a host read these members instead of guessing:

    - ``available``: False when it can never answer (no model at all): the arbiter then never
      asks it, so agents stay on GOAP/BT without counting failures;
    - ``game_clock``: True when answers arrive on game time (scripted, replay), so a loop may
      run faster than real time; False for a live model (see :func:`paced_by_wall_clock`);
    - ``warming_up``: True while the model loads or reads its system prompt at start (requests
      queue meanwhile);
    - ``max_batch_size``: most requests answered by one model call (1: never batched).

    Plain class attributes satisfy these members as well as properties do. The protocol is
    ``runtime_checkable``: ``isinstance(obj, PlanService)`` checks that every member exists.
    """

    @property
    def backend_name(self) -> str: ...

    @property
    def available(self) -> bool: ...

    @property
    def game_clock(self) -> bool: ...

    @property
    def warming_up(self) -> bool: ...

    @property
    def max_batch_size(self) -> int: ...

    def submit(self, request: PlanRequest) -> PlanTicket: ...

    def status(self) -> ServiceStatus: ...

    def close(self) -> None:
        """Cancel what is in flight and join any threads. Idempotent."""
        ...


def paced_by_wall_clock(service: PlanService | None) -> bool:
    """True when ``service`` answers on the wall clock (a live model), so a game loop must run
    at real time (not faster) or its round ends before any plan can arrive.

    Services that resolve on game time (scripted, replay) have ``game_clock = True``; an
    offline service has nothing to wait for. A service that is not paced this way reports it
    in ``status().pacing``.
    """
    if service is None or service.game_clock or not service.available:
        return False
    return service.status().online

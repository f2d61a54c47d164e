"""The counters behind :meth:`~systems.llm.service.LlmPlanService.status`.

:class:`ServiceStats` holds what the HUD shows beyond the queue's own numbers: requests and
plans so far, failures by kind, whether the backend looks online and why not, and the last
latency / time to first token / tokens per second. The service feeds it one terminal outcome
at a time (:meth:`ServiceStats.count`, under the service's lock), and :func:`build_status`
puts them together with the queue's and the timeline's numbers. Kept apart from the service's
lifecycle so each module holds one concern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from esper_arbiter.components.llm import WITHDRAWN_KINDS, FailureKind, PlanOutcome, PlanReady
from esper_arbiter.systems.llm.api import ServiceStatus

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

WARMING_UP = "warming up: loading the model and reading the system prompt"
"""What :meth:`LlmPlanService.status` says while the backend warms up."""

NOT_SERVED = frozenset({
    FailureKind.CANCELLED.value, FailureKind.SUPERSEDED.value, FailureKind.REFUSED.value,
    FailureKind.OFFLINE.value,
})
"""Outcomes that say nothing about the backend's latency."""


@dataclass(slots=True)
class ServiceStats:
    """What :meth:`LlmPlanService.status` reports beyond the queue (guarded by the lock)."""

    requests_total: int = 0
    plans_ok: int = 0
    failures: dict[FailureKind, int] = field(default_factory=dict)
    last_latency: float | None = None
    last_ttft: float | None = None
    last_tps: float | None = None
    online: bool = True
    reason: str = ""
    warming: bool = False
    """The backend's warm-up (model load, system prompt) is still running."""

    def count(self, outcome: PlanOutcome, label: str) -> None:
        """Count one terminal ``outcome`` (its :func:`~systems.llm.request_queue.outcome_label`
        is ``label``); the caller holds the service's lock."""
        timing = outcome.timing
        s = self
        if isinstance(outcome, PlanReady):
            s.plans_ok += 1
        else:
            s.failures[outcome.kind] = s.failures.get(outcome.kind, 0) + 1
            if outcome.kind in (FailureKind.CONNECTION, FailureKind.MODEL_MISSING):
                s.online, s.reason = False, outcome.message
        if timing.started_at is not None and label in ("plan", "parse", "invalid_plan"):
            s.online, s.reason = True, ""
        if timing.started_at is not None and label not in NOT_SERVED:
            s.last_latency = timing.latency
            if timing.time_to_first_token is not None:
                s.last_ttft = timing.time_to_first_token
            if timing.tokens_per_second is not None:
                s.last_tps = timing.tokens_per_second


def build_status(svc: LlmPlanService) -> ServiceStatus:
    """``svc``'s snapshot for the HUD (cheap; safe from any thread)."""
    window = svc._timeline.window()
    q = svc._queue
    in_flight, depth, by_priority = q.running(), q.depth(), q.depth_by_priority()
    with svc._lock:
        s = svc._stats
        return ServiceStatus(
            backend=svc._backend.name,
            model=svc._backend.model,
            online=s.online,
            reason=s.reason or (WARMING_UP if s.warming else ""),
            pacing=svc._pacing.warning,
            warming_up=s.warming and s.online,
            in_flight=in_flight,
            queue_depth=depth,
            queue_depth_by_priority=by_priority,
            last_latency_s=s.last_latency,
            last_ttft_s=s.last_ttft,
            last_tokens_per_s=s.last_tps,
            requests_total=s.requests_total,
            plans_ok=s.plans_ok,
            failures=sum(n for k, n in s.failures.items() if k not in WITHDRAWN_KINDS),
            cancelled=s.failures.get(FailureKind.CANCELLED, 0),
            superseded=s.failures.get(FailureKind.SUPERSEDED, 0),
            refused=s.failures.get(FailureKind.REFUSED, 0),
            expired=s.failures.get(FailureKind.EXPIRED, 0),
            recent=window.records,
            concurrency_pct=window.concurrency_pct,
            now=window.now,
        )

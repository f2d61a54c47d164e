"""What the request queue counts, and the snapshot it hands out.

:class:`QueueCounters` are the running totals the queue keeps under its lock;
:func:`read_metrics` takes a consistent :class:`QueueMetrics` snapshot of them together with
the queue's depth and the recent wait / service times (mean and percentiles) and throughput,
cheap to take and safe to hand to the HUD.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from esper_arbiter.components.llm import FailureKind

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.queue_core import QueueCore


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """A consistent snapshot of the queue's counters (cheap to take, safe to hand to the HUD)."""

    depth: int
    depth_by_priority: dict[int, int]
    running: int
    submitted: int
    started: int
    resolved: int
    outcomes: dict[str, int]
    """Terminal outcomes by label: ``"plan"`` or a ``FailureKind`` value."""
    cancellations: int
    supersessions: int
    refusals: int
    timeouts_in_queue: int
    requeues: int
    duplicate_resolves: int
    """Attempts to resolve an already-resolved request (rejected). Should stay 0."""
    late_reports: int
    """Worker reports for requests withdrawn while running (expected; ignored)."""
    wait_mean_s: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None
    wait_max_s: float | None
    service_mean_s: float | None
    service_p50_s: float | None
    service_p95_s: float | None
    throughput_per_s: float
    """Requests that ran to a terminal outcome per second over the throughput window."""


@dataclass(slots=True)
class QueueCounters:
    """The queue's running totals (guarded by its lock)."""

    submitted: int = 0
    started: int = 0
    resolved: int = 0
    requeues: int = 0
    timeouts_in_queue: int = 0
    duplicate_resolves: int = 0
    late_reports: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def read_metrics(queue: QueueCore) -> QueueMetrics:
    """A consistent snapshot of ``queue``'s counters (:meth:`RequestQueue.metrics`)."""
    now = queue.clock()
    with queue._lock:
        c = queue._c
        waits = list(queue._waits)
        services = list(queue._services)
        horizon = now - queue.config.throughput_window_s
        recent = sum(1 for t in queue._completions if t >= horizon)
        outcomes = dict(c.outcomes)
        depth_by = {p: n for p, n in queue._depth.items() if n}
        depth, running = queue._queued, queue._running
        submitted, started, resolved = c.submitted, c.started, c.resolved
        requeues, dups, late = c.requeues, c.duplicate_resolves, c.late_reports
        timeouts = c.timeouts_in_queue
    return QueueMetrics(
        depth=depth,
        depth_by_priority=depth_by,
        running=running,
        submitted=submitted,
        started=started,
        resolved=resolved,
        outcomes=outcomes,
        cancellations=outcomes.get(FailureKind.CANCELLED.value, 0),
        supersessions=outcomes.get(FailureKind.SUPERSEDED.value, 0),
        refusals=outcomes.get(FailureKind.REFUSED.value, 0),
        timeouts_in_queue=timeouts,
        requeues=requeues,
        duplicate_resolves=dups,
        late_reports=late,
        wait_mean_s=statistics.fmean(waits) if waits else None,
        wait_p50_s=_quantile(waits, 0.5),
        wait_p95_s=_quantile(waits, 0.95),
        wait_max_s=max(waits) if waits else None,
        service_mean_s=statistics.fmean(services) if services else None,
        service_p50_s=_quantile(services, 0.5),
        service_p95_s=_quantile(services, 0.95),
        throughput_per_s=recent / queue.config.throughput_window_s,
    )


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i]

"""Request ledgers: does every LLM request end up counted exactly once?

Each layer counts requests its own way; the books balance when

- arbiter (summed over agents): ``requests = plans + failures + cancelled + expired +
  discarded + open``, where *open* is a request still in flight (an ``LlmTask``) or answered
  but not yet read by the arbiter (a ``PlanProposal``);
- service: ``requests_total = plans_ok + failures + cancelled + superseded + refused + expired
  + in_flight + queue_depth``.

:func:`arbiter_ledger` and :func:`service_ledger` compute both sides; the fault-matrix test and
the soak (``bench/soak.py``) assert them. Reading a live service's status races its worker
thread (the queue and the counters are read one after the other), so compare a live service
only once it is closed or idle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import esper

from esper_arbiter.components.agent import ArbiterMetrics, ArbiterState
from esper_arbiter.components.llm import LlmTask, PlanProposal
from esper_arbiter.systems.llm.api import ServiceStatus


@dataclass(frozen=True, slots=True)
class Ledger:
    """One side of the books: what came in, and where each request went."""

    requests: int
    settled: dict[str, int]
    open: int

    @property
    def balance(self) -> int:
        """Requests not accounted for (0 when the books balance)."""
        return self.requests - sum(self.settled.values()) - self.open

    def line(self) -> str:
        parts = "  ".join(f"{k} {v}" for k, v in self.settled.items())
        return f"requests {self.requests} = {parts}  open {self.open}  (unaccounted {self.balance})"


def arbiter_ledger(metrics: Iterable[ArbiterMetrics] | None = None, open_requests: int | None = None
                   ) -> Ledger:
    """The arbiter's books over the current esper world (or the given metrics and open count,
    e.g. adding agents that have left the world)."""
    if metrics is None:
        metrics = [s.metrics for _, s in esper.get_component(ArbiterState)]
    if open_requests is None:
        open_requests = open_in_world()
    total = ArbiterMetrics()
    for m in metrics:
        total.add(m)
    return Ledger(
        requests=total.llm_requests,
        settled={
            "plans": sum(total.plans_by_source.values()),
            "failures": total.llm_failures,
            "cancelled": total.llm_cancelled,
            "expired": total.llm_expired,
            "discarded": total.plans_discarded,
        },
        open=open_requests,
    )


def open_in_world() -> int:
    """Requests of the current world's agents not yet settled in the arbiter's counts."""
    tasks = {e for e, _ in esper.get_component(LlmTask)}
    proposals = {e for e, _ in esper.get_component(PlanProposal)}
    return len(tasks) + len(proposals)


def service_ledger(status: ServiceStatus) -> Ledger:
    """The service's books from one status reading."""
    return Ledger(
        requests=status.requests_total,
        settled={
            "plans": status.plans_ok,
            "failures": status.failures,
            "cancelled": status.cancelled,
            "superseded": status.superseded,
            "refused": status.refused,
            "expired": status.expired,
        },
        open=status.in_flight + status.queue_depth,
    )

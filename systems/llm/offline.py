"""The service a game gets when no model can answer: every request resolves OFFLINE at once,
and :meth:`OfflinePlanService.status` says why and how to enable a model (the HUD shows it)."""

from __future__ import annotations

import itertools
import time

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanOutcome, PlanRequest
from esper_arbiter.systems.llm.api import ServiceStatus


class _ResolvedTicket:
    """A ticket born resolved."""

    __slots__ = ("_outcome", "_request_id")

    def __init__(self, outcome: PlanOutcome) -> None:
        self._outcome = outcome
        self._request_id = outcome.request_id

    @property
    def request_id(self) -> int:
        return self._request_id

    def poll(self, now: float) -> PlanOutcome | None:
        return self._outcome

    def cancel(self) -> None:
        return None


class OfflinePlanService:
    """The service used when no model is available: every ticket resolves OFFLINE at once and
    :meth:`status` tells the HUD why and how to enable the LLM."""

    available = False
    """Never asked: the arbiter keeps agents on GOAP/BT instead of counting OFFLINE answers."""
    game_clock = False
    warming_up = False
    max_batch_size = 1

    def __init__(self, reason: str, backend: str = "none") -> None:
        self._reason = reason
        self._backend = backend
        self._ids = itertools.count(1)
        self._total = 0

    @property
    def backend_name(self) -> str:
        return self._backend

    @property
    def reason(self) -> str:
        return self._reason

    def submit(self, request: PlanRequest) -> _ResolvedTicket:
        self._total += 1
        return _ResolvedTicket(PlanFailure(
            request_id=next(self._ids), kind=FailureKind.OFFLINE, message=self._reason,
            backend=self._backend))

    def status(self) -> ServiceStatus:
        return ServiceStatus(backend=self._backend, online=False, reason=self._reason,
                             requests_total=self._total, failures=self._total,
                             now=time.monotonic())

    def close(self) -> None:
        return None

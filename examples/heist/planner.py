"""A tiny plan service of the heist's own: canned "model" plans that use HackTerminal.

It stands in for a language model the way the library's scripted service does, but knows the
heist: while the terminal is on the map it plans to hack it; afterwards it walks to the
objective. Answers arrive ``delay_s`` seconds of *game* time after the request.
"""

from __future__ import annotations

import itertools

import esper_arbiter as ea
from examples.heist.domain import HackTerminal

BACKEND = "crew"


class CrewTicket:
    """One request: resolves on game time, or to CANCELLED when cancelled first."""

    def __init__(self, request_id: int, due: float, outcome: ea.PlanOutcome,
                 service: CrewPlanService) -> None:
        self._id = request_id
        self._due = due
        self._outcome = outcome
        self._service = service
        self._done = False

    @property
    def request_id(self) -> int:
        return self._id

    def poll(self, now: float) -> ea.PlanOutcome | None:
        if not self._done and now < self._due:
            return None
        if not self._done:
            self._done = True
            self._service._resolved(self._outcome)
        return self._outcome

    def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        self._outcome = ea.PlanFailure(self._id, ea.FailureKind.CANCELLED, "cancelled",
                                       backend=BACKEND)
        self._service._resolved(self._outcome)


class CrewPlanService:
    """Implements ``ea.PlanService``: ``backend_name``, ``submit``, ``status``, ``close`` and
    the four capability members below."""

    game_clock = True
    """Answers on game time: a headless round need not wait for it."""
    available = True
    """It can always answer (an offline service says False, and is then never asked)."""
    warming_up = False
    max_batch_size = 1

    def __init__(self, delay_s: float = 1.0) -> None:
        self.delay_s = delay_s
        self._ids = itertools.count(1)
        self.requests: list[ea.PlanRequest] = []
        self.answers: list[ea.PlanOutcome] = []
        self._ok = 0
        self._failed = 0
        self._closed = False

    @property
    def backend_name(self) -> str:
        return BACKEND

    def submit(self, request: ea.PlanRequest) -> CrewTicket:
        rid = next(self._ids)
        self.requests.append(request)
        return CrewTicket(rid, request.submitted_at + self.delay_s, self._answer(rid, request),
                          self)

    def _answer(self, rid: int, request: ea.PlanRequest) -> ea.PlanOutcome:
        if self._closed:
            return ea.PlanFailure(rid, ea.FailureKind.OFFLINE, "service closed", backend=BACKEND)
        domain = request.domain
        if not isinstance(domain, ea.Domain) or "HackTerminal" not in domain.tools:
            return ea.PlanFailure(rid, ea.FailureKind.INVALID_PLAN,
                                  "the request's domain has no HackTerminal tool",
                                  backend=BACKEND)
        snap = request.snapshot
        steps: tuple[ea.Step, ...]
        terminal = snap.pois.get("terminal")
        if terminal is not None:
            steps = (HackTerminal(terminal[0], terminal[1]), ea.Scan())
            why = "the terminal opens the vault"
        elif snap.objective is not None:
            steps = (ea.MoveTo(snap.objective.x, snap.objective.y),)
            why = f"go to {snap.objective.label}"
        else:
            steps = (ea.Scan(),)
            why = "nothing to do"
        plan = ea.PlanIntent(f"crew-{rid}", steps, source="scripted", rationale=why)
        return ea.PlanReady(rid, plan, backend=BACKEND, model="canned")

    def _resolved(self, outcome: ea.PlanOutcome) -> None:
        self.answers.append(outcome)
        if isinstance(outcome, ea.PlanReady):
            self._ok += 1
        elif outcome.kind is not ea.FailureKind.CANCELLED:
            self._failed += 1

    def status(self) -> ea.ServiceStatus:
        return ea.ServiceStatus(
            backend=BACKEND, model="canned", online=not self._closed,
            reason="closed" if self._closed else "",
            requests_total=len(self.requests), plans_ok=self._ok, failures=self._failed,
        )

    def close(self) -> None:
        self._closed = True

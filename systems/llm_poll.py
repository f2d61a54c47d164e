"""LlmPollSystem: collects finished LLM requests without ever waiting for one.

For every agent with an in-flight :class:`LlmTask` it polls the ticket (a non-blocking check)
and, when an outcome is there, replaces the task with a :class:`PlanProposal` for the arbiter.

Agents may leave at any frame. A request whose entity was deleted while it was in flight is
cancelled on the next frame, so the service stops spending the model on an answer nobody will
read and counts the request as cancelled instead of leaving it running.
"""

from __future__ import annotations

import logging

import esper

from esper_arbiter.components.llm import (
    FailureKind,
    LlmTask,
    PlanFailure,
    PlanProposal,
    PlanTicket,
)
from esper_arbiter.systems.perception import game_time

log = logging.getLogger("esper_arbiter.llm_poll")


class LlmPollSystem(esper.Processor):
    def __init__(self) -> None:
        super().__init__()
        self._out: dict[int, PlanTicket] = {}
        """Tickets still unanswered at the last frame, by entity: a deleted entity's ticket
        is found here and cancelled."""

    def process(self, *args: object, **kwargs: object) -> None:
        tasks = esper.get_component(LlmTask)
        if not tasks and not self._out:
            return
        now = game_time()
        out: dict[int, PlanTicket] = {}
        for ent, task in tasks:
            try:
                outcome = task.ticket.poll(now)
            except Exception as exc:  # a broken ticket must not take the frame down
                log.exception("agent %d: polling request %d raised", ent, task.request_id)
                outcome = PlanFailure(
                    task.request_id, FailureKind.CRASH, f"poll raised {type(exc).__name__}: {exc}"
                )
            if outcome is None:
                out[ent] = task.ticket
                continue
            esper.remove_component(ent, LlmTask)
            esper.add_component(ent, PlanProposal(outcome, now, task.reason, task.submitted_at))
        if len(out) != len(self._out) or out.keys() != self._out.keys():
            for ent, ticket in self._out.items():
                if ent not in out and not esper.entity_exists(ent):
                    log.info("agent %d left with request %d in flight: cancelled", ent,
                             ticket.request_id)
                    self._cancel(ent, ticket)
        self._out = out

    def cancel_all(self) -> int:
        """Cancel every request of this world still in flight (the world is going away but
        the service lives on). Returns how many were cancelled."""
        n = 0
        for ent, task in esper.get_component(LlmTask):
            self._cancel(ent, task.ticket)
            n += 1
        for ent, ticket in self._out.items():
            if not esper.entity_exists(ent):
                self._cancel(ent, ticket)
                n += 1
        self._out = {}
        return n

    @staticmethod
    def _cancel(ent: int, ticket: PlanTicket) -> None:
        try:
            ticket.cancel()
        except Exception:  # a host's broken ticket must not take the frame down
            log.exception("agent %d: cancelling request %d raised", ent, ticket.request_id)

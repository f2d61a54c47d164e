"""LlmPollSystem: collects finished LLM requests without ever waiting for one.

For every agent with an in-flight :class:`LlmTask` it polls the ticket (a non-blocking check)
and, when an outcome is there, replaces the task with a :class:`PlanProposal` for the arbiter.
"""

from __future__ import annotations

import logging

import esper

from esper_arbiter.components.llm import FailureKind, LlmTask, PlanFailure, PlanProposal
from esper_arbiter.systems.perception import game_time

log = logging.getLogger("esper_arbiter.llm_poll")


class LlmPollSystem(esper.Processor):
    def process(self, *args: object, **kwargs: object) -> None:
        tasks = esper.get_component(LlmTask)
        if not tasks:
            return
        now = game_time()
        for ent, task in tasks:
            try:
                outcome = task.ticket.poll(now)
            except Exception as exc:  # a broken ticket must not take the frame down
                log.exception("agent %d: polling request %d raised", ent, task.request_id)
                outcome = PlanFailure(
                    task.request_id, FailureKind.CRASH, f"poll raised {type(exc).__name__}: {exc}"
                )
            if outcome is None:
                continue
            esper.remove_component(ent, LlmTask)
            esper.add_component(ent, PlanProposal(outcome, now, task.reason))

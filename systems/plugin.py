"""One call that installs the arbiter into the current esper world, in the right order.

    import esper
    from esper_arbiter.systems.plugin import install

    plugin = install(service=None)        # GOAP + behaviour tree only
    ...
    esper.process()                       # Perception -> LlmPoll -> Arbiter -> your systems

The host gives entities Position, Health, Team (and optionally Ammo, Cooldowns, Orders, Name,
InCover, Player), puts one MapGrid and one GameClock in the world, marks AI entities with
``Agent``, and carries out each agent's ``Intent`` (calling ``intent.finish()`` or
``intent.fail(reason)``). Host systems that act on Intent use a priority below
:data:`ARBITER_PRIORITY`; systems that move the world before the AI looks use one above
:data:`PERCEPTION_PRIORITY`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import esper

from esper_arbiter.components.agent import ArbiterState
from esper_arbiter.systems.arbiter_system import ArbiterSystem, EventSink
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm_poll import LlmPollSystem
from esper_arbiter.systems.perception import PerceptionSystem
from esper_arbiter.systems.planning.arbiter import Arbiter, ArbiterConfig
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

log = logging.getLogger("esper_arbiter")

PERCEPTION_PRIORITY = 300
LLM_POLL_PRIORITY = 200
ARBITER_PRIORITY = 100


@dataclass(slots=True)
class ArbiterPlugin:
    """Handles to the installed systems."""

    perception: PerceptionSystem
    llm_poll: LlmPollSystem
    arbiter_system: ArbiterSystem
    arbiter: Arbiter
    service: PlanService | None

    def request_plan(self, entity: int, reason: str = "player asked") -> bool:
        """Ask for an urgent LLM plan for ``entity`` at the next frame. False if impossible."""
        if self.service is None:
            return False
        state = esper.try_component(entity, ArbiterState)
        if state is None:
            return False
        self.arbiter.request_now(state, reason)
        return True

    def uninstall(self) -> None:
        """Remove the three systems from the current world (the service is left to its owner)."""
        for kind in (PerceptionSystem, LlmPollSystem, ArbiterSystem):
            esper.remove_processor(kind)


def install(
    service: PlanService | None = None,
    config: ArbiterConfig | None = None,
    rules: Rules = DEFAULT_RULES,
    on_event: EventSink | None = None,
) -> ArbiterPlugin:
    """Add PerceptionSystem, LlmPollSystem and ArbiterSystem to the current esper world.

    ``service`` is any :class:`systems.llm.api.PlanService` (ollama, embedded, scripted,
    replay) or ``None`` for GOAP + behaviour tree only. ``on_event(entity, event)`` receives
    every decision, mode change, request and outcome as it happens.
    """
    arbiter = Arbiter(
        config=config,
        rules=rules,
        backend_name=service.backend_name if service is not None else "",
    )
    perception = PerceptionSystem()
    poll = LlmPollSystem()
    system = ArbiterSystem(arbiter, service, on_event)
    esper.add_processor(perception, priority=PERCEPTION_PRIORITY)
    esper.add_processor(poll, priority=LLM_POLL_PRIORITY)
    esper.add_processor(system, priority=ARBITER_PRIORITY)
    log.debug("arbiter installed in world %r (service=%s)", esper.current_world,
              service.backend_name if service is not None else None)
    return ArbiterPlugin(perception, poll, system, arbiter, service)

"""One call that installs the arbiter into the current esper world, in the right order.

    import esper
    import esper_arbiter as ea

    plugin = ea.install(domain=my_domain, service=None)   # GOAP + behaviour tree only
    ...
    esper.process()                       # Perception -> LlmPoll -> Arbiter -> your systems

The host gives entities Position, Health, Team (and optionally Ammo, Cooldowns, Orders, Name,
InCover, Leader), puts one MapGrid and one GameClock in the world, marks AI entities with
``Agent``, and carries out each agent's ``Intent`` (calling ``intent.finish()`` or
``intent.fail(reason)``). Host systems that act on Intent use a priority below
:data:`ARBITER_PRIORITY`; systems that move the world before the AI looks use one above
:data:`PERCEPTION_PRIORITY`. The one ``domain`` (default: the squad-tactics preset) reaches
perception, the arbiter and every request the service answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import esper

from esper_arbiter.components.agent import Agent, ArbiterState
from esper_arbiter.systems.arbiter_system import ArbiterSystem, EventSink
from esper_arbiter.systems.domain import Domain, default_domain
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm_poll import LlmPollSystem
from esper_arbiter.systems.perception import PerceptionSystem
from esper_arbiter.systems.planning.arbiter import Arbiter
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

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
    domain: Domain
    last_refusal: str = ""
    """Why the last :meth:`request_plan` returned False."""

    def why_no_plan(self, entity: int) -> str | None:
        """Why a model plan cannot be requested for ``entity`` now, or None when it can."""
        if self.service is None:
            return "no model service is installed (install(service=...))"
        if not self.arbiter_system.asks_model:
            return f"the {self.service.backend_name} service cannot answer (it is offline)"
        agent = esper.try_component(entity, Agent)
        if agent is None:
            return f"entity {entity} is not an Agent"
        if not agent.use_llm:
            return f"entity {entity} has Agent(use_llm=False)"
        if esper.try_component(entity, ArbiterState) is None:
            return f"entity {entity} has not been perceived yet (it lacks a component, or " \
                   "esper.process() has not run since it became an Agent)"
        return None

    def request_plan(self, entity: int, reason: str = "asked by the host") -> bool:
        """Ask for an urgent model plan for ``entity`` at the next frame.

        Returns False, with the reason in :attr:`last_refusal` and the log, when nothing would
        be sent (see :meth:`why_no_plan`); then nothing is left pending.
        """
        why = self.why_no_plan(entity)
        if why is not None:
            self.last_refusal = why
            log.info("request_plan(%d) refused: %s", entity, why)
            return False
        state = esper.component_for_entity(entity, ArbiterState)
        self.arbiter.request_now(state, reason)
        return True

    def cancel_requests(self) -> int:
        """Cancel every model request of the current world still in flight (before the world
        is dropped while its service lives on, so the service does not keep planning for
        agents that are gone). Returns how many were cancelled."""
        return self.llm_poll.cancel_all()

    def uninstall(self) -> None:
        """Remove the three systems from the current world (the service is left to its owner;
        requests still in flight are cancelled)."""
        self.cancel_requests()
        for kind in (PerceptionSystem, LlmPollSystem, ArbiterSystem):
            esper.remove_processor(kind)


def install(
    *,
    domain: Domain | None = None,
    service: PlanService | None = None,
    config: ArbiterConfig | None = None,
    on_event: EventSink | None = None,
) -> ArbiterPlugin:
    """Add PerceptionSystem, LlmPollSystem and ArbiterSystem to the current esper world.

    ``domain`` is the host's :class:`~systems.domain.Domain` (tools, GOAP brain, fallback
    tree, rules, role text, orders, factions); ``None`` takes the squad-tactics preset.
    ``service`` is any :class:`systems.llm.api.PlanService` (ollama, embedded, scripted,
    replay) or ``None`` for GOAP + behaviour tree only. ``on_event(entity, event)`` receives
    every decision, mode change, request and outcome as it happens.
    """
    if domain is not None and not isinstance(domain, Domain):
        raise TypeError(f"install(domain=...) takes a Domain, got {type(domain).__name__}")
    if config is not None and not isinstance(config, ArbiterConfig):
        raise TypeError(
            f"install(config=...) takes an ArbiterConfig, got {type(config).__name__}"
            + (" (build one with ArbiterConfig(**settings))" if isinstance(config, dict) else ""))
    if on_event is not None and not callable(on_event):
        raise TypeError(f"install(on_event=...) takes a callable (entity, ArbiterEvent), got "
                        f"{type(on_event).__name__}")
    present = [kind.__name__ for kind in (PerceptionSystem, LlmPollSystem, ArbiterSystem)
               if esper.get_processor(kind) is not None]
    if present:
        raise RuntimeError(
            f"the arbiter is already installed in world {esper.current_world!r} "
            f"({', '.join(present)}); call the plugin's uninstall() first, or switch worlds")
    dom = domain if domain is not None else default_domain()
    arbiter = Arbiter(
        dom,
        config=config,
        backend_name=service.backend_name if service is not None else "",
    )
    warm_for = getattr(service, "warm_for", None)
    if callable(warm_for):  # the model reads this domain's system prompt before it is asked
        warm_for(dom, arbiter.config.max_plan_steps)
    perception = PerceptionSystem(dom.factions, dom.sensing)
    poll = LlmPollSystem()
    system = ArbiterSystem(arbiter, service, on_event)
    esper.add_processor(perception, priority=PERCEPTION_PRIORITY)
    esper.add_processor(poll, priority=LLM_POLL_PRIORITY)
    esper.add_processor(system, priority=ARBITER_PRIORITY)
    log.debug("arbiter installed in world %r (service=%s)", esper.current_world,
              service.backend_name if service is not None else None)
    return ArbiterPlugin(perception, poll, system, arbiter, service, dom)

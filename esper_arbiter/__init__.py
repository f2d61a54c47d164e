"""esper-arbiter: two-speed NPC brains for esper games.

Instant GOAP planning every frame, language-model plans in the background, a behaviour tree as
the safety net. A host game adds ``Position``, ``Health``, ``Team`` to its units, one
``MapGrid`` and one ``GameClock`` to the world, ``Agent`` to each AI-driven entity, and then::

    import esper_arbiter as ea

    plugin = ea.install(domain=ea.squad_domain(), service=None)   # GOAP + behaviour tree
    esper.process()                # Perception -> LlmPoll -> Arbiter -> the host's systems

and carries out each agent's ``Intent``. Everything game-specific lives in one
:class:`Domain` (the shipped squad-tactics preset, or the host's own extension of it).

Importing this package needs esper only; model clients (ollama, llama.cpp) and pygame load
when they are used. All logging is under the ``esper_arbiter`` logger.
"""

from esper_arbiter.components import *  # noqa: F403
from esper_arbiter.components import __all__ as _components_all
from esper_arbiter.systems.domain import Domain, default_domain, domain_of
from esper_arbiter.systems.llm.api import PlanService, ServiceStatus, paced_by_wall_clock
from esper_arbiter.systems.llm.factory import ServiceChoice, ServiceConfigError, make_service
from esper_arbiter.systems.perception import MissingWorldPiece, build_snapshot
from esper_arbiter.systems.planning import behavior_tree as bt
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig
from esper_arbiter.systems.planning.behavior_tree import Node
from esper_arbiter.systems.planning.goap import GoapAction, GoapBrain, GoapGoal
from esper_arbiter.systems.planning.pathfinding import find_path, line_of_sight
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.planning.tools import (
    ArgKind,
    ArgSpec,
    Check,
    Effect,
    ToolRegistry,
    ToolSpec,
)
from esper_arbiter.systems.plugin import ArbiterPlugin, install
from esper_arbiter.systems.presets.squad import (
    HOST_FACT_BASE,
    SQUAD_REGISTRY,
    Fact,
    Percept,
    squad_domain,
)

__version__ = "0.2.0"

__all__ = [
    *_components_all,
    "HOST_FACT_BASE",
    "SQUAD_REGISTRY",
    "ArbiterConfig",
    "ArbiterPlugin",
    "ArgKind",
    "ArgSpec",
    "Check",
    "Domain",
    "Effect",
    "Fact",
    "GoapAction",
    "GoapBrain",
    "GoapGoal",
    "MissingWorldPiece",
    "Node",
    "Percept",
    "PlanService",
    "Rules",
    "ServiceChoice",
    "ServiceConfigError",
    "ServiceStatus",
    "ToolRegistry",
    "ToolSpec",
    "__version__",
    "bt",
    "build_snapshot",
    "default_domain",
    "domain_of",
    "find_path",
    "install",
    "line_of_sight",
    "make_service",
    "paced_by_wall_clock",
    "squad_domain",
]

"""A bank heist for esper-arbiter: a crew hacks the vault past guards and civilians.

Written only against ``esper_arbiter``'s public API (``import esper_arbiter as ea``).
"""

from examples.heist.domain import HACK_TOOL, HackTerminal, heist_domain
from examples.heist.game import HeistConfig, HeistGame, Outcome
from examples.heist.planner import CrewPlanService

__all__ = [
    "HACK_TOOL",
    "CrewPlanService",
    "HackTerminal",
    "HeistConfig",
    "HeistGame",
    "Outcome",
    "heist_domain",
]

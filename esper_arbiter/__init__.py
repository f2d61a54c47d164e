"""esper-arbiter: two-speed NPC brains for esper games.

Instant GOAP planning every frame, language-model plans in the background, a behaviour tree as
the safety net. ``install()`` adds the three systems to the current esper world.
"""

from esper_arbiter.components import *  # noqa: F403
from esper_arbiter.components import __all__ as _components_all
from esper_arbiter.systems.planning.arbiter import ArbiterConfig
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.plugin import ArbiterPlugin, install

__all__ = [*_components_all, "ArbiterConfig", "ArbiterPlugin", "Rules", "install"]

"""The squad-tactics preset: a ready-made :class:`~systems.domain.Domain` for shooters and
tactics games, and the building blocks to extend it.

Agents move on a tile grid, take cover, shoot, throw smoke, heal and revive each other, follow
an optional :class:`~components.world.Leader`, obey standing orders (``follow``, ``hold``,
``attack``, ``objective`` by default) and work toward the map's
:class:`~components.world.Objective`. A host extends it with its own tools (a step class, a
:class:`~systems.planning.tools.ToolSpec`), GOAP actions and goals (on fact bits from
:data:`~systems.presets.squad.facts.HOST_FACT_BASE` up) and grounders, and with its own order
words, role text and factions::

    domain = squad_domain(
        extra_tools=[ToolSpec("Hack", "hack a terminal", Hack, (ArgSpec("x", ArgKind.X), ...))],
        extra_actions=[GoapAction("hack", {...}, {HACKED: True})],
        extra_goals=[GoapGoal("hack_terminal", {HACKED: True}, 85.0)],
        extra_grounders={"hack": lambda p, goal: Hack(x=..., y=...)},
        extra_facts=lambda p: HACKED if "terminal" not in p.snapshot.pois else 0,
        orders={"follow": Fact.ORDER_FOLLOW, "take": Fact.ORDER_OBJECTIVE},
        factions=Factions.of(neutral=["civilian"]),
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from esper_arbiter.components.factions import DEFAULT_FACTIONS, Factions
from esper_arbiter.components.sensing import DEFAULT_SENSING, Sensing
from esper_arbiter.systems.domain import Domain
from esper_arbiter.systems.planning.behavior_tree import Node
from esper_arbiter.systems.planning.goap import GoapAction, GoapGoal, Grounder
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.planning.tools import ToolSpec
from esper_arbiter.systems.presets.squad.advice import squad_advisor
from esper_arbiter.systems.presets.squad.brain import FactReader, squad_brain
from esper_arbiter.systems.presets.squad.facts import (
    DEFAULT_ORDERS,
    FACT_NAMES,
    HOST_FACT_BASE,
    Fact,
    extract_facts,
)
from esper_arbiter.systems.presets.squad.percept import Percept
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY, SQUAD_TOOLS
from esper_arbiter.systems.presets.squad.trees import enemy_tree, squad_tree

SQUAD_ROLE = (
    "You plan actions for an AI squad member in a top-down tile game.\n"
    "Tiles are (x,y): x is the column, y the row. Walls block moving and shooting; cover "
    "halves damage; smoke blocks sight.\n"
    "Keep your leader alive if you have one, follow your orders, then work toward the "
    "objective. Never target neutrals."
)
"""The preset's role text: the first lines of the model's system prompt."""

ORDER_MEANINGS: Mapping[int, str] = MappingProxyType({
    Fact.ORDER_FOLLOW: "stay close to your leader",
    Fact.ORDER_HOLD: "hold your position",
    Fact.ORDER_ATTACK: "engage the nearest enemies",
    Fact.ORDER_OBJECTIVE: "go to the objective now",
})
"""What each order fact means, in the words the prompt uses."""


def squad_domain(
    *,
    name: str = "squad",
    rules: Rules = DEFAULT_RULES,
    role: str = SQUAD_ROLE,
    orders: Mapping[str, int] = DEFAULT_ORDERS,
    order_meanings: Mapping[str, str] | None = None,
    factions: Factions = DEFAULT_FACTIONS,
    sensing: Sensing | None = None,
    extra_tools: Sequence[ToolSpec] = (),
    extra_actions: Sequence[GoapAction] = (),
    extra_goals: Sequence[GoapGoal] = (),
    extra_grounders: Mapping[str, Grounder[Percept]] | None = None,
    extra_facts: FactReader | None = None,
    fact_names: Mapping[int, str] | None = None,
    fallback: Callable[[Rules], Node] = squad_tree,
) -> Domain:
    """The squad-tactics domain, optionally extended (see the module docstring).

    ``orders`` maps each order word to the :class:`Fact` it sets; ``order_meanings`` words the
    prompt uses for them (defaults from :data:`ORDER_MEANINGS`; a word whose fact has no
    meaning needs one here). ``extra_facts(percept)`` returns the host's own fact bits that
    hold in a snapshot. ``fallback`` builds the behaviour tree from the rules. ``sensing``
    defaults to :class:`Sensing`'s bounds with ``max_speed`` the rules' ``move_speed`` (the
    preset's units walk no faster).
    """
    if sensing is None:
        sensing = replace(DEFAULT_SENSING, max_speed=rules.move_speed)
    tools = SQUAD_REGISTRY.copy()
    for spec in extra_tools:
        tools.register(spec)
    meanings: dict[str, str] = {}
    for word, fact in orders.items():
        text = (order_meanings or {}).get(word) or ORDER_MEANINGS.get(fact)
        if text is None:
            raise ValueError(f"order {word!r}: no meaning given for its fact; pass "
                             "order_meanings={word: 'what it means'}")
        meanings[word] = text
    brain = squad_brain(
        rules, orders=orders, extra_actions=extra_actions, extra_goals=extra_goals,
        extra_grounders=extra_grounders, extra_facts=extra_facts, fact_names=fact_names,
    )
    return Domain(
        name=name, tools=tools, rules=rules, brain=brain, fallback=fallback(rules), role=role,
        orders=meanings, factions=factions, sensing=sensing, order_facts=dict(orders),
        advise=squad_advisor(rules, orders),
    )


__all__ = [
    "DEFAULT_ORDERS",
    "FACT_NAMES",
    "HOST_FACT_BASE",
    "ORDER_MEANINGS",
    "SQUAD_REGISTRY",
    "SQUAD_ROLE",
    "SQUAD_TOOLS",
    "Fact",
    "FactReader",
    "Percept",
    "enemy_tree",
    "extract_facts",
    "squad_brain",
    "squad_domain",
    "squad_tree",
]

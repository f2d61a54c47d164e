"""hello_companion's domain: the squad-tactics preset, in this game's words.

The engine knows no companion, player or breach door; this module tells it. The companion
follows and protects the player (the preset's *leader*), obeys the four orders the game's keys
give (``follow``, ``hold``, ``attack``, ``extract``), and its objective is to get the player out
through the extraction point.
"""

from __future__ import annotations

from esper_arbiter.components.world import Objective
from esper_arbiter.systems.domain import Domain
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.presets.squad import Fact, squad_domain

ORDER_WORDS: dict[str, int] = {
    "follow": Fact.ORDER_FOLLOW,
    "hold": Fact.ORDER_HOLD,
    "attack": Fact.ORDER_ATTACK,
    "extract": Fact.ORDER_OBJECTIVE,
}
"""The orders keys 1-4 give, and what each means to the companion's GOAP brain."""

COMPANION_ROLE = (
    "You plan actions for an AI companion in a top-down tile game.\n"
    "Tiles are (x,y): x is the column, y the row. Walls block moving and shooting; cover "
    "halves damage; smoke blocks sight.\n"
    "Your leader is the human player. Keep the player alive, follow the player's orders, then "
    "work toward the objective: get the player out through the extraction point."
)


def companion_domain(rules: Rules = DEFAULT_RULES) -> Domain:
    """The squad preset with hello_companion's role text and order words."""
    return squad_domain(
        name="hello_companion", rules=rules, role=COMPANION_ROLE, orders=ORDER_WORDS,
        order_meanings={"extract": "get to the extraction point now"},
    )


def extraction_objective(poi: str, label: str = "extract") -> Objective:
    """The round's objective: reach the extraction POI (the round is won when the player
    stands there, see :mod:`game.vitals`)."""
    return Objective(poi=poi, kind="reach", label=label)

"""The heist's domain: the squad-tactics preset plus one tool, one GOAP action and goal, and a
neutral side.

Everything here comes from ``esper_arbiter``'s top level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import esper_arbiter as ea

CREW = "crew"
SECURITY = "security"
CIVILIAN = "civilian"

HACK_PRIORITY = 85.0
"""Above "engage" (75) and "reach the objective", below "survive" (90): a crew member under
fire still takes cover first."""


@dataclass(frozen=True, slots=True)
class HackTerminal(ea.Step):
    """Walk to the terminal at (x, y) and hack it; the vault door opens when it is done."""

    act: ClassVar[str] = "HackTerminal"
    x: int
    y: int


HACK_TOOL = ea.ToolSpec(
    "HackTerminal",
    "walk to the vault terminal at tile (x, y) and hack it open (takes a few seconds; the "
    "vault door opens when it is done)",
    HackTerminal,
    (ea.ArgSpec("x", ea.ArgKind.X, "terminal column"),
     ea.ArgSpec("y", ea.ArgKind.Y, "terminal row")),
    frozenset({ea.Check.WALKABLE, ea.Check.REACHABLE}),
    effect=ea.Effect.MOVE,  # the hacker ends the step standing on the terminal tile
)

VAULT_HACKED = ea.HOST_FACT_BASE
"""The GOAP fact the hack action makes true, read from the snapshot by :func:`heist_facts`:
the host removes the terminal from the map's points of interest once it is hacked."""

HEIST_ROLE = (
    "You plan actions for a member of a bank-robbery crew in a top-down tile game.\n"
    "Tiles are (x,y): x is the column, y the row. Walls block moving and shooting; cover "
    "halves damage; smoke blocks sight.\n"
    "Hack the vault terminal (HackTerminal at the 'terminal' point of interest), take the loot "
    "from the vault, then get out through the exit. Security guards shoot back. Civilians are "
    "neutral: never target them, and do not fire when one stands in the line of fire."
)


def heist_facts(p: ea.Percept) -> int:
    """The heist's own facts in a snapshot: the vault is hacked once its terminal is gone."""
    return VAULT_HACKED if "terminal" not in p.snapshot.pois else 0


def _hack_priority(_state: int, snapshot: ea.WorldSnapshot) -> float:
    """Only the crew hacks (the goal is satisfied, and so skipped, once the fact holds)."""
    return HACK_PRIORITY if snapshot.me.team == CREW else 0.0


def ground_hack(p: ea.Percept, _goal: str) -> ea.Step | None:
    """The symbolic "hack" action as a concrete step: hack the terminal the map names."""
    tile = p.snapshot.pois.get("terminal")
    if tile is None:
        return None
    return HackTerminal(tile[0], tile[1])


def heist_domain(rules: ea.Rules | None = None) -> ea.Domain:
    """The squad preset extended with the heist's tool, action, goal and factions."""
    return ea.squad_domain(
        name="heist",
        rules=rules if rules is not None else ea.Rules(),
        role=HEIST_ROLE,
        extra_tools=[HACK_TOOL],
        extra_actions=[
            ea.GoapAction("hack", {VAULT_HACKED: False}, {VAULT_HACKED: True}, cost=2.0),
        ],
        extra_goals=[ea.GoapGoal("hack_vault", {VAULT_HACKED: True}, priority=_hack_priority)],
        extra_grounders={"hack": ground_hack},
        extra_facts=heist_facts,
        fact_names={VAULT_HACKED: "vault_hacked"},
        factions=ea.Factions.of(neutral=[CIVILIAN]),
    )

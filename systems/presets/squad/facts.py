"""The squad-tactics preset's symbolic facts, its order words, and reading them from a snapshot.

A fact is one bit of an ``int``; a world state is the ``int`` of the true facts. Plain ints (not
an ``IntFlag``) because fact arithmetic runs every frame for every agent. A host extending the
preset defines its own facts on bits 32 and up (:data:`HOST_FACT_BASE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.components.world import order_key
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.presets.squad.percept import Percept

HOST_FACT_BASE: Final = 1 << 32
"""The first fact bit the preset leaves free for a host's own facts."""


class Fact:
    """Symbolic facts a world state is made of: one bit each; a state is the ``int`` of the
    true facts. Plain ints (not an ``IntFlag``) because fact arithmetic runs every frame for
    every agent. A host may define its own facts on bits 32 and up.
    """

    ENEMY_KNOWN: Final = 1 << 0
    """A live hostile is known (seen or reported)."""
    ENEMY_VISIBLE: Final = 1 << 1
    ENEMY_IN_RANGE: Final = 1 << 2
    """A live hostile is in sight and within fire range."""
    HAS_AMMO: Final = 1 << 3
    CAN_RELOAD: Final = 1 << 4
    """The magazine is not full and there are rounds in reserve."""
    LOW_HP: Final = 1 << 5
    LEADER_PRESENT: Final = 1 << 6
    """A leader is on my side (alive or downed)."""
    LEADER_DOWNED: Final = 1 << 7
    LEADER_HURT: Final = 1 << 8
    """The leader is missing at least one medkit's worth of health."""
    LEADER_EXPOSED: Final = 1 << 9
    """A hostile has the leader in sight and range."""
    NEAR_LEADER: Final = 1 << 10
    AT_LEADER: Final = 1 << 11
    """Within reach for revive / heal."""
    LEADER_REACHABLE: Final = 1 << 12
    IN_COVER: Final = 1 << 13
    COVER_AVAILABLE: Final = 1 << 14
    SMOKE_READY: Final = 1 << 15
    HEAL_READY: Final = 1 << 16
    OBJECTIVE_KNOWN: Final = 1 << 17
    OBJECTIVE_REACHABLE: Final = 1 << 18
    AT_OBJECTIVE: Final = 1 << 19
    ORDER_FOLLOW: Final = 1 << 20
    ORDER_HOLD: Final = 1 << 21
    ORDER_ATTACK: Final = 1 << 22
    ORDER_OBJECTIVE: Final = 1 << 23
    # Outcome facts: never read from a snapshot, only made true by action effects.
    ENEMY_SUPPRESSED: Final = 1 << 24
    AREA_SCANNED: Final = 1 << 25
    HOLDING: Final = 1 << 26
    OBJECTIVE_HOLD: Final = 1 << 27
    """The objective is one to hold (stay there), not only to reach."""


FACT_NAMES: dict[int, str] = {
    v: k for k, v in vars(Fact).items() if k.isupper() and isinstance(v, int)
}
"""Bit -> name of every :class:`Fact`."""

DEFAULT_ORDERS: Mapping[str, int] = MappingProxyType({
    "follow": Fact.ORDER_FOLLOW,
    "hold": Fact.ORDER_HOLD,
    "attack": Fact.ORDER_ATTACK,
    "objective": Fact.ORDER_OBJECTIVE,
})
"""The preset's order words and the fact each sets. A host renames or adds words by passing
its own mapping to :func:`~systems.presets.squad.squad_domain` (``{"secure":
Fact.ORDER_OBJECTIVE, ...}``); matching ignores case and surrounding spaces."""


F = Fact


def extract_facts(p: Percept, orders: Mapping[str, int] = DEFAULT_ORDERS) -> int:
    """The symbolic state of ``p``'s snapshot as a :class:`Fact` bitmask; ``orders`` maps the
    domain's order words to their facts."""
    s, r, pos = p.snapshot, p.rules, p.pos
    state = 0
    if p.hostiles:
        state |= F.ENEMY_KNOWN
        if p.in_range:
            state |= F.ENEMY_VISIBLE | F.ENEMY_IN_RANGE
        elif p.sees_any:
            state |= F.ENEMY_VISIBLE
    if p.has_ammo:
        state |= F.HAS_AMMO
    if p.can_reload:
        state |= F.CAN_RELOAD
    low = p.low_hp
    if low:
        state |= F.LOW_HP
    pl = p.leader
    if pl is not None:
        state |= F.LEADER_PRESENT
        d = pf.distance(pos, pl.pos)
        if pl.hp <= 0:
            state |= F.LEADER_DOWNED
        elif pl.max_hp - pl.hp >= r.heal_amount:
            state |= F.LEADER_HURT
        if d <= r.follow_distance:
            state |= F.NEAR_LEADER
        if d <= min(r.revive_reach, r.heal_reach):
            state |= F.AT_LEADER
        if pl.hp > 0 and p.hostiles and p.exposed(pl.pos):
            state |= F.LEADER_EXPOSED
        if p.can_get_next_to(pl.pos):
            state |= F.LEADER_REACHABLE
    if p.in_cover:
        state |= F.IN_COVER
    elif low and state & F.ENEMY_VISIBLE and p.cover_tile() is not None:
        # Only worth a search when cover matters: hurt and in someone's sight.
        state |= F.COVER_AVAILABLE
    if p.ready("smoke"):
        state |= F.SMOKE_READY
    if p.ready("heal"):
        state |= F.HEAL_READY
    e = p.objective
    if e is not None:
        state |= F.OBJECTIVE_KNOWN
        assert s.objective is not None
        if pf.distance(pos, e) <= s.objective.radius:
            state |= F.AT_OBJECTIVE
        if s.objective.kind == "hold":
            state |= F.OBJECTIVE_HOLD
        if p.can_reach(e):
            state |= F.OBJECTIVE_REACHABLE
    order = order_fact(s, orders)
    if order is not None:
        state |= order
    return state


def order_fact(s: WorldSnapshot, orders: Mapping[str, int] = DEFAULT_ORDERS) -> int | None:
    """The fact of ``s``'s standing order in ``orders`` (matched as :func:`order_key` says),
    or None: no order, or a word the domain does not know."""
    return orders.get(order_key(s.orders)) if s.orders else None



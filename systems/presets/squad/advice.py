"""The squad preset's advice: the few steps worth considering now, each with its reason.

The model's prompt lists these as options and builds its example reply from them (see
:attr:`systems.domain.Domain.advise`), so a small model choosing among them picks something
that fits this moment: smoke across the line of fire of whoever covers the leader or the way
to the objective from out of my reach (an enemy I can shoot is fought, not blinded, unless I
am hurt or out of rounds, and the enemy I am about to engage is fought too), the nearest real
cover when I am hurt and seen, the enemy to engage, the objective (only while no fight comes
first: see :func:`fight_first`). GOAP never throws smoke while it has an order to follow or an
enemy to engage; a plan may.

Every step comes from :class:`~systems.presets.squad.percept.Percept`'s grounding helpers, so
it is legal in the snapshot it was made for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from esper_arbiter.components.actions import ActionStep, Attack, MoveTo, Revive, ThrowSmoke
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.presets.squad.facts import DEFAULT_ORDERS, Fact, order_fact
from esper_arbiter.systems.presets.squad.percept import Percept, covers

Tile = tuple[int, int]
Advice = tuple[ActionStep, str]

MAX_ADVICE = 6
"""At most this many options (the prompt must stay small)."""


def squad_advisor(rules: Rules = DEFAULT_RULES, orders: Mapping[str, int] = DEFAULT_ORDERS
                  ) -> Callable[[WorldSnapshot], Sequence[Advice]]:
    """``advise(snapshot)`` for :attr:`Domain.advise`, with the preset's grounding;
    ``orders`` maps the domain's order words to their facts, as the brain reads them."""

    def advise(snapshot: WorldSnapshot) -> Sequence[Advice]:
        return advice(Percept(snapshot, rules), orders)

    return advise


def advice(p: Percept, orders: Mapping[str, int] = DEFAULT_ORDERS) -> list[Advice]:
    """The options for ``p``'s snapshot, most urgent first (see the module docstring)."""
    out: list[Advice] = []
    me, leader = p.me, p.leader
    if me.hp <= 0:
        return out
    if leader is not None and leader.hp <= 0:
        revive = p.revive_step()
        if revive is not None:
            out.append((revive, f"#{leader.id} is down: get them up"))
        else:
            tile = p.tile_next_to(leader.pos)
            if tile is not None and tile != p.pos:
                out.append((Revive(target_id=leader.id),
                            f"#{leader.id} is down: walk over and revive"))
    smoke = _smoke_option(p)
    target = _engage_target(p)
    if (smoke is not None and target is not None and p.has_ammo and not p.low_hp
            and pf.distance(p.pos, target[0].pos) <= p.rules.fire_range + 1.5
            and _cuts(smoke[0], p.pos, target[0], p.rules.smoke_radius)):
        # The enemy I am about to engage (a step or two from my fire range) is fought, not
        # blinded: any plan comes up once I trade fire with it, when the smoke would only wait
        # out that fight (ThrowSmoke's defer) and lose its point. Smoke is for an enemy
        # well out of my reach.
        smoke = None
    if smoke is not None:
        out.append(smoke)  # from afar, ThrowSmoke walks into throwing range when it comes up
    # Cover when it matters, as GOAP judges it: hurt and in an enemy's sight. Offered to a
    # healthy agent mid-fight, a small model copied it first into its plan and walked back
    # to cover, away from the fight and the objective (the agent lost more HP than with GOAP).
    cover = p.take_cover_step() if p.low_hp and p.visible else None
    if cover is not None:
        out.append((cover, f"you are hurt: nearest cover, "
                           f"{pf.distance(p.pos, (cover.x, cover.y)):.0f} tiles"))
    blinded = (smoke is not None and target is not None
               and _inside(smoke[0], target[0], p.rules.smoke_radius))
    if target is not None and not blinded:
        h, how = target
        out.append((Attack(target_id=h.id), how))
    if not p.has_ammo or (p.snapshot.ammo_capacity and p.snapshot.ammo * 3
                          < p.snapshot.ammo_capacity):
        reload = p.reload_step()
        if reload is not None:
            out.append((reload, "magazine low"))
    if p.low_hp:
        heal = p.heal_self_step()
        if heal is not None:
            out.append((heal, "you are hurt"))
    # After smoke the leader slips past the blinded enemy on its own way; a walk planned now
    # would be stale by the time the plan runs, so none is offered then.
    goal = (_objective_option(p) if smoke is None and not fight_first(p, target, orders)
            else None)
    if goal is not None:
        out.append(goal)
    return out[:MAX_ADVICE]


def fight_first(p: Percept, target: tuple[UnitView, str] | None,
                orders: Mapping[str, int] = DEFAULT_ORDERS) -> bool:
    """Whether engaging ``target`` comes before the walk to the objective, as GOAP's goals
    rank them: the standing order is to attack, or an enemy is in sight, and the order is not
    to go to the objective now.

    A walk offered then was copied into plans asked for as a fight began (attack the nearest
    enemy, then walk toward the objective); arriving seconds later, mid-fight, it walked the
    agent out of the fight and into the open, where it lost more HP than under GOAP alone."""
    if target is None:
        return False
    order = order_fact(p.snapshot, orders)
    if order == Fact.ORDER_OBJECTIVE:
        return False
    return order == Fact.ORDER_ATTACK or p.sees_any


def _cuts(smoke: ActionStep, me: Tile, unit: UnitView, radius: float) -> bool:
    """Whether the cloud ``smoke`` would make hides ``unit`` from ``me`` (it stands inside,
    or the cloud hangs between us)."""
    return (isinstance(smoke, ThrowSmoke)
            and pf.smoke_blocks(((smoke.x, smoke.y, radius),), me, unit.pos))


def _inside(smoke: ActionStep, unit: UnitView, radius: float) -> bool:
    """Whether ``unit`` stands inside the cloud ``smoke`` would make (it cannot be shot)."""
    return (isinstance(smoke, ThrowSmoke)
            and pf.distance((smoke.x, smoke.y), unit.pos) <= radius)


def _smoke_option(p: Percept) -> Advice | None:
    """Smoke that blinds the enemy firing on the leader (else me), or, before anyone is under
    fire, the enemy covering the way to the objective (from afar too: ThrowSmoke's preparer
    walks into throwing range when the step comes up, from wherever the agent is then)."""
    if not p.ready("smoke") or not p.hostiles:
        return None
    leader = p.leader
    guards: list[tuple[Tile | None, str]] = []
    if leader is not None and leader.hp > 0:
        guards.append((leader.pos, "your leader"))
    guards.append((None, "you"))
    # An enemy I can shoot from here is fought, not blinded: smoke on it would also blind my
    # own fire and stall a fight GOAP is winning. Smoke is for the enemy out of my reach, or
    # for getting away when I cannot fight (hurt, no rounds left).
    fighting = frozenset(h.id for h in p.fighting)
    # Nor may the cloud, thrown at another enemy, cut my line of fire to one I am fighting:
    # GOAP would then leave cover to find it again, into the open. (A plan's smoke that
    # comes up once such a fight has begun waits for it: ThrowSmoke's ``defer``.)

    def spares_my_fire(tile: Tile) -> bool:
        return p.smoke_blinds_my_fight(tile) is None

    for protect, who in guards:
        for h in p.threats_to(p.pos if protect is None else protect):
            if h.id in fighting:
                continue
            tile = _blinding_tile(p, h.pos, p.pos if protect is None else protect)
            if spares_my_fire(tile):
                return (ThrowSmoke(x=tile[0], y=tile[1]),
                        f"blinds #{h.id}, who has {who} in its sights")
    covering = _covering_route(p, fighting)
    if covering is None or not spares_my_fire(covering[1]):
        return None
    h, tile = covering
    return ThrowSmoke(x=tile[0], y=tile[1]), f"blinds #{h.id}, who covers the way to the objective"


def _covering_route(p: Percept, fighting: frozenset[int] = frozenset()
                    ) -> tuple[UnitView, Tile] | None:
    """The first enemy (not one of ``fighting``) with a stretch of the walk to the objective
    in sight and range, and the smoke tile that blinds it (its own tile when no tile next to
    it is free)."""
    goal = p.objective
    start = p.leader.pos if p.leader is not None and p.leader.hp > 0 else p.pos
    if goal is None:
        return None
    route = pf.find_path(p.grid, start, goal)
    if not route:
        return None
    for tile in route[::2]:
        for h in p.hostiles:
            if h.id not in fighting and covers(p.grid, p.rules, h.pos, tile):
                return h, _blinding_tile(p, h.pos, tile)
    return None


def _blinding_tile(p: Percept, threat: Tile, toward: Tile) -> Tile:
    """A walkable tile next to ``threat``, on its side facing ``toward`` (a cloud there
    covers the threat itself), else the threat's own tile."""
    best: tuple[float, int, int] | None = None
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            t = (threat[0] + dx, threat[1] + dy)
            if (dx or dy) and p.grid.walkable(*t):
                key = (pf.distance(t, toward), t[1], t[0])
                if best is None or key < best:
                    best = key
    return threat if best is None else (best[2], best[1])


def _engage_target(p: Percept) -> tuple[UnitView, str] | None:
    """The enemy to engage: the nearest in range and sight, else the nearest reachable."""
    if p.in_range:
        h = p.in_range[0]
        return h, f"#{h.id} in range, {pf.distance(p.pos, h.pos):.0f} tiles"
    for h in p.hostiles:
        if p.can_reach(h.pos) or p.can_get_next_to(h.pos):
            return h, (f"#{h.id} nearest enemy, {pf.distance(p.pos, h.pos):.0f} tiles: "
                       "you close in first")
    return None


def _objective_option(p: Percept) -> Advice | None:
    """Lead the leader toward the objective (or go there, without a leader)."""
    e = p.objective
    if e is None or e == p.pos or not p.can_reach(e):
        return None
    escort = p.escort_step() if p.leader is not None else None
    if isinstance(escort, MoveTo) and (escort.x, escort.y) != e:
        return escort, "lead your leader toward the objective"
    return MoveTo(x=e[0], y=e[1]), "the objective"

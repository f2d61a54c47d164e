"""PerceptionSystem: gives every Agent its view of the world for this frame.

A frame's shared facts (the grid, every unit's view) are gathered once, lazily, by a
:class:`FrameView`; each agent's :class:`~components.agent.Perception` points at it and builds
the agent's :class:`WorldSnapshot` only when something reads it. Busy agents therefore cost
almost nothing per frame, and a thousand agents thinking share one scan of the world.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any

import esper

from esper_arbiter.components.agent import (
    Agent,
    ArbiterState,
    Intent,
    Perception,
    PerceptionFrame,
    think_phase,
)
from esper_arbiter.components.factions import DEFAULT_FACTIONS, Factions, Relation
from esper_arbiter.components.sensing import DEFAULT_SENSING, Sensing
from esper_arbiter.components.snapshot import GridView, ObjectiveView, UnitView, WorldSnapshot
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    GameClock,
    Health,
    InCover,
    Leader,
    MapGrid,
    Morale,
    Name,
    Orders,
    Position,
    SmokeCloud,
    Team,
)
from esper_arbiter.systems.planning.pathfinding import nearest_walkable
from esper_arbiter.systems.planning.spatial import CellIndex
from esper_arbiter.systems.queries import Membership, StableRows

log = logging.getLogger("esper_arbiter.perception")

REQUIRED = (Position, Health, Team)
"""What every unit (and so every agent) must carry to be perceived."""

_NO_COOLDOWNS: MappingProxyType[str, float] = MappingProxyType({})
_BUCKET_TTL_S = 0.25
"""Spatial indexes are rebuilt this often (or when a side's units change)."""

_Raw = tuple[int, tuple[Position, Health, Team]]


def _raw_pos(item: _Raw) -> Position:
    return item[1][0]


def _raw_key(item: _Raw) -> int:
    return item[0]


def _alive(item: _Raw) -> bool:
    return item[1][1].hp > 0


def game_time() -> float:
    """The current game time from the world's :class:`GameClock` (0.0 if there is none)."""
    for _, clock in esper.get_component(GameClock):
        return clock.t
    return 0.0


class FrameMemory:
    """What one frame may reuse from the previous ones: the side grouping (valid while
    esper's query cache is), and unit views whose values did not change. Reusing the same
    objects lets the arbiter see "nothing changed" with identity comparisons."""

    __slots__ = ("buckets", "rows", "sides", "views")

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, bool], tuple[list[Any], float, CellIndex[Any]]] = {}
        self.rows = StableRows(Position, Health, Team)
        self.sides: list[Any] = []
        self.views: dict[int, UnitView] = {}


class FrameView:
    """What every agent can know at time ``t``, computed on first use and shared."""

    def __init__(
        self,
        t: float,
        grid_cache: dict[object, GridView],
        memory: FrameMemory | None = None,
        factions: Factions = DEFAULT_FACTIONS,
        sensing: Sensing = DEFAULT_SENSING,
    ) -> None:
        self.t = t
        self.factions = factions
        self.sensing = sensing
        self._objective: tuple[ObjectiveView | None] | None = None
        self._grid_cache = grid_cache
        memory = memory if memory is not None else FrameMemory()
        self._side_cache = memory.sides
        self._rows = memory.rows
        self._persist = memory.views
        self._grid: GridView | None = None
        self._map: MapGrid | None = None
        self._sides: dict[str, list[_Raw]] | None = None
        self._leader_ids: dict[str, int] = {}
        self._views: dict[int, UnitView] = {}
        self._buckets = memory.buckets
        self._relations: dict[tuple[str, Relation], tuple[str, ...]] = {}

    # -- shared parts -------------------------------------------------------------------

    @property
    def map(self) -> MapGrid:
        """The world's MapGrid. Raises :class:`MissingWorldPiece` when there is none."""
        if self._map is None:
            for _, m in esper.get_component(MapGrid):
                self._map = m
                break
            else:
                raise MissingWorldPiece(
                    "no MapGrid in the world: add one entity with MapGrid(width, height, ...)"
                )
        return self._map

    @property
    def objective(self) -> ObjectiveView | None:
        """The map's objective resolved to a walkable tile (once per frame), or None."""
        if self._objective is None:
            m = self.map
            o = m.objective
            view: ObjectiveView | None = None
            tile = m.pois.get(o.poi) if o is not None else None
            if o is not None and tile is not None:
                t = (int(tile[0]), int(tile[1]))
                if not m.walkable(*t):
                    t = nearest_walkable(self.grid, t) or t
                view = ObjectiveView(o.label or o.poi, o.kind, t[0], t[1], o.radius)
            self._objective = (view,)
        return self._objective[0]

    @property
    def grid(self) -> GridView:
        if self._grid is None:
            m = self.map
            smoke = tuple(
                sorted(
                    (c.x, c.y, c.radius)
                    for _, c in esper.get_component(SmokeCloud)
                    if c.expires_at > self.t
                )
            )
            key = (id(m), m.version, m.width, m.height, smoke)
            grid = self._grid_cache.get(key)
            if grid is None:
                if len(self._grid_cache) > 64:
                    self._grid_cache.clear()
                grid = GridView(m.width, m.height, m.walls, m.cover, smoke, m.version)
                self._grid_cache[key] = grid
            self._grid = grid
        return self._grid

    def _index(self) -> dict[str, list[_Raw]]:
        """One pass over every unit's components, grouped by side. Views are made lazily."""
        if self._sides is None:
            units, same = self._rows.get()
            cached = self._side_cache
            if cached and same:
                # The same units with the very same component objects as last frame (the
                # usual case, even mid-fight, where what comes and goes is Dead, smoke,
                # cover): the grouping is still right (Team is replaced, not mutated), and with
                # it each side's spatial index. A replaced Position or Team is a new object,
                # and regroups.
                sides = cached[1]
            else:
                sides = {}
                for item in units:
                    side = item[1][2].side
                    group = sides.get(side)
                    if group is None:
                        sides[side] = [item]
                    else:
                        group.append(item)
                self._side_cache[:] = (units, sides)
                if len(self._persist) > len(units):
                    alive = {e for e, _ in units}
                    for ent in [e for e in self._persist if e not in alive]:
                        del self._persist[ent]
            self._sides = sides
            leaders: dict[str, int] = {}
            for e, _ in esper.get_component(Leader):
                team = esper.try_component(e, Team)
                if team is not None:
                    leaders.setdefault(team.side, e)
            self._leader_ids = leaders
        return self._sides

    def _view(self, ent: int, pos: Position, hp: Health, team: Team) -> UnitView:
        view = self._views.get(ent)
        if view is None:
            x, y, in_cover = round(pos.x), round(pos.y), esper.has_component(ent, InCover)
            old = self._persist.get(ent)
            if (
                old is not None and old.x == x and old.y == y and old.hp == hp.hp
                and old.in_cover == in_cover and old.team == team.side
                and old.max_hp == hp.max_hp
            ):
                view = old  # unchanged since an earlier frame: same object, cheap to compare
            else:
                name = esper.try_component(ent, Name)
                view = self._persist[ent] = UnitView(
                    ent, x, y, hp.hp, hp.max_hp, team.side, in_cover,
                    name.label if name is not None else "",
                )
            self._views[ent] = view
        return view

    def unit(self, entity: int) -> UnitView | None:
        """The view of any unit (Position + Health + Team), or None."""
        view = self._views.get(entity)
        if view is not None:
            return view
        try:
            pos = esper.component_for_entity(entity, Position)
            hp = esper.component_for_entity(entity, Health)
            team = esper.component_for_entity(entity, Team)
        except KeyError:
            return None
        return self._view(entity, pos, hp, team)

    def leader_of(self, side: str) -> UnitView | None:
        """The leader of ``side`` (an entity with :class:`Leader` on that side), or None."""
        self._index()
        ent = self._leader_ids.get(side)
        return None if ent is None else self.unit(ent)

    def _sides_with(self, side: str, relation: Relation) -> tuple[str, ...]:
        """The sides in ``relation`` to ``side`` (ALLIED includes ``side`` itself, last),
        worked out once per frame and pair: every snapshot asks the same few questions."""
        key = (side, relation)
        found = self._relations.get(key)
        if found is None:
            rel = self.factions.relation
            others = [s for s in self._index() if s != side and rel(side, s) is relation]
            if relation is Relation.ALLIED:
                others.append(side)
            found = self._relations[key] = tuple(others)
        return found

    def _cells(self, side: str, alive: bool = False) -> CellIndex[_Raw]:
        """The spatial index of ``side``'s units (with ``alive``, of those with health left:
        the fallen of a long fight must not crowd the cells a search for live enemies reads),
        rebuilt when the side's membership changes or every ``_BUCKET_TTL_S`` (positions are
        read live at query time; a unit that falls meanwhile is filtered at query time)."""
        group = self._index().get(side, [])
        slot = (side, alive)
        built = self._buckets.get(slot)
        if built is None or built[0] is not group or self.t - built[1] >= _BUCKET_TTL_S:
            items = [u for u in group if _alive(u)] if alive else group
            slack = self.sensing.max_speed * _BUCKET_TTL_S  # how far a unit may walk meanwhile
            built = (group, self.t, CellIndex(items, _raw_pos, _raw_key, slack=slack))
            self._buckets[slot] = built
        return built[2]

    def nearest(
        self, me: UnitView, relation: Relation, k: int, radius: float,
        skip: frozenset[int] = frozenset(), alive: bool = False,
    ) -> list[UnitView]:
        """Up to ``k`` units of sides in ``relation`` to ``me``'s (ALLIED includes its own
        side), within ``radius`` tiles, nearest first; ``skip`` leaves entity ids out and
        ``alive`` the units with no health left (dead enemies must not crowd out live ones;
        downed allies stay, to be revived)."""
        sides = self._sides_with(me.team, relation)
        if not sides or k <= 0:
            return []
        view = self._view
        where = _alive if alive else None
        if len(sides) == 1:  # the usual case: no merging
            near = self._cells(sides[0], alive).nearest(me.x, me.y, radius, k, skip, where)
            return [view(e, p, h, t) for _, (e, (p, h, t)) in near]
        found: list[tuple[float, int, _Raw]] = []
        for side in sides:
            for d2, item in self._cells(side, alive).nearest(me.x, me.y, radius, k, skip, where):
                found.append((d2, item[0], item))
        found.sort(key=lambda f: (f[0], f[1]))
        return [view(e, p, h, t) for _, _, (e, (p, h, t)) in found[:k]]

    @staticmethod
    def _current_target(entity: int) -> int | None:
        intent = esper.try_component(entity, Intent)
        target = getattr(intent.step, "target_id", None) if intent is not None else None
        return target if isinstance(target, int) else None

    # -- one agent ----------------------------------------------------------------------

    def snapshot_for(self, entity: int) -> WorldSnapshot:
        """Build ``entity``'s snapshot. Raises :class:`MissingWorldPiece` naming what is
        missing when the entity lacks Position/Health/Team or the world has no MapGrid."""
        me = self.unit(entity)
        if me is None:
            raise MissingWorldPiece(missing_components(entity))
        sense = self.sensing
        agent = esper.try_component(entity, Agent)
        if agent is None or agent.leader is None:
            leader = self.leader_of(me.team)
        elif esper.entity_exists(agent.leader) and esper.has_component(agent.leader, Leader):
            leader = self.unit(agent.leader)
        else:
            leader = None  # its squad leader fell or was demoted: no leader until a new one
        lid = leader.id if leader is not None else -1
        radius = sense.radius if agent is None or agent.sense_radius is None \
            else agent.sense_radius
        enemies = self.nearest(me, Relation.HOSTILE, sense.max_enemies, radius, alive=True)
        target = self._current_target(entity)
        if target is not None and all(u.id != target for u in enemies):
            tv = self.unit(target)
            if tv is not None and tv.hp > 0 and self.factions.hostile(me.team, tv.team):
                enemies.append(tv)  # the one it is fighting stays in view, however far
        allies = tuple(self.nearest(me, Relation.ALLIED, sense.max_allies, radius,
                                    frozenset((entity, lid))))
        m = self.map
        ammo = esper.try_component(entity, Ammo)
        morale = esper.try_component(entity, Morale)
        orders = esper.try_component(entity, Orders)
        cds = esper.try_component(entity, Cooldowns)
        cooldowns = (
            MappingProxyType({k: max(0.0, v - self.t) for k, v in cds.ready_at.items()})
            if cds is not None
            else _NO_COOLDOWNS
        )
        return WorldSnapshot(
            t=self.t,
            me=me,
            leader=leader if leader is not None and leader.id != entity else None,
            enemies=tuple(enemies),
            allies=allies,
            grid=self.grid,
            pois=MappingProxyType(m.pois),
            objective=self.objective,
            neutrals=tuple(self.nearest(me, Relation.NEUTRAL, sense.max_neutrals, radius)),
            orders=orders.order if orders is not None else None,
            order_serial=orders.serial if orders is not None else 0,
            ammo=ammo.rounds if ammo is not None else 0,
            ammo_capacity=ammo.capacity if ammo is not None else 0,
            ammo_reserve=ammo.reserve if ammo is not None else 0,
            morale=morale.value if morale is not None else 1.0,
            cooldowns=cooldowns,
        )


class MissingWorldPiece(LookupError):
    """The world lacks something the plugin needs (a component on an agent, the MapGrid).

    The message names the entity or the component and how to add it."""


def missing_components(entity: int) -> str:
    """``"entity 3 is an Agent but has no Position, Team (every agent needs ...)"``."""
    lacking = [c.__name__ for c in REQUIRED if not esper.has_component(entity, c)]
    return (f"entity {entity} is an Agent but has no {', '.join(lacking) or 'unit view'} "
            f"(every agent needs {', '.join(c.__name__ for c in REQUIRED)}); it is skipped "
            "until it has them")


class PerceptionSystem(esper.Processor):
    """Points every Agent's Perception at this frame (and equips new agents).

    All perceptions share one :class:`PerceptionFrame`; advancing it is the whole per-frame
    cost, whatever the number of agents. Snapshots are built when something reads them.

    Only complete agents (``Agent`` with ``Position``, ``Health`` and ``Team``) get a
    Perception, so an incomplete one is skipped by the arbiter rather than breaking the frame;
    the log names each such entity once. Agents that come and go (an ``Agent`` removed from one
    entity and added to another in the same frame) are followed whenever an entity gains or
    loses ``Agent``, ``Position``, ``Health``, ``Team`` or ``Perception``; other components
    coming and going (a fight adds some every frame) cost a comparison of id sets. With no
    :class:`MapGrid` in the world nobody is perceived (one error names it); with no
    :class:`GameClock` time stands still at 0 (one warning).
    """

    def __init__(self, factions: Factions = DEFAULT_FACTIONS,
                 sensing: Sensing = DEFAULT_SENSING) -> None:
        self.factions = factions
        self.sensing = sensing
        self._grid_cache: dict[object, GridView] = {}
        self._memory = FrameMemory()
        self.frame: FrameView | None = None
        self.shared = PerceptionFrame()
        self._members = Membership(Agent, *REQUIRED, Perception)
        self._warned: set[object] = set()

    def process(self, *args: object, **kwargs: object) -> None:
        if not esper.get_component(GameClock):
            self._warn_once("clock", "no GameClock in the world: game time stands still at 0 "
                            "(add esper.create_entity(GameClock()) and advance its t)")
        t = game_time()
        frame = self.frame = FrameView(t, self._grid_cache, self._memory, self.factions,
                                       self.sensing)
        self.shared.advance(t, frame)
        # A frame in which no entity gained or lost one of these types (most frames, even in
        # a big fight, where what comes and goes is Dead, smoke, cover) costs five set
        # comparisons: nobody to adopt or drop.
        if not self._members.changed():
            return
        if not esper.get_component(MapGrid):
            self._warn_once("map", "no MapGrid in the world: agents are not perceived and do "
                            "nothing (add one entity with MapGrid(width, height, ...))",
                            logging.ERROR)
            self._members = Membership(*self._members.types)  # look again next frame
            return
        agents, pos, hp, team, perceived = self._members.sets()
        ok = agents & pos & hp & team
        grid = esper.get_component(MapGrid)[0][1]
        self._check_objective(grid)
        for ent in ok - perceived:
            self._adopt(ent, t)
            self._check_standing(ent, grid)
        for ent in perceived - ok:
            esper.remove_component(ent, Perception)  # no longer an agent, or incomplete
        if len(ok) != len(agents):
            for ent in agents - ok:
                self._warn_once(ent, missing_components(ent))
        if self._warned:
            self._warned.difference_update(ok)
        self._members.changed()  # what we just adopted and dropped is the new normal

    def _check_objective(self, grid: MapGrid) -> None:
        """An objective naming no point of interest is a typo the agents cannot show: they
        would just never head anywhere. Say so once."""
        o = grid.objective
        if o is not None and o.poi not in grid.pois:
            known = ", ".join(sorted(grid.pois)) or "none"
            self._warn_once(("objective", o.poi),
                            f"the MapGrid's objective names point of interest {o.poi!r}, which "
                            f"is not in its pois ({known}): agents have no objective")

    def _check_standing(self, ent: int, grid: MapGrid) -> None:
        """A new agent outside the map or inside a wall cannot path anywhere; say so once."""
        p = esper.component_for_entity(ent, Position)
        x, y = round(p.x), round(p.y)
        if not grid.in_bounds(x, y):
            self._warn_once(("standing", ent),
                            f"entity {ent} is an Agent at ({x}, {y}), outside the "
                            f"{grid.width}x{grid.height} MapGrid: it cannot walk anywhere")
        elif not grid.walkable(x, y):
            self._warn_once(("standing", ent),
                            f"entity {ent} is an Agent at ({x}, {y}), inside a wall of the "
                            "MapGrid: it cannot walk anywhere")

    def _warn_once(self, key: object, message: str, level: int = logging.WARNING) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.log(level, "%s", message)

    def _adopt(self, ent: int, t: float) -> None:
        """First sight of an agent: give it Perception, ArbiterState and Intent."""
        esper.add_component(ent, Perception(ent, self.shared))
        if not esper.has_component(ent, ArbiterState):
            # Spread periodic re-decisions so a crowd spawned together does not think in one frame.
            esper.add_component(ent, ArbiterState(mode_since=t, next_think_at=t,
                                                  think_phase=think_phase(ent)))
        if not esper.has_component(ent, Intent):
            esper.add_component(ent, Intent(issued_at=t))


def build_snapshot(entity: int, now: float | None = None) -> WorldSnapshot | None:
    """Snapshot of any entity with Position, Health and Team (enemies too), or None.

    Reuses the PerceptionSystem's frame when it is for the same time; hosts use this to give
    their own NPCs (e.g. behaviour-tree enemies) the same view our agents get.
    """
    t = game_time() if now is None else now
    system = esper.get_processor(PerceptionSystem)
    frame = system.frame if isinstance(system, PerceptionSystem) else None
    if frame is None or frame.t != t:
        if isinstance(system, PerceptionSystem):
            frame = FrameView(t, {}, factions=system.factions, sensing=system.sensing)
        else:
            frame = FrameView(t, {})
    try:
        return frame.snapshot_for(entity)
    except MissingWorldPiece:
        return None

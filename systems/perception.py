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

from esper_arbiter.components.agent import Agent, ArbiterState, Intent, Perception, PerceptionFrame
from esper_arbiter.components.factions import DEFAULT_FACTIONS, Factions, Relation
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

log = logging.getLogger("esper_arbiter.perception")

REQUIRED = (Position, Health, Team)
"""What every unit (and so every agent) must carry to be perceived."""

_NO_COOLDOWNS: MappingProxyType[str, float] = MappingProxyType({})
_CROWD = 32
"""Above this many friends, a snapshot lists only the nearby ones."""
_NEAR = 4
_MAX_NEAR = 8
_MAX_NEUTRALS = 8
"""Neutral units a snapshot lists (nearest first): enough to keep out of their way."""
_BUCKET_TTL_S = 0.25
"""Crowd bucket grids are rebuilt this often (units move < 1 tile meanwhile)."""
_RING = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1))
_Raw = tuple[int, tuple[Position, Health, Team]]


def game_time() -> float:
    """The current game time from the world's :class:`GameClock` (0.0 if there is none)."""
    for _, clock in esper.get_component(GameClock):
        return clock.t
    return 0.0


class FrameMemory:
    """What one frame may reuse from the previous ones: the side grouping (valid while
    esper's query cache is), and unit views whose values did not change. Reusing the same
    objects lets the arbiter see "nothing changed" with identity comparisons."""

    __slots__ = ("buckets", "hostiles", "sides", "views")

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[list[Any], float, dict[tuple[int, int], list[Any]]]] = {}
        self.sides: list[Any] = []
        self.views: dict[int, UnitView] = {}
        self.hostiles: dict[str, tuple[UnitView, ...]] = {}


class FrameView:
    """What every agent can know at time ``t``, computed on first use and shared."""

    def __init__(
        self,
        t: float,
        grid_cache: dict[object, GridView],
        memory: FrameMemory | None = None,
        factions: Factions = DEFAULT_FACTIONS,
    ) -> None:
        self.t = t
        self.factions = factions
        self._objective: tuple[ObjectiveView | None] | None = None
        self._grid_cache = grid_cache
        memory = memory if memory is not None else FrameMemory()
        self._side_cache = memory.sides
        self._persist = memory.views
        self._persist_hostiles = memory.hostiles
        self._grid: GridView | None = None
        self._map: MapGrid | None = None
        self._sides: dict[str, list[_Raw]] | None = None
        self._leader_ids: dict[str, int] = {}
        self._views: dict[int, UnitView] = {}
        self._hostile_to: dict[str, tuple[UnitView, ...]] = {}
        self._buckets = memory.buckets

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
            units = esper.get_components(Position, Health, Team)
            cached = self._side_cache
            if cached and cached[0] is units:
                # esper hands back the same list object until an entity or component is added
                # or removed, so the grouping is still right (Team is replaced, not mutated).
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

    def _sides_with(self, side: str, relation: Relation) -> list[str]:
        rel = self.factions.relation
        return [s for s in self._index() if s != side and rel(side, s) is relation]

    def hostiles_of(self, side: str) -> tuple[UnitView, ...]:
        """Every unit on a side hostile to ``side`` (shared by all agents of ``side`` this
        frame)."""
        found = self._hostile_to.get(side)
        if found is None:
            view = self._view
            index = self._index()
            found = tuple(
                view(e, p, h, t)
                for s in self._sides_with(side, Relation.HOSTILE)
                for e, (p, h, t) in index[s]
            )
            before = self._persist_hostiles.get(side)
            if before is not None and len(before) == len(found) and all(
                a is b for a, b in zip(before, found, strict=True)
            ):
                found = before  # nothing changed: keep the identical tuple
            else:
                self._persist_hostiles[side] = found
            self._hostile_to[side] = found
        return found

    def neutrals_near(self, me: UnitView) -> tuple[UnitView, ...]:
        """The nearest units of sides neutral to ``me``'s (at most ``_MAX_NEUTRALS``)."""
        index = self._index()
        sides = self._sides_with(me.team, Relation.NEUTRAL)
        if not sides:
            return ()
        view = self._view
        mx, my = me.x, me.y
        near = sorted(
            ((p.x - mx) ** 2 + (p.y - my) ** 2, e, p, h, t)
            for s in sides for e, (p, h, t) in index[s]
        )[:_MAX_NEUTRALS]
        return tuple(view(e, p, h, t) for _, e, p, h, t in near)

    def friends_near(self, me: UnitView) -> list[UnitView]:
        """Units on ``me``'s side and allied sides: all of them in small teams; in crowds, at
        most ``_MAX_NEAR`` within about ``2 * _NEAR`` tiles (from a bucket grid rebuilt every
        ``_BUCKET_TTL_S``), so snapshots and prompts stay local and cheap. The views
        themselves are always current."""
        index = self._index()
        allied = self._sides_with(me.team, Relation.ALLIED)
        group = index.get(me.team, [])
        if allied:
            group = [*group, *(item for s in allied for item in index[s])]
        view = self._view
        if len(group) <= _CROWD:
            return [view(e, p, h, t) for e, (p, h, t) in group]
        built = self._buckets.get(me.team)
        if built is None or (built[0] is not group and not allied) or (
            self.t - built[1] >= _BUCKET_TTL_S
        ):
            buckets: dict[tuple[int, int], list[_Raw]] = {}
            for item in group:
                pos = item[1][0]
                key = (int(pos.x) // _NEAR, int(pos.y) // _NEAR)
                b = buckets.get(key)
                if b is None:
                    buckets[key] = [item]
                else:
                    b.append(item)
            built = self._buckets[me.team] = (group, self.t, buckets)
        buckets = built[2]
        bx, by = me.x // _NEAR, me.y // _NEAR
        near: list[UnitView] = []
        for dx, dy in _RING:  # own bucket first, so the cap keeps the closest
            for e, (p, h, t) in buckets.get((bx + dx, by + dy), ()):
                near.append(view(e, p, h, t))
                if len(near) >= _MAX_NEAR:
                    return near
        return near

    # -- one agent ----------------------------------------------------------------------

    def snapshot_for(self, entity: int) -> WorldSnapshot:
        """Build ``entity``'s snapshot. Raises :class:`MissingWorldPiece` naming what is
        missing when the entity lacks Position/Health/Team or the world has no MapGrid."""
        me = self.unit(entity)
        if me is None:
            raise MissingWorldPiece(missing_components(entity))
        leader = self.leader_of(me.team)
        lid = leader.id if leader is not None else -1
        allies = tuple(u for u in self.friends_near(me) if u.id != entity and u.id != lid)
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
            enemies=self.hostiles_of(me.team),
            allies=allies,
            grid=self.grid,
            pois=MappingProxyType(m.pois),
            objective=self.objective,
            neutrals=self.neutrals_near(me),
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
    entity and added to another in the same frame) are followed whenever esper's component
    lists change. With no :class:`MapGrid` in the world nobody is perceived (one error names
    it); with no :class:`GameClock` time stands still at 0 (one warning).
    """

    def __init__(self, factions: Factions = DEFAULT_FACTIONS) -> None:
        self.factions = factions
        self._grid_cache: dict[object, GridView] = {}
        self._memory = FrameMemory()
        self.frame: FrameView | None = None
        self.shared = PerceptionFrame()
        self._seen: tuple[object, object] | None = None
        self._warned: set[object] = set()

    def process(self, *args: object, **kwargs: object) -> None:
        if not esper.get_component(GameClock):
            self._warn_once("clock", "no GameClock in the world: game time stands still at 0 "
                            "(add esper.create_entity(GameClock()) and advance its t)")
        t = game_time()
        frame = self.frame = FrameView(t, self._grid_cache, self._memory, self.factions)
        self.shared.advance(t, frame)
        agents = esper.get_component(Agent)
        complete = esper.get_components(Agent, *REQUIRED)
        # esper hands back the same list objects until a component is added or removed
        # anywhere, so a frame without churn costs two identity checks.
        if self._seen is not None and self._seen[0] is agents and self._seen[1] is complete:
            return
        if not esper.get_component(MapGrid):
            self._warn_once("map", "no MapGrid in the world: agents are not perceived and do "
                            "nothing (add one entity with MapGrid(width, height, ...))",
                            logging.ERROR)
            return
        ok = {e for e, _ in complete}
        for ent, _agent in agents:
            has = esper.has_component(ent, Perception)
            if ent in ok:
                if not has:
                    self._adopt(ent, t)
                self._warned.discard(ent)
            else:
                if has:
                    esper.remove_component(ent, Perception)
                self._warn_once(ent, missing_components(ent))
        for ent, _p in list(esper.get_component(Perception)):
            if not esper.has_component(ent, Agent):
                esper.remove_component(ent, Perception)  # no longer an agent
        self._seen = (esper.get_component(Agent), esper.get_components(Agent, *REQUIRED))

    def _warn_once(self, key: object, message: str, level: int = logging.WARNING) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.log(level, "%s", message)

    def _adopt(self, ent: int, t: float) -> None:
        """First sight of an agent: give it Perception, ArbiterState and Intent."""
        esper.add_component(ent, Perception(ent, self.shared))
        if not esper.has_component(ent, ArbiterState):
            # Spread periodic re-decisions so a crowd spawned together does not think in one frame.
            phase = (ent * 0.6180339887) % 1.0
            esper.add_component(ent, ArbiterState(mode_since=t, next_think_at=t, think_phase=phase))
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
        factions = system.factions if isinstance(system, PerceptionSystem) else DEFAULT_FACTIONS
        frame = FrameView(t, {}, factions=factions)
    try:
        return frame.snapshot_for(entity)
    except MissingWorldPiece:
        return None

"""PerceptionSystem: gives every Agent its view of the world for this frame.

A frame's shared facts (the grid, every unit's view) are gathered once, lazily, by a
:class:`FrameView`; each agent's :class:`~components.agent.Perception` points at it and builds
the agent's :class:`WorldSnapshot` only when something reads it. Busy agents therefore cost
almost nothing per frame, and a thousand agents thinking share one scan of the world.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import esper

from esper_arbiter.components.agent import Agent, ArbiterState, Intent, Perception, PerceptionFrame
from esper_arbiter.components.snapshot import GridView, UnitView, WorldSnapshot
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    GameClock,
    Health,
    InCover,
    MapGrid,
    Morale,
    Name,
    Orders,
    Player,
    Position,
    SmokeCloud,
    Team,
)

_NO_COOLDOWNS: MappingProxyType[str, float] = MappingProxyType({})
_CROWD = 32
"""Above this many friends, a snapshot lists only the nearby ones."""
_NEAR = 4
_MAX_NEAR = 8
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
    ) -> None:
        self.t = t
        self._grid_cache = grid_cache
        memory = memory if memory is not None else FrameMemory()
        self._side_cache = memory.sides
        self._persist = memory.views
        self._persist_hostiles = memory.hostiles
        self._grid: GridView | None = None
        self._map: MapGrid | None = None
        self._sides: dict[str, list[_Raw]] | None = None
        self._player_id: int | None = None
        self._views: dict[int, UnitView] = {}
        self._hostile_to: dict[str, tuple[UnitView, ...]] = {}
        self._buckets = memory.buckets

    # -- shared parts -------------------------------------------------------------------

    @property
    def map(self) -> MapGrid:
        if self._map is None:
            for _, m in esper.get_component(MapGrid):
                self._map = m
                break
            else:
                self._map = MapGrid(width=1, height=1)
        return self._map

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
            self._player_id = next((e for e, _ in esper.get_component(Player)), None)
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

    @property
    def player(self) -> UnitView | None:
        self._index()
        return None if self._player_id is None else self.unit(self._player_id)

    def hostiles_of(self, side: str) -> tuple[UnitView, ...]:
        """Every unit on another side (shared by all agents of ``side`` this frame)."""
        found = self._hostile_to.get(side)
        if found is None:
            view = self._view
            found = tuple(
                view(e, p, h, t)
                for s, group in self._index().items() if s != side
                for e, (p, h, t) in group
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

    def friends_near(self, me: UnitView) -> list[UnitView]:
        """Units on ``me``'s side: all of them in small teams; in crowds, at most ``_MAX_NEAR``
        within about ``2 * _NEAR`` tiles (from a bucket grid rebuilt every
        ``_BUCKET_TTL_S``), so snapshots and prompts stay local and cheap. The views
        themselves are always current."""
        group = self._index().get(me.team, [])
        view = self._view
        if len(group) <= _CROWD:
            return [view(e, p, h, t) for e, (p, h, t) in group]
        built = self._buckets.get(me.team)
        if built is None or built[0] is not group or self.t - built[1] >= _BUCKET_TTL_S:
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
        """Build ``entity``'s snapshot. Raises KeyError if it lacks Position/Health/Team."""
        me = self.unit(entity)
        if me is None:
            raise KeyError(f"entity {entity} has no Position, Health and Team")
        player = self.player
        pid = player.id if player is not None else -1
        allies = tuple(u for u in self.friends_near(me) if u.id != entity and u.id != pid)
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
            player=player,
            enemies=self.hostiles_of(me.team),
            allies=allies,
            grid=self.grid,
            pois=MappingProxyType(m.pois),
            objective=m.objective,
            orders=orders.order if orders is not None else None,
            order_serial=orders.serial if orders is not None else 0,
            ammo=ammo.rounds if ammo is not None else 0,
            ammo_capacity=ammo.capacity if ammo is not None else 0,
            ammo_reserve=ammo.reserve if ammo is not None else 0,
            morale=morale.value if morale is not None else 1.0,
            cooldowns=cooldowns,
        )


class PerceptionSystem(esper.Processor):
    """Points every Agent's Perception at this frame (and equips new agents).

    All perceptions share one :class:`PerceptionFrame`; advancing it is the whole per-frame
    cost, whatever the number of agents. Snapshots are built when something reads them.
    """

    def __init__(self) -> None:
        self._grid_cache: dict[object, GridView] = {}
        self._memory = FrameMemory()
        self.frame: FrameView | None = None
        self.shared = PerceptionFrame()

    def process(self, *args: object, **kwargs: object) -> None:
        t = game_time()
        frame = self.frame = FrameView(t, self._grid_cache, self._memory)
        self.shared.advance(t, frame)
        if len(esper.get_component(Agent)) != len(esper.get_component(Perception)):
            for ent, _agent in esper.get_component(Agent):
                if not esper.has_component(ent, Perception):
                    self._adopt(ent, t)

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
        frame = FrameView(t, {})
    try:
        return frame.snapshot_for(entity)
    except KeyError:
        return None

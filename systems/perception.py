"""PerceptionSystem: gives every Agent its view of the world for this frame.

A frame's shared facts (the grid, every unit's view) are gathered once, lazily, by a
:class:`FrameView`; each agent's :class:`~components.agent.Perception` points at it and builds
the agent's :class:`WorldSnapshot` only when something reads it. Busy agents therefore cost
almost nothing per frame, and a thousand agents thinking share one scan of the world.
"""

from __future__ import annotations

from types import MappingProxyType

import esper

from components.agent import Agent, ArbiterState, Intent, Perception
from components.snapshot import GridView, UnitView, WorldSnapshot
from components.world import (
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
_NEAR = 8


def game_time() -> float:
    """The current game time from the world's :class:`GameClock` (0.0 if there is none)."""
    for _, clock in esper.get_component(GameClock):
        return clock.t
    return 0.0


class FrameView:
    """What every agent can know at time ``t``, computed on first use and shared."""

    def __init__(self, t: float, grid_cache: dict[object, GridView]) -> None:
        self.t = t
        self._grid_cache = grid_cache
        self._grid: GridView | None = None
        self._map: MapGrid | None = None
        self._units: dict[int, UnitView] | None = None
        self._by_side: dict[str, tuple[UnitView, ...]] = {}
        self._hostile_to: dict[str, tuple[UnitView, ...]] = {}
        self._player: UnitView | None = None
        self._buckets: dict[str, dict[tuple[int, int], list[UnitView]]] = {}

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

    def _scan_units(self) -> dict[int, UnitView]:
        units: dict[int, UnitView] = {}
        sides: dict[str, list[UnitView]] = {}
        player_id = next((e for e, _ in esper.get_component(Player)), None)
        for ent, (pos, hp, team) in esper.get_components(Position, Health, Team):
            name = esper.try_component(ent, Name)
            view = UnitView(
                id=ent,
                x=int(round(pos.x)),
                y=int(round(pos.y)),
                hp=hp.hp,
                max_hp=hp.max_hp,
                team=team.side,
                in_cover=esper.has_component(ent, InCover),
                name=name.label if name is not None else "",
            )
            units[ent] = view
            if ent == player_id:
                self._player = view
            sides.setdefault(team.side, []).append(view)
        self._by_side = {side: tuple(vs) for side, vs in sides.items()}
        self._units = units
        return units

    def unit(self, entity: int) -> UnitView | None:
        units = self._units if self._units is not None else self._scan_units()
        return units.get(entity)

    def hostiles_of(self, side: str) -> tuple[UnitView, ...]:
        found = self._hostile_to.get(side)
        if found is None:
            if self._units is None:
                self._scan_units()
            found = tuple(
                u for s, views in self._by_side.items() if s != side for u in views
            )
            self._hostile_to[side] = found
        return found

    def friends_of(self, side: str) -> tuple[UnitView, ...]:
        if self._units is None:
            self._scan_units()
        return self._by_side.get(side, ())

    def _friends_near(self, me: UnitView) -> tuple[UnitView, ...]:
        """Friends within about ``_NEAR`` tiles of ``me`` (from a per-frame bucket grid)."""
        buckets = self._buckets.get(me.team)
        if buckets is None:
            buckets = {}
            for u in self.friends_of(me.team):
                buckets.setdefault((u.x // _NEAR, u.y // _NEAR), []).append(u)
            self._buckets[me.team] = buckets
        bx, by = me.x // _NEAR, me.y // _NEAR
        near: list[UnitView] = []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                near.extend(buckets.get((bx + dx, by + dy), ()))
        return tuple(near)

    # -- one agent ----------------------------------------------------------------------

    def snapshot_for(self, entity: int) -> WorldSnapshot:
        """Build ``entity``'s snapshot. Raises KeyError if it lacks Position/Health/Team."""
        me = self.unit(entity)
        if me is None:
            raise KeyError(f"entity {entity} has no Position, Health and Team")
        player = self._player
        friends = self.friends_of(me.team)
        pid = player.id if player is not None else -1
        if len(friends) > _CROWD:  # large crowds: keep the snapshot (and the prompt) local
            friends = self._friends_near(me)
        allies = tuple(u for u in friends if u.id != entity and u.id != pid)
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


class PerceptionSystem(esper.Processor):  # type: ignore[misc]
    """Refreshes each Agent's Perception (and gives new agents their AI components)."""

    def __init__(self) -> None:
        self._grid_cache: dict[object, GridView] = {}
        self.frame: FrameView | None = None

    def process(self, *args: object, **kwargs: object) -> None:
        t = game_time()
        frame = self.frame = FrameView(t, self._grid_cache)
        for ent, (_agent,) in esper.get_components(Agent):
            perception = esper.try_component(ent, Perception)
            if perception is None:
                self._adopt(ent, t, frame)
                continue
            perception.refresh(t, frame)

    @staticmethod
    def _adopt(ent: int, t: float, frame: FrameView) -> None:
        """First sight of an agent: give it Perception, ArbiterState and Intent."""
        esper.add_component(ent, Perception(ent, t, frame))
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
    frame = system.frame if system is not None else None
    if frame is None or frame.t != t:
        frame = FrameView(t, {})
    try:
        return frame.snapshot_for(entity)
    except KeyError:
        return None

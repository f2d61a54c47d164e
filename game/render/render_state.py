"""What the frame model keeps between frames, and the map coordinates it speaks in.

:class:`ViewState` is what the user chose to see (owned by the app), :class:`RenderMemory`
what the renderer remembers from frame to frame (each agent's last plan, cached walking
paths), and :class:`StatusPoller` asks the LLM service for its status at most a few times a
second. :func:`~game.render.model.build_frame` reads them; nothing here imports pygame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from esper_arbiter.components.actions import PlanIntent
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.components.world import MapGrid
from esper_arbiter.systems.llm.api import PlanService, ServiceStatus
from esper_arbiter.systems.planning.pathfinding import find_path

Point = tuple[float, float]
Tile = tuple[int, int]


@dataclass(slots=True)
class ViewState:
    """What the user chose to see: selection, toggles, overlays shown over the game."""

    selected: int | None = None
    overlays: bool = True
    show_help: bool = False
    show_start: bool = False
    paused: bool = False
    toast: str = ""
    fps: float = 0.0
    log_lines: int = 8
    """How many event-log lines the layout has room for."""


class RenderMemory:
    """What the renderer remembers between frames: each agent's last plan (shown greyed once it
    ended) and the walking paths of plan legs (computed once per plan, not per frame)."""

    def __init__(self, max_paths: int = 4096) -> None:
        self.last_plan: dict[int, PlanIntent] = {}
        self._paths: dict[tuple[Tile, Tile, int], tuple[Tile, ...] | None] = {}
        self._max_paths = max_paths
        self._grid: GridView | None = None
        self._grid_key: tuple[int, int, int, frozenset[Tile]] | None = None

    def movement_grid(self, m: MapGrid) -> GridView:
        """A walls-only GridView of ``m``, rebuilt only when the map changes."""
        key = (m.version, m.width, m.height, m.walls)
        if self._grid is None or key != self._grid_key:
            self._grid = GridView(m.width, m.height, m.walls, m.cover, (), m.version)
            self._grid_key = key
            self._paths.clear()
        return self._grid

    def path(self, grid: GridView, start: Tile, goal: Tile) -> tuple[Tile, ...] | None:
        key = (start, goal, grid.version)
        if key not in self._paths:
            if len(self._paths) >= self._max_paths:
                self._paths.clear()
            found = find_path(grid, start, goal)
            self._paths[key] = None if found is None else tuple(found)
        return self._paths[key]


class StatusPoller:
    """Calls ``service.status()`` at most once per ``interval_s`` of wall time (the HUD never
    asks per agent or per frame); ``refresh()`` forces the next call."""

    def __init__(
        self, service: PlanService | None, interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.clock = clock
        self.calls = 0
        self._last: ServiceStatus | None = None
        self._at = -math.inf

    def refresh(self) -> None:
        self._at = -math.inf

    def get(self) -> ServiceStatus | None:
        if self.service is None:
            return None
        now = self.clock()
        if self._last is None or now - self._at >= self.interval_s:
            try:
                self._last = self.service.status()
            except Exception as exc:  # a broken service must not take the HUD down
                self._last = ServiceStatus(
                    backend=getattr(self.service, "backend_name", "?"), online=False,
                    reason=f"status() failed: {exc}",
                )
            self._at = now
            self.calls += 1
        return self._last


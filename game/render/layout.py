"""Screen layout from the current window size: top bar, map, event log, side panels.

Recomputed whenever the window size changes, so a resize keeps everything readable: the map
gets the largest whole-pixel tile that fits, the side column keeps a readable width, and panels
that do not fit shrink (their content is clipped, never drawn over a neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass

import pygame

TOP_BAR_H = 34
PAD = 8
COMPACT_TILE = 22
"""Below this tile size per-unit names and mode text are hidden (rings and colours stay)."""


def body_radius(tile: int) -> int:
    """Pixel radius of a unit's body at this tile size."""
    return max(3, int(tile * 0.34))


def ring_radius(tile: int) -> int:
    """Pixel radius of the mode ring around an agent."""
    return body_radius(tile) + max(3, tile // 8)


def bar_height(tile: int) -> int:
    return max(2, tile // 11)


def bar_offset(tile: int) -> int:
    """Pixels from a unit's centre up to the top of its health bar (the mode label sits on
    top of it)."""
    return ring_radius(tile) + 3 + bar_height(tile)


@dataclass(frozen=True, slots=True)
class Layout:
    size: tuple[int, int]
    top: pygame.Rect
    map_area: pygame.Rect
    map_rect: pygame.Rect
    """The tiles themselves (centred in ``map_area``)."""
    tile: int
    log: pygame.Rect
    side: pygame.Rect
    agent: pygame.Rect
    plan: pygame.Rect
    llm: pygame.Rect
    timeline: pygame.Rect

    @property
    def compact(self) -> bool:
        return self.tile < COMPACT_TILE

    def to_px(self, x: float, y: float) -> tuple[int, int]:
        """Pixel centre of tile coordinates (x, y) (fractions allowed)."""
        t = self.tile
        return (int(self.map_rect.x + (x + 0.5) * t), int(self.map_rect.y + (y + 0.5) * t))


def compute_layout(size: tuple[int, int], map_w: int, map_h: int) -> Layout:
    """The layout for a window of ``size`` showing a ``map_w`` x ``map_h`` tile map."""
    w, h = max(320, size[0]), max(240, size[1])
    top = pygame.Rect(0, 0, w, TOP_BAR_H)
    side_w = max(300, min(460, int(w * 0.31)))
    if w - side_w < 240:
        side_w = max(200, w - 240)
    body_h = h - TOP_BAR_H
    log_h = max(96, min(190, int(body_h * 0.22)))
    map_area = pygame.Rect(PAD, TOP_BAR_H + PAD, w - side_w - 2 * PAD, body_h - log_h - 3 * PAD)
    label_room = 30
    tile = max(4, min(map_area.w // max(1, map_w),
                      (map_area.h - label_room) // max(1, map_h)))
    mw, mh = tile * map_w, tile * map_h
    # A map limited by the width leaves height over: the event log gets it.
    map_area.h = min(map_area.h, mh + label_room + PAD)
    map_rect = pygame.Rect(map_area.x + (map_area.w - mw) // 2,
                           map_area.y + label_room, mw, mh)
    log = pygame.Rect(PAD, map_area.bottom + PAD, map_area.w, h - map_area.bottom - 2 * PAD)
    side = pygame.Rect(w - side_w, TOP_BAR_H + PAD, side_w - PAD, body_h - 2 * PAD)
    # Side column: agent card, plan, LLM status, timeline. Fixed heights first; the plan gets
    # what is left; in a short window everything shrinks proportionally.
    want = {"agent": 212, "llm": 150, "timeline": 150}
    plan_min = 120
    gaps = 3 * PAD
    fixed = sum(want.values())
    avail = side.h - gaps
    if avail >= fixed + plan_min:
        heights = dict(want, plan=avail - fixed)
    else:
        scale = max(0.3, avail / (fixed + plan_min))
        heights = {k: int(v * scale) for k, v in want.items()}
        heights["plan"] = max(40, avail - sum(heights.values()))
    y = side.y
    rects: dict[str, pygame.Rect] = {}
    for key in ("agent", "plan", "llm", "timeline"):
        rects[key] = pygame.Rect(side.x, y, side.w, heights[key])
        y += heights[key] + PAD
    return Layout(
        size=(w, h), top=top, map_area=map_area, map_rect=map_rect, tile=tile, log=log,
        side=side, agent=rects["agent"], plan=rects["plan"], llm=rects["llm"],
        timeline=rects["timeline"],
    )

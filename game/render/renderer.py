"""One call per frame: build the frame model from a session and draw it onto a surface.

    renderer = Renderer()
    frame = renderer.render(surface, session, view, status)

The same code draws into the window and into an offscreen surface for headless screenshots.
"""

from __future__ import annotations

import time

import pygame

from esper_arbiter.game.render import theme
from esper_arbiter.game.render.fonts import Fonts
from esper_arbiter.game.render.hud import HudPainter
from esper_arbiter.game.render.layout import Layout, compute_layout
from esper_arbiter.game.render.model import FrameModel, build_frame
from esper_arbiter.game.render.overlays import OverlayPainter
from esper_arbiter.game.render.render_state import RenderMemory, ViewState
from esper_arbiter.game.render.world import WorldPainter
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import ServiceStatus


class Renderer:
    """Draws frames of one or more sessions (keeps fonts, sprites and plan memory)."""

    def __init__(self) -> None:
        self.fonts = Fonts()
        self.world = WorldPainter(self.fonts)
        self.overlays = OverlayPainter(self.fonts)
        self.hud = HudPainter(self.fonts)
        self.memory = RenderMemory()
        self._layout: Layout | None = None
        self._layout_key: tuple[int, int, int, int] | None = None

    def reset(self) -> None:
        """Forget per-round memory (a new session started)."""
        self.memory = RenderMemory()

    def layout(self, size: tuple[int, int], map_w: int, map_h: int) -> Layout:
        key = (size[0], size[1], map_w, map_h)
        if self._layout is None or key != self._layout_key:
            self._layout = compute_layout(size, map_w, map_h)
            self._layout_key = key
        return self._layout

    def render(
        self,
        surface: pygame.Surface,
        session: GameSession,
        view: ViewState,
        status: ServiceStatus | None,
        pulse: float | None = None,
    ) -> FrameModel:
        """Build the frame model from ``session`` and draw it; returns the model."""
        layout = self.layout(surface.get_size(), session.map.width, session.map.height)
        row = self.fonts.line_height(theme.SIZE_SMALL) + 1
        view.log_lines = max(1, (layout.log.h - 30) // row)
        frame = build_frame(session, view, status, self.memory)
        self.draw(surface, frame, layout, time.monotonic() % 1.0 if pulse is None else pulse)
        return frame

    def draw(self, surface: pygame.Surface, frame: FrameModel, layout: Layout,
             pulse: float = 0.0) -> None:
        scene, hud = frame.scene, frame.hud
        surface.fill(theme.BACKGROUND)
        surface.blit(self.world.background(scene, layout), layout.map_rect)
        pygame.draw.rect(surface, theme.PANEL_EDGE, layout.map_rect.inflate(2, 2), width=1)
        surface.set_clip(layout.map_area)
        self.overlays.draw_plans(surface, scene, layout)
        self.overlays.draw_sight(surface, scene, layout)
        self.world.draw_shots(surface, scene, layout)
        self.world.draw_units(surface, scene, layout)
        self.world.draw_smoke(surface, scene, layout)
        self.overlays.draw_badges(surface, scene, layout, pulse)
        self.world.draw_floats(surface, scene, layout)
        surface.set_clip(None)
        self.hud.draw(surface, hud, layout, pulse)
        if hud.banner is not None:
            self.hud.banner(surface, hud.banner.title, hud.banner.subtitle, hud.banner.color,
                            layout.map_area)
        elif hud.top.state == "PAUSED":
            self.hud.banner(surface, "PAUSED", "P: resume   H: help", theme.WARN,
                            layout.map_area)
        if hud.toast:
            self.hud.toast(surface, hud.toast, layout.map_area)
        if hud.show_start or hud.show_help:
            self.hud.card(surface, hud, layout, start=hud.show_start)

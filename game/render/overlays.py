"""Mode overlays: what the arbiter thinks, drawn on the map.

* a ring and a label over every AI agent in its mode's colour (GOAP blue, ``LLM 2/4`` green,
  BT amber) and a small thought bubble while its LLM request is in flight;
* the remaining steps of its plan: walking paths to MoveTo / TakeCover / Retreat targets, the
  smoke target with the cloud's radius, attack and support lines, each end numbered with its
  step so the map matches the plan panel; the active step solid, later ones dashed;
* lines of sight from the selected agent to the enemies it can shoot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pygame

from esper_arbiter.game.render import theme
from esper_arbiter.game.render.fonts import Fonts
from esper_arbiter.game.render.layout import Layout, bar_offset, ring_radius
from esper_arbiter.game.render.scene_model import AgentPlan, PlanMark, SceneModel, UnitModel
from esper_arbiter.game.render.theme import RGB

Pixel = tuple[int, int]


def dashed_line(
    surface: pygame.Surface, color: RGB, a: Pixel, b: Pixel, width: int = 1,
    dash: int = 7, gap: int = 5,
) -> None:
    """A dashed straight line from ``a`` to ``b``."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if length < 1:
        return
    ux, uy = dx / length, dy / length
    pos = 0.0
    while pos < length:
        end = min(length, pos + dash)
        pygame.draw.line(
            surface, color, (a[0] + ux * pos, a[1] + uy * pos), (a[0] + ux * end, a[1] + uy * end),
            width,
        )
        pos = end + gap


def dashed_circle(surface: pygame.Surface, color: RGB, c: Pixel, r: int, width: int = 1,
                  segments: int = 16) -> None:
    rect = pygame.Rect(c[0] - r, c[1] - r, 2 * r, 2 * r)
    step = 2 * math.pi / segments
    for i in range(segments):
        a0 = i * step
        pygame.draw.arc(surface, color, rect, a0, a0 + step * 0.6, width)


class OverlayPainter:
    """Draws the mode overlays of a scene (see module docstring)."""

    def __init__(self, fonts: Fonts) -> None:
        self.fonts = fonts
        self._rings: dict[tuple[RGB, int, int], pygame.Surface] = {}

    # -- plans ---------------------------------------------------------------------------

    def draw_plans(self, surface: pygame.Surface, scene: SceneModel, layout: Layout) -> None:
        """Every agent's remaining plan; the selected agent's last so it lies on top."""
        if not scene.overlays:
            return
        for plan in sorted(scene.plans, key=lambda p: p.selected):
            self._plan(surface, plan, layout)

    def _plan(self, surface: pygame.Surface, plan: AgentPlan, layout: Layout) -> None:
        detailed = plan.selected or not layout.compact
        base = plan.color
        for mark in plan.marks:
            color = base if mark.active else theme.dim(base, 0.7)
            if not detailed:
                color = theme.dim(base, 0.55)
            width = 3 if (mark.active and detailed and layout.tile >= 20) else (
                2 if detailed else 1)
            self._mark(surface, mark, layout, color, width, detailed)
        if detailed:
            for mark in plan.marks:
                if mark.step > 0:
                    end = layout.to_px(*mark.points[-1])
                    if mark.kind == "smoke":
                        # number beside the cloud's centre, not on it
                        end = (end[0], end[1] - int(mark.radius * layout.tile) - 2)
                    self._step_number(surface, mark.step, end, base, mark.active, layout)

    def _mark(self, surface: pygame.Surface, mark: PlanMark, layout: Layout, color: RGB,
              width: int, detailed: bool) -> None:
        pts = [layout.to_px(x, y) for x, y in mark.points]
        t = layout.tile
        if mark.kind in ("path", "cover", "retreat"):
            if mark.active:
                if len(pts) >= 2:
                    pygame.draw.lines(surface, color, False, pts, width)
            else:
                for a, b in itertools.pairwise(pts):
                    dashed_line(surface, color, a, b, width, dash=max(4, t // 4),
                                gap=max(3, t // 6))
            end = pts[-1]
            if not detailed:
                return
            r = max(3, t // 4)
            if mark.kind == "cover":
                shield = [(end[0] - r, end[1] - r), (end[0] + r, end[1] - r),
                          (end[0] + r, end[1]), (end[0], end[1] + r), (end[0] - r, end[1])]
                pygame.draw.polygon(surface, color, shield, 2)
            elif mark.kind == "retreat":
                pygame.draw.polygon(surface, color, [(end[0], end[1] + r),
                                                     (end[0] - r, end[1] - r),
                                                     (end[0] + r, end[1] - r)], 2)
            else:
                pygame.draw.circle(surface, color, end, r, 2)
                pygame.draw.circle(surface, color, end, max(1, r // 3))
        elif mark.kind == "smoke":
            a, b = pts[0], pts[-1]
            dashed_line(surface, theme.dim(theme.SMOKE, 0.8), a, b, 1, dash=4, gap=4)
            if detailed:
                dashed_circle(surface, color, b, max(4, int(mark.radius * t)), 2)
                pygame.draw.circle(surface, theme.SMOKE, b, max(2, t // 8))
        elif mark.kind in ("attack", "approach", "support"):
            a, b = pts[0], pts[-1]
            line = {"attack": theme.ATTACK_LINE, "support": theme.SUPPORT_LINE}.get(
                mark.kind, color)
            if not mark.active:
                line = theme.dim(line, 0.7)
            if not detailed:
                pygame.draw.line(surface, theme.dim(line, 0.6), a, b, 1)
                return
            dashed_line(surface, line, a, b, 2 if mark.active else 1, dash=max(5, t // 3),
                        gap=max(3, t // 5))
            r = max(5, int(t * 0.45))
            if mark.kind == "attack":
                pygame.draw.circle(surface, line, b, r, 2)
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    pygame.draw.line(surface, line, (b[0] + dx * (r - 3), b[1] + dy * (r - 3)),
                                     (b[0] + dx * (r + 4), b[1] + dy * (r + 4)), 2)
            elif mark.kind == "support":
                k = max(3, r // 2)
                pygame.draw.line(surface, line, (b[0] - k, b[1] - r - 4),
                                 (b[0] + k, b[1] - r - 4), 3)
                pygame.draw.line(surface, line, (b[0], b[1] - r - 4 - k),
                                 (b[0], b[1] - r - 4 + k), 3)

    def _step_number(self, surface: pygame.Surface, n: int, at: Pixel, color: RGB,
                     active: bool, layout: Layout) -> None:
        r = max(7, min(10, layout.tile // 4))
        c = (at[0] + r, at[1] - r)
        pygame.draw.circle(surface, theme.OUTLINE, c, r + 1)
        pygame.draw.circle(surface, color if active else theme.dim(color, 0.75), c, r)
        self.fonts.blit(surface, str(n), theme.SIZE_TINY, theme.OUTLINE, (c[0], c[1] + 1),
                        anchor="center")

    # -- sight ---------------------------------------------------------------------------

    def draw_sight(self, surface: pygame.Surface, scene: SceneModel, layout: Layout) -> None:
        for a, b in scene.sight:
            dashed_line(surface, theme.SIGHT, layout.to_px(*a), layout.to_px(*b), 1, 3, 5)

    # -- badges --------------------------------------------------------------------------

    def _ring(self, color: RGB, radius: int, width: int) -> pygame.Surface:
        key = (color, radius, width)
        ring = self._rings.get(key)
        if ring is None:
            size = 2 * radius + 4
            ring = pygame.Surface((size, size), pygame.SRCALPHA)
            c = (size // 2, size // 2)
            pygame.draw.circle(ring, (*theme.OUTLINE, 200), c, radius + 1, width + 2)
            pygame.draw.circle(ring, color, c, radius, width)
            self._rings[key] = ring
        return ring

    def draw_badges(self, surface: pygame.Surface, scene: SceneModel, layout: Layout,
                    pulse: float) -> None:
        """Rings and labels over AI agents; ``pulse`` (0..1) animates the in-flight bubble."""
        if not scene.overlays:
            for u in scene.units:
                if u.selected:
                    self._selection(surface, u, layout)
            return
        t = layout.tile
        ring_r = ring_radius(t)
        width = 3 if t >= 20 else 2
        labelled: Sequence[UnitModel] = [u for u in scene.units if u.badge is not None]
        for u in labelled:
            assert u.badge is not None
            ring = self._ring(u.badge.color, ring_r, width)
            c = layout.to_px(u.x, u.y)
            surface.blit(ring, ring.get_rect(center=c))
        for u in sorted(labelled, key=lambda v: v.selected):
            assert u.badge is not None
            c = layout.to_px(u.x, u.y)
            if u.selected:
                self._selection(surface, u, layout)
            show_text = u.selected or not layout.compact
            top = c[1] - bar_offset(t) - 3
            if show_text:
                pill = self._pill(surface, u.badge.label, u.badge.color, (c[0], top))
                if u.badge.in_flight:
                    self._thinking(surface, (pill.right + 2, pill.top - 2), pulse,
                                   u.badge.color)
            elif u.badge.in_flight:
                pygame.draw.circle(surface, theme.IN_FLIGHT, (c[0] + ring_r, c[1] - ring_r), 2)

    def _pill(self, surface: pygame.Surface, text: str, color: RGB, midbottom: Pixel
              ) -> pygame.Rect:
        img = self.fonts.text(text, theme.SIZE_TINY, theme.OUTLINE)
        rect = img.get_rect()
        box = rect.inflate(10, 4)
        box.midbottom = midbottom
        pygame.draw.rect(surface, theme.OUTLINE, box.inflate(2, 2), border_radius=6)
        pygame.draw.rect(surface, color, box, border_radius=5)
        rect.center = (box.centerx, box.centery + 1)
        surface.blit(img, rect)
        return box

    @staticmethod
    def _thinking(surface: pygame.Surface, at: Pixel, pulse: float, color: RGB) -> None:
        """A small thought bubble with three dots; the dots light up in turn."""
        w, h = 20, 11
        box = pygame.Rect(at[0], at[1] - h + 4, w, h)
        pygame.draw.rect(surface, theme.OUTLINE, box.inflate(2, 2), border_radius=6)
        pygame.draw.rect(surface, theme.IN_FLIGHT, box, border_radius=5)
        pygame.draw.circle(surface, theme.IN_FLIGHT, (box.x + 1, box.bottom + 1), 2)
        lit = int(pulse * 3) % 3
        for i in range(3):
            col = theme.OUTLINE if i == lit else theme.dim(color, 0.6)
            pygame.draw.circle(surface, col, (box.x + 5 + i * 5, box.centery), 2)

    @staticmethod
    def _selection(surface: pygame.Surface, u: UnitModel, layout: Layout) -> None:
        """Corner brackets around the selected unit."""
        c = layout.to_px(u.x, u.y)
        half = ring_radius(layout.tile) + 4
        k = max(3, half // 3)
        x0, y0, x1, y1 = c[0] - half, c[1] - half, c[0] + half, c[1] + half
        for (x, y, sx, sy) in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1),
                               (x1, y1, -1, -1)):
            pygame.draw.line(surface, theme.SELECTED, (x, y), (x + sx * k, y), 2)
            pygame.draw.line(surface, theme.SELECTED, (x, y), (x, y + sy * k), 2)

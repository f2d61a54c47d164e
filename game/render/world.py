"""Drawing the world: tiles, walls, cover, the breach door, units, bars, shots, smoke, numbers.

Static things (floor, walls, cover, door) are drawn once per layout into a background surface
and blitted each frame; units are cached sprites per size; smoke clouds are cached translucent
discs per radius and fade level. This keeps a 400-unit stress map well inside a frame budget.
"""

from __future__ import annotations

import math

import pygame

from esper_arbiter.game.render import theme
from esper_arbiter.game.render.fonts import Fonts
from esper_arbiter.game.render.layout import Layout, bar_height, bar_offset, body_radius
from esper_arbiter.game.render.scene_model import SceneModel, UnitModel
from esper_arbiter.game.render.theme import RGB

SMOKE_LEVELS = 8


class _BarGeometry:
    """Health bar size and place for one tile size (computed once per frame)."""

    __slots__ = ("height", "offset", "width")

    def __init__(self, tile: int) -> None:
        self.width = max(8, int(tile * 0.7))
        self.height = bar_height(tile)
        self.offset = bar_offset(tile)


class WorldPainter:
    """Draws a :class:`~game.render.model.SceneModel` into the map area of a layout."""

    def __init__(self, fonts: Fonts) -> None:
        self.fonts = fonts
        self._bg: pygame.Surface | None = None
        self._bg_key: tuple[object, ...] | None = None
        self._sprites: dict[tuple[str, int], pygame.Surface] = {}
        self._smoke: dict[tuple[int, int], pygame.Surface] = {}

    # -- static background ---------------------------------------------------------------

    def background(self, scene: SceneModel, layout: Layout) -> pygame.Surface:
        """The map's static layer for this layout (rebuilt when the layout or map changes)."""
        key = (layout.map_rect.size, layout.tile, scene.width, scene.height, scene.walls,
               scene.cover, tuple(sorted(scene.pois.items())))
        if self._bg is not None and key == self._bg_key:
            return self._bg
        t = layout.tile
        surf = pygame.Surface(layout.map_rect.size)
        surf.fill(theme.FLOOR)
        for y in range(scene.height):
            for x in range((y % 2), scene.width, 2):
                surf.fill(theme.FLOOR_ALT, (x * t, y * t, t, t))
        if t >= 10:
            for x in range(scene.width + 1):
                surf.fill(theme.GRID_LINE, (x * t, 0, 1, scene.height * t))
            for y in range(scene.height + 1):
                surf.fill(theme.GRID_LINE, (0, y * t, scene.width * t, 1))
        for (x, y) in scene.cover:
            self._cover(surf, x * t, y * t, t)
        for (x, y) in sorted(scene.walls, key=lambda p: (p[1], p[0])):
            self._wall(surf, x * t, y * t, t, (x, y + 1) in scene.walls)
        for name, (x, y) in scene.pois.items():
            self._poi(surf, name, x * t, y * t, t, (x, y) == scene.exit_tile)
        self._bg, self._bg_key = surf, key
        return surf

    @staticmethod
    def _wall(surf: pygame.Surface, px: int, py: int, t: int, wall_below: bool) -> None:
        surf.fill(theme.WALL, (px, py, t, t))
        edge = max(1, t // 8)
        surf.fill(theme.WALL_TOP, (px, py, t, edge))
        if not wall_below:
            surf.fill(theme.WALL_SHADOW, (px, py + t - edge, t, edge))
        if t >= 16:
            mid = py + t // 2
            surf.fill(theme.WALL_SHADOW, (px, mid, t, 1))
            surf.fill(theme.WALL_SHADOW, (px + t // 2, py + edge, 1, t // 2 - edge))
            surf.fill(theme.WALL_SHADOW, (px + t // 4, mid, 1, t // 2 - edge))

    @staticmethod
    def _cover(surf: pygame.Surface, px: int, py: int, t: int) -> None:
        m = max(1, t // 6)
        body = pygame.Rect(px + m, py + t // 3, t - 2 * m, t - t // 3 - m)
        pygame.draw.rect(surf, theme.COVER_EDGE, body, border_radius=max(1, t // 8))
        inner = body.inflate(-2, -2)
        pygame.draw.rect(surf, theme.COVER, inner, border_radius=max(1, t // 8))
        surf.fill(theme.COVER_TOP, (inner.x + 1, inner.y, inner.w - 2, max(1, t // 12)))
        if t >= 16:
            # sandbag seams
            for k in (1, 2):
                sx = inner.x + inner.w * k // 3
                surf.fill(theme.COVER_EDGE, (sx, inner.y + 2, 1, inner.h - 3))

    def _poi(self, surf: pygame.Surface, name: str, px: int, py: int, t: int,
             is_exit: bool) -> None:
        color = theme.DOOR if is_exit else theme.HEADING
        rect = pygame.Rect(px + 1, py + 1, t - 2, t - 2)
        pygame.draw.rect(surf, theme.DOOR_DARK if is_exit else theme.PANEL, rect,
                         border_radius=max(1, t // 6))
        pygame.draw.rect(surf, color, rect, width=max(1, t // 12), border_radius=max(1, t // 6))
        if t >= 16:
            label = t >= 30
            door = pygame.Rect(0, 0, t // 2, int(t * (0.5 if label else 0.62)))
            door.center = (rect.centerx, rect.centery - (t // 8 if label else 0))
            pygame.draw.rect(surf, color, door, width=max(1, t // 16))
            pygame.draw.circle(surf, color, (door.right - max(2, t // 10), door.centery),
                               max(1, t // 20))
            if label:
                size = max(theme.SIZE_TINY - 3, min(theme.SIZE_BODY, t // 3))
                self.fonts.blit(surf, "EXIT" if is_exit else name, size, color,
                                (rect.centerx, rect.bottom - 1), anchor="midbottom",
                                max_width=rect.w - 2)

    # -- units ---------------------------------------------------------------------------

    def _sprite(self, kind: str, radius: int) -> pygame.Surface:
        key = (kind, radius)
        sprite = self._sprites.get(key)
        if sprite is not None:
            return sprite
        fill, rim = {
            "player": (theme.PLAYER, theme.PLAYER_RIM),
            "companion": (theme.COMPANION, theme.COMPANION_RIM),
            "enemy": (theme.ENEMY, theme.ENEMY_RIM),
            "downed": (theme.DOWNED, theme.DEAD),
            "dead": (theme.DEAD, theme.OUTLINE),
        }[kind]
        size = 2 * radius + 4
        sprite = pygame.Surface((size, size), pygame.SRCALPHA)
        c = (size // 2, size // 2)
        pygame.draw.circle(sprite, theme.OUTLINE, c, radius + 1)
        pygame.draw.circle(sprite, rim, c, radius)
        pygame.draw.circle(sprite, fill, c, max(1, radius - max(1, radius // 4)))
        if kind == "player" and radius >= 6:
            _star(sprite, theme.PLAYER_RIM, c, radius * 0.45)
        elif kind == "enemy" and radius >= 6:
            r = max(2, radius // 3)
            pygame.draw.line(sprite, theme.ENEMY_RIM, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r),
                             2)
            pygame.draw.line(sprite, theme.ENEMY_RIM, (c[0] - r, c[1] + r), (c[0] + r, c[1] - r),
                             2)
        elif kind == "companion" and radius >= 6:
            pygame.draw.circle(sprite, theme.COMPANION_RIM, c, max(2, radius // 3))
        elif kind == "dead":
            r = max(2, radius // 2)
            pygame.draw.line(sprite, theme.TEXT_FAINT, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r),
                             2)
            pygame.draw.line(sprite, theme.TEXT_FAINT, (c[0] - r, c[1] + r), (c[0] + r, c[1] - r),
                             2)
        self._sprites[key] = sprite
        return sprite

    def unit_radius(self, layout: Layout) -> int:
        return body_radius(layout.tile)

    def draw_units(self, surface: pygame.Surface, scene: SceneModel, layout: Layout) -> None:
        """Bodies, health and ammo bars, timed-step progress, names (dead ones first).

        On a small-tile (crowded) map a full health bar is left out: only the hurt show one.
        """
        r = self.unit_radius(layout)
        t = layout.tile
        compact = layout.compact
        bars = _BarGeometry(t)
        order = sorted(scene.units, key=lambda u: (not u.dead, u.role == "player", u.selected))
        sprites = {kind: self._sprite(kind, r) for kind in
                   ("dead", "downed", "player", "companion", "enemy")}
        half = sprites["dead"].get_width() // 2
        to_px = layout.to_px
        for u in order:
            cx, cy = to_px(u.x, u.y)
            kind = "dead" if u.dead else "downed" if u.downed else u.role
            surface.blit(sprites[kind], (cx - half, cy - half))
            if u.dead:
                continue
            if u.in_cover and t >= 10:
                pygame.draw.arc(surface, theme.COVER_TOP,
                                (cx - r - 3, cy - r - 3, 2 * r + 6, 2 * r + 6),
                                math.radians(200), math.radians(340), 2)
            if not compact or u.selected or u.hp < u.max_hp:
                self._bars(surface, u, cx, cy, r, t, bars)
            if u.downed:
                self._downed(surface, u, cx, cy, r)
            # AI agents carry their mode label instead of a name (the HUD names them)
            if not compact and (u.badge is None or not scene.overlays):
                self.fonts.blit(surface, u.name, theme.SIZE_TINY, theme.TEXT_DIM,
                                (cx, cy + r + 3), anchor="midtop")

    @staticmethod
    def _bars(surface: pygame.Surface, u: UnitModel, cx: int, cy: int, r: int, t: int,
              g: _BarGeometry) -> None:
        bw, bh = g.width, g.height
        x0 = cx - bw // 2
        y0 = cy - g.offset
        frac = 0.0 if u.max_hp <= 0 else max(0.0, min(1.0, u.hp / u.max_hp))
        surface.fill(theme.OUTLINE, (x0 - 1, y0 - 1, bw + 2, bh + 2))
        surface.fill(theme.HP_BACK, (x0, y0, bw, bh))
        surface.fill(theme.hp_color(frac), (x0, y0, int(bw * frac), bh))
        if u.capacity > 0 and t >= 12:
            ah = max(1, bh // 2)
            af = max(0.0, min(1.0, u.ammo / u.capacity))
            surface.fill(theme.OUTLINE, (x0 - 1, y0 + bh + 1, bw + 2, ah + 1))
            surface.fill(theme.AMMO if u.ammo > 0 else theme.BAD,
                         (x0, y0 + bh + 1, max(1, int(bw * af)) if u.ammo else bw, ah))
        if u.progress >= 0.0 and t >= 12:
            rect = pygame.Rect(cx - r - 2, cy - r - 2, 2 * r + 4, 2 * r + 4)
            end = math.pi / 2
            start = end - 2 * math.pi * max(0.02, u.progress)
            pygame.draw.arc(surface, theme.PROGRESS, rect, start, end, 2)

    def _downed(self, surface: pygame.Surface, u: UnitModel, cx: int, cy: int, r: int) -> None:
        rect = pygame.Rect(cx - r - 3, cy - r - 3, 2 * r + 6, 2 * r + 6)
        end = math.pi / 2
        pygame.draw.arc(surface, theme.WARN, rect, end - 2 * math.pi * max(0.02, u.bleed_out),
                        end, 2)
        k = max(2, r // 2)
        pygame.draw.line(surface, theme.HEAL_TEXT, (cx - k, cy), (cx + k, cy), 2)
        pygame.draw.line(surface, theme.HEAL_TEXT, (cx, cy - k), (cx, cy + k), 2)

    # -- effects -------------------------------------------------------------------------

    def draw_shots(self, surface: pygame.Surface, scene: SceneModel, layout: Layout) -> None:
        for s in scene.shots:
            a = layout.to_px(s.x, s.y)
            b = layout.to_px(s.tx, s.ty)
            fade = 1.0 - s.age
            if s.hit:
                color = theme.mix(theme.FLOOR, theme.SHOT_HIT, fade)
                pygame.draw.line(surface, color, a, b, 2)
                pygame.draw.circle(surface, color, b, max(2, layout.tile // 8))
            else:
                color = theme.mix(theme.FLOOR, theme.SHOT_MISS, fade)
                # a miss flies past the target a little
                dx, dy = b[0] - a[0], b[1] - a[1]
                end = (int(b[0] + dx * 0.15), int(b[1] + dy * 0.15))
                pygame.draw.line(surface, color, a, end, 1)

    def draw_smoke(self, surface: pygame.Surface, scene: SceneModel, layout: Layout) -> None:
        clip = surface.get_clip()
        surface.set_clip(layout.map_rect)
        for c in scene.smoke:
            radius_px = max(4, int((c.radius + 0.5) * layout.tile))
            level = max(1, min(SMOKE_LEVELS, round(c.alpha * SMOKE_LEVELS)))
            puff = self._smoke_sprite(radius_px, level)
            surface.blit(puff, puff.get_rect(center=layout.to_px(c.x, c.y)))
        surface.set_clip(clip)

    def _smoke_sprite(self, radius: int, level: int) -> pygame.Surface:
        key = (radius, level)
        sprite = self._smoke.get(key)
        if sprite is None:
            if len(self._smoke) > 256:
                self._smoke.clear()
            size = 2 * radius + 2
            sprite = pygame.Surface((size, size), pygame.SRCALPHA)
            strength = level / SMOKE_LEVELS
            c = size // 2
            # soft edge: a few concentric discs, denser towards the centre, plus lumps
            for k, (frac, alpha) in enumerate(((1.0, 70), (0.82, 80), (0.62, 90), (0.4, 70))):
                col = (*theme.mix(theme.SMOKE, (150, 156, 170), k / 4), int(alpha * strength))
                pygame.draw.circle(sprite, col, (c, c), max(1, int(radius * frac)))
            lump = max(2, radius // 3)
            for ang in range(0, 360, 60):
                ox = int(math.cos(math.radians(ang + 15)) * radius * 0.55)
                oy = int(math.sin(math.radians(ang + 15)) * radius * 0.55)
                pygame.draw.circle(sprite, (*theme.SMOKE, int(40 * strength)), (c + ox, c + oy),
                                   lump)
            self._smoke[key] = sprite
        return sprite

    def draw_floats(self, surface: pygame.Surface, scene: SceneModel, layout: Layout) -> None:
        size = theme.SIZE_BODY if layout.tile >= 24 else theme.SIZE_TINY
        for f in scene.floats:
            cx, cy = layout.to_px(f.x, f.y)
            # start above the unit's bars and mode label, then drift up
            rise = int(f.age * layout.tile * 0.8) + bar_offset(layout.tile) + 16
            color: RGB = theme.mix(f.color, theme.FLOOR, max(0.0, f.age - 0.4) / 0.6)
            shadow = self.fonts.text(f.text, size, theme.OUTLINE)
            img = self.fonts.text(f.text, size, color)
            rect = img.get_rect(midbottom=(cx, cy - rise))
            surface.blit(shadow, rect.move(1, 1))
            surface.blit(img, rect)


def _star(surf: pygame.Surface, color: RGB, c: tuple[int, int], r: float) -> None:
    pts = []
    for i in range(10):
        ang = -math.pi / 2 + i * math.pi / 5
        rr = r if i % 2 == 0 else r * 0.45
        pts.append((c[0] + math.cos(ang) * rr, c[1] + math.sin(ang) * rr))
    pygame.draw.polygon(surf, color, pts)

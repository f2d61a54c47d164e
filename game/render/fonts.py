"""Text for the front end: pygame's bundled default font, with rendered lines cached.

``pygame.font.Font(None, size)`` is the font that ships inside pygame, so nothing is fetched
and every machine draws the same glyphs. Rendering text is the most expensive thing a HUD does;
the same label (``GOAP``, ``LLM 2/4``, a plan step) is drawn every frame, so each rendered line
is kept and re-blitted.
"""

from __future__ import annotations

import pygame

from esper_arbiter.game.render.theme import RGB


class Fonts:
    """Font objects by size and a bounded cache of rendered text surfaces."""

    def __init__(self, max_cached: int = 3000) -> None:
        if not pygame.font.get_init():
            pygame.font.init()
        self._fonts: dict[int, pygame.font.Font] = {}
        self._cache: dict[tuple[str, int, RGB], pygame.Surface] = {}
        self._max = max_cached

    def font(self, size: int) -> pygame.font.Font:
        f = self._fonts.get(size)
        if f is None:
            f = pygame.font.Font(None, size)
            self._fonts[size] = f
        return f

    def text(self, s: str, size: int, color: RGB) -> pygame.Surface:
        """``s`` rendered (anti-aliased, transparent background) in ``color``."""
        key = (s, size, color)
        surf = self._cache.get(key)
        if surf is None:
            if len(self._cache) >= self._max:
                self._cache.clear()
            surf = self.font(size).render(s, True, color)
            self._cache[key] = surf
        return surf

    def line_height(self, size: int) -> int:
        return int(self.font(size).get_linesize())

    def width(self, s: str, size: int) -> int:
        return int(self.font(size).size(s)[0])

    def fit(self, s: str, size: int, width: int) -> str:
        """``s``, cut with ``...`` so it fits in ``width`` pixels."""
        if width <= 0:
            return ""
        if self.width(s, size) <= width:
            return s
        lo, hi = 0, len(s)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(s[:mid] + "...", size) <= width:
                lo = mid
            else:
                hi = mid - 1
        return s[:lo].rstrip() + "..." if lo else ""

    def wrap(self, s: str, size: int, width: int, max_lines: int = 3) -> list[str]:
        """``s`` broken into lines of at most ``width`` pixels (the last one cut with ``...``)."""
        words = s.split()
        lines: list[str] = []
        current = ""
        for i, word in enumerate(words):
            trial = f"{current} {word}" if current else word
            if self.width(trial, size) <= width or not current:
                current = trial
                continue
            lines.append(current)
            current = word
            if len(lines) == max_lines - 1:
                current = " ".join(words[i:])
                break
        if current:
            lines.append(current)
        return [self.fit(line, size, width) for line in lines[:max_lines]]

    def blit(
        self, surface: pygame.Surface, s: str, size: int, color: RGB, pos: tuple[int, int],
        *, anchor: str = "topleft", max_width: int | None = None,
    ) -> pygame.Rect:
        """Draw ``s`` with its ``anchor`` point (a pygame.Rect attribute name) at ``pos``."""
        if max_width is not None:
            s = self.fit(s, size, max_width)
        if not s:
            return pygame.Rect(pos, (0, 0))
        img = self.text(s, size, color)
        rect = img.get_rect(**{anchor: pos})
        surface.blit(img, rect)
        return rect

"""HUD panels drawn from a :class:`~esper_arbiter.game.render.model.HudModel`.

Top bar (round, time, state), the selected agent (mode, time in each mode, metrics), its plan
(active step highlighted, rejected steps with their reason), the LLM status, the request
timeline, the event log, and the cards over the game (start card, help, pause, round over,
toasts). Every panel clips to its own rectangle, so nothing is ever drawn over a neighbour.
"""

from __future__ import annotations

import pygame

from esper_arbiter.game.render import theme
from esper_arbiter.game.render.fonts import Fonts
from esper_arbiter.game.render.hud_model import (
    AgentPanel,
    HudModel,
    LlmPanel,
    LogLine,
    TimelineModel,
    TopBar,
)
from esper_arbiter.game.render.layout import Layout
from esper_arbiter.game.render.theme import RGB

HEADER_H = 22
INNER = 8


class HudPainter:
    def __init__(self, fonts: Fonts) -> None:
        self.fonts = fonts
        self._shade: pygame.Surface | None = None

    # -- helpers -------------------------------------------------------------------------

    def panel(self, surface: pygame.Surface, rect: pygame.Rect, title: str,
              right: str = "", right_color: RGB = theme.TEXT_DIM) -> pygame.Rect:
        """Panel frame with a header; returns the body rectangle (already the clip)."""
        surface.set_clip(None)
        pygame.draw.rect(surface, theme.PANEL, rect, border_radius=6)
        pygame.draw.rect(surface, theme.PANEL_EDGE, rect, width=1, border_radius=6)
        head = pygame.Rect(rect.x + 1, rect.y + 1, rect.w - 2, min(HEADER_H, rect.h - 2))
        pygame.draw.rect(surface, theme.PANEL_HEADER, head, border_top_left_radius=6,
                         border_top_right_radius=6)
        surface.set_clip(head)
        f = self.fonts
        tr = f.blit(surface, title, theme.SIZE_SMALL, theme.HEADING,
                    (head.x + INNER, head.centery + 1), anchor="midleft")
        if right:
            f.blit(surface, right, theme.SIZE_TINY, right_color,
                   (head.right - INNER, head.centery + 1), anchor="midright",
                   max_width=head.right - INNER - tr.right - 12)
        body = pygame.Rect(rect.x + INNER, head.bottom + 5, rect.w - 2 * INNER,
                           rect.bottom - head.bottom - 9)
        surface.set_clip(body)
        return body

    def pill(self, surface: pygame.Surface, text: str, color: RGB, pos: tuple[int, int],
             size: int = theme.SIZE_SMALL, anchor: str = "midleft") -> pygame.Rect:
        img = self.fonts.text(text, size, theme.OUTLINE)
        box = img.get_rect().inflate(12, 4)
        setattr(box, anchor, pos)
        pygame.draw.rect(surface, color, box, border_radius=5)
        surface.blit(img, img.get_rect(center=(box.centerx, box.centery + 1)))
        return box

    @staticmethod
    def check(surface: pygame.Surface, color: RGB, x: int, cy: int) -> None:
        pygame.draw.lines(surface, color, False, [(x, cy), (x + 3, cy + 3), (x + 8, cy - 4)], 2)

    @staticmethod
    def cross(surface: pygame.Surface, color: RGB, x: int, cy: int) -> None:
        pygame.draw.line(surface, color, (x, cy - 4), (x + 8, cy + 4), 2)
        pygame.draw.line(surface, color, (x, cy + 4), (x + 8, cy - 4), 2)

    # -- all -----------------------------------------------------------------------------

    def draw(self, surface: pygame.Surface, hud: HudModel, layout: Layout, pulse: float) -> None:
        self.top_bar(surface, hud.top, layout)
        self.agent_panel(surface, hud.agent, layout.agent)
        self.plan_panel(surface, hud.agent, layout.plan)
        self.llm_panel(surface, hud.llm, layout.llm)
        self.timeline(surface, hud.timeline, layout.timeline)
        self.log_panel(surface, hud.log, layout.log)
        surface.set_clip(None)

    def top_bar(self, surface: pygame.Surface, top: TopBar, layout: Layout) -> None:
        r = layout.top
        surface.set_clip(r)
        surface.fill(theme.PANEL_HEADER, r)
        surface.fill(theme.PANEL_EDGE, (r.x, r.bottom - 1, r.w, 1))
        f = self.fonts
        cy = r.centery + 1
        left = f.blit(surface, top.title, theme.SIZE_HEAD + 3, theme.TEXT, (12, cy),
                      anchor="midleft")
        sub = f"{top.scenario}  seed {top.seed}"
        if f.width(sub, theme.SIZE_SMALL) + left.right + 14 < layout.map_area.centerx - 90:
            left = f.blit(surface, sub, theme.SIZE_SMALL, theme.TEXT_DIM,
                          (left.right + 14, cy), anchor="midleft")
        clock = f"t = {top.t:.1f} s"
        cw = f.width(clock, theme.SIZE_HEAD) + 12 + f.width(top.state, theme.SIZE_SMALL) + 12
        x = max(left.right + 18, layout.map_area.centerx - cw // 2)
        tt = f.blit(surface, clock, theme.SIZE_HEAD, theme.TEXT, (x, cy), anchor="midleft")
        pill = self.pill(surface, top.state, top.state_color, (tt.right + 12, cy))
        fps = f"{top.fps:.0f} fps   " if top.fps > 0 else ""
        right = f"player: {top.control}   agents {top.agents}   {fps}H help"
        f.blit(surface, right, theme.SIZE_SMALL, theme.TEXT_DIM, (r.right - 12, cy),
               anchor="midright", max_width=r.right - 12 - pill.right - 18)

    # -- agent ---------------------------------------------------------------------------

    def agent_panel(self, surface: pygame.Surface, a: AgentPanel | None, rect: pygame.Rect
                    ) -> None:
        if a is None:
            body = self.panel(surface, rect, "AGENT")
            self.fonts.blit(surface, "no AI agent in this round", theme.SIZE_BODY,
                            theme.TEXT_DIM, body.topleft)
            return
        body = self.panel(surface, rect, f"AGENT  {a.name} #{a.entity}", "Tab: next")
        f = self.fonts
        y = body.y
        line = f.line_height(theme.SIZE_SMALL) + 2
        box = self.pill(surface, a.label, a.color, (body.x, y + 9), theme.SIZE_BODY)
        x = box.right + 10
        o = f.blit(surface, "order", theme.SIZE_SMALL, theme.TEXT_DIM, (x, y + 9),
                   anchor="midleft")
        o = f.blit(surface, a.order, theme.SIZE_SMALL, theme.TEXT, (o.right + 5, y + 9),
                   anchor="midleft")
        # hp bar + ammo on the right
        bw = max(40, min(90, body.right - o.right - 110))
        bx = body.right - bw
        frac = 0.0 if a.max_hp <= 0 else max(0.0, min(1.0, a.hp / a.max_hp))
        surface.fill(theme.HP_BACK, (bx, y + 4, bw, 10))
        surface.fill(theme.hp_color(frac), (bx, y + 4, int(bw * frac), 10))
        f.blit(surface, f"{a.hp:.0f}/{a.max_hp:.0f}", theme.SIZE_TINY, theme.TEXT,
               (bx - 6, y + 10), anchor="midright")
        f.blit(surface, f"ammo {a.ammo}", theme.SIZE_TINY, theme.AMMO, (body.right, y + 17),
               anchor="topright")
        y += 24
        n = f.blit(surface, "now", theme.SIZE_SMALL, theme.TEXT_DIM, (body.x, y))
        f.blit(surface, a.current, theme.SIZE_SMALL, theme.TEXT, (n.right + 6, y),
               max_width=body.right - n.right - 6)
        y += line
        if a.in_flight:
            pygame.draw.circle(surface, theme.IN_FLIGHT, (body.x + 4, y + 6), 4)
            f.blit(surface, a.in_flight, theme.SIZE_SMALL, theme.IN_FLIGHT, (body.x + 14, y),
                   max_width=body.w - 14)
        elif a.last_failure:
            f.blit(surface, f"last LLM failure: {a.last_failure}", theme.SIZE_SMALL,
                   theme.dim(theme.BAD, 0.9), (body.x, y), max_width=body.w)
        else:
            f.blit(surface, "no LLM request in flight", theme.SIZE_SMALL, theme.TEXT_FAINT,
                   (body.x, y))
        y += line + 2
        # time in each mode: one stacked bar plus a legend
        total = sum(s for _, s, _ in a.time_in_modes) or 1.0
        bx = body.x
        surface.fill(theme.PANEL_EDGE, (body.x, y, body.w, 8))
        for _, secs, color in a.time_in_modes:
            w = int(body.w * secs / total)
            if w > 0:
                surface.fill(color, (bx, y, w, 8))
                bx += w
        y += 12
        lx = body.x
        for short, secs, color in a.time_in_modes:
            r = f.blit(surface, short, theme.SIZE_SMALL, color, (lx, y))
            r = f.blit(surface, f"{secs:.1f}s", theme.SIZE_SMALL, theme.TEXT, (r.right + 4, y))
            lx = r.right + 16
        f.blit(surface, "time in mode", theme.SIZE_TINY, theme.TEXT_FAINT, (body.right, y + 2),
               anchor="topright")
        y += line + 4
        surface.fill(theme.PANEL_EDGE, (body.x, y - 3, body.w, 1))
        # metrics: two short columns, then the two long rows
        metrics = dict(a.metrics)
        half = body.w // 2
        pairs = [("mode changes", "GOAP actions"), ("BT actions", "refused steps")]
        for left, right in pairs:
            if y + line > body.bottom + 3:
                return  # a short panel drops whole rows, never half a line
            for i, key in enumerate((left, right)):
                x = body.x + i * half
                r = f.blit(surface, key, theme.SIZE_SMALL, theme.TEXT_DIM, (x, y))
                f.blit(surface, metrics.get(key, "-"), theme.SIZE_SMALL, theme.TEXT,
                       (r.right + 6, y))
            y += line
        for key in ("LLM requests", "plans by origin", "LLM steps"):
            if y + line > body.bottom + 3:
                return
            r = f.blit(surface, key, theme.SIZE_SMALL, theme.TEXT_DIM, (body.x, y))
            f.blit(surface, metrics.get(key, "-"), theme.SIZE_SMALL, theme.TEXT,
                   (r.right + 6, y), max_width=body.right - r.right - 6)
            y += line

    def plan_panel(self, surface: pygame.Surface, a: AgentPanel | None, rect: pygame.Rect
                   ) -> None:
        body = self.panel(surface, rect, "PLAN", "" if a is None else a.plan_note)
        if a is None:
            return
        f = self.fonts
        y = body.y
        f.blit(surface, a.plan_title, theme.SIZE_SMALL, theme.TEXT_DIM, (body.x, y),
               max_width=body.w)
        y += f.line_height(theme.SIZE_SMALL) + 4
        row = f.line_height(theme.SIZE_BODY) + 4
        for pl in a.plan_lines:
            if y + row > body.bottom + 2:
                break
            cy = y + row // 2 - 1
            num = f"{pl.index + 1}"
            if pl.state == "active":
                hl = pygame.Rect(body.x - 4, y - 1, body.w + 8, row)
                pygame.draw.rect(surface, theme.dim(a.color, 0.32), hl, border_radius=4)
                pygame.draw.rect(surface, a.color, (hl.x, hl.y, 3, hl.h))
                color, ncol = theme.TEXT, a.color
                pygame.draw.polygon(surface, a.color,
                                    [(body.x, cy - 5), (body.x + 7, cy), (body.x, cy + 5)])
            elif pl.state == "done":
                color, ncol = theme.TEXT_FAINT, theme.TEXT_FAINT
                self.check(surface, theme.dim(theme.GOOD, 0.7), body.x, cy)
            elif pl.state == "rejected":
                color, ncol = theme.BAD, theme.BAD
                self.cross(surface, theme.BAD, body.x, cy)
            else:
                color, ncol = theme.TEXT_DIM, theme.TEXT_DIM
            n = f.blit(surface, num, theme.SIZE_BODY, ncol, (body.x + 16, cy + 1),
                       anchor="midleft")
            f.blit(surface, pl.text, theme.SIZE_BODY, color, (n.right + 8, cy + 1),
                   anchor="midleft", max_width=body.right - n.right - 8)
            y += row
            if pl.state == "rejected" and pl.reason:
                for text in f.wrap(pl.reason, theme.SIZE_SMALL, body.w - 36, max_lines=2):
                    f.blit(surface, text, theme.SIZE_SMALL, theme.dim(theme.BAD, 0.8),
                           (body.x + 30, y - 2))
                    y += f.line_height(theme.SIZE_SMALL)
                y += 2
        if not a.plan_lines:
            f.blit(surface, "GOAP and the behaviour tree decide step by step;",
                   theme.SIZE_SMALL, theme.TEXT_FAINT, (body.x, y), max_width=body.w)
            f.blit(surface, "press L to ask the language model for a plan.", theme.SIZE_SMALL,
                   theme.TEXT_FAINT, (body.x, y + f.line_height(theme.SIZE_SMALL)),
                   max_width=body.w)

    # -- LLM -----------------------------------------------------------------------------

    def llm_panel(self, surface: pygame.Surface, m: LlmPanel, rect: pygame.Rect) -> None:
        body = self.panel(surface, rect, "LLM")
        f = self.fonts
        surface.set_clip(rect)
        self.pill(surface, m.state, m.state_color, (rect.right - INNER, rect.y + 12),
                  theme.SIZE_TINY, anchor="midright")
        surface.set_clip(body)
        y = body.y
        r = f.blit(surface, "backend", theme.SIZE_SMALL, theme.TEXT_DIM, (body.x, y))
        r = f.blit(surface, m.backend, theme.SIZE_SMALL, theme.TEXT, (r.right + 6, y))
        r = f.blit(surface, "model", theme.SIZE_SMALL, theme.TEXT_DIM, (r.right + 14, y))
        f.blit(surface, m.model, theme.SIZE_SMALL, theme.TEXT, (r.right + 6, y),
               max_width=body.right - r.right - 6)
        line = f.line_height(theme.SIZE_SMALL) + 2
        y += line
        if m.reason:
            color = theme.TEXT_DIM if m.online else theme.WARN
            for text in f.wrap(m.reason, theme.SIZE_SMALL, body.w, max_lines=2):
                f.blit(surface, text, theme.SIZE_SMALL, color, (body.x, y))
                y += line - 2
            y += 4
        half = body.w // 2
        rows = m.rows
        for i in range(0, len(rows), 2):
            if y + line > body.bottom + 3:
                break
            pair = rows[i:i + 2]
            for k, (label, value) in enumerate(pair):
                x = body.x + k * half
                right = body.x + half - 8 if k == 0 and len(pair) == 2 else body.right
                r = f.blit(surface, label, theme.SIZE_SMALL, theme.TEXT_DIM, (x, y))
                f.blit(surface, value, theme.SIZE_SMALL, theme.TEXT, (r.right + 6, y),
                       max_width=right - r.right - 6)
            y += line

    def timeline(self, surface: pygame.Surface, tl: TimelineModel, rect: pygame.Rect) -> None:
        right = f"concurrency {tl.concurrency_pct:.0f}%"
        body = self.panel(surface, rect, f"REQUESTS  last {tl.span_s:.0f} s", right,
                          theme.TEXT if tl.concurrency_pct else theme.TEXT_DIM)
        f = self.fonts
        legend_h = f.line_height(theme.SIZE_TINY) + 2
        axis_h = f.line_height(theme.SIZE_TINY)
        area = pygame.Rect(body.x, body.y, body.w, max(10, body.h - legend_h - axis_h - 2))
        surface.fill(theme.dim(theme.PANEL, 0.7), area)
        for k in range(1, 3):
            gx = area.x + area.w * k // 3
            surface.fill(theme.PANEL_EDGE, (gx, area.y, 1, area.h))
        lanes = max(1, tl.lanes)
        lane_h = max(4, min(14, (area.h - 4) // lanes))
        for bar in tl.bars:
            y = area.y + 2 + bar.lane * lane_h
            if y + lane_h > area.bottom + 1:
                continue
            h = max(3, lane_h - 3)
            qx = area.x + int(bar.queued * area.w)
            ex = max(qx + 2, area.x + int(bar.end * area.w))
            if bar.started is not None:
                sx = area.x + int(bar.started * area.w)
                if sx > qx:
                    surface.fill(theme.OUTCOME_COLORS["queued"], (qx, y + h // 2 - 1, sx - qx, 2))
                surface.fill(bar.color, (sx, y, max(2, ex - sx), h))
            else:
                surface.fill(bar.color, (qx, y + h // 2 - 1, ex - qx, 3))
            if bar.first_token is not None:
                fx = area.x + int(bar.first_token * area.w)
                surface.fill(theme.TEXT, (fx, y, 1, h))
            if bar.mine:
                surface.fill(theme.SELECTED, (qx, y + h, max(2, ex - qx), 1))
        if not tl.bars:
            f.blit(surface, "no requests yet", theme.SIZE_SMALL, theme.TEXT_FAINT,
                   area.center, anchor="center")
        ay = area.bottom + 1
        clock = "game s" if tl.clock == "game" else "s"
        for k, label in enumerate((f"-{tl.span_s:.0f} {clock}", f"-{tl.span_s * 2 / 3:.0f}",
                                   f"-{tl.span_s / 3:.0f}", "now")):
            x = area.x + area.w * k // 3
            anchor = "topleft" if k == 0 else "topright" if k == 3 else "midtop"
            f.blit(surface, label, theme.SIZE_TINY, theme.TEXT_FAINT, (x, ay), anchor=anchor)
        ly = ay + axis_h
        lx = body.x
        for name, key in (("plan", "plan"), ("running", "running"), ("queued", "queued"),
                          ("failed", "parse"), ("timeout", "timeout"),
                          ("cancelled", "cancelled")):
            if lx + 11 + f.width(name, theme.SIZE_TINY) > body.right:
                break  # a narrow panel shows the legend entries that fit
            color = theme.outcome_color(key)
            surface.fill(color, (lx, ly + 3, 8, 8))
            r = f.blit(surface, name, theme.SIZE_TINY, theme.TEXT_DIM, (lx + 11, ly + 1))
            lx = r.right + 9

    # -- log -----------------------------------------------------------------------------

    def log_panel(self, surface: pygame.Surface, lines: list[LogLine], rect: pygame.Rect
                  ) -> None:
        body = self.panel(surface, rect, "EVENTS", "mode changes, requests, outcomes, orders")
        f = self.fonts
        row = f.line_height(theme.SIZE_SMALL) + 1
        fit = max(0, body.h // row)
        shown = lines[-fit:] if fit else []
        y = body.y
        who_w = max((f.width(ln.who, theme.SIZE_SMALL) for ln in shown), default=0)
        for ln in shown:
            dimmed = not ln.mine
            r = f.blit(surface, f"t={ln.t:6.2f}s", theme.SIZE_SMALL, theme.TEXT_FAINT,
                       (body.x, y))
            f.blit(surface, ln.who, theme.SIZE_SMALL,
                   theme.TEXT_DIM if dimmed else theme.TEXT, (r.right + 10, y))
            x = r.right + 10 + who_w + 10
            color = theme.dim(ln.color, 0.7) if dimmed else ln.color
            f.blit(surface, ln.text, theme.SIZE_SMALL, color, (x, y),
                   max_width=body.right - x)
            y += row
        if not shown:
            f.blit(surface, "nothing yet", theme.SIZE_SMALL, theme.TEXT_FAINT, (body.x, y))

    # -- cards ---------------------------------------------------------------------------

    def shade(self, surface: pygame.Surface, rect: pygame.Rect, alpha: int = 160) -> None:
        if self._shade is None or self._shade.get_size() != rect.size:
            self._shade = pygame.Surface(rect.size, pygame.SRCALPHA)
        self._shade.fill((*theme.BACKGROUND, alpha))
        surface.blit(self._shade, rect)

    def banner(self, surface: pygame.Surface, title: str, subtitle: str, color: RGB,
               area: pygame.Rect) -> None:
        f = self.fonts
        img = f.text(title, theme.SIZE_BANNER, color)
        sub = f.text(f.fit(subtitle, theme.SIZE_BODY, area.w - 40), theme.SIZE_BODY, theme.TEXT)
        w = max(img.get_width(), sub.get_width()) + 48
        h = img.get_height() + sub.get_height() + 30
        box = pygame.Rect(0, 0, w, h)
        box.center = area.center
        pygame.draw.rect(surface, theme.PANEL, box, border_radius=10)
        pygame.draw.rect(surface, color, box, width=2, border_radius=10)
        surface.blit(img, img.get_rect(midtop=(box.centerx, box.y + 12)))
        surface.blit(sub, sub.get_rect(midbottom=(box.centerx, box.bottom - 10)))

    def toast(self, surface: pygame.Surface, text: str, area: pygame.Rect) -> None:
        f = self.fonts
        text = f.fit(text, theme.SIZE_BODY, area.w - 40)
        img = f.text(text, theme.SIZE_BODY, theme.TEXT)
        box = img.get_rect().inflate(24, 12)
        box.midbottom = (area.centerx, area.bottom - 12)
        pygame.draw.rect(surface, theme.PANEL_HEADER, box, border_radius=8)
        pygame.draw.rect(surface, theme.HEADING, box, width=1, border_radius=8)
        surface.blit(img, img.get_rect(center=box.center))

    def card(self, surface: pygame.Surface, hud: HudModel, layout: Layout, start: bool) -> None:
        """The start card (title, the three modes, controls) or the help overlay."""
        w, h = layout.size
        self.shade(surface, pygame.Rect(0, 0, w, h), 170)
        f = self.fonts
        row = f.line_height(theme.SIZE_BODY) + 5
        cw = min(w - 40, 660)
        intro = 3 * (row - 4) + 8 if start else 0
        content = (20 + f.line_height(theme.SIZE_TITLE + 8) + 2 + intro + 40
                   + row * len(hud.controls) + 10 + f.line_height(theme.SIZE_HEAD) + 20)
        ch = min(h - 40, content)
        box = pygame.Rect(0, 0, cw, ch)
        box.center = (w // 2, h // 2)
        pygame.draw.rect(surface, theme.PANEL, box, border_radius=12)
        pygame.draw.rect(surface, theme.PANEL_EDGE, box, width=2, border_radius=12)
        surface.set_clip(box.inflate(-4, -4))
        x, y = box.x + 28, box.y + 20
        f.blit(surface, "hello_companion" if start else "Help", theme.SIZE_TITLE + 8,
               theme.TEXT, (x, y))
        y += f.line_height(theme.SIZE_TITLE + 8) + 2
        if start:
            for text in f.wrap(
                "Get the player to the breach door. Your companion thinks with two brains: "
                "an instant GOAP planner, and a language model whose multi-step plans take "
                "over when they arrive. A behaviour tree catches it when both fail.",
                theme.SIZE_BODY, cw - 56, max_lines=3,
            ):
                f.blit(surface, text, theme.SIZE_BODY, theme.TEXT_DIM, (x, y))
                y += row - 4
            y += 8
        px = x
        for label, color, what in (("GOAP", theme.GOAP_BLUE, "planner"),
                                   ("LLM 2/4", theme.LLM_GREEN, "model plan, step 2 of 4"),
                                   ("BT", theme.BT_AMBER, "safety net")):
            r = self.pill(surface, label, color, (px, y + 9), theme.SIZE_SMALL)
            r = f.blit(surface, what, theme.SIZE_SMALL, theme.TEXT_DIM, (r.right + 6, y + 9),
                       anchor="midleft")
            px = r.right + 18
        y += 30
        surface.fill(theme.PANEL_EDGE, (x, y, cw - 56, 1))
        y += 10
        key_w = max(f.width(k, theme.SIZE_BODY) for k, _ in hud.controls) + 24
        for key, what in hud.controls:
            f.blit(surface, key, theme.SIZE_BODY, theme.HEADING, (x, y))
            f.blit(surface, what, theme.SIZE_BODY, theme.TEXT, (x + key_w, y),
                   max_width=cw - 56 - key_w)
            y += row
        y += 6
        prompt = "press any key to start" if start else "H or Esc to close"
        f.blit(surface, prompt, theme.SIZE_HEAD, theme.GOOD if start else theme.TEXT_DIM,
               (box.centerx, min(y + 4, box.bottom - 30)), anchor="midtop")
        surface.set_clip(None)

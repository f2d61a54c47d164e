"""VitalsSystem: the bookkeeping after everyone acted: smoke clears, the downed bleed out,
suppression wears off, and the round ends when the player extracts (or is lost)."""

from __future__ import annotations

import esper

from esper_arbiter.components.world import Position, SmokeCloud
from esper_arbiter.game.sim import SimContext
from esper_arbiter.game.state import Downed, Suppressed

VITALS_PRIORITY = 40
"""Last: after the ActionSystem (50) applied this frame's moves and shots."""


class VitalsSystem(esper.Processor):
    """Expires timed effects and decides the round's end."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    def process(self, *args: object, **kwargs: object) -> None:
        ctx = self.ctx
        if ctx.result is not None:
            return
        now = ctx.t
        for ent, cloud in esper.get_component(SmokeCloud):
            if cloud.expires_at <= now:
                ctx.events.add(now, "smoke_gone", tx=cloud.x, ty=cloud.y, amount=cloud.radius)
                esper.delete_entity(ent, immediate=True)
        for ent, supp in esper.get_component(Suppressed):
            if supp.until <= now:
                esper.remove_component(ent, Suppressed)
        for ent, downed in esper.get_component(Downed):
            if now >= downed.bleed_out_at:
                ctx.kill(ent)  # the player bleeding out ends the round (defeat)
        if ctx.result is None and ctx.active(ctx.player):
            pos = esper.component_for_entity(ctx.player, Position)
            x, y = ctx.extraction_tile
            if abs(pos.x - x) < 0.5 and abs(pos.y - y) < 0.5:
                ctx.finish("extracted", "the player reached the extraction point")

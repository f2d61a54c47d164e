"""The front end's look: one dark palette, the mode colours and the text sizes, as plain data.

Nothing here imports pygame, so the HUD model (and its tests) can name colours without a
display. Colours are ``(r, g, b)`` tuples. The three mode colours are the arbiter's identity on
screen and are used everywhere a mode appears (rings, labels, plan lines, the time-in-mode bar,
the event log): GOAP blue, LLM green, behaviour tree amber.
"""

from __future__ import annotations

from esper_arbiter.components.agent import Mode

RGB = tuple[int, int, int]

# -- surfaces ------------------------------------------------------------------------------
BACKGROUND: RGB = (13, 16, 22)
PANEL: RGB = (21, 26, 35)
PANEL_EDGE: RGB = (42, 50, 64)
PANEL_HEADER: RGB = (27, 33, 44)
FLOOR: RGB = (30, 36, 46)
FLOOR_ALT: RGB = (33, 40, 51)
GRID_LINE: RGB = (24, 29, 38)
WALL: RGB = (74, 82, 100)
WALL_TOP: RGB = (104, 114, 136)
WALL_SHADOW: RGB = (44, 50, 62)
COVER: RGB = (128, 108, 74)
COVER_EDGE: RGB = (88, 74, 52)
COVER_TOP: RGB = (160, 138, 96)
DOOR: RGB = (60, 196, 140)
DOOR_DARK: RGB = (26, 74, 58)

# -- text ----------------------------------------------------------------------------------
TEXT: RGB = (222, 228, 238)
TEXT_DIM: RGB = (138, 148, 166)
TEXT_FAINT: RGB = (92, 100, 118)
HEADING: RGB = (156, 186, 255)
WARN: RGB = (255, 170, 70)
BAD: RGB = (240, 92, 92)
GOOD: RGB = (96, 214, 128)

# -- units ---------------------------------------------------------------------------------
PLAYER: RGB = (240, 242, 248)
PLAYER_RIM: RGB = (120, 214, 255)
COMPANION: RGB = (128, 176, 236)
COMPANION_RIM: RGB = (52, 86, 132)
ENEMY: RGB = (226, 80, 80)
ENEMY_RIM: RGB = (110, 34, 34)
DOWNED: RGB = (120, 126, 140)
DEAD: RGB = (70, 74, 84)
OUTLINE: RGB = (10, 12, 16)
SELECTED: RGB = (255, 255, 255)

HP_BACK: RGB = (58, 24, 26)
HP_GOOD: RGB = (92, 206, 112)
HP_MID: RGB = (236, 196, 64)
HP_LOW: RGB = (236, 84, 70)
AMMO: RGB = (214, 196, 120)
PROGRESS: RGB = (150, 200, 255)

# -- effects -------------------------------------------------------------------------------
SHOT_HIT: RGB = (255, 228, 120)
SHOT_MISS: RGB = (150, 150, 162)
DAMAGE_TEXT: RGB = (255, 112, 92)
HEAL_TEXT: RGB = (124, 232, 148)
SMOKE: RGB = (196, 202, 214)
SIGHT: RGB = (96, 106, 70)

# -- the arbiter's modes -------------------------------------------------------------------
GOAP_BLUE: RGB = (78, 154, 255)
LLM_GREEN: RGB = (88, 214, 120)
BT_AMBER: RGB = (255, 176, 32)
IN_FLIGHT: RGB = (200, 255, 210)

MODE_COLORS: dict[Mode, RGB] = {
    Mode.GOAP: GOAP_BLUE,
    Mode.EXECUTING_LLM: LLM_GREEN,
    Mode.BEHAVIOR_TREE: BT_AMBER,
}
MODE_SHORT: dict[Mode, str] = {
    Mode.GOAP: "GOAP",
    Mode.EXECUTING_LLM: "LLM",
    Mode.BEHAVIOR_TREE: "BT",
}

ATTACK_LINE: RGB = (255, 96, 96)
SUPPORT_LINE: RGB = (124, 232, 148)

# -- request outcomes (timeline) -----------------------------------------------------------
OUTCOME_COLORS: dict[str, RGB] = {
    "plan": (88, 214, 120),
    "running": (92, 170, 255),
    "queued": (104, 114, 136),
    "timeout": (255, 150, 60),
    "cancelled": (140, 136, 160),
    "superseded": (140, 136, 160),
    "refused": (110, 110, 126),
    "offline": (170, 70, 70),
}
OUTCOME_FAILURE: RGB = (236, 84, 84)
"""Any other outcome (connection, parse, invalid plan, crash ...)."""


def outcome_color(outcome: str) -> RGB:
    """Colour of a request bar by its outcome (``plan``, ``running``, a failure kind ...)."""
    return OUTCOME_COLORS.get(outcome, OUTCOME_FAILURE)


def hp_color(fraction: float) -> RGB:
    """Health bar colour: green, yellow below 60 %, red below 30 %."""
    if fraction >= 0.6:
        return HP_GOOD
    if fraction >= 0.3:
        return HP_MID
    return HP_LOW


def dim(color: RGB, factor: float) -> RGB:
    """``color`` darkened towards black (factor 0..1 keeps that share of it)."""
    f = max(0.0, min(1.0, factor))
    return (int(color[0] * f), int(color[1] * f), int(color[2] * f))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend from ``a`` (t=0) to ``b`` (t=1)."""
    u = max(0.0, min(1.0, t))
    return (
        int(a[0] + (b[0] - a[0]) * u),
        int(a[1] + (b[1] - a[1]) * u),
        int(a[2] + (b[2] - a[2]) * u),
    )


# -- text sizes (pygame's bundled default font, pixel size) ---------------------------------
SIZE_TINY = 15
SIZE_SMALL = 17
SIZE_BODY = 19
SIZE_HEAD = 21
SIZE_TITLE = 30
SIZE_BANNER = 46

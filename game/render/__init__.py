"""pygame rendering of hello_companion: world, mode overlays and HUD panels.

Rendering reads components and the session's logs only; it never calls game logic.
:mod:`game.render.model` turns a session into plain data (no pygame), the other modules draw it.
Importing this package keeps pygame's import banner off stdout (the decision log lives there).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

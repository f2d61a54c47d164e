"""Game events: shots, hits, smoke, downed, revived ... for renderers, logs and tests.

Systems append :class:`GameEvent` values to a :class:`GameEventLog`; a renderer draws the recent
ones (a shot line, a floating damage number) by asking for everything newer than the last
serial it saw. Events are values, never callbacks, so recording them cannot affect the round.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

EVENT_KINDS = (
    "shot",  # source fired at target; hit tells whether it struck (x, y -> tx, ty)
    "hit",  # target took ``amount`` damage (in cover: already halved)
    "smoke",  # a cloud went up at (tx, ty)
    "smoke_gone",  # a cloud at (tx, ty) cleared
    "reload",  # source refilled its magazine to ``amount`` rounds
    "heal",  # target healed by ``amount``
    "downed",  # target fell (revivable)
    "revived",  # target is back up with ``amount`` hp
    "died",  # target is out of the round
    "order",  # player gave the order ``text`` to target
    "extracted",  # round won
    "defeat",  # round lost
)


@dataclass(frozen=True, slots=True)
class GameEvent:
    """One thing that happened at game time ``t``. Positions are tile coordinates."""

    serial: int
    t: float
    kind: str
    source: int | None = None
    target: int | None = None
    x: float = 0.0
    y: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    amount: float = 0.0
    hit: bool = False
    text: str = ""

    def describe(self) -> str:
        """One line for logs: ``t= 12.35s hit 3->1 8.0``."""
        who = f"{self.source}->{self.target}" if self.source is not None else f"{self.target}"
        extra = f" {self.amount:g}" if self.amount else ""
        if self.kind == "shot":
            extra = " hit" if self.hit else " miss"
        note = f" {self.text}" if self.text else ""
        return f"t={self.t:6.2f}s {self.kind} {who}{extra}{note}"


class GameEventLog:
    """Recent events (bounded) plus running totals; serials increase by one per event."""

    def __init__(self, keep: int = 1024) -> None:
        self._recent: deque[GameEvent] = deque(maxlen=keep)
        self._serial = 0
        self.counts: dict[str, int] = {}

    def add(
        self, t: float, kind: str, *, source: int | None = None, target: int | None = None,
        x: float = 0.0, y: float = 0.0, tx: float = 0.0, ty: float = 0.0, amount: float = 0.0,
        hit: bool = False, text: str = "",
    ) -> GameEvent:
        """Record one event (fields as in :class:`GameEvent`) and return it."""
        self._serial += 1
        event = GameEvent(self._serial, t, kind, source, target, x, y, tx, ty, amount, hit, text)
        self._recent.append(event)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return event

    @property
    def last_serial(self) -> int:
        return self._serial

    def since(self, serial: int) -> list[GameEvent]:
        """Events with a serial greater than ``serial`` that are still kept, oldest first."""
        if serial >= self._serial:
            return []
        out = [e for e in reversed(self._recent) if e.serial > serial]
        out.reverse()
        return out

    def recent(self, now: float, window: float) -> list[GameEvent]:
        """Events of the last ``window`` seconds of game time (for fading effects)."""
        return [e for e in self._recent if now - e.t <= window]

    def __iter__(self) -> Iterator[GameEvent]:
        return iter(self._recent)

    def __len__(self) -> int:
        return len(self._recent)

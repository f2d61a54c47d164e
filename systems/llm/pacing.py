"""Does the host's game clock outrun the wall clock a live model answers on?

A live model (ollama, embedded) answers on the wall clock: a plan takes seconds of *real* time.
A host whose loop advances game time much faster than real time (a headless simulation, a test,
a fast-forward) ends its round before any answer can arrive: 60 game seconds can run in 0.12 s
and every request is withdrawn or left unanswered, with nothing in the log to say why.

:class:`PacingMonitor` watches the game times a service sees (each request's ``submitted_at``
and the ``now`` of each poll of an unanswered ticket) against the wall clock. When game time
has run at least :data:`PACING_RATIO` times faster than wall time over at least
:data:`PACING_MIN_GAME_S` game seconds, it logs one warning and :attr:`PacingMonitor.warning`
says so in words (:class:`~esper_arbiter.systems.llm.service.LlmPlanService` shows it as
``ServiceStatus.pacing``). :func:`pacing_problem` is the same rule for a host that measures
its own loop. Services that answer on game time (scripted, replay) are not concerned: see
:func:`esper_arbiter.systems.llm.api.paced_by_wall_clock`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PACING_RATIO = 4.0
"""Game time running this many times faster than the wall clock is reported."""
PACING_MIN_GAME_S = 5.0
"""...once at least this much game time has been observed (short bursts are not reported)."""
_CHECK_EVERY_GAME_S = 0.5
"""Polls look at the clock at most this often (in game seconds): a poll stays a few loads."""


def pacing_problem(game_s: float, wall_s: float, *, requests: int = 0, plans: int = 0) -> str:
    """``""`` when a loop that advanced ``game_s`` seconds of game time in ``wall_s`` seconds of
    wall time can expect answers from a wall-clock model, else a one-line warning.

    ``requests`` and ``plans`` (so far) are only quoted in the warning.
    """
    if game_s < PACING_MIN_GAME_S or game_s < PACING_RATIO * wall_s:
        return ""
    speed = game_s / max(wall_s, 1e-3)
    return (f"game time runs {speed:.0f}x faster than the wall clock ({game_s:.1f} game s in "
            f"{wall_s:.2f} s; {requests} requests, {plans} plans): a live model answers on the "
            "wall clock, so its plans arrive late or never; pace the game loop to real time")


class PacingMonitor:
    """Compares the game times a wall-clock service sees with the wall clock.

    :meth:`submitted` and :meth:`polled` run on the game thread, :meth:`answered` on any
    thread. The measure is cumulative from the first observation; it starts again when game
    time goes backwards (a new round). The warning clears if the host slows down enough.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._origin: tuple[float, float] | None = None  # (game, wall)
        self.next_check = 0.0
        """Game time of the next look at the clock; a caller on a hot path may skip
        :meth:`polled` before it."""
        self._requests = 0
        self._plans = 0
        self._warning = ""
        self._logged = False

    @property
    def warning(self) -> str:
        """``""``, or why this host cannot expect plans in time (see :func:`pacing_problem`)."""
        return self._warning

    def submitted(self, game_t: float) -> None:
        """A request was submitted at game time ``game_t``."""
        with self._lock:
            self._requests += 1
        self._observe(game_t)

    def polled(self, game_t: float) -> None:
        """An unanswered ticket was polled at game time ``game_t`` (cheap: samples)."""
        if game_t >= self.next_check or game_t < self.next_check - 2 * _CHECK_EVERY_GAME_S:
            self._observe(game_t)

    def answered(self) -> None:
        """A plan arrived (only quoted in the warning)."""
        with self._lock:
            self._plans += 1

    def _observe(self, game_t: float) -> None:
        wall = self._clock()
        with self._lock:
            self.next_check = game_t + _CHECK_EVERY_GAME_S
            if self._origin is None or game_t < self._origin[0]:
                self._origin = (game_t, wall)
                return
            game_s, wall_s = game_t - self._origin[0], wall - self._origin[1]
            self._warning = pacing_problem(game_s, wall_s, requests=self._requests,
                                           plans=self._plans)
            first = bool(self._warning) and not self._logged
            self._logged = self._logged or first
        if first:
            log.warning("LLM pacing: %s", self._warning)


__all__ = ["PACING_MIN_GAME_S", "PACING_RATIO", "PacingMonitor", "pacing_problem"]

"""Headless rounds: step a GameSession with no window and write the decision log.

The log is the program's output: one line per companion decision and per mode change,

    t=  0.03s companion#2 [GOAP]            MoveTo(x=3, y=2)
    t=  4.75s companion#2 GOAP -> ExecutingLLM (plan p-0007, 3 steps, scripted backend)

and a summary line (see :func:`summary_line`). Other arbiter events (orders, requests,
outcomes, rejected steps) go to ``logging`` at INFO, game events at DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from esper_arbiter.components.agent import ArbiterEvent, ArbiterMetrics
from esper_arbiter.game.world import GameSession

log = logging.getLogger("esper_arbiter.game.headless")

PRINTED_KINDS = frozenset({"decision", "transition", "rejected", "grounded"})
"""Arbiter event kinds that make a line of the decision log (a model step that was skipped or
failed is a decision not taken, so it is shown too, and so is why a model step waits for a
preparatory one)."""


@dataclass(frozen=True, slots=True)
class HeadlessReport:
    """How a headless round went."""

    outcome: str
    """``extracted``, ``defeat``, ``undecided`` (time ran out first) or ``interrupted``
    (Ctrl-C, see :mod:`esper_arbiter.game.interrupt`)."""
    t: float
    totals: ArbiterMetrics
    lines: int
    """Decision-log lines written (the summary not included)."""
    summary: str
    interrupted: bool = False
    """The round was stopped by the user (Ctrl-C) before it ended."""


def round_outcome(session: GameSession, interrupted: bool = False) -> tuple[str, float]:
    """The round's outcome word and game time: its result, else ``interrupted`` (stopped by
    the user) or ``undecided`` (time ran out, or the window was closed) at the current time."""
    result = session.result
    if result is not None:
        return result.outcome, result.t
    return ("interrupted" if interrupted else "undecided"), session.t


def format_event(session: GameSession, entity: int, event: ArbiterEvent) -> str:
    """``t=  4.75s companion#2 <event text>``."""
    return f"t={event.t:6.2f}s {session.name_of(entity)}#{entity} {event.text}"


def summary_line(outcome: str, t: float, totals: ArbiterMetrics) -> str:
    """``outcome: extracted at t=41.50s | transitions 6 | llm requests 4 ok 3 failed 1 | ...``

    Requests that are neither ok nor failed were withdrawn (a newer order replaced them) or
    still unanswered when the round ended; they are shown when there are any.
    """
    ok = sum(totals.plans_by_source.values())
    open_ = (
        totals.llm_requests - ok - totals.llm_failures - totals.llm_cancelled
        - totals.llm_expired - totals.plans_discarded
    )
    extra = "".join(
        f" {name} {n}" for name, n in (("cancelled", totals.llm_cancelled),
                                       ("expired", totals.llm_expired),
                                       ("discarded", totals.plans_discarded), ("pending", open_))
        if n > 0
    )
    # Say where the plans came from unless a model wrote them all: a scripted or replayed
    # plan is not a model success.
    origins = {k: v for k, v in totals.plans_by_source.items() if v}
    origin = "" if set(origins) <= {"llm"} else " (" + ", ".join(
        f"{k} {v}" for k, v in sorted(origins.items())) + ")"
    return (
        f"outcome: {outcome} at t={t:.2f}s | transitions {totals.mode_transitions} | "
        f"llm requests {totals.llm_requests} ok {ok}{origin} "
        f"failed {totals.llm_failures}{extra} | goap {totals.goap_actions} | "
        f"llm steps {totals.llm_steps_executed} | bt {totals.bt_actions}"
    )


WAIT_FOR_MODEL_S = 60.0
"""How long a headless round with a live model waits for it to warm up before starting."""


def run_headless(
    session: GameSession,
    seconds: float,
    dt: float,
    write: Callable[[str], None],
    *,
    realtime: bool = False,
    on_step: Callable[[GameSession], None] | None = None,
    on_end: Callable[[GameSession], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    wait_for_model_s: float | None = None,
) -> HeadlessReport:
    """Play ``session`` for up to ``seconds`` of game time at fixed step ``dt``.

    ``write`` receives each log line (without newline), the summary last. ``realtime`` paces
    game time to the wall clock (needed when a live model answers: otherwise the round is over
    before its first plan arrives). ``on_step`` runs after every step, ``on_end`` before the
    summary (screenshots hook in there). ``should_stop`` is asked before every step; when it
    says yes (Ctrl-C) the round ends there, ``interrupted``, with the summary written as usual.
    Before the first step the round waits for a warming model (:meth:`GameSession.wait_for_model`)
    up to ``wait_for_model_s`` wall seconds; ``None``: 60 s when ``realtime``, else not at all.
    """
    if wait_for_model_s is None:
        wait_for_model_s = WAIT_FOR_MODEL_S if realtime else 0.0
    session.wait_for_model(wait_for_model_s, should_stop)
    written = 0
    seen_game_events = session.events.last_serial

    def on_event(entity: int, event: ArbiterEvent) -> None:
        nonlocal written
        if event.kind in PRINTED_KINDS:
            write(format_event(session, entity, event))
            written += 1
        else:
            log.info("%s", format_event(session, entity, event))

    session.add_listener(on_event)
    steps = max(0, round(seconds / dt))
    start = time.monotonic()
    interrupted = False
    for i in range(steps):
        if session.result is not None:
            break
        if should_stop is not None and should_stop():
            interrupted = True
            break
        session.step(dt)
        if log.isEnabledFor(logging.DEBUG):
            for ev in session.events.since(seen_game_events):
                log.debug("%s", ev.describe())
        seen_game_events = session.events.last_serial
        if on_step is not None:
            on_step(session)
        if realtime:
            ahead = start + (i + 1) * dt - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    if on_end is not None:
        on_end(session)
    outcome, t = round_outcome(session, interrupted)
    totals = session.totals()
    summary = summary_line(outcome, t, totals)
    write(summary)
    return HeadlessReport(outcome, t, totals, written, summary, interrupted)

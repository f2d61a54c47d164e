"""The HUD part of the frame model: the panels around the map, as plain data.

The top bar, the selected agent's panel (mode, numbers, its plan step by step), the LLM
status panel (:func:`llm_panel`), the request timeline (:func:`build_timeline`: the recent
requests as bars packed into lanes), the event log (:func:`build_log`) and the end-of-round
banner, gathered in a :class:`HudModel`. :mod:`game.render.hud` draws it; nothing here
imports pygame.
"""

from __future__ import annotations

from dataclasses import dataclass

import esper

from esper_arbiter.components.actions import describe_step
from esper_arbiter.components.agent import ArbiterState, Intent, IntentStatus, Mode
from esper_arbiter.components.llm import LlmTask
from esper_arbiter.components.world import Ammo, Health
from esper_arbiter.game.render import theme
from esper_arbiter.game.render.render_state import RenderMemory, ViewState
from esper_arbiter.game.render.theme import RGB
from esper_arbiter.game.state import Dead, Downed, PlayerInput
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.llm.timeline import concurrency_pct

CONTROLS: tuple[tuple[str, str], ...] = (
    ("WASD / arrows", "move the player (takes over from the autopilot)"),
    ("Space", "hand the player back to the autopilot"),
    ("1 2 3 4", "order the selected companion: follow, hold, attack, extract"),
    ("L", "ask the language model for a plan now"),
    ("Tab", "select the next AI agent (Shift+Tab: previous)"),
    ("O", "mode overlays on / off"),
    ("P", "pause"),
    ("R", "restart the round (same seed)"),
    ("F12", "screenshot"),
    ("H", "this help"),
    ("Esc", "quit"),
)
"""Key, action: the start card and the help overlay list these."""

TIMELINE_SPAN_S = 30.0
LOG_KINDS = frozenset({"transition", "rejected", "grounded", "outcome", "request", "order"})


@dataclass(slots=True)
class PlanLine:
    index: int
    """0-based step index."""
    text: str
    state: str
    """``done``, ``active``, ``pending`` or ``rejected``."""
    reason: str = ""


@dataclass(slots=True)
class AgentPanel:
    entity: int
    name: str
    label: str
    mode: Mode
    color: RGB
    order: str
    hp: float
    max_hp: float
    ammo: str
    current: str
    """The step it is carrying out now."""
    in_flight: str
    """``""`` or a description of the request in flight."""
    time_in_modes: list[tuple[str, float, RGB]]
    metrics: list[tuple[str, str]]
    last_failure: str
    plan_title: str
    plan_note: str
    plan_lines: list[PlanLine]


@dataclass(slots=True)
class LlmPanel:
    backend: str
    model: str
    online: bool
    state: str
    state_color: RGB
    reason: str
    rows: list[tuple[str, str]]


@dataclass(slots=True)
class TimelineBar:
    request_id: int
    agent_id: int
    lane: int
    queued: float
    """Fractions 0..1 of the panel's time span (0 = ``span_s`` ago, 1 = now)."""
    started: float | None
    first_token: float | None
    end: float
    outcome: str
    color: RGB
    running: bool
    mine: bool
    """The request belongs to the selected agent."""


@dataclass(slots=True)
class TimelineModel:
    span_s: float
    clock: str
    """``wall`` (real services) or ``game`` (the scripted backend answers on game time)."""
    bars: list[TimelineBar]
    lanes: int
    concurrency_pct: float
    total: int


@dataclass(slots=True)
class LogLine:
    t: float
    who: str
    text: str
    color: RGB
    mine: bool


@dataclass(slots=True)
class TopBar:
    title: str
    scenario: str
    t: float
    seed: int
    state: str
    state_color: RGB
    control: str
    fps: float
    agents: int


@dataclass(slots=True)
class Banner:
    title: str
    subtitle: str
    color: RGB


@dataclass(slots=True)
class HudModel:
    top: TopBar
    agent: AgentPanel | None
    llm: LlmPanel
    timeline: TimelineModel
    log: list[LogLine]
    banner: Banner | None
    toast: str
    show_help: bool
    show_start: bool
    controls: tuple[tuple[str, str], ...] = CONTROLS

def build_top_bar(session: GameSession, view: ViewState, agents: int) -> TopBar:
    result = session.result
    if result is not None:
        state, color = result.outcome.upper(), (
            theme.GOOD if result.outcome == "extracted" else theme.BAD)
    elif view.paused:
        state, color = "PAUSED", theme.WARN
    else:
        state, color = "LIVE", theme.GOOD
    inp = esper.try_component(session.player, PlayerInput)
    control = "autopilot" if inp is None or inp.autopilot else "manual"
    return TopBar(
        title="hello_companion", scenario=session.scenario.name, t=session.t, seed=session.seed,
        state=state, state_color=color, control=control, fps=view.fps, agents=agents,
    )


def build_banner(session: GameSession) -> Banner | None:
    result = session.result
    if result is None:
        return None
    if result.outcome == "extracted":
        return Banner("EXTRACTED", f"t={result.t:.1f}s  -  R: play again   Esc: quit",
                      theme.GOOD)
    why = f"{result.reason}  -  " if result.reason else ""
    return Banner("DEFEAT", f"{why}R: try again   Esc: quit", theme.BAD)


def build_agent_panel(
    session: GameSession,
    ent: int,
    state: ArbiterState,
    task: LlmTask | None,
    memory: RenderMemory,
    now: float,
) -> AgentPanel:
    from esper_arbiter.components.world import Orders

    hp = esper.try_component(ent, Health)
    ammo = esper.try_component(ent, Ammo)
    orders = esper.try_component(ent, Orders)
    intent = esper.try_component(ent, Intent)
    m = state.metrics
    tim = state.time_in_modes(now)
    times = [(theme.MODE_SHORT[mode], tim.get(mode.value, 0.0), theme.MODE_COLORS[mode])
             for mode in Mode]
    metrics = [
        ("mode changes", str(m.mode_transitions)),
        ("LLM requests", f"{m.llm_requests}  ok {sum(m.plans_by_source.values())}  "
                         f"failed {m.llm_failures}"
                         + (f"  cancelled {m.llm_cancelled}" if m.llm_cancelled else "")
                         + (f"  expired {m.llm_expired}" if m.llm_expired else "")
                         + (f"  discarded {m.plans_discarded}" if m.plans_discarded else "")),
        ("GOAP actions", str(m.goap_actions)),
        ("LLM steps", f"{m.llm_steps_executed} done  {m.llm_steps_skipped} skipped"
                      + (f"  {m.llm_steps_failed} failed" if m.llm_steps_failed else "")
                      + (f"  {m.llm_steps_grounded} prepared" if m.llm_steps_grounded else "")),
        ("BT actions", str(m.bt_actions)),
        ("refused steps", str(m.host_step_failures)),
        ("plans by origin", ", ".join(f"{k} {v}" for k, v in sorted(m.plans_by_source.items()))
         or "-"),
    ]
    in_flight = ""
    if task is not None:
        in_flight = f"request r{task.request_id} in flight {max(0.0, now - task.submitted_at):.1f}s"
        in_flight += f" ({task.reason})" if task.reason else ""
    current = "-"
    if intent is not None and intent.step is not None:
        current = describe_step(intent.step)
        if intent.status is not IntentStatus.RUNNING:
            current += f" [{intent.status.value}]"
    if esper.has_component(ent, Dead):
        current = "out of the round"
    elif esper.has_component(ent, Downed):
        current = "downed: waiting for a revive"
    title, note, lines = _plan_lines(ent, state, memory)
    return AgentPanel(
        entity=ent, name=session.name_of(ent), label=state.label, mode=state.mode,
        color=theme.MODE_COLORS[state.mode],
        order=(orders.order or "none") if orders is not None else "none",
        hp=hp.hp if hp else 0.0, max_hp=hp.max_hp if hp else 0.0,
        ammo=f"{ammo.rounds}/{ammo.capacity} +{ammo.reserve}" if ammo else "-",
        current=current, in_flight=in_flight, time_in_modes=times, metrics=metrics,
        last_failure=state.last_failure, plan_title=title, plan_note=note, plan_lines=lines,
    )


def _plan_lines(
    ent: int, state: ArbiterState, memory: RenderMemory
) -> tuple[str, str, list[PlanLine]]:
    rejected = {r.index: r.reason for r in state.rejected_steps}
    plan = state.plan
    running = plan is not None and state.mode is Mode.EXECUTING_LLM
    if plan is None:
        plan = memory.last_plan.get(ent)
    if plan is None:
        return "no LLM plan yet", "GOAP / behaviour tree decide step by step", []
    lines = []
    for i, step in enumerate(plan.steps):
        if i in rejected:
            st = "rejected"
        elif not running or i < state.step_index:
            st = "done"
        elif i == state.step_index:
            st = "active"
        else:
            st = "pending"
        lines.append(PlanLine(i, describe_step(step), st, rejected.get(i, "")))
    title = f"plan {plan.plan_id}  ({plan.source}, {len(plan.steps)} steps)"
    note = f"step {state.step_index + 1} of {len(plan.steps)}" if running else "finished"
    if plan.rationale:
        note += f"  -  {plan.rationale}"
    return title, note, lines


def llm_panel(service: object | None, status: ServiceStatus | None) -> LlmPanel:
    """The LLM status panel: backend, model, online or offline and why, the live numbers."""
    if service is None or status is None:
        return LlmPanel(
            backend="none", model="", online=False, state="OFF", state_color=theme.TEXT_DIM,
            reason="no language model: GOAP and the behaviour tree only "
                   "(run with --backend auto, ollama, embedded or scripted)",
            rows=[],
        )

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    rows = [
        ("in flight", str(status.in_flight)),
        ("queue depth", str(status.queue_depth)),
        ("last latency", secs(status.last_latency_s)),
        ("first token", secs(status.last_ttft_s)),
        ("tokens/s", "-" if status.last_tokens_per_s is None
         else f"{status.last_tokens_per_s:.1f}"),
        ("requests", f"{status.requests_total}  ok {status.plans_ok}  failed {status.failures}"),
    ]
    withdrawn = [(name, n) for name, n in (("cancelled", status.cancelled),
                                           ("superseded", status.superseded),
                                           ("refused", status.refused),
                                           ("expired", status.expired)) if n]
    if withdrawn:  # neither ok nor failed: replaced, refused, or expired unseen in the queue
        rows.append(("withdrawn", "  ".join(f"{name} {n}" for name, n in withdrawn)))
    if status.warming_up:
        state, color = "WARMING UP", theme.WARN
    elif status.online:
        state, color = "ONLINE", theme.GOOD
    else:
        state, color = "OFFLINE", theme.BAD
    return LlmPanel(
        backend=status.backend, model=status.model or "-", online=status.online,
        state=state, state_color=color, reason=status.reason, rows=rows,
    )


def build_timeline(
    status: ServiceStatus | None, game_now: float, selected: int | None,
    span_s: float = TIMELINE_SPAN_S, max_lanes: int = 6,
) -> TimelineModel:
    """Bars for the recent requests over the last ``span_s`` seconds, packed into lanes (a
    request goes into the first lane free when it was queued, so overlapping requests stack).

    Live services stamp requests on the monotonic wall clock (``status.now``); scripted and
    replayed ones on game time (``status.clock == "game"``): then game time is the axis, and
    a request whose answer time is still ahead is drawn as running.
    """
    if status is None:
        return TimelineModel(span_s, "wall", [], 0, 0.0, 0)
    clock = "game" if status.clock == "game" or status.now <= 0 else "wall"
    now = status.now if clock == "wall" else game_now
    lo = now - span_s
    bars: list[TimelineBar] = []
    lane_end: list[float] = []
    intervals: list[tuple[float, float]] = []
    records = sorted(status.recent, key=lambda r: (r.queued_at, r.request_id))
    for r in records:
        if r.queued_at > now:
            continue
        running = r.finished_at is None or r.finished_at > now
        end = now if running else float(r.finished_at)  # type: ignore[arg-type]
        started = r.started_at if r.started_at is not None and r.started_at <= now else None
        if started is not None:
            intervals.append((started, end))
        if end < lo:
            continue
        outcome = r.outcome
        if running:
            outcome = "running" if started is not None else "queued"
        lane = next((i for i, e in enumerate(lane_end) if e <= r.queued_at), len(lane_end))
        if lane == len(lane_end):
            lane_end.append(end)
        else:
            lane_end[lane] = end
        if lane >= max_lanes:
            lane = max_lanes - 1

        def frac(v: float | None) -> float | None:
            return None if v is None else max(0.0, min(1.0, (v - lo) / span_s))

        ft = r.first_token_at if r.first_token_at is not None and r.first_token_at <= now else None
        bars.append(TimelineBar(
            request_id=r.request_id, agent_id=r.agent_id, lane=lane,
            queued=frac(r.queued_at) or 0.0, started=frac(started), first_token=frac(ft),
            end=frac(end) or 0.0, outcome=outcome, color=theme.outcome_color(outcome),
            running=running, mine=r.agent_id == selected,
        ))
    pct = status.concurrency_pct if clock == "wall" else concurrency_pct(intervals, lo, now)
    return TimelineModel(span_s, clock, bars, min(max_lanes, len(lane_end)), pct,
                         len(status.recent))


def build_log(session: GameSession, selected: int | None, limit: int) -> list[LogLine]:
    """The latest mode changes (and requests, outcomes, rejected steps, orders), oldest first."""
    out: list[LogLine] = []
    if limit <= 0:
        return out
    for ent, ev in reversed(session.arbiter_events):
        if ev.kind not in LOG_KINDS:
            continue
        if ev.kind == "transition":
            color = theme.MODE_COLORS[ev.mode]
        elif ev.kind == "rejected" or (ev.kind == "outcome" and "failed" in ev.text):
            color = theme.BAD
        elif ev.kind == "order":
            color = theme.TEXT
        else:
            color = theme.TEXT_DIM
        out.append(LogLine(ev.t, f"{session.name_of(ent)}#{ent}", ev.text, color,
                           ent == selected))
        if len(out) >= limit:
            break
    out.reverse()
    return out

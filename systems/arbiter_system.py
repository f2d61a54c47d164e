"""ArbiterSystem: runs the arbiter for every Agent and submits the LLM requests it asks for."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import esper

from esper_arbiter.components.agent import (
    Agent,
    ArbiterEvent,
    ArbiterState,
    Intent,
    IntentStatus,
    Perception,
)
from esper_arbiter.components.llm import (
    PRIORITY_HIGH,
    FailureKind,
    LlmTask,
    PlanFailure,
    PlanProposal,
    PlanRequest,
)
from esper_arbiter.components.world import Health, Orders
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.prompt import with_advice
from esper_arbiter.systems.perception import MissingWorldPiece, game_time
from esper_arbiter.systems.planning.arbiter import Arbiter
from esper_arbiter.systems.queries import components, fresh_row, rows_now, still_listed

log = logging.getLogger("esper_arbiter.arbiter")

EventSink = Callable[[int, ArbiterEvent], None]
_Row = tuple[Agent, Perception, ArbiterState, Intent, Health]
_ROW_TYPES = (Agent, Perception, ArbiterState, Intent, Health)


class ArbiterSystem(esper.Processor):
    """Per agent: Perception + ArbiterState (+ PlanProposal) -> Intent and maybe an LlmTask."""

    def __init__(
        self,
        arbiter: Arbiter,
        service: PlanService | None,
        on_event: EventSink | None = None,
    ) -> None:
        self.arbiter = arbiter
        self.service = service
        self.on_event = on_event
        # A service that can never answer (no model installed or reachable) is not asked at
        # all: its OFFLINE answers would only count as failures and push agents into BT.
        self.asks_model = service is not None and service.available
        self._held: list[int] = []
        self._to_send: dict[int, None] = {}
        """Agents whose model request goes out on a coming frame (see ``_send``), in order."""

    def process(self, *args: object, **kwargs: object) -> None:
        arbiter = self.arbiter
        service = self.service
        sink = self.on_event
        t = game_time()
        # News that must wake an agent even if its step is still running.
        for ent, _proposal in esper.get_component(PlanProposal):
            state = esper.try_component(ent, ArbiterState)
            if state is not None:
                state.wake()
        for _ent, (standing, waiting) in components(Orders, ArbiterState):
            if standing.serial != waiting.last_order_serial:
                waiting.wake()
        if self._to_send and service is not None:
            self._send(service, arbiter.config.max_submits_per_frame)
        running, idle = IntentStatus.RUNNING, IntentStatus.IDLE
        # Pass 1 (changes no component anywhere, so it may walk esper's own list): the busy
        # or resting agents with no news take the steady-state fast path; the rest are due.
        due: list[tuple[int, _Row]] = []
        listed = rows_now(*_ROW_TYPES)
        for row in listed:
            _ent, (_agent, _perception, state, intent, health) = row
            if t < state.wake_at and (intent.status is running or intent.status is idle):
                hp = health.hp
                if hp < state.seen_hp:
                    arbiter.on_hit(state, t, hp, health.max_hp)  # news? look again soon
                state.seen_hp = hp
                continue
            due.append(row)
        # Pass 2: the due agents decide (held back last frame first). Deciding adds and
        # removes components, so each row after the first change is read again from its
        # entity: one a host's callback deleted or stripped meanwhile is passed over.
        budget = arbiter.config.max_decisions_per_frame
        held: list[int] = []
        for ent, (agent, perception, state, intent, health) in self._first(due, listed):
            if budget is not None:
                if budget <= 0 and not esper.has_component(ent, PlanProposal):
                    held.append(ent)  # due, but this frame's decisions are spent
                    continue
                budget -= 1
            proposal = esper.try_component(ent, PlanProposal)
            if proposal is not None:
                esper.remove_component(ent, PlanProposal)
            orders = esper.try_component(ent, Orders)
            in_flight = esper.has_component(ent, LlmTask)
            use_llm = self.asks_model and agent.use_llm
            n_events = state.event_count
            try:
                arbiter.update(
                    state,
                    perception,
                    intent,
                    proposal.outcome if proposal is not None else None,
                    asked_at=proposal.asked_at if proposal is not None else None,
                    order_serial=orders.serial if orders is not None else 0,
                    order=orders.order if orders is not None else None,
                    llm_enabled=use_llm,
                    llm_in_flight=in_flight,
                )
            except MissingWorldPiece as exc:
                # A component went missing this frame; PerceptionSystem drops the agent (and
                # says why) on the next one.
                log.debug("agent %d skipped: %s", ent, exc)
                continue
            state.seen_hp = state.decided_hp = health.hp
            if state.pending_request is not None and use_llm and service is not None:
                self._to_send[ent] = None  # sent on the next frame: see _send
            if sink is not None and state.event_count != n_events:
                self._emit(ent, state, n_events, sink)
        self._held = held

    def _first(self, due: list[tuple[int, _Row]], listed: object) -> Iterator[tuple[int, _Row]]:
        """The due rows, those held back last frame first (see ``max_decisions_per_frame``).

        ``listed`` is the list pass 1 walked. While esper still holds it as its cached answer,
        nothing came or went since, and a row is used as it is; otherwise it is read again
        from its entity, and one deleted or stripped meanwhile (by a host's callback) is
        passed over."""
        held = self._held
        self._held = []
        if held:  # in the order they were held: the longest held decides first
            rank = {ent: i for i, ent in enumerate(held)}
            first = sorted((r for r in due if r[0] in rank), key=lambda r: rank[r[0]])
            due = first + [r for r in due if r[0] not in rank]
        fresh = False  # once esper's list has gone, every later row is read again
        for row in due:
            if fresh or not still_listed(listed, *_ROW_TYPES):
                fresh = True
                comps = fresh_row(row[0], *_ROW_TYPES)
                if comps is None:
                    continue
                row = (row[0], comps)
            yield row

    def _send(self, service: PlanService, cap: int | None) -> None:
        """Send the model requests the agents asked for on earlier frames, oldest first, at
        most ``cap`` of them (the rest wait for the next frame).

        A request is decided on one frame and sent on the next: the frame in which an agent
        decides is already a heavy one (a crowd's think timers fire together, an order makes
        everyone it reaches decide afresh), and a request costs its advice and the hand-over
        to the service on top. Urgent requests (``PRIORITY_HIGH``: an order, a key the host
        bound to :meth:`Arbiter.request_now`) all go on that next frame; routine ones
        (periodic re-plans, retries) fill up to ``cap`` after them, oldest first, and the
        rest wait for a later frame. The agent's ``pending_request`` says what to send, as it
        stands now: an agent gone, no longer asking, or switched off meanwhile sends
        nothing."""
        queue = self._to_send
        self._to_send = {}
        sent = 0
        rows = [(ent, esper.try_component(ent, ArbiterState)) for ent in queue]
        rows.sort(key=lambda r: -(r[1].pending_priority if r[1] is not None else 0))  # stable
        for ent, state in rows:
            if (cap is not None and sent >= cap and state is not None
                    and state.pending_priority < PRIORITY_HIGH):
                self._to_send[ent] = None
                continue
            perception = esper.try_component(ent, Perception)
            agent = esper.try_component(ent, Agent)
            if (state is None or perception is None or agent is None
                    or state.pending_request is None or not (self.asks_model and agent.use_llm)):
                continue
            n_events = state.event_count
            self._replace_and_submit(ent, perception, state, service)
            sent += 1
            if self.on_event is not None and state.event_count != n_events:
                self._emit(ent, state, n_events, self.on_event)

    def _replace_and_submit(
        self, ent: int, perception: Perception, state: ArbiterState, service: PlanService
    ) -> None:
        """Submit the agent's pending request; one still in flight is withdrawn first (its
        answer would be stale)."""
        running = esper.try_component(ent, LlmTask)
        if running is not None:
            running.ticket.cancel()
            esper.remove_component(ent, LlmTask)
            self.arbiter.note_request_withdrawn(state, perception.t, running.request_id)
        self._submit(ent, perception, state, service)

    def _submit(
        self, ent: int, perception: Perception, state: ArbiterState, service: PlanService
    ) -> None:
        reason = state.pending_request or "periodic"
        snapshot = perception.snapshot
        try:
            snapshot = with_advice(snapshot, self.arbiter.domain)  # on this (the game's) thread
        except Exception:  # an advisor that fails leaves the prompt without options
            log.exception("agent %d: the domain's advice failed", ent)
        request = PlanRequest(
            agent_id=ent,
            snapshot=snapshot,
            priority=state.pending_priority,
            reason=reason,
            submitted_at=perception.t,
            max_steps=self.arbiter.config.max_plan_steps,
            domain=self.arbiter.domain,
        )
        try:
            ticket = service.submit(request)
        except Exception as exc:  # the game goes on without this request
            log.exception("agent %d: submitting an LLM request failed", ent)
            state.pending_request = None
            state.metrics.llm_requests += 1
            failure = PlanFailure(
                0, FailureKind.CRASH, f"submit raised {type(exc).__name__}: {exc}"
            )
            esper.add_component(ent, PlanProposal(failure, perception.t, reason))
            return
        esper.add_component(
            ent,
            LlmTask(ticket, ticket.request_id, perception.t, reason, state.pending_priority),
        )
        self.arbiter.note_request_submitted(state, perception.t, ticket.request_id)

    @staticmethod
    def _emit(ent: int, state: ArbiterState, n_before: int, sink: EventSink) -> None:
        events = state.events
        new = min(state.event_count - n_before, len(events))
        for i in range(len(events) - new, len(events)):
            sink(ent, events[i])

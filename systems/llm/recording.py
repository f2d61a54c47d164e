"""Record a model-driven round to JSON lines, and replay it exactly.

``--record run.jsonl`` wraps the live service in :class:`RecordingPlanService`: every request
becomes one line (agent, reason, game time submitted and delivered, the prompt messages, a digest
of the snapshot, the raw reply, timings, and the outcome: plan steps or failure kind and
message). A line is written when the game first sees the outcome (the ``now`` of the first poll
that returns it), when the request is cancelled, or at close for requests never delivered.

``--replay run.jsonl`` answers from such a file with :class:`ReplayPlanService`. Requests are
matched per agent, in order, and each outcome is delivered on *game* time after the same delay
it took in the recording (a :class:`~systems.llm.clocked.ClockedTicket`), so a seeded round that
ran on a real model, with its wall-clock jitter, replays frame for frame. If a replayed request's
snapshot differs from the recorded one (the round diverged) the replay still answers, and warns
in the log and in :meth:`ReplayPlanService.status`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from esper_arbiter.components.actions import PlanIntent
from esper_arbiter.components.llm import (
    WITHDRAWN_KINDS,
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
    PlanTicket,
    RequestTiming,
)
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.llm.api import (
    PlanService,
    RequestRecord,
    ServiceStatus,
)
from esper_arbiter.systems.llm.backends.base import Message
from esper_arbiter.systems.llm.clocked import ClockedTicket

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


# --------------------------------------------------------------------------- digest


def _unit(u: UnitView | None) -> Any:
    if u is None:
        return None
    return [u.id, u.x, u.y, round(u.hp, 6), round(u.max_hp, 6), u.team, u.in_cover, u.name]


def canonical_snapshot(snapshot: WorldSnapshot) -> dict[str, Any]:
    """A JSON-able rendering of everything in the snapshot, in a fixed order."""
    g = snapshot.grid
    return {
        "t": round(snapshot.t, 6),
        "me": _unit(snapshot.me),
        "leader": _unit(snapshot.leader),
        "enemies": [_unit(u) for u in snapshot.enemies],
        "allies": [_unit(u) for u in snapshot.allies],
        "neutrals": [_unit(u) for u in snapshot.neutrals],
        "grid": {
            "w": g.width, "h": g.height, "walls": sorted(g.walls), "cover": sorted(g.cover),
            "smoke": [[x, y, round(r, 6)] for x, y, r in g.smoke],
        },
        "pois": {k: list(v) for k, v in sorted(snapshot.pois.items())},
        "objective": None if snapshot.objective is None else [
            snapshot.objective.label, snapshot.objective.kind, snapshot.objective.x,
            snapshot.objective.y, round(snapshot.objective.radius, 6),
        ],
        "orders": snapshot.orders,
        "order_serial": snapshot.order_serial,
        "ammo": [snapshot.ammo, snapshot.ammo_capacity, snapshot.ammo_reserve],
        "morale": round(snapshot.morale, 6),
        "cooldowns": {k: round(v, 6) for k, v in sorted(snapshot.cooldowns.items())},
    }


def snapshot_digest(snapshot: WorldSnapshot) -> str:
    """sha256 of :func:`canonical_snapshot` (hex)."""
    text = json.dumps(canonical_snapshot(snapshot), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- outcome <-> JSON


def _timing_to_json(t: RequestTiming) -> dict[str, Any]:
    return {
        "queued_at": t.queued_at, "started_at": t.started_at,
        "first_token_at": t.first_token_at, "finished_at": t.finished_at,
        "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
        "latency_s": t.latency, "ttft_s": t.time_to_first_token,
    }


def _timing_from_json(d: Any) -> RequestTiming:
    if not isinstance(d, dict):
        return RequestTiming()
    return RequestTiming(
        queued_at=float(d.get("queued_at") or 0.0),
        started_at=d.get("started_at"),
        first_token_at=d.get("first_token_at"),
        finished_at=d.get("finished_at"),
        prompt_tokens=int(d.get("prompt_tokens") or 0),
        completion_tokens=int(d.get("completion_tokens") or 0),
    )


def outcome_to_json(outcome: PlanOutcome) -> dict[str, Any]:
    if isinstance(outcome, PlanReady):
        return {"type": "plan", "plan": outcome.plan.to_dict()}
    return {"type": "failure", "kind": outcome.kind.value, "message": outcome.message}


def outcome_from_json(
    d: dict[str, Any], request_id: int, backend: str, model: str, raw: str,
    timing: RequestTiming,
) -> PlanOutcome:
    """Inverse of :func:`outcome_to_json`; raises ``ValueError``/``KeyError`` on bad data."""
    if d.get("type") == "plan":
        plan = PlanIntent.from_dict(d["plan"])
        source = plan.source if plan.source in ("fallback", "scripted") else "replay"
        plan = PlanIntent(plan.plan_id, plan.steps, source, plan.rationale)
        return PlanReady(request_id=request_id, plan=plan, backend=backend, model=model,
                         timing=timing, raw=raw)
    if d.get("type") == "failure":
        return PlanFailure(request_id=request_id, kind=FailureKind(d["kind"]),
                           message=str(d.get("message", "")), backend=backend, model=model,
                           timing=timing, raw=raw)
    raise ValueError(f"unknown outcome type {d.get('type')!r}")


# --------------------------------------------------------------------------- recording


MessageBuilder = Callable[[PlanRequest], Sequence[Message]]


def _default_messages(request: PlanRequest) -> Sequence[Message]:
    from esper_arbiter.systems.llm.default_builders import default_messages

    return default_messages(request)


class _RecordingTicket:
    __slots__ = ("_inner", "_owner", "_request", "_written")

    def __init__(self, inner: PlanTicket, request: PlanRequest,
                 owner: RecordingPlanService) -> None:
        self._inner = inner
        self._request = request
        self._owner = owner
        self._written = False

    @property
    def request_id(self) -> int:
        return self._inner.request_id

    def poll(self, now: float) -> PlanOutcome | None:
        outcome = self._inner.poll(now)
        if outcome is not None and not self._written:
            self._written = True
            self._owner._write(self._request, self.request_id, outcome, delivered_at=now)
        return outcome

    def cancel(self) -> None:
        self._inner.cancel()
        if not self._written:
            self._written = True
            outcome = self._inner.poll(math.inf)
            if outcome is None:
                outcome = PlanFailure(request_id=self.request_id, kind=FailureKind.CANCELLED,
                                      message="request cancelled")
            self._owner._write(self._request, self.request_id, outcome, delivered_at=None)

    def _flush_undelivered(self) -> None:
        if self._written:
            return
        self._written = True
        outcome = self._inner.poll(math.inf)
        if outcome is None:
            outcome = PlanFailure(request_id=self.request_id, kind=FailureKind.CANCELLED,
                                  message="round ended before the outcome arrived")
        self._owner._write(self._request, self.request_id, outcome, delivered_at=None)


class RecordingPlanService:
    """Wraps any :class:`PlanService` and writes each request to a JSON-lines file.

    The file is opened at construction (an unwritable path fails there, clearly), each line is
    flushed as it is written, so a crash still leaves a usable recording.
    """

    def __init__(self, inner: PlanService, path: str | Path,
                 messages: MessageBuilder | None = None) -> None:
        self._inner = inner
        self._path = Path(path)
        self._messages = messages or _default_messages
        self._lock = threading.Lock()
        self._file: IO[str] | None = self._path.open("w", encoding="utf-8")
        self._tickets: list[_RecordingTicket] = []
        self.lines_written = 0
        status = inner.status()
        self._write_line({
            "type": "header", "version": FORMAT_VERSION, "backend": status.backend,
            "model": status.model, "created_unix": time.time(),
        })

    @property
    def available(self) -> bool:
        """Like the service it records."""
        return self._inner.available

    @property
    def game_clock(self) -> bool:
        """Paced like the service it records."""
        return self._inner.game_clock

    @property
    def warming_up(self) -> bool:
        return self._inner.warming_up

    @property
    def max_batch_size(self) -> int:
        return self._inner.max_batch_size

    @property
    def backend_name(self) -> str:
        return self._inner.backend_name

    @property
    def inner(self) -> PlanService:
        return self._inner

    @property
    def path(self) -> Path:
        return self._path

    def submit(self, request: PlanRequest) -> PlanTicket:
        ticket = _RecordingTicket(self._inner.submit(request), request, self)
        self._tickets.append(ticket)
        if len(self._tickets) > 256:
            self._tickets = [t for t in self._tickets if not t._written]
        return ticket

    def status(self) -> ServiceStatus:
        return self._inner.status()

    def close(self) -> None:
        """Close the inner service (which resolves what is in flight), record what never
        reached the game, and close the file."""
        self._inner.close()
        for ticket in self._tickets:
            ticket._flush_undelivered()
        self._tickets.clear()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _write(self, request: PlanRequest, request_id: int, outcome: PlanOutcome,
               delivered_at: float | None) -> None:
        try:
            messages: list[dict[str, str]] | None = [dict(m) for m in self._messages(request)]
        except Exception as exc:  # a recording must never break the round
            log.warning("recording: could not rebuild the prompt: %s", exc)
            messages = None
        self._write_line({
            "type": "request",
            "request_id": request_id,
            "agent_id": request.agent_id,
            "reason": request.reason,
            "priority": request.priority,
            "max_steps": request.max_steps,
            "deadline_s": request.deadline_s,
            "submitted_at": request.submitted_at,
            "delivered_at": delivered_at,
            "snapshot_digest": snapshot_digest(request.snapshot),
            "backend": outcome.backend,
            "model": outcome.model,
            "messages": messages,
            "raw": outcome.raw,
            "timing": _timing_to_json(outcome.timing),
            "outcome": outcome_to_json(outcome),
        })

    def _write_line(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"))
        with self._lock:
            if self._file is None:
                return
            self._file.write(line + "\n")
            self._file.flush()
            self.lines_written += 1


# --------------------------------------------------------------------------- replay


class ReplayFormatError(ValueError):
    """The replay file is not a recording; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request line of a recording."""

    line: int
    agent_id: int
    submitted_at: float
    delivered_at: float | None
    digest: str
    outcome: dict[str, Any]
    raw: str
    backend: str
    model: str
    timing: RequestTiming


@dataclass(frozen=True, slots=True)
class Recording:
    path: Path
    backend: str
    model: str
    requests: tuple[RecordedRequest, ...]


def load_recording(path: str | Path) -> Recording:
    """Read and check a recording. Raises :class:`ReplayFormatError` (or ``OSError``)."""
    p = Path(path)
    backend, model = "", ""
    requests: list[RecordedRequest] = []
    with p.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ReplayFormatError(f"{p}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ReplayFormatError(f"{p}:{number}: expected a JSON object")
            kind = obj.get("type")
            if kind == "header":
                if obj.get("version") != FORMAT_VERSION:
                    raise ReplayFormatError(
                        f"{p}:{number}: recording format {obj.get('version')!r}, this build "
                        f"reads {FORMAT_VERSION}")
                backend, model = str(obj.get("backend", "")), str(obj.get("model", ""))
                continue
            if kind != "request":
                raise ReplayFormatError(f"{p}:{number}: unknown line type {kind!r}")
            try:
                rec = RecordedRequest(
                    line=number,
                    agent_id=int(obj["agent_id"]),
                    submitted_at=float(obj["submitted_at"]),
                    delivered_at=None if obj.get("delivered_at") is None
                    else float(obj["delivered_at"]),
                    digest=str(obj.get("snapshot_digest", "")),
                    outcome=dict(obj["outcome"]),
                    raw=str(obj.get("raw") or ""),
                    backend=str(obj.get("backend") or backend),
                    model=str(obj.get("model") or model),
                    timing=_timing_from_json(obj.get("timing")),
                )
                outcome_from_json(rec.outcome, 0, rec.backend, rec.model, rec.raw, rec.timing)
            except (KeyError, TypeError, ValueError) as exc:
                raise ReplayFormatError(
                    f"{p}:{number}: bad request record ({type(exc).__name__}: {exc})") from None
            requests.append(rec)
    if not backend and not requests:
        raise ReplayFormatError(f"{p}: empty recording")
    return Recording(p, backend, model, tuple(requests))


_KEEP_RECORDS = 64


def _game_time_record(rid: int, request: PlanRequest, timing: RequestTiming, ready_at: float,
                      outcome: PlanOutcome) -> RequestRecord:
    """The timeline record of a replayed request on game time: queued when the game asked,
    finished when the recording says the game got the answer. The recorded wait before the
    model started and the time to the first token keep their length, inside that span."""
    start = request.submitted_at
    end = None if math.isinf(ready_at) else max(start, ready_at)

    def offset(at: float | None) -> float | None:
        if at is None or timing.queued_at is None:
            return None
        t = start + max(0.0, at - timing.queued_at)
        return t if end is None else min(t, end)

    return RequestRecord(
        request_id=rid, agent_id=request.agent_id, priority=request.priority,
        queued_at=start, started_at=offset(timing.started_at),
        first_token_at=offset(timing.first_token_at), finished_at=end,
        outcome="plan" if isinstance(outcome, PlanReady) else outcome.kind.value)


class ReplayPlanService:
    """Answers requests from a recording on game time (see the module docstring)."""

    game_clock = True
    """Answers on game time, as recorded."""
    available = True
    warming_up = False
    max_batch_size = 1

    def __init__(self, recording: Recording | str | Path) -> None:
        self._rec = recording if isinstance(recording, Recording) else load_recording(recording)
        self._queues: dict[int, deque[RecordedRequest]] = {}
        for r in self._rec.requests:
            self._queues.setdefault(r.agent_id, deque()).append(r)
        self._next_id = 1
        self.mismatches = 0
        self.exhausted = 0
        self._records: dict[int, RequestRecord] = {}
        """The latest requests for the HUD's timeline, on game time (the replay's own clock),
        never on the recording's wall clock."""
        self._now = 0.0
        self._ok = 0
        self._failed = 0
        self._withdrawn: dict[FailureKind, int] = {}

    @property
    def backend_name(self) -> str:
        return "replay"

    @property
    def recording(self) -> Recording:
        return self._rec

    def submit(self, request: PlanRequest) -> ClockedTicket:
        rid = self._next_id
        self._next_id += 1
        queue = self._queues.get(request.agent_id)
        if not queue:
            self.exhausted += 1
            log.warning("replay %s: no recorded request left for agent %d", self._rec.path,
                        request.agent_id)
            outcome: PlanOutcome = PlanFailure(
                request_id=rid, kind=FailureKind.OFFLINE,
                message=f"replay {self._rec.path.name} has no more requests for agent "
                        f"{request.agent_id}", backend="replay")
            return ClockedTicket(rid, request.submitted_at, outcome, self._count)
        rec = queue.popleft()
        if rec.digest and rec.digest != snapshot_digest(request.snapshot):
            self.mismatches += 1
            log.warning("replay %s line %d: snapshot differs from the recording (agent %d, "
                        "t=%.2f): the round has diverged", self._rec.path, rec.line,
                        request.agent_id, request.submitted_at)
        outcome = outcome_from_json(rec.outcome, rid, rec.backend or "replay", rec.model,
                                    rec.raw, rec.timing)
        if rec.delivered_at is None:
            ready_at = math.inf
        elif abs(request.submitted_at - rec.submitted_at) < 1e-9:
            ready_at = rec.delivered_at  # exact: no float drift from re-adding the delay
        else:
            ready_at = request.submitted_at + (rec.delivered_at - rec.submitted_at)
        self._records[rid] = _game_time_record(rid, request, rec.timing, ready_at, outcome)
        while len(self._records) > _KEEP_RECORDS:
            del self._records[next(iter(self._records))]
        return ClockedTicket(rid, ready_at, outcome,
                             lambda got, now: self._count(got, now, rid))

    def _count(self, got: PlanOutcome, now: float | None, rid: int = 0) -> None:
        """Count what the game received (a withdrawn request is neither ok nor failed)."""
        if now is not None:
            self._now = max(self._now, now)
        old = self._records.get(rid)
        if old is not None and (now is None or old.finished_at is None):
            end = max(old.queued_at, self._now if now is None else now)
            label = "plan" if isinstance(got, PlanReady) else got.kind.value
            self._records[rid] = RequestRecord(
                request_id=old.request_id, agent_id=old.agent_id, priority=old.priority,
                queued_at=old.queued_at, started_at=old.started_at,
                first_token_at=old.first_token_at, finished_at=end, outcome=label)
        if isinstance(got, PlanReady):
            self._ok += 1
        elif got.kind in WITHDRAWN_KINDS:
            self._withdrawn[got.kind] = self._withdrawn.get(got.kind, 0) + 1
        else:
            self._failed += 1

    def status(self) -> ServiceStatus:
        reason = f"replaying {self._rec.path.name}"
        if self.mismatches:
            reason += (f"; WARNING: {self.mismatches} snapshot mismatch(es), the round diverged "
                       "from the recording")
        if self.exhausted:
            reason += f"; {self.exhausted} request(s) past the end of the recording"
        return ServiceStatus(
            backend="replay", model=self._rec.model, online=True, reason=reason,
            requests_total=self._next_id - 1, plans_ok=self._ok, failures=self._failed,
            cancelled=self._withdrawn.get(FailureKind.CANCELLED, 0),
            superseded=self._withdrawn.get(FailureKind.SUPERSEDED, 0),
            refused=self._withdrawn.get(FailureKind.REFUSED, 0),
            recent=tuple(self._records.values()), now=self._now, clock="game",
        )

    def close(self) -> None:
        """Nothing runs in the background."""

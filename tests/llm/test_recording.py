"""--record / --replay: a round driven by a wall-clock model replays exactly on game time."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from esper_arbiter.components.actions import describe_step
from esper_arbiter.components.llm import (
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.recording import (
    RecordingPlanService,
    ReplayFormatError,
    ReplayPlanService,
    load_recording,
    snapshot_digest,
)
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.planning.snapshots import RIVAL_ID, hello_snapshot, with_enemy

REPLIES = [
    '{"steps": [{"act": "Scan"}]}',
    '{"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Reload"}]}',
    "no plan today",
    '{"steps": [{"act": "MoveTo", "x": 6, "y": 4}]}',  # into the wall: invalid
    '{"steps": [{"act": "Wait", "seconds": 1}]}',
]


@dataclass(frozen=True)
class Event:
    t: float
    agent: int
    what: str


def describe(outcome: PlanOutcome) -> str:
    if isinstance(outcome, PlanReady):
        return "plan " + " ".join(describe_step(s) for s in outcome.plan.steps)
    return f"failure {outcome.kind.value}: {outcome.message}"


def play_round(service: PlanService, frames: int = 240, frame_wall_s: float = 0.004) -> list[Event]:
    """A tiny deterministic 'game': two agents ask for plans at fixed game times and whenever
    their last request came back; what they get decides when they ask next. Game time moves
    1/60 s per frame; the wall clock only matters to a real (non-replayed) service."""
    events: list[Event] = []
    tickets: dict[int, object] = {}
    next_ask = {2: 0.0, 7: 0.1}
    for frame in range(frames):
        now = frame / 60
        for agent in (2, 7):
            ticket = tickets.get(agent)
            if ticket is not None:
                outcome = ticket.poll(now)  # type: ignore[attr-defined]
                if outcome is not None:
                    events.append(Event(now, agent, describe(outcome)))
                    del tickets[agent]
                    delay = 0.5 if isinstance(outcome, PlanReady) else 0.25
                    next_ask[agent] = now + delay
            if agent not in tickets and now >= next_ask[agent]:
                snap = hello_snapshot(t=now)
                if frame % 3 == 0:
                    snap = with_enemy(snap, RIVAL_ID, hp=30)
                tickets[agent] = service.submit(PlanRequest(
                    agent_id=agent, snapshot=snap, submitted_at=now, reason="test"))
                next_ask[agent] = float("inf")
        if frame_wall_s:
            time.sleep(frame_wall_s)
    service.close()
    return events


def test_a_recorded_round_replays_identically(tmp_path: Path) -> None:
    rng = random.Random(5)

    def reply(messages: object) -> FakeReply:
        return FakeReply(rng.choice(REPLIES), delay_s=rng.uniform(0.01, 0.12))

    path = tmp_path / "run.jsonl"
    live = LlmPlanService(FakeBackend(reply), ServiceConfig(timeout_s=5.0, probe_on_start=False))
    recorded = play_round(RecordingPlanService(live, path))
    assert len(recorded) >= 10
    kinds = {e.what.split()[0] + (e.what.split()[1] if e.what.startswith("failure") else "")
             for e in recorded}
    assert "plan" in kinds and len(kinds) >= 2  # plans and failures both happened

    replayer = ReplayPlanService(path)
    replayed = play_round(replayer, frame_wall_s=0.0)
    assert replayed == recorded
    status = replayer.status()
    assert status.backend == "replay" and replayer.mismatches == 0
    assert "WARNING" not in status.reason


def test_record_lines_carry_prompt_digest_reply_timing_and_outcome(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    live = LlmPlanService(FakeBackend([FakeReply(REPLIES[1], delay_s=0.02)]),
                          ServiceConfig(timeout_s=5.0, probe_on_start=False))
    service = RecordingPlanService(live, path)
    snap = hello_snapshot(t=3.0)
    ticket = service.submit(PlanRequest(agent_id=2, snapshot=snap, submitted_at=3.0,
                                        reason="order: attack"))
    outcome = None
    now = 3.0
    while outcome is None:
        time.sleep(0.005)
        now += 1 / 60
        outcome = ticket.poll(now)
    service.close()
    header, line = (json.loads(x) for x in path.read_text().splitlines())
    assert header["type"] == "header" and header["backend"] == "fake"
    assert line["agent_id"] == 2 and line["reason"] == "order: attack"
    assert line["submitted_at"] == 3.0 and line["delivered_at"] == now
    assert line["snapshot_digest"] == snapshot_digest(snap)
    assert line["messages"][0]["role"] == "system"
    assert "#2" in line["messages"][-1]["content"]
    assert line["raw"] == REPLIES[1]
    assert line["timing"]["latency_s"] > 0 and line["timing"]["started_at"] is not None
    assert line["outcome"] == {"type": "plan", "plan": {
        "plan_id": "p-0001", "source": "llm", "rationale": "",
        "steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Reload"}]}}


def test_replayed_plan_is_labelled_replay_and_keeps_its_id(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    live = LlmPlanService(FakeBackend([REPLIES[0]]), ServiceConfig(probe_on_start=False))
    play_round(RecordingPlanService(live, path), frames=20)
    replayer = ReplayPlanService(path)
    ticket = replayer.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot(t=0.0)))
    assert replayer.status().plans_ok == 0  # not delivered yet: nothing to count
    outcome = ticket.poll(1e9)
    assert isinstance(outcome, PlanReady)
    assert outcome.plan.source == "replay" and outcome.plan.plan_id == "p-0001"
    assert replayer.status().plans_ok == 1


def test_snapshot_mismatch_is_reported_and_exhaustion_is_offline(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    live = LlmPlanService(FakeBackend([REPLIES[0]]), ServiceConfig(probe_on_start=False))
    rec = RecordingPlanService(live, path)
    t = rec.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot(t=1.0), submitted_at=1.0))
    deadline = time.monotonic() + 3.0
    while t.poll(1.5) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    rec.close()

    replayer = ReplayPlanService(path)
    other = with_enemy(hello_snapshot(t=1.0), RIVAL_ID, hp=0)
    first = replayer.submit(PlanRequest(agent_id=2, snapshot=other, submitted_at=1.0))
    assert first.poll(1.49) is None
    assert isinstance(first.poll(1.5), PlanReady)  # still answered, on the recorded delay
    assert replayer.mismatches == 1 and "diverged" in replayer.status().reason
    extra = replayer.submit(PlanRequest(agent_id=2, snapshot=other, submitted_at=2.0))
    outcome = extra.poll(2.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.OFFLINE
    assert "no more requests for agent 2" in outcome.message


def test_undelivered_and_cancelled_requests_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    live = LlmPlanService(FakeBackend([FakeReply(hang=True)]),
                          ServiceConfig(timeout_s=30.0, probe_on_start=False))
    rec = RecordingPlanService(live, path)
    cancelled = rec.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot(), submitted_at=0.5))
    rec.submit(PlanRequest(agent_id=3, snapshot=hello_snapshot(), submitted_at=0.6))
    cancelled.cancel()
    rec.close()
    recording = load_recording(path)
    by_agent = {r.agent_id: r for r in recording.requests}
    assert set(by_agent) == {2, 3}
    assert all(r.delivered_at is None for r in recording.requests)
    assert all(r.outcome["kind"] == "cancelled" for r in recording.requests)
    # Replayed, such requests never deliver (the game never saw them either).
    ticket = ReplayPlanService(recording).submit(
        PlanRequest(agent_id=3, snapshot=hello_snapshot(), submitted_at=0.6))
    assert ticket.poll(1e12) is None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty recording"),
        ("not json\n", ":1: not JSON"),
        ('{"type": "header", "version": 99}\n', "format 99"),
        ('{"type": "header", "version": 1}\n{"type": "request", "agent_id": 2}\n',
         ":2: bad request record"),
        ('{"type": "header", "version": 1}\n{"type": "banana"}\n', ":2: unknown line type"),
    ],
)
def test_malformed_recordings_name_file_and_line(tmp_path: Path, content: str,
                                                 needle: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ReplayFormatError) as info:
        load_recording(path)
    assert needle in str(info.value) and "bad.jsonl" in str(info.value)


def test_headless_demo_round_replays_to_the_same_log(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from esper_arbiter.game.cli import main

    path = tmp_path / "demo.jsonl"
    common = ["--headless", "--seconds", "30", "--seed", "4"]
    assert main([*common, "--backend", "scripted", "--record", str(path)]) == 0
    recorded = capsys.readouterr().out.splitlines()
    assert main([*common, "--replay", str(path)]) == 0
    replayed = capsys.readouterr().out.splitlines()
    body = [ln for ln in recorded if not ln.startswith("llm:")]
    assert body and body == [ln for ln in replayed if not ln.startswith("llm:")]
    assert any("LLM" in ln for ln in body)  # the recorded plans did drive the round

"""The real ``ollama`` client against a loopback ollama-compatible server, through every fault.

For each fault: no exception reaches the caller, the failure kind is the right one, the deadline
holds, a frame loop keeps ticking while the request is out, the failure is counted in the
service's status, and the next request (after the fault clears) still gets a plan.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from esper_arbiter.components.actions import Attack, MoveTo, Scan
from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend, not_pulled_message
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.fixtures.fake_ollama import ChatScript, FakeOllama, closed_port_host
from tests.fixtures.frame_loop import run_frames
from tests.planning.snapshots import RIVAL_ID, hello_snapshot, with_enemy

DEADLINE_S = 0.75
SLACK_S = 1.5  # scheduling slack on a loaded 2-core machine; far below any real hang
MODEL = "qwen2.5:1.5b"
GOOD = '{"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]}'


@dataclass(frozen=True)
class Fault:
    name: str
    script: ChatScript
    kind: FailureKind | None  # None: a plan is expected
    needle: str = ""  # must appear in the failure message
    snapshot_dead_rival: bool = False


FAULTS = [
    Fault("http_500", ChatScript(status=500, error="CUDA out of memory"),
          FailureKind.HTTP_STATUS, "500"),
    Fault("http_503", ChatScript(status=503, error="server busy"), FailureKind.HTTP_STATUS, "503"),
    Fault("never_answers", ChatScript(hang=True), FailureKind.TIMEOUT, "no reply"),
    Fault("slow_drip", ChatScript(content=GOOD, chunks=60, chunk_delay_s=0.1),
          FailureKind.TIMEOUT, "chars received"),
    Fault("slow_first_byte", ChatScript(content=GOOD, first_delay_s=5.0), FailureKind.TIMEOUT),
    Fault("cut_mid_stream", ChatScript(content=GOOD, chunks=6, cut_after_chunks=2),
          FailureKind.CONNECTION, "mid-reply"),
    Fault("cut_before_done", ChatScript(content=GOOD, chunks=3, cut_after_chunks=3),
          FailureKind.CONNECTION),
    Fault("error_line_in_stream", ChatScript(content="{", stream_error="llama runner crashed"),
          FailureKind.HTTP_STATUS, "llama runner crashed"),
    Fault("plain_text", ChatScript(content="I would move towards the door and shoot."),
          FailureKind.PARSE, "tried: direct, fenced, envelope, balanced, repair"),
    Fault("json_wrong_shape", ChatScript(content='{"action": "attack", "who": "Rival"}'),
          FailureKind.PARSE, "not a plan"),
    Fault("walks_into_wall", ChatScript(content='{"steps": [{"act": "MoveTo", "x": 6, "y": 4}]}'),
          FailureKind.INVALID_PLAN, "wall"),
    Fault("shoots_dead_enemy",
          ChatScript(content=json.dumps({"steps": [{"act": "Attack", "target_id": RIVAL_ID}]})),
          FailureKind.INVALID_PLAN, "dead", snapshot_dead_rival=True),
    Fault("think_tags", ChatScript(content="<think>The Rival is at (12,2). {maybe}</think>\n"
                                   + GOOD), None),
    Fault("fenced_reply", ChatScript(content="Here is the plan:\n```json\n" + GOOD + "\n```"),
          None),
]


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=(MODEL,)) as srv:
        yield srv


def make_service(host: str, model: str = MODEL, *, timeout_s: float = DEADLINE_S,
                 max_concurrent: int = 2) -> LlmPlanService:
    cfg = ServiceConfig(timeout_s=timeout_s, max_concurrent=max_concurrent,
                        probe_on_start=False, max_batch_size=1)
    return LlmPlanService(OllamaBackend(model=model, host=host, seed=7), cfg)


def request(dead_rival: bool = False) -> PlanRequest:
    snap = hello_snapshot()
    if dead_rival:
        snap = with_enemy(snap, RIVAL_ID, hp=0)
    return PlanRequest(agent_id=2, snapshot=snap, reason="test")


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_a_typed_outcome_and_the_game_goes_on(server: FakeOllama, fault: Fault) -> None:
    server.script(fault.script)
    with make_service(server.host) as service:
        ticket = service.submit(request(fault.snapshot_dead_rival))
        run = run_frames(ticket, max_wall_s=DEADLINE_S + SLACK_S + 2.0)
        outcome = run.outcome
        assert outcome is not None, "ticket never resolved"
        assert run.wall_s < DEADLINE_S + SLACK_S  # the deadline holds
        assert run.longest_poll_s < 0.05  # polling never blocked the frame
        status = service.status()
        if fault.kind is None:
            assert isinstance(outcome, PlanReady), outcome
            assert outcome.plan.steps == (MoveTo(x=7, y=0), Scan())
            assert status.plans_ok == 1 and status.failures == 0
        else:
            assert isinstance(outcome, PlanFailure), outcome
            assert outcome.kind is fault.kind, outcome.message
            assert fault.needle in outcome.message
            assert status.failures == 1
            assert service.failure_counts() == {fault.kind: 1}
            assert status.recent[-1].outcome == fault.kind.value
        if fault.kind in (FailureKind.TIMEOUT, FailureKind.HTTP_STATUS):
            assert run.ticks >= 3  # frames kept coming while the request was out
        # The fault clears; the same service plans again.
        server.script(ChatScript(content=GOOD))
        again = service.plan_blocking(request(), timeout=5.0)
        assert isinstance(again, PlanReady), again
        assert service.status().online


def test_connection_refused_is_connection_failure_and_status_goes_offline() -> None:
    with make_service(closed_port_host()) as service:
        ticket = service.submit(request())
        run = run_frames(ticket, max_wall_s=DEADLINE_S + SLACK_S)
        assert isinstance(run.outcome, PlanFailure)
        assert run.outcome.kind is FailureKind.CONNECTION
        assert "no ollama at 127.0.0.1:" in run.outcome.message
        status = service.status()
        assert status.failures == 1
        assert not status.online and "no ollama" in status.reason


def test_missing_model_says_how_to_pull_it(server: FakeOllama) -> None:
    with make_service(server.host, model="qwen3:8b") as service:
        online, reason = service.probe_blocking(timeout=2.0)
        assert not online
        assert reason == not_pulled_message("qwen3:8b")
        assert "`ollama pull qwen3:8b`" in reason
        assert "run_demo.py" not in reason  # a host's players never see our demo's name
        outcome = service.plan_blocking(request(), timeout=5.0)
        assert isinstance(outcome, PlanFailure)
        assert outcome.kind is FailureKind.MODEL_MISSING
        assert outcome.message == reason
        status = service.status()
        assert not status.online and status.reason == reason
        assert status.failures == 1


def test_probe_finds_reachable_server_and_pulled_model(server: FakeOllama) -> None:
    with make_service(server.host) as service:
        assert service.probe_blocking(timeout=2.0) == (True, "")
        assert service.status().online


def test_probe_of_closed_port_names_the_host() -> None:
    host = closed_port_host()
    with make_service(host) as service:
        online, reason = service.probe_blocking(timeout=2.0)
        assert not online and reason == f"no ollama at {host}"


def test_chat_request_carries_snapshot_schema_options_and_keep_alive(server: FakeOllama) -> None:
    server.script(ChatScript(content=GOOD, prompt_eval_count=321, eval_count=17))
    with make_service(server.host) as service:
        outcome = service.plan_blocking(request(), timeout=5.0)
    assert isinstance(outcome, PlanReady)
    body = server.chat_requests[-1]
    assert body["model"] == MODEL and body["stream"] is True
    assert body["options"]["seed"] == 7 and "temperature" in body["options"]
    assert body["options"]["num_predict"] > 0
    assert body["keep_alive"] == "10m"
    fmt = body["format"]
    assert fmt["properties"]["steps"]["maxItems"] == 8
    # Only live hostile ids are legal attack targets in the schema.
    attack = [b for b in fmt["properties"]["steps"]["items"]["anyOf"]
              if b["properties"]["act"].get("const") == "Attack"]
    assert attack and set(attack[0]["properties"]["target_id"]["enum"]) == {3, 4, 5}
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    # Token counts and timings come from the final chunk.
    assert outcome.timing.prompt_tokens == 321 and outcome.timing.completion_tokens == 17
    assert outcome.timing.first_token_at is not None
    assert outcome.timing.started_at is not None
    assert outcome.timing.first_token_at >= outcome.timing.started_at
    assert outcome.plan.plan_id == f"p-{outcome.request_id:04d}"
    assert outcome.plan.source == "llm" and outcome.backend == "ollama"


def test_dead_target_is_not_in_the_schema(server: FakeOllama) -> None:
    server.script(ChatScript(content=json.dumps({"steps": [{"act": "Attack", "target_id": 4}]})))
    with make_service(server.host) as service:
        outcome = service.plan_blocking(request(dead_rival=True), timeout=5.0)
    assert isinstance(outcome, PlanReady) and outcome.plan.steps == (Attack(target_id=4),)
    fmt = server.chat_requests[-1]["format"]
    targets = {t for b in fmt["properties"]["steps"]["items"]["anyOf"]
               if b["properties"]["act"].get("const") == "Attack"
               for t in b["properties"]["target_id"]["enum"]}
    assert RIVAL_ID not in targets


def test_two_requests_run_concurrently_and_both_land(server: FakeOllama) -> None:
    server.script(ChatScript(content=GOOD, first_delay_s=0.3))
    with make_service(server.host, max_concurrent=2) as service:
        a = service.submit(request())
        b = service.submit(dataclasses.replace(request(), agent_id=3))
        ra = run_frames(a, max_wall_s=DEADLINE_S + SLACK_S)
        rb = run_frames(b, max_wall_s=DEADLINE_S + SLACK_S)
        assert isinstance(ra.outcome, PlanReady) and isinstance(rb.outcome, PlanReady)
        assert service.status().plans_ok == 2


def test_pull_streams_progress_and_makes_the_model_available(server: FakeOllama) -> None:
    import asyncio

    backend = OllamaBackend(model="smollm2:135m", host=server.host)
    seen: list[tuple[str, int | None, int | None]] = []

    async def go() -> tuple[tuple[bool, str], tuple[bool, str], tuple[bool, str]]:
        try:
            before = await backend.probe()
            result = await backend.pull(lambda s, c, t: seen.append((s, c, t)))
            after = await backend.probe()
            return before, result, after
        finally:
            await backend.aclose()

    before, result, after = asyncio.run(go())
    assert before == (False, not_pulled_message("smollm2:135m"))
    assert result == (True, "")
    assert after == (True, "")
    fractions = [c / t for _, c, t in seen if t and c is not None]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert seen[-1][0] == "success"


def test_pull_failure_is_a_value(server: FakeOllama) -> None:
    import asyncio

    backend = OllamaBackend(model="missing-model:1b", host=server.host)

    async def go() -> tuple[bool, str]:
        try:
            return await backend.pull()
        finally:
            await backend.aclose()

    ok, reason = asyncio.run(go())
    assert not ok and "file does not exist" in reason


def test_close_during_a_hanging_request_leaves_no_thread(server: FakeOllama) -> None:
    server.script(ChatScript(hang=True))
    before = set(threading.enumerate())
    service = make_service(server.host, timeout_s=30.0)
    ticket = service.submit(request())
    run_frames(ticket, max_wall_s=0.3)
    service.close()
    outcome = ticket.poll(0.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CANCELLED
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
              and t.name.startswith("llm")]
    assert leaked == []

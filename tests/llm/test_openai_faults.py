"""The OpenAI-compatible backend against a loopback fake server, through every fault.

For each fault: no exception reaches the caller, exactly one typed failure comes back within the
service's deadline, a frame loop keeps ticking while the request is out, the failure is counted
in the service's status, and the next request (after the fault clears) still gets a plan. Then
what the server is sent (schema, token budget, seed, key), how a server that rejects
``json_schema`` is asked again, and a batch of three streamed agent by agent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from esper_arbiter.components.actions import MoveTo, Scan
from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.fixtures.fake_openai import ChatScript, FakeOpenAI, closed_port_url
from tests.fixtures.frame_loop import run_frames
from tests.llm.test_many_agents import agents_in, batch_reply, req, resolution_times, wait_until
from tests.planning.snapshots import RIVAL_ID, hello_snapshot, with_enemy

DEADLINE_S = 0.75
SLACK_S = 1.5  # scheduling slack on a loaded 2-core machine; far below any real hang
MODEL = "smollm2"
GOOD = '{"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]}'
SINGLE = json.dumps({"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]})


@dataclass(frozen=True)
class Fault:
    name: str
    script: ChatScript
    kind: FailureKind | None  # None: a plan is expected
    needle: str = ""  # must appear in the failure message
    snapshot_dead_rival: bool = False


FAULTS = [
    Fault("http_500", ChatScript(status=500, error="CUDA out of memory"),
          FailureKind.HTTP_STATUS, "HTTP 500: CUDA out of memory"),
    Fault("http_503", ChatScript(status=503, error="server busy"), FailureKind.HTTP_STATUS, "503"),
    Fault("never_answers", ChatScript(hang=True), FailureKind.TIMEOUT, "no reply"),
    Fault("slow_drip", ChatScript(content=GOOD, chunks=60, chunk_delay_s=0.1),
          FailureKind.TIMEOUT, "chars received"),
    Fault("slow_first_byte", ChatScript(content=GOOD, first_delay_s=5.0), FailureKind.TIMEOUT),
    Fault("cut_mid_stream", ChatScript(content=GOOD, chunks=6, cut_after_chunks=2),
          FailureKind.CONNECTION, "mid-reply"),
    Fault("cut_before_finish", ChatScript(content=GOOD, chunks=3, cut_after_chunks=3),
          FailureKind.CONNECTION),
    Fault("error_event_in_stream", ChatScript(content="{", stream_error="llama runner crashed"),
          FailureKind.HTTP_STATUS, "llama runner crashed"),
    Fault("garbage_event", ChatScript(content=GOOD, chunks=4, garbage_after_chunks=2),
          FailureKind.CONNECTION, "malformed stream event"),
    Fault("plain_text", ChatScript(content="I would move towards the door and shoot."),
          FailureKind.PARSE, "tried: direct, fenced, envelope, balanced, repair"),
    Fault("json_wrong_shape", ChatScript(content='{"action": "attack", "who": "Rival"}'),
          FailureKind.PARSE, "not a plan"),
    Fault("cut_by_max_tokens", ChatScript(content=GOOD[:30], finish_reason="length"),
          FailureKind.PARSE),
    Fault("walks_into_wall", ChatScript(content='{"steps": [{"act": "MoveTo", "x": 6, "y": 4}]}'),
          FailureKind.INVALID_PLAN, "wall"),
    Fault("shoots_dead_enemy",
          ChatScript(content=json.dumps({"steps": [{"act": "Attack", "target_id": RIVAL_ID}]})),
          FailureKind.INVALID_PLAN, "dead", snapshot_dead_rival=True),
    Fault("think_tags", ChatScript(content="<think>The Rival is at (12,2). {maybe}</think>\n"
                                   + GOOD), None),
    Fault("fenced_reply", ChatScript(content="Here is the plan:\n```json\n" + GOOD + "\n```"),
          None),
    Fault("no_done_marker", ChatScript(content=GOOD, send_done=False), None),
    Fault("not_streamed", ChatScript(content=GOOD, whole=True), None),
]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=(MODEL,)) as srv:
        yield srv


def make_service(base_url: str, model: str = MODEL, *, timeout_s: float = DEADLINE_S,
                 max_concurrent: int = 2, max_batch_size: int = 1,
                 api_key: str | None = None, batch_mode: str = "auto") -> LlmPlanService:
    cfg = ServiceConfig(timeout_s=timeout_s, max_concurrent=max_concurrent,
                        probe_on_start=False, max_batch_size=max_batch_size,
                        batch_mode=batch_mode)
    return LlmPlanService(OpenAIBackend(model, base_url, api_key, seed=7), cfg)


def request(dead_rival: bool = False) -> PlanRequest:
    snap = hello_snapshot()
    if dead_rival:
        snap = with_enemy(snap, RIVAL_ID, hp=0)
    return PlanRequest(agent_id=2, snapshot=snap, reason="test")


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_a_typed_outcome_and_the_game_goes_on(server: FakeOpenAI, fault: Fault) -> None:
    server.script(fault.script)
    with make_service(server.base_url) as service:
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


def test_a_cut_stream_keeps_the_partial_text_as_raw(server: FakeOpenAI) -> None:
    server.script(ChatScript(content=GOOD, chunks=6, cut_after_chunks=2))
    with make_service(server.base_url) as service:
        outcome = service.plan_blocking(request(), timeout=5.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CONNECTION
    assert outcome.raw and GOOD.startswith(outcome.raw)
    assert len(outcome.raw) < len(GOOD)


def test_connection_refused_is_connection_failure_and_status_goes_offline() -> None:
    url = closed_port_url()
    with make_service(url) as service:
        ticket = service.submit(request())
        run = run_frames(ticket, max_wall_s=DEADLINE_S + SLACK_S)
        assert isinstance(run.outcome, PlanFailure)
        assert run.outcome.kind is FailureKind.CONNECTION
        assert f"no OpenAI-compatible server at {url}" in run.outcome.message
        status = service.status()
        assert status.failures == 1
        assert not status.online and "no OpenAI-compatible server" in status.reason
        assert service.probe_blocking(timeout=2.0) == (
            False, f"no OpenAI-compatible server at {url}")


def test_missing_model_is_model_missing_and_the_probe_names_what_is_served(
    server: FakeOpenAI,
) -> None:
    with make_service(server.base_url, model="qwen3:8b") as service:
        online, reason = service.probe_blocking(timeout=2.0)
        assert not online
        assert reason == f"model qwen3:8b is not served at {server.base_url}; it serves smollm2"
        outcome = service.plan_blocking(request(), timeout=5.0)
        assert isinstance(outcome, PlanFailure)
        assert outcome.kind is FailureKind.MODEL_MISSING
        assert outcome.message == f"model qwen3:8b is not served at {server.base_url}"
        assert not service.status().online


def test_probe_finds_the_served_model(server: FakeOpenAI) -> None:
    with make_service(server.base_url) as service:
        assert service.probe_blocking(timeout=2.0) == (True, "")


def test_a_wrong_path_is_http_status_with_a_hint(server: FakeOpenAI) -> None:
    url = f"http://127.0.0.1:{server.port}/api"
    with make_service(url) as service:
        outcome = service.plan_blocking(request(), timeout=5.0)
        online, reason = service.probe_blocking(timeout=2.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.HTTP_STATUS
    assert "HTTP 404" in outcome.message and "usually ends in /v1" in outcome.message
    assert not online and "HTTP 404" in reason


def test_a_host_without_a_path_gets_v1(server: FakeOpenAI) -> None:
    backend = OpenAIBackend(MODEL, f"127.0.0.1:{server.port}/")
    assert backend.base_url == server.base_url


def test_request_carries_schema_budget_seed_and_usage(server: FakeOpenAI) -> None:
    server.script(ChatScript(content=GOOD, prompt_tokens=321, completion_tokens=17))
    with make_service(server.base_url) as service:
        outcome = service.plan_blocking(request(), timeout=5.0)
    assert isinstance(outcome, PlanReady), outcome
    body = server.chat_requests[-1]
    assert body["model"] == MODEL and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["seed"] == 7 and body["temperature"] == 0.2 and body["max_tokens"] == 384
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "plan" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["steps"]["maxItems"] == 8
    attack = [b for b in schema["properties"]["steps"]["items"]["anyOf"]
              if b["properties"]["act"].get("const") == "Attack"]
    assert attack and set(attack[0]["properties"]["target_id"]["enum"]) == {3, 4, 5}
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    assert outcome.timing.prompt_tokens == 321 and outcome.timing.completion_tokens == 17
    assert outcome.timing.first_token_at is not None
    assert outcome.plan.source == "llm" and outcome.backend == "openai"
    assert outcome.model == MODEL
    assert "Authorization" not in server.request_headers[-1]


def test_without_a_usage_chunk_completion_tokens_are_counted_per_chunk() -> None:
    with FakeOpenAI(models=(MODEL,), reject_stream_options=True) as srv:
        srv.script(ChatScript(content=GOOD, chunks=5))
        with make_service(srv.base_url) as service:
            first = service.plan_blocking(request(), timeout=5.0)
            second = service.plan_blocking(request(), timeout=5.0)
        bodies = srv.chat_requests
    assert isinstance(first, PlanReady) and isinstance(second, PlanReady)
    # Rejected once, then never sent again.
    assert ["stream_options" in b for b in bodies] == [True, False, False]
    assert first.timing.completion_tokens == 5 and first.timing.prompt_tokens == 0


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_server_that_rejects_json_schema_gets_json_object_from_then_on(status: int) -> None:
    with FakeOpenAI(models=(MODEL,), reject_json_schema=status) as srv:
        srv.script(ChatScript(content=GOOD))
        with make_service(srv.base_url) as service:
            first = service.plan_blocking(request(), timeout=5.0)
            second = service.plan_blocking(request(), timeout=5.0)
            backend = service.backend
            assert isinstance(backend, OpenAIBackend)
            assert backend.format_mode == "json_object_schema"
            assert service.status().failures == 0
        types = [b["response_format"]["type"] for b in srv.chat_requests]
        fallback = srv.chat_requests[1]["response_format"]
    assert isinstance(first, PlanReady) and isinstance(second, PlanReady)
    assert types == ["json_schema", "json_object", "json_object"]  # remembered
    assert fallback["schema"]["properties"]["steps"]["maxItems"] == 8  # still constrained


def test_concurrent_refusals_of_json_schema_step_down_once() -> None:
    """Requests sent at once with ``json_schema`` are all refused; the server is then asked for
    ``json_object`` + schema, not skipped past it to plain ``json_object``."""
    import asyncio

    schema = {"type": "object", "properties": {"steps": {"type": "array"}}}
    messages = [{"role": "user", "content": "plan"}]
    with FakeOpenAI(models=(MODEL,), reject_json_schema=400) as srv:
        srv.script(ChatScript(content=GOOD, first_delay_s=0.1))
        backend = OpenAIBackend(MODEL, srv.base_url)

        async def go() -> list[str]:
            try:
                replies = await asyncio.gather(
                    *(backend.generate(messages, schema) for _ in range(4)))
                return [r.text for r in replies]
            finally:
                await backend.aclose()

        texts = asyncio.run(go())
        formats = [b["response_format"] for b in srv.chat_requests]
    assert texts == [GOOD] * 4
    assert backend.format_mode == "json_object_schema"
    # Nothing was ever sent as plain json_object: every refusal stepped down from json_schema.
    assert all(f["type"] == "json_schema" or "schema" in f for f in formats), formats
    assert sum(f["type"] == "json_object" for f in formats) == 4
    # llama-cpp-python's json_object + schema mode also gets the repeat penalty the embedded
    # model plays with (its server's own default, 1.1, pulls plans off the options); the
    # standard json_schema requests carry no such extension.
    bodies = srv.chat_requests
    assert all(b.get("repeat_penalty") == 1.0 for b in bodies
               if b["response_format"]["type"] == "json_object")
    assert all("repeat_penalty" not in b for b in bodies
               if b["response_format"]["type"] == "json_schema")


def test_a_server_that_rejects_both_schemas_gets_plain_json_object() -> None:
    with FakeOpenAI(models=(MODEL,), reject_json_schema=400, reject_schema_key=True) as srv:
        srv.script(ChatScript(content=GOOD))
        with make_service(srv.base_url) as service:
            outcome = service.plan_blocking(request(), timeout=5.0)
        formats = [b["response_format"] for b in srv.chat_requests]
    assert isinstance(outcome, PlanReady), outcome
    assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]
    assert formats[-1] == {"type": "json_object"}


def test_an_error_that_is_not_about_the_format_is_not_retried(server: FakeOpenAI) -> None:
    server.script(ChatScript(status=500, error="CUDA out of memory"))
    with make_service(server.base_url) as service:
        outcome = service.plan_blocking(request(), timeout=5.0)
        backend = service.backend
        assert isinstance(backend, OpenAIBackend) and backend.format_mode == "json_schema"
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.HTTP_STATUS
    assert len(server.chat_requests) == 1


def test_the_api_key_is_sent_as_a_bearer_token_and_a_wrong_one_says_so() -> None:
    with FakeOpenAI(models=(MODEL,), api_key="sk-test") as srv:
        srv.script(ChatScript(content=GOOD))
        with make_service(srv.base_url, api_key="sk-test") as service:
            assert service.probe_blocking(timeout=2.0) == (True, "")
            assert isinstance(service.plan_blocking(request(), timeout=5.0), PlanReady)
        assert srv.request_headers[-1]["Authorization"] == "Bearer sk-test"
        with make_service(srv.base_url, api_key="sk-wrong") as service:
            outcome = service.plan_blocking(request(), timeout=5.0)
            online, reason = service.probe_blocking(timeout=2.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.HTTP_STATUS
    assert "HTTP 401" in outcome.message and "API key" in outcome.message
    assert "sk-wrong" not in outcome.message
    assert not online and "HTTP 401" in reason


def test_a_batch_of_three_is_one_request_streamed_agent_by_agent(server: FakeOpenAI) -> None:
    """Three agents in one prompt under an array schema; each ticket resolves while the rest of
    the array is still on the wire, in array order; the token budget is three plans'."""
    squad = (2, 6, 7)
    blocker = ChatScript(content=SINGLE, first_delay_s=0.3)
    slow_array = ChatScript(content=batch_reply(squad), chunks=24, chunk_delay_s=0.06)
    server.script(blocker, slow_array)
    with make_service(server.base_url, timeout_s=10.0, max_concurrent=1,
                      max_batch_size=3, batch_mode="array") as service:
        first = service.submit(req(9))  # keeps the only worker busy while the squad queues
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in squad}
        assert isinstance(first.wait(5.0), PlanReady)
        seen = resolution_times(tickets, timeout=10.0)
        status = service.status()
    assert sorted(seen, key=seen.__getitem__) == list(squad)
    assert seen[7] - seen[2] > 0.4 * 23 * 0.06  # delivered as the stream went, not at the end
    for agent, ticket in tickets.items():
        outcome = ticket.poll(0.0)
        assert isinstance(outcome, PlanReady), outcome
        assert outcome.plan.steps == (MoveTo(x=7, y=0), Scan())
        assert json.loads(outcome.raw)["agent_id"] == agent
    assert len(server.chat_requests) == 2
    body = server.chat_requests[1]
    assert agents_in(body["messages"]) == squad
    assert body["max_tokens"] == 3 * 384
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "array" and len(schema["prefixItems"]) == 3
    records = [r for r in status.recent if r.agent_id in squad]
    assert [r.batch_size for r in records] == [3, 3, 3]


def test_by_default_a_batch_runs_as_turns_each_call_extending_the_last(
        server: FakeOpenAI) -> None:
    """The OpenAI-compatible backend plans a batch as turns: one chat request per agent, each
    repeating the previous request's messages and answer (the server's cached prefix) and
    asking for one agent's plan under that agent's own schema."""
    squad = (2, 6, 7)
    server.script(ChatScript(content=SINGLE, first_delay_s=0.3), ChatScript(content=SINGLE))
    with make_service(server.base_url, timeout_s=10.0, max_concurrent=1,
                      max_batch_size=3) as service:
        assert service.batch_mode == "turns"
        first = service.submit(req(9))
        wait_until(lambda: service.status().in_flight == 1)
        tickets = {a: service.submit(req(a)) for a in squad}
        assert isinstance(first.wait(5.0), PlanReady)
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    turns = [b["messages"] for b in server.chat_requests[1:]]
    assert len(turns) == 3
    for before, after in itertools.pairwise(turns):
        assert after[:len(before)] == before and after[len(before)]["role"] == "assistant"
    for body in server.chat_requests[1:]:
        assert body["max_tokens"] == 384
        assert body["response_format"]["json_schema"]["schema"]["type"] == "object"


def test_close_during_a_hanging_request_leaves_no_thread(server: FakeOpenAI) -> None:
    server.script(ChatScript(hang=True))
    before = set(threading.enumerate())
    service = make_service(server.base_url, timeout_s=30.0)
    ticket = service.submit(request())
    run_frames(ticket, max_wall_s=0.3)
    start = time.monotonic()
    service.close()
    assert time.monotonic() - start < 2.0
    outcome = ticket.poll(0.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CANCELLED
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
              and t.name.startswith("llm")]
    assert leaked == []

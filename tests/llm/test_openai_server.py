"""The OpenAI-compatible backend against a real server: llama-cpp-python's own
``python -m llama_cpp.server`` serving the shipped SmolLM2-135M GGUF on loopback.

The test starts the server as a subprocess (a few seconds: the model is 90 MB), waits for it to
list its model, then plans through ``make_service(backend="openai", ...)`` like a game instance
pointed at a studio's shared server. llama-cpp-python's server rejects ``json_schema`` response
formats (HTTP 500, a validation error), so this also proves the fallback to its
``json_object`` + schema extension: the reply is still grammar-constrained to the snapshot's
schema. Skipped, saying why, when the server's packages or the model are not installed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.llama_server import (
    ALIAS,
    LlamaServerError,
    missing,
)
from esper_arbiter.systems.llm.backends.llama_server import llama_server as run_llama_server
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.factory import make_service
from esper_arbiter.systems.llm.service import LlmPlanService
from tests.planning.snapshots import RIVAL_ID, hello_snapshot, with_enemy

pytestmark = [pytest.mark.embedded]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """The server's base URL; skipped, saying why, when its packages or the model are absent;
    a server that is installed but does not start fails the test with the tail of its log."""
    why = missing()
    if why is not None:
        pytest.skip(why)
    try:
        with run_llama_server(start_timeout_s=60.0) as base_url:
            yield base_url
    except LlamaServerError as exc:
        pytest.fail(str(exc))


def test_a_real_server_plans_under_the_snapshot_schema(llama_server: str) -> None:
    start = time.monotonic()
    choice = make_service(backend="openai", base_url=llama_server, model=ALIAS,
                          seed=1, timeout_s=60.0, max_batch_size=1, env={})
    service = choice.service
    assert isinstance(service, LlmPlanService)
    try:
        assert choice.backend == "openai"
        assert choice.lines == (
            f"llm: OpenAI-compatible server at {llama_server}, model {ALIAS} "
            "(no API key; timeout 60s)",)  # the probe found the model: no warning
        outcomes = []
        # A 135M model writes a valid plan for most snapshots (test_embedded wants >= 90%);
        # the schema makes every reply parse. Stop at the first validated plan.
        for snap in (hello_snapshot(), with_enemy(hello_snapshot(), RIVAL_ID, hp=0),
                     hello_snapshot(t=12.5, ammo=0, ammo_reserve=60)):
            outcome = service.plan_blocking(PlanRequest(agent_id=2, snapshot=snap), timeout=60)
            outcomes.append(outcome)
            if isinstance(outcome, PlanReady):
                break
        for outcome in outcomes:
            if isinstance(outcome, PlanFailure):
                assert outcome.kind is FailureKind.INVALID_PLAN, outcome.message
        ready = outcomes[-1]
        assert isinstance(ready, PlanReady), [o for o in outcomes]
        assert ready.backend == "openai" and ready.model == ALIAS
        assert ready.plan.source == "llm" and 1 <= len(ready.plan.steps) <= 8
        assert isinstance(json.loads(ready.raw), dict)  # grammar-constrained JSON
        assert ready.timing.completion_tokens > 0
        backend = service.backend
        assert isinstance(backend, OpenAIBackend)
        # llama-cpp-python refuses json_schema; its json_object + schema extension is used.
        assert backend.format_mode == "json_object_schema"
    finally:
        service.close()
    assert time.monotonic() - start < 45.0

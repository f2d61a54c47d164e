"""The same GGUF, embedded or behind llama-cpp-python's server, must play alike.

``bench/plan_quality.py --serve-openai`` plays the shipped SmolLM2 in-process (the embedded
backend) and served by ``python -m llama_cpp.server`` (the OpenAI-compatible backend). Traced on
the ambush, both are sent the same messages and schema and write the same reply; what differed
was when it arrived: the launcher let the server read prompts on every core
(``n_threads_batch``), so beside the game its first plan took twice as long. These tests pin
what makes the two paths alike: the server's thread counts, and a request body that leaves the
server no sampling default the embedded call does not also get.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.backends.llama_server import server_command
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.service import default_messages, default_schema
from tests.fixtures.fake_openai import ChatScript, FakeOpenAI
from tests.planning.snapshots import hello_snapshot

GOOD = '{"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]}'
MODEL = "smollm2"


def options(cmd: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a server command line."""
    args = cmd[cmd.index("llama_cpp.server") + 1:]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return {name[2:]: value for name, value in zip(args[::2], args[1::2], strict=True)}


def test_the_server_reads_prompts_on_the_threads_it_generates_on() -> None:
    opts = options(server_command(Path("m.gguf"), 8123, threads=3))
    # llama.cpp's default n_threads_batch is every core: beside a game on a small machine
    # that doubled the time to the first plan.
    assert opts["n_threads"] == "3" and opts["n_threads_batch"] == "3"
    assert opts["model"] == "m.gguf" and opts["port"] == "8123" and opts["host"] == "127.0.0.1"


def test_by_default_the_server_gets_the_embedded_backends_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    opts = options(server_command(Path("m.gguf"), 8123))
    embedded = EmbeddedBackend(Path("m.gguf"))
    try:
        assert embedded.n_threads == 7  # one core left to the game
        assert opts["n_threads"] == opts["n_threads_batch"] == str(embedded.n_threads)
    finally:
        asyncio.run(embedded.aclose())


def test_the_command_uses_only_options_the_server_knows() -> None:
    settings = pytest.importorskip("llama_cpp.server.settings")
    known = set(settings.ModelSettings.model_fields) | set(settings.ServerSettings.model_fields)
    assert set(options(server_command(Path("m.gguf"), 8123))) <= known


# ----------------------------------------------------------------- what each side is sent


class _FakeLlama:
    """Stands in for ``llama_cpp.Llama``: records the chat call and streams ``GOOD``."""

    n_tokens = 0

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(kwargs)
        yield {"choices": [{"delta": {"content": GOOD}, "finish_reason": None}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(range(len(text) // 4 + 1))


def sent_by_both() -> tuple[dict[str, Any], dict[str, Any]]:
    """(embedded ``create_chat_completion`` keywords, OpenAI body) for one request, both with
    their default settings and seed 7, the server answering like llama-cpp-python's (HTTP 500
    for ``json_schema``, so the ``json_object`` + schema extension is used)."""
    request = PlanRequest(agent_id=2, snapshot=hello_snapshot())
    messages = default_messages(request)
    schema = default_schema(request)
    assert schema is not None
    embedded = EmbeddedBackend(Path("m.gguf"), seed=7)
    fake = _FakeLlama()
    embedded._llm = fake
    try:
        reply = asyncio.run(embedded.generate(messages, schema))
    finally:
        asyncio.run(embedded.aclose())
    assert reply.text == GOOD
    with FakeOpenAI(models=(MODEL,), reject_json_schema=500) as srv:
        srv.script(ChatScript(content=GOOD))
        backend = OpenAIBackend(MODEL, srv.base_url, seed=7)

        async def go() -> str:
            try:
                return (await backend.generate(messages, schema)).text
            finally:
                await backend.aclose()

        assert asyncio.run(go()) == GOOD
        body = srv.chat_requests[-1]
    assert backend.format_mode == "json_object_schema"
    (kwargs,) = fake.calls
    return kwargs, json.loads(json.dumps(body))


def test_the_server_gets_the_embedded_calls_prompt_schema_and_sampling() -> None:
    kwargs, body = sent_by_both()
    assert body["messages"] == kwargs["messages"]
    assert body["response_format"] == kwargs["response_format"]
    assert body["response_format"]["type"] == "json_object" and body["response_format"]["schema"]
    for name in ("temperature", "repeat_penalty", "seed"):
        assert body[name] == kwargs[name], name


def _same(a: object, b: object) -> bool:
    # The two APIs spell "none" differently (stop None / [], logprobs False / None).
    return a == b or (a in (None, False, []) and b in (None, False, []))


def test_no_sampling_default_of_the_server_differs_from_the_embedded_call() -> None:
    """For every setting both APIs take, what llama-cpp-python's server would use (the body's
    value, else its request default) is what the embedded call uses (its keyword, else
    ``Llama.create_chat_completion``'s default). The server defaults temperature to 0.8 and
    repeat_penalty to 1.1: both must be sent."""
    types = pytest.importorskip("llama_cpp.server.types")
    llama_cpp = pytest.importorskip("llama_cpp")
    kwargs, body = sent_by_both()
    server_fields = types.CreateChatCompletionRequest.model_fields
    embedded_defaults = {
        name: p.default for name, p in
        inspect.signature(llama_cpp.Llama.create_chat_completion).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    # Not sampling: the model name, the transport, and the answer's length limit (each
    # backend's own budget; plans are far shorter than either).
    skip = {"model", "messages", "stream", "max_tokens"}
    shared = (set(server_fields) & set(embedded_defaults)) - skip
    assert {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed"} <= shared
    differ = {}
    for name in sorted(shared):
        server = body[name] if name in body else server_fields[name].get_default()
        embedded = kwargs[name] if name in kwargs else embedded_defaults[name]
        if not _same(server, embedded):
            differ[name] = (server, embedded)
    assert differ == {}

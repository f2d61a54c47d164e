"""make_service: a host builds a planning service from keyword arguments, gets typed errors for
unusable ones, and every service says what it can do through the PlanService protocol."""

from __future__ import annotations

import argparse
import ast
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from esper_arbiter.components.llm import PlanReady, PlanRequest
from esper_arbiter.game import llm_flags as selection
from esper_arbiter.systems.llm import factory
from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend
from esper_arbiter.systems.llm.factory import ServiceChoice, ServiceConfigError, make_service
from esper_arbiter.systems.llm.recording import (
    RecordingPlanService,
    ReplayPlanService,
    load_recording,
)
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.llm.service import LlmPlanService, OfflinePlanService
from tests.fixtures.fake_ollama import FakeOllama, closed_port_host
from tests.planning.snapshots import hello_snapshot

ROOT = Path(__file__).resolve().parents[2]
MODEL = "qwen2.5:1.5b"


@pytest.fixture
def made() -> Iterator[list[ServiceChoice]]:
    """Choices built by a test; their services are closed afterwards."""
    choices: list[ServiceChoice] = []
    yield choices
    for c in choices:
        if c.service is not None:
            c.service.close()


def build(made: list[ServiceChoice], **kwargs: object) -> ServiceChoice:
    choice = make_service(**kwargs)  # type: ignore[arg-type]
    made.append(choice)
    return choice


@pytest.fixture
def no_ollama(monkeypatch: pytest.MonkeyPatch) -> str:
    host = closed_port_host()
    monkeypatch.setenv("OLLAMA_HOST", host)
    return host


def _no_demo_words(text: str) -> None:
    assert "run_demo" not in text, text
    assert not re.search(r"(?<![\w-])--[a-z]", text), text


# --------------------------------------------------------------------------- each backend


def test_scripted(made: list[ServiceChoice]) -> None:
    choice = build(made, backend="scripted", scripted_delay_s=1.5, scripted_fail_every=3,
                   seed=4)
    assert isinstance(choice.service, ScriptedPlanService) and choice.backend == "scripted"
    assert choice.lines == ("llm: scripted backend (canned plans after ~1.5s game time, every "
                            "3. request fails)",)


def test_none_is_no_service(made: list[ServiceChoice]) -> None:
    choice = build(made, backend="none")
    assert choice.service is None and choice.backend == "none"
    assert "GOAP and behaviour tree only" in choice.lines[0]


def test_ollama_with_keywords_against_the_fake_server(
    made: list[ServiceChoice], no_ollama: str
) -> None:
    """``host`` beats OLLAMA_HOST, ``timeout_s`` beats LLM_TIMEOUT_MS, and a plan comes back
    through the official client."""
    with FakeOllama(models=(MODEL,)) as server:
        choice = build(made, backend="ollama", host=server.host, model=MODEL, timeout_s=5,
                       max_batch_size=3, seed=7, env={"LLM_TIMEOUT_MS": "1234"})
        service = choice.service
        assert isinstance(service, LlmPlanService) and choice.backend == "ollama"
        assert isinstance(service.backend, OllamaBackend) and service.backend.host == server.host
        assert service.config.timeout_s == 5.0 and service.max_batch_size == 3
        assert choice.lines == (f"llm: ollama at {server.host}, model {MODEL} (timeout 5s)",)
        assert choice.missing_model == ""
        outcome = service.plan_blocking(PlanRequest(agent_id=2, snapshot=hello_snapshot()),
                                        timeout=10.0)
        assert isinstance(outcome, PlanReady), outcome
        service.close()


def test_environment_still_applies_when_no_keyword_is_given(made: list[ServiceChoice]) -> None:
    with FakeOllama(models=(MODEL,)) as server:
        choice = build(made, env={"OLLAMA_HOST": server.host, "LLM_TIMEOUT_MS": "1500",
                                  "LLM_MAX_BATCH_SIZE": "2"})
        assert isinstance(choice.service, LlmPlanService) and choice.backend == "ollama"
        assert choice.service.config.timeout_s == 1.5 and choice.service.max_batch_size == 2
        choice.service.close()


def test_auto_with_the_model_missing_is_offline_and_names_the_model(
    made: list[ServiceChoice], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(factory, "llama_cpp_available", lambda: False)
    with FakeOllama(models=("llama3.2:1b",)) as server:
        choice = build(made, host=server.host, model="qwen3:8b")
    assert isinstance(choice.service, OfflinePlanService) and choice.backend == "offline"
    assert choice.missing_model == "qwen3:8b"
    assert choice.lines[0] == "llm: model qwen3:8b is not pulled: run `ollama pull qwen3:8b`"
    for text in (*choice.lines, choice.service.status().reason):
        _no_demo_words(text)


def test_pull_fetches_the_missing_model(made: list[ServiceChoice]) -> None:
    updates: list[str] = []
    with FakeOllama(models=()) as server:
        choice = build(made, host=server.host, model="smollm2:135m", pull=True,
                       pull_progress=lambda status, done, total: updates.append(status))
        assert server.state.pull_requests == ["smollm2:135m"]
        assert isinstance(choice.service, LlmPlanService) and choice.missing_model == ""
        assert "llm: pulled smollm2:135m" in choice.lines and updates
        choice.service.close()


def test_nothing_available_says_why_without_demo_flags(
    made: list[ServiceChoice], no_ollama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(factory, "llama_cpp_available", lambda: False)
    for backend in ("auto", "embedded", "ollama"):
        choice = build(made, backend=backend)
        assert choice.service is not None
        for text in (*choice.lines, choice.service.status().reason):
            _no_demo_words(text)


def test_embedded_with_a_good_file_but_no_llama_cpp_is_offline(
    made: list[ServiceChoice], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(factory, "llama_cpp_available", lambda: False)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    choice = build(made, backend="embedded", model_path=gguf)
    assert isinstance(choice.service, OfflinePlanService) and choice.backend == "offline"
    assert "llama-cpp-python is not installed" in choice.lines[0]


def test_record_wraps_and_replay_replaces(made: list[ServiceChoice], tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    choice = build(made, backend="scripted", scripted_delay_s=0.0, record=path)
    recorder = choice.service
    assert isinstance(recorder, RecordingPlanService) and choice.backend == "scripted"
    assert choice.lines[-1] == f"llm: recording every request to {path}"
    ticket = recorder.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot()))
    assert isinstance(ticket.poll(1.0), PlanReady)
    recorder.close()
    for replay in (path, str(path), load_recording(path)):
        again = build(made, replay=replay, backend="ollama")  # replay wins over the backend
        assert isinstance(again.service, ReplayPlanService) and again.backend == "replay"
        assert again.lines[0].startswith(f"llm: replaying {path} (1 recorded requests")


# --------------------------------------------------------------------------- typed errors


@pytest.mark.parametrize(
    ("kwargs", "argument", "fragment"),
    [
        ({"backend": "gpt"}, "backend", "unknown backend 'gpt'; expected one of auto, ollama"),
        ({"timeout_s": -1}, "timeout_s", "expected a number of seconds > 0, got -1"),
        ({"timeout_s": 0}, "timeout_s", "> 0"),
        ({"timeout_s": float("nan")}, "timeout_s", "> 0"),
        ({"timeout_s": "soon"}, "timeout_s", "got 'soon'"),
        ({"threads": 0}, "threads", "expected a whole number >= 1, got 0"),
        ({"threads": 2.5}, "threads", "whole number"),
        ({"max_concurrent": 0}, "max_concurrent", ">= 1"),
        ({"max_batch_size": True}, "max_batch_size", "whole number"),
        ({"batch_latency_target_s": -5}, "batch_latency_target_s", "> 0"),
        ({"scripted_delay_s": -1}, "scripted_delay_s", ">= 0"),
        ({"scripted_fail_every": -2}, "scripted_fail_every", ">= 0"),
        ({"model": ""}, "model", "non-empty"),
        ({"host": " "}, "host", "non-empty"),
        ({"record": "a.jsonl", "replay": "b.jsonl"}, "replay", "cannot be combined"),
    ],
)
def test_bad_arguments_are_typed_one_line_errors(
    kwargs: dict[str, object], argument: str, fragment: str
) -> None:
    with pytest.raises(ServiceConfigError) as info:
        make_service(**kwargs)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, ValueError) and error.argument == argument
    assert fragment in str(error) and str(error).startswith(f"{argument}: ")
    assert "\n" not in str(error)
    _no_demo_words(str(error))


def test_bad_model_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ServiceConfigError, match=f"model file {missing} does not exist") as info:
        make_service(backend="embedded", model_path=missing)
    assert info.value.argument == "model_path"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ServiceConfigError, match="is not a GGUF file"):
        make_service(model_path=junk)
    with pytest.raises(ServiceConfigError, match="is not a file"):
        make_service(model_path=tmp_path)


def test_bad_recordings(tmp_path: Path) -> None:
    with pytest.raises(ServiceConfigError, match="does not exist") as info:
        make_service(replay=tmp_path / "none.jsonl")
    assert info.value.argument == "replay"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ServiceConfigError, match=r"bad.jsonl:1: not JSON"):
        make_service(replay=bad)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ServiceConfigError, match="cannot read recording"):
        make_service(replay=binary)
    with pytest.raises(ServiceConfigError, match="is a directory"):
        make_service(replay=tmp_path)
    with pytest.raises(ServiceConfigError, match="does not exist") as info:
        make_service(backend="scripted", record=tmp_path / "no" / "run.jsonl")
    assert info.value.argument == "record"


def test_a_bad_argument_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[str] = []
    monkeypatch.setattr(factory, "probe_ollama", lambda *a, **k: probes.append("x"))
    with pytest.raises(ServiceConfigError):
        make_service(backend="ollama", scripted_fail_every=-1)
    assert probes == []


# --------------------------------------------------------------------------- argparse adapter


def test_a_partial_namespace_is_enough(no_ollama: str) -> None:
    """The issue's reproducer: no AttributeError for the flags the namespace lacks."""
    service, lines = selection.build_service(argparse.Namespace(backend="ollama"))
    try:
        assert isinstance(service, LlmPlanService) and service.model == MODEL
        assert lines[0].startswith(f"llm: ollama at {no_ollama}, model {MODEL}")
    finally:
        assert service is not None
        service.close()
    service, lines = selection.build_service(argparse.Namespace())
    assert service is not None
    service.close()
    scripted, _ = selection.build_service(argparse.Namespace(backend="scripted", seed=None))
    assert isinstance(scripted, ScriptedPlanService)


def test_flags_map_onto_keywords() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    selection.add_llm_arguments(parser)
    args = parser.parse_args(["--backend", "scripted", "--llm-timeout-ms", "2500",
                              "--llm-delay", "0.5", "--llm-fail-every", "2", "--pull"])
    assert selection.service_arguments(args) == {
        "backend": "scripted", "seed": 1, "scripted_delay_s": 0.5,
        "scripted_fail_every": 2, "timeout_s": 2.5, "pull": True,
    }


def test_flag_error_names_the_flag() -> None:
    error = ServiceConfigError("model_path", "model file x.gguf does not exist")
    assert selection.flag_error(error) == "--model-path: model file x.gguf does not exist"


def test_library_messages_do_not_mention_the_demo() -> None:
    """Strings in systems/ that can reach a host's players (not docstrings) name no demo
    script and no demo flag; only the demo's argparse adapter defines flags."""
    offenders: list[str] = []
    for path in sorted((ROOT / "systems").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
        adapter = path.name == "selection.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            if id(node) in docs:
                continue
            text = node.value
            if "run_demo" in text or (not adapter and re.search(r"(?<![\w-])--[a-z]", text)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:60]!r}")
    assert offenders == []


def test_config_problems_from_the_environment_are_reported(
    made: list[ServiceChoice], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        choice = build(made, backend="ollama", host=closed_port_host(),
                       env={"LLM_MAX_BATCH_SIZE": "many"})
    assert any("LLM_MAX_BATCH_SIZE='many'" in line for line in choice.lines)


def test_the_demo_adds_its_own_pull_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the demo's command line speaks of its flags."""
    from esper_arbiter.game.cli import main

    monkeypatch.setattr(factory, "llama_cpp_available", lambda: False)
    with FakeOllama(models=()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        code = main(["--headless", "--seconds", "0.5", "--tick-rate", "20",
                     "--model", "qwen3:8b"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "llm: model qwen3:8b is not pulled: run `ollama pull qwen3:8b`"
    assert "llm: or rerun with --pull to fetch qwen3:8b" in out


def test_the_demo_names_the_flag_of_a_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from esper_arbiter.game.cli import main

    code = main(["--headless", "--replay", str(tmp_path / "none.jsonl")])
    assert code == 2
    assert "argument --replay: recording" in capsys.readouterr().err

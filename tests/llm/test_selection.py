"""--backend selection: what gets picked, and the startup lines that say so."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanRequest
from esper_arbiter.game import llm_flags as selection
from esper_arbiter.systems.llm import factory
from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend, not_pulled_message
from esper_arbiter.systems.llm.recording import RecordingPlanService, ReplayPlanService
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.llm.service import LlmPlanService, OfflinePlanService
from tests.fixtures.fake_ollama import FakeOllama, closed_port_host
from tests.planning.snapshots import hello_snapshot


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_demo.py")
    parser.add_argument("--seed", type=int, default=1)
    selection.add_llm_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def built() -> Iterator[list[PlanService]]:
    services: list[PlanService] = []
    yield services
    for s in services:
        s.close()


def build(built: list[PlanService], *argv: str) -> tuple[PlanService | None, list[str]]:
    service, lines = selection.build_service(parse(*argv))
    if service is not None:
        built.append(service)
    return service, lines


@pytest.fixture
def no_ollama(monkeypatch: pytest.MonkeyPatch) -> str:
    host = closed_port_host()
    monkeypatch.setenv("OLLAMA_HOST", host)
    return host


def test_defaults() -> None:
    args = parse()
    assert args.backend == "auto" and args.model is None  # the factory picks per backend
    assert args.base_url is None and args.api_key is None
    assert args.model_path is None and not args.pull
    assert args.record is None and args.replay is None


def test_none_means_no_service(built: list[PlanService]) -> None:
    service, lines = build(built, "--backend", "none")
    assert service is None and "GOAP and behaviour tree only" in lines[0]


def test_scripted(built: list[PlanService]) -> None:
    service, lines = build(built, "--backend", "scripted", "--llm-delay", "1.5")
    assert isinstance(service, ScriptedPlanService)
    assert "scripted backend" in lines[0] and "1.5s" in lines[0]


def test_auto_prefers_a_reachable_ollama_with_the_model(
    built: list[PlanService], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOllama(models=("qwen2.5:1.5b",)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        service, lines = build(built, "--llm-timeout-ms", "1500")
        assert isinstance(service, LlmPlanService)
        assert isinstance(service.backend, OllamaBackend)
        assert service.config.timeout_s == 1.5
        assert lines == [f"llm: ollama at {server.host}, model qwen2.5:1.5b (timeout 1.5s)"]
        service.close()


def test_auto_without_ollama_uses_the_embedded_model(
    built: list[PlanService], no_ollama: str
) -> None:
    if selection.embedded_problem(None):
        pytest.skip(f"embedded backend unavailable: {selection.embedded_problem(None)}")
    service, lines = build(built)
    assert isinstance(service, LlmPlanService)
    assert isinstance(service.backend, EmbeddedBackend)
    assert lines[0].startswith("llm: embedded model SmolLM2-135M-Instruct")
    assert f"no ollama at {no_ollama}" in lines[0]


def test_auto_with_model_missing_says_how_to_pull_and_falls_back(
    built: list[PlanService], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOllama(models=("llama3.2:1b",)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        monkeypatch.setattr(factory, "llama_cpp_available", lambda: False)
        service, lines = build(built, "--model", "qwen3:8b")
    assert lines[0] == "llm: " + not_pulled_message("qwen3:8b")
    assert isinstance(service, OfflinePlanService)
    assert not_pulled_message("qwen3:8b") in service.status().reason


def test_pull_fetches_a_missing_model_then_uses_ollama(
    built: list[PlanService], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeOllama(models=()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        service, lines = build(built, "--pull", "--model", "smollm2:135m")
        assert server.state.pull_requests == ["smollm2:135m"]
        assert isinstance(service, LlmPlanService)
        assert isinstance(service.backend, OllamaBackend)
        assert "llm: pulled smollm2:135m" in lines
        service.close()
    bar = capsys.readouterr().err
    assert "100.0%" in bar and "pulled smollm2:135m" in bar


def test_nothing_available_is_offline_with_reason_and_remedy(
    built: list[PlanService], no_ollama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(factory, "llama_cpp_available", lambda: False)
    service, lines = build(built)
    assert lines == [
        f"LLM offline: no ollama at {no_ollama} and llama-cpp-python is not installed "
        "(pip install 'esper-arbiter[embedded]'); running on GOAP + behaviour tree"
    ]
    assert isinstance(service, OfflinePlanService)
    assert service.available is False  # the arbiter never asks it (tests/systems)
    status = service.status()
    assert not status.online and status.reason == lines[0]
    outcome = service.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot())).poll(0.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.OFFLINE


def test_explicit_ollama_unreachable_still_builds_and_warns(
    built: list[PlanService], no_ollama: str
) -> None:
    service, lines = build(built, "--backend", "ollama")
    assert isinstance(service, LlmPlanService)
    assert lines[0].startswith(f"llm: ollama at {no_ollama}")
    assert f"WARNING no ollama at {no_ollama}" in lines[1]


def test_bad_model_path_is_a_usage_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(SystemExit):
        parse("--backend", "embedded", "--model-path", str(missing))
    assert f"model file {missing} does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(SystemExit):
        parse("--model-path", str(junk))
    assert "is not a GGUF file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--llm-timeout-ms", "0"], ["--llm-timeout-ms", "soon"], ["--llm-threads", "0"],
     ["--backend", "gpt"], ["--record", "a.jsonl", "--replay", "b.jsonl"],
     ["--llm-delay", "nan"], ["--llm-delay", "-1"], ["--llm-fail-every", "-2"]],
)
def test_bad_flag_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_record_wraps_and_replay_replaces(built: list[PlanService], tmp_path: Path,
                                          no_ollama: str) -> None:
    path = tmp_path / "run.jsonl"
    service, lines = build(built, "--backend", "scripted", "--record", str(path))
    assert isinstance(service, RecordingPlanService)
    assert lines[-1] == f"llm: recording every request to {path}"
    service.close()
    replay, lines = build(built, "--replay", str(path))
    assert isinstance(replay, ReplayPlanService)
    assert lines[0].startswith(f"llm: replaying {path} (0 recorded requests from backend "
                               "scripted")


def test_missing_replay_file_is_a_usage_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--replay", str(tmp_path / "none.jsonl"))
    assert "does not exist" in capsys.readouterr().err

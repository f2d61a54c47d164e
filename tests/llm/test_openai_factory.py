"""``make_service(backend="openai")`` and the demo's ``--backend openai`` flags: required and
optional settings, the ``OPENAI_*`` environment variables, the start-up lines, and that
``auto`` never reaches for an OpenAI-compatible server."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.game import llm_flags
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.factory import ServiceChoice, ServiceConfigError, make_service
from esper_arbiter.systems.llm.service import LlmPlanService
from tests.fixtures.fake_ollama import closed_port_host
from tests.fixtures.fake_openai import ChatScript, FakeOpenAI, closed_port_url
from tests.planning.snapshots import hello_snapshot

MODEL = "smollm2"
GOOD = '{"steps": [{"act": "MoveTo", "x": 7, "y": 0}, {"act": "Scan"}]}'


@pytest.fixture
def made() -> Iterator[list[ServiceChoice]]:
    """Choices built by a test; their services are closed afterwards."""
    choices: list[ServiceChoice] = []
    yield choices
    for c in choices:
        if c.service is not None:
            c.service.close()


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=(MODEL,), scripts=(ChatScript(content=GOOD),)) as srv:
        yield srv


def build(made: list[ServiceChoice], **kwargs: object) -> ServiceChoice:
    choice = make_service(**kwargs)  # type: ignore[arg-type]
    made.append(choice)
    return choice


def plan(service: object) -> object:
    assert isinstance(service, LlmPlanService)
    return service.plan_blocking(PlanRequest(agent_id=2, snapshot=hello_snapshot()),
                                 timeout=10.0)


def test_without_a_base_url_it_is_a_config_error_naming_base_url() -> None:
    with pytest.raises(ServiceConfigError) as info:
        make_service(backend="openai", model=MODEL, env={})
    assert info.value.argument == "base_url"
    assert "OPENAI_BASE_URL" in info.value.problem and "/v1" in info.value.problem
    assert str(info.value).startswith("base_url: ")


def test_without_a_model_it_is_a_config_error_naming_model(server: FakeOpenAI) -> None:
    with pytest.raises(ServiceConfigError) as info:
        make_service(backend="openai", base_url=server.base_url, env={})
    assert info.value.argument == "model" and "OPENAI_MODEL" in info.value.problem


@pytest.mark.parametrize("url", ["ftp://host/v1", "http://", "http://host:port/v1", "  "])
def test_a_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ServiceConfigError) as info:
        make_service(backend="openai", base_url=url, model=MODEL, env={})
    assert info.value.argument == "base_url"


def test_keywords_build_a_service_that_plans(made: list[ServiceChoice],
                                             server: FakeOpenAI) -> None:
    choice = build(made, backend="openai", base_url=server.base_url, model=MODEL, timeout_s=5,
                   seed=3, env={"OPENAI_BASE_URL": "http://elsewhere:1/v1",
                                "OPENAI_MODEL": "other"})
    service = choice.service
    assert isinstance(service, LlmPlanService) and choice.backend == "openai"
    backend = service.backend
    assert isinstance(backend, OpenAIBackend)
    assert backend.base_url == server.base_url and backend.model == MODEL and backend.seed == 3
    assert choice.lines == (
        f"llm: OpenAI-compatible server at {server.base_url}, model {MODEL} "
        "(no API key; timeout 5s)",)
    assert isinstance(plan(service), PlanReady)
    assert service.status().backend == "openai"


def test_the_environment_supplies_url_model_and_key(made: list[ServiceChoice]) -> None:
    with FakeOpenAI(models=(MODEL,), api_key="sk-env",
                    scripts=(ChatScript(content=GOOD),)) as srv:
        choice = build(made, backend="openai", env={
            "OPENAI_BASE_URL": srv.base_url, "OPENAI_MODEL": MODEL, "OPENAI_API_KEY": "sk-env",
            "LLM_TIMEOUT_MS": "4000"})
        assert choice.backend == "openai" and len(choice.lines) == 1
        assert "API key set" in choice.lines[0] and "sk-env" not in choice.lines[0]
        assert isinstance(plan(choice.service), PlanReady)
        assert srv.request_headers[-1]["Authorization"] == "Bearer sk-env"
        assert isinstance(choice.service, LlmPlanService)
        assert choice.service.config.timeout_s == 4.0


def test_an_unreachable_server_still_gives_a_service_that_says_why(
    made: list[ServiceChoice],
) -> None:
    url = closed_port_url()
    choice = build(made, backend="openai", base_url=url, model=MODEL, env={})
    assert choice.backend == "openai" and isinstance(choice.service, LlmPlanService)
    assert choice.lines[1] == (
        f"llm: WARNING no OpenAI-compatible server at {url}; requests fail until this is "
        "fixed (the game plays on GOAP + behaviour tree meanwhile)")
    outcome = plan(choice.service)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.CONNECTION


def test_a_model_the_server_does_not_serve_is_warned_at_start(made: list[ServiceChoice],
                                                              server: FakeOpenAI) -> None:
    choice = build(made, backend="openai", base_url=server.base_url, model="gpt-x", env={})
    assert choice.lines[1].startswith(
        f"llm: WARNING model gpt-x is not served at {server.base_url}; it serves smollm2")


def test_auto_never_asks_an_openai_server(made: list[ServiceChoice], server: FakeOpenAI,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", closed_port_host())
    choice = build(made, backend="auto", env={
        "OLLAMA_HOST": closed_port_host(), "OPENAI_BASE_URL": server.base_url,
        "OPENAI_MODEL": MODEL})
    assert choice.backend != "openai"
    assert server.request_headers == [] and server.chat_requests == []


def test_openai_settings_are_ignored_by_other_backends(made: list[ServiceChoice]) -> None:
    choice = build(made, backend="scripted", base_url="not a url at all", env={})
    assert choice.backend == "scripted"


def test_flags_map_onto_keywords_and_errors_name_the_flag() -> None:
    parser = argparse.ArgumentParser()
    llm_flags.add_llm_arguments(parser)
    args = parser.parse_args(["--backend", "openai", "--base-url", "http://gpu-box:8000/v1",
                              "--model", "qwen2.5-7b-instruct", "--api-key", "sk-1"])
    kwargs = llm_flags.service_arguments(args)
    assert kwargs == {"backend": "openai", "base_url": "http://gpu-box:8000/v1",
                      "model": "qwen2.5-7b-instruct", "api_key": "sk-1", "pull": False,
                      "scripted_delay_s": 2.0, "scripted_fail_every": 0}
    with pytest.raises(ServiceConfigError) as info:
        make_service(backend="openai", model=MODEL, env={})
    assert llm_flags.flag_error(info.value).startswith("--base-url: ")
    help_text = parser.format_help()
    assert "--base-url" in help_text and "OPENAI_API_KEY" in help_text

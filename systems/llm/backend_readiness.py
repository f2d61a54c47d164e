"""Is the backend ready? The service's warm-up and probe, run on its loop thread.

The warm-up reads a system prompt into the model's cache (and loads the model) in the
background, so the first request does not pay for it; while it runs
:meth:`~systems.llm.service.LlmPlanService.status` says "warming up". The probe asks the
backend whether it can answer at all and records the answer (online, and why not) for the
status. Neither ever blocks the game thread. Kept apart from the service's lifecycle so each
module holds one concern.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from esper_arbiter.systems.domain import Domain
from esper_arbiter.systems.llm import prompt
from esper_arbiter.systems.llm.backends.base import Message

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")
"""The service's logger: these lines are the service's, wherever the code lives."""


def start_warm_up(svc: LlmPlanService, domain: Domain | None, max_steps: int) -> None:
    """Start the backend's warm-up with ``domain``'s system prompt (any thread; only with
    ``ServiceConfig.warm_up`` and a backend that can warm up).

    One warm-up reads one prompt: the service starts one with the preset's prompt
    (``domain=None``) before it knows the game, and ``install(domain=...)`` usually follows at
    once with the game's. The preset's warm-up first loads the model and only then reads its
    prompt, unless a later warm-up has superseded it by then; a warm-up for the prompt already
    read (or being read) is skipped. A model reads its system prompt in seconds on a small CPU,
    and reading two of them had the first plan of a round wait for both."""
    warm = getattr(svc._backend, "warm_up", None)
    if not svc._config.warm_up or warm is None or svc._closed:
        return
    system = prompt.system_prompt(domain, max_steps)
    opening: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Get ready."},
    ]
    with svc._lock:
        if system == svc._warm_prompt:
            return
        svc._warm_prompt = system
        svc._warm_ups += 1
        svc._stats.warming = True
    load = getattr(svc._backend, "load", None) if domain is None else None
    svc._loop.call_soon_threadsafe(svc._spawn, _warm_up(svc, warm, opening, load),
                                   "llm-warm-up")


async def _warm_up(svc: LlmPlanService, warm: Callable[[Sequence[Message]], Any],
                   opening: Sequence[Message],
                   load: Callable[[], Any] | None = None) -> None:
    """Run the backend's warm-up on the loop thread (the game never waits for it);
    :meth:`status` says "warming up" until it ends, however it ends. With ``load``, the
    model is loaded first and the prompt read only if no later warm-up superseded it."""
    try:
        if load is not None:
            await load()
            with svc._lock:
                superseded = svc._warm_prompt != opening[0]["content"]
            if superseded:
                log.debug("preset warm-up skipped: the game's own prompt is read instead")
                return
        await warm(opening)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a failed warm-up only means the first request pays
        log.warning("LLM warm-up failed: %s: %s", type(exc).__name__, exc)
    finally:
        with svc._lock:
            svc._warm_ups -= 1
            svc._stats.warming = svc._warm_ups > 0


async def probe_backend(svc: LlmPlanService, timeout: float) -> tuple[bool, str]:
    """Ask the backend whether it can answer (within ``timeout`` seconds) and record the
    answer for :meth:`status`."""
    try:
        async with asyncio.timeout(timeout):
            online, reason = await svc._backend.probe()
    except TimeoutError:
        online, reason = False, f"{svc._backend.name} did not answer within {timeout:.1f}s"
    except Exception as exc:
        online, reason = False, f"probe failed: {type(exc).__name__}: {exc}"
    with svc._lock:
        svc._stats.online, svc._stats.reason = online, reason
    return online, reason

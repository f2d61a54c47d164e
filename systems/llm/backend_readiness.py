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
    ``ServiceConfig.warm_up`` and a backend that can warm up)."""
    warm = getattr(svc._backend, "warm_up", None)
    if not svc._config.warm_up or warm is None or svc._closed:
        return
    opening: list[Message] = [
        {"role": "system", "content": prompt.system_prompt(domain, max_steps)},
        {"role": "user", "content": "Get ready."},
    ]
    with svc._lock:
        svc._warm_ups += 1
        svc._stats.warming = True
    svc._loop.call_soon_threadsafe(svc._spawn, _warm_up(svc, warm, opening),
                                   "llm-warm-up")


async def _warm_up(svc: LlmPlanService, warm: Callable[[Sequence[Message]], Any],
                   opening: Sequence[Message]) -> None:
    """Run the backend's warm-up on the loop thread (the game never waits for it);
    :meth:`status` says "warming up" until it ends, however it ends."""
    try:
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

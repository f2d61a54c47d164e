"""The embedded llama.cpp backend with the real SmolLM2-135M model (installed by the test
command through the ``embedded`` extra).

The model writes plans for varied snapshots through the snapshot schema; at least 90% must pass
the validator. Missing and corrupt model files are typed outcomes naming the path, and closing
the service mid-generation leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the 'embedded' extra)")

from esper_arbiter.components.llm import (
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.llm.backends.embedded_backend import (
    EmbeddedBackend,
    default_model_path,
    default_threads,
)
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.fixtures.frame_loop import run_frames
from tests.planning.snapshots import (
    GRUNT_ID,
    RIVAL_ID,
    SNIPER_ID,
    hello_snapshot,
    unit,
    with_enemy,
)

pytestmark = pytest.mark.embedded


def varied_snapshots() -> list[WorldSnapshot]:
    base = hello_snapshot()
    me = base.me
    return [
        base,
        with_enemy(base, RIVAL_ID, hp=0),
        hello_snapshot(t=12.5, ammo=0, ammo_reserve=60),
        hello_snapshot(t=20.0, me=dataclasses.replace(me, x=8, y=5, hp=25)),
        hello_snapshot(orders="hold", order_serial=1,
                       cooldowns=MappingProxyType({"smoke": 6.0, "heal": 3.0})),
        hello_snapshot(orders="attack", order_serial=2, me=dataclasses.replace(me, x=10, y=3)),
        with_enemy(with_enemy(base, RIVAL_ID, hp=0), GRUNT_ID, hp=0),
        hello_snapshot(t=31.0, me=dataclasses.replace(me, x=14, y=8),
                       leader=unit(1, 13, 8, hp=40, team="blue", name="player")),
        hello_snapshot(orders="objective", order_serial=3, morale=0.3,
                       me=dataclasses.replace(me, x=7, y=0)),
        hello_snapshot(t=5.0, grid=dataclasses.replace(base.grid, smoke=((9, 2, 1.5),)),
                       me=dataclasses.replace(me, x=4, y=6, in_cover=True)),
        with_enemy(hello_snapshot(t=44.0, me=dataclasses.replace(me, x=16, y=4)),
                   SNIPER_ID, x=18, y=4, hp=10),
        hello_snapshot(t=50.0, ammo=3, me=dataclasses.replace(me, x=12, y=6, hp=50)),
    ]


@pytest.fixture(scope="module")
def service() -> Iterator[LlmPlanService]:
    backend = EmbeddedBackend(seed=1)
    svc = LlmPlanService(backend, ServiceConfig(timeout_s=90.0, probe_on_start=False,
                                                max_concurrent=1))
    yield svc
    svc.close()


def test_default_model_ships_in_the_package() -> None:
    path = default_model_path()
    assert path is not None and path.name.endswith(".gguf")
    assert default_threads() == max(1, (os.cpu_count() or 2) - 1)


def test_real_model_plans_mostly_pass_validation(service: LlmPlanService) -> None:
    snapshots = varied_snapshots()
    assert len(snapshots) >= 10
    outcomes: list[PlanOutcome] = []
    for i, snap in enumerate(snapshots):
        request = PlanRequest(agent_id=2, snapshot=snap, reason=f"snapshot {i}")
        outcome = service.plan_blocking(request, timeout=120.0)
        outcomes.append(outcome)
    ok = [o for o in outcomes if isinstance(o, PlanReady)]
    failures = [(o.kind.value, o.message, o.raw[:160])
                for o in outcomes if isinstance(o, PlanFailure)]
    assert len(ok) / len(outcomes) >= 0.9, failures
    assert all(o.kind in (FailureKind.INVALID_PLAN, FailureKind.PARSE)
               for o in outcomes if isinstance(o, PlanFailure)), failures
    for o in ok:
        assert o.plan.source == "llm" and 1 <= len(o.plan.steps) <= 8
        assert o.backend == "embedded" and o.model.startswith("SmolLM2")
        assert o.timing.completion_tokens > 0 and o.timing.first_token_at is not None
    backend = service.backend
    assert isinstance(backend, EmbeddedBackend)
    assert backend.load_s is not None and backend.load_s > 0
    status = service.status()
    assert status.last_tokens_per_s is not None and status.last_tokens_per_s > 0
    assert status.plans_ok == len(ok) and status.requests_total == len(outcomes)


def test_frame_loop_keeps_ticking_while_the_model_generates(service: LlmPlanService) -> None:
    ticket = service.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot(t=2.0)))
    run = run_frames(ticket, max_wall_s=90.0)
    assert run.outcome is not None
    assert run.ticks >= 10
    assert run.longest_poll_s < 0.05


@pytest.mark.parametrize("content", [None, b"GGUF but truncated garbage", b"\x00" * 64])
def test_missing_or_corrupt_model_file_is_model_missing_naming_the_path(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    svc = LlmPlanService(EmbeddedBackend(path), ServiceConfig(timeout_s=10.0))
    try:
        outcome = svc.plan_blocking(PlanRequest(agent_id=2, snapshot=hello_snapshot()),
                                    timeout=20.0)
        assert isinstance(outcome, PlanFailure), outcome
        assert outcome.kind is FailureKind.MODEL_MISSING
        assert str(path) in outcome.message
        status = svc.status()
        assert not status.online and str(path) in status.reason
    finally:
        svc.close()


def test_close_mid_generation_stops_the_worker() -> None:
    before = set(threading.enumerate())
    svc = LlmPlanService(EmbeddedBackend(seed=2), ServiceConfig(timeout_s=60.0))
    ticket = svc.submit(PlanRequest(agent_id=2, snapshot=hello_snapshot()))
    time.sleep(0.5)  # loading or generating
    started = time.monotonic()
    svc.close()
    took = time.monotonic() - started
    outcome = ticket.poll(0.0)
    assert isinstance(outcome, PlanFailure | PlanReady)
    if isinstance(outcome, PlanFailure):
        assert outcome.kind is FailureKind.CANCELLED
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leaked == []
    assert took < 15.0  # stops between tokens, not after a whole reply


def test_warm_up_loads_the_model_and_reads_the_system_prompt_before_any_request() -> None:
    """With ``warm_up`` (the demo's setting) the model is loaded and the fixed system prompt
    evaluated at start, with no request: the first plan pays for neither."""
    backend = EmbeddedBackend(seed=3)
    started = time.monotonic()
    svc = LlmPlanService(backend, ServiceConfig(timeout_s=60.0, probe_on_start=False,
                                                max_concurrent=1, warm_up=True))
    # The window opens right after this: the load and the prompt happen behind it.
    assert time.monotonic() - started < 1.0
    assert svc.status().warming_up and "warming up" in svc.status().reason
    try:
        deadline = time.monotonic() + 60.0
        while backend.load_s is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.load_s is not None, "warm-up never loaded the model"
        outcome = svc.plan_blocking(PlanRequest(agent_id=2, snapshot=hello_snapshot()), 60.0)
        assert isinstance(outcome, PlanReady), outcome
        status = svc.status()
        assert status.online and not status.warming_up  # the request waited for the warm-up
    finally:
        svc.close()


def test_the_model_leaves_the_game_a_core_unless_told_to_read_prompts_on_more() -> None:
    """By default the prompt is read and the reply written on ``n_threads`` (cores - 1): read
    on every core, the model ran on the game's core too and its frames slowed
    (``bench/frame_isolation.py``). ``n_threads_batch`` gives prompt reading more threads, never
    fewer than ``n_threads``. The counts are the ones the loaded llama.cpp context holds: the
    parallel context that replaces the model's own once overrode the prompt's count."""
    import llama_cpp

    cores = os.cpu_count() or 1
    assert EmbeddedBackend().n_threads_batch == EmbeddedBackend().n_threads == max(1, cores - 1)
    assert EmbeddedBackend(n_threads=1, n_threads_batch=1).n_threads_batch == 1
    assert EmbeddedBackend(n_threads=3, n_threads_batch=1).n_threads_batch == 3
    backend = EmbeddedBackend(n_threads=1, n_threads_batch=2, seed=3)
    llm, _ = backend._ensure_loaded()
    try:
        assert llama_cpp.llama_n_threads(llm._ctx.ctx) == 1
        assert llama_cpp.llama_n_threads_batch(llm._ctx.ctx) == 2
    finally:
        asyncio.run(backend.aclose())

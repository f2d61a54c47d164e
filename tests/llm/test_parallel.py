"""Batches decoded in parallel (``batch_mode="parallel"``): each member's plan is delivered when
its own sequence ends, a member's deadline or cancellation stops only its sequence, and a batch
the backend cannot hold runs as turns. No model here: a fake parallel backend, and the pure
sizing rules of :mod:`systems.llm.backends.multiseq`."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady
from esper_arbiter.systems.llm.backends.base import BackendReply, JsonSchema, Message
from esper_arbiter.systems.llm.backends.embedded_parallel import waves
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend
from esper_arbiter.systems.llm.backends.multiseq import ParallelUnfit, common_prefix, layout
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.llm.test_many_agents import req, wait_until
from tests.llm.test_turns import BAD, GOOD, Turns, asked


class ParallelFake(FakeBackend):
    """Answers a parallel batch member by member at ``finish_s[agent]`` seconds (default
    0.1); single requests (warm-up, retries, turns) through :class:`Turns`."""

    batch_mode = "parallel"

    def __init__(self, finish_s: dict[int, float] | None = None, bad: Sequence[int] = (),
                 unfit: bool = False) -> None:
        super().__init__(Turns(delay_s=0.05, lead_s=0.3))
        self.finish_s = finish_s or {}
        self.bad = set(bad)
        self.unfit = unfit
        self.parallel_calls: list[list[int]] = []
        self.chats: list[Sequence[Message]] = []
        self.stopped: list[int] = []
        self.cancelled = False

    async def generate_parallel(
        self,
        chats: Sequence[Sequence[Message]],
        schemas: Sequence[JsonSchema | None],
        on_chunk: Callable[[int, str], None] | None,
        on_reply: Callable[[int, BackendReply], None],
        stops: Sequence[threading.Event],
    ) -> list[BackendReply | None]:
        agents = [asked(c) for c in chats]
        self.parallel_calls.append(agents)
        self.chats = list(chats)
        assert len(schemas) == len(chats) and all(s is not None for s in schemas)
        if self.unfit:
            raise ParallelUnfit("4 members need 9000 tokens; the context holds 4096")
        loop = asyncio.get_running_loop()
        start = loop.time()
        out: list[BackendReply | None] = [None] * len(chats)
        try:
            for k in sorted(range(len(chats)), key=lambda k: self.finish_s.get(agents[k], 0.1)):
                await asyncio.sleep(max(0.0, start + self.finish_s.get(agents[k], 0.1)
                                        - loop.time()))
                if stops[k].is_set():
                    self.stopped.append(agents[k])
                    out[k] = BackendReply("", done_reason="cancelled")
                else:
                    text = BAD if agents[k] in self.bad else GOOD
                    if on_chunk is not None:
                        on_chunk(k, text)
                    out[k] = BackendReply(text, completion_tokens=9, done_reason="stop")
                on_reply(k, out[k])  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return out


def config(**kw: object) -> ServiceConfig:
    base: dict[str, object] = {"timeout_s": 5.0, "probe_on_start": False, "max_concurrent": 1}
    base.update(kw)
    return ServiceConfig(**base)  # type: ignore[arg-type]


def start_batch(service: LlmPlanService, agents: Sequence[int], **deadlines: float
                ) -> dict[int, object]:
    """Occupy the worker with a single request, queue ``agents`` so they form one batch."""
    service.submit(req(90))
    wait_until(lambda: service.status().in_flight == 1)
    return {a: service.submit(req(a, deadline_s=deadlines.get(f"a{a}"))) for a in agents}


def test_each_member_is_delivered_when_its_own_sequence_ends() -> None:
    backend = ParallelFake({2: 0.05, 6: 0.5, 7: 1.0})
    with LlmPlanService(backend, config()) as service:
        assert service.batch_mode == "parallel"
        tickets = start_batch(service, (2, 6, 7))
        done: dict[int, float] = {}
        end = time.monotonic() + 5.0
        while len(done) < 3 and time.monotonic() < end:
            for a, t in tickets.items():
                if a not in done and t.poll(0.0) is not None:  # type: ignore[attr-defined]
                    done[a] = time.monotonic()
            time.sleep(0.002)
        outcomes = {a: t.poll(0.0) for a, t in tickets.items()}  # type: ignore[attr-defined]
        records = {r.request_id: r for r in service.status().recent}
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    assert backend.parallel_calls == [[2, 6, 7]]
    assert done[7] - done[2] > 0.6  # 2's plan was out long before 7's sequence ended
    assert all(records[t.request_id].batch_size == 3 for t in tickets.values())  # type: ignore[attr-defined]
    # each member's chat: the shared situation once, then its own lines and instruction
    map_lines = {next(ln for ln in c[-1]["content"].splitlines() if ln.startswith("map "))
                 for c in backend.chats}
    assert len(map_lines) == 1
    assert [asked(c) for c in backend.chats] == [2, 6, 7]
    assert all(o.timing.first_token_at is not None for o in outcomes.values()
               if o is not None)


def test_an_unusable_member_is_retried_alone_and_the_others_keep_their_plans() -> None:
    backend = ParallelFake(bad=(6,))
    with LlmPlanService(backend, config()) as service:
        tickets = start_batch(service, (2, 6, 7))
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}  # type: ignore[attr-defined]
        records = {r.request_id: r for r in service.status().recent}
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    assert backend.parallel_calls == [[2, 6, 7]]
    singles = [asked(c.messages) for c in backend.calls]
    assert singles == [90, 6]  # the warm-up, then 6 alone
    assert records[tickets[6].request_id].batch_size == 1  # type: ignore[attr-defined]


def test_a_member_past_its_deadline_times_out_alone_and_only_its_sequence_stops() -> None:
    backend = ParallelFake({2: 0.1, 6: 0.2, 8: 0.9, 9: 1.2})
    with LlmPlanService(backend, config()) as service:
        tickets = start_batch(service, (2, 6, 8, 9), a8=0.6)  # 8's: ~0.3 s into the batch
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}  # type: ignore[attr-defined]
    out = outcomes[8]
    assert isinstance(out, PlanFailure) and out.kind is FailureKind.TIMEOUT, out
    assert "parallel batch of 4" in out.message
    assert all(isinstance(outcomes[a], PlanReady) for a in (2, 6, 9)), outcomes
    assert backend.stopped == [8] and not backend.cancelled


def test_a_cancelled_member_stops_its_sequence_and_the_rest_carry_on() -> None:
    backend = ParallelFake({2: 0.1, 6: 0.8, 7: 0.9})
    with LlmPlanService(backend, config()) as service:
        tickets = start_batch(service, (2, 6, 7))
        wait_until(lambda: tickets[2].poll(0.0) is not None)  # type: ignore[attr-defined]
        tickets[6].cancel()  # type: ignore[attr-defined]
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}  # type: ignore[attr-defined]
    assert isinstance(outcomes[6], PlanFailure) and outcomes[6].kind is FailureKind.CANCELLED
    assert isinstance(outcomes[2], PlanReady) and isinstance(outcomes[7], PlanReady)
    assert backend.stopped == [6] and not backend.cancelled


def test_when_every_member_is_gone_the_generation_is_stopped() -> None:
    backend = ParallelFake({2: 2.0, 6: 2.0})
    with LlmPlanService(backend, config()) as service:
        tickets = start_batch(service, (2, 6))
        wait_until(lambda: bool(backend.parallel_calls))
        for t in tickets.values():
            t.cancel()  # type: ignore[attr-defined]
        wait_until(lambda: backend.cancelled, timeout=1.5)
        outcomes = [t.wait(1.0) for t in tickets.values()]  # type: ignore[attr-defined]
    assert all(isinstance(o, PlanFailure) and o.kind is FailureKind.CANCELLED for o in outcomes)


def test_a_batch_the_context_cannot_hold_runs_as_turns_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    backend = ParallelFake(unfit=True)
    with caplog.at_level(logging.INFO, logger="esper_arbiter.systems.llm.service"), \
            LlmPlanService(backend, config()) as service:
        tickets = start_batch(service, (2, 6, 7))
        outcomes = {a: t.wait(5.0) for a, t in tickets.items()}  # type: ignore[attr-defined]
    assert all(isinstance(o, PlanReady) for o in outcomes.values()), outcomes
    assert [asked(c.messages) for c in backend.calls] == [90, 2, 6, 7]  # one turn each
    assert any("planned as turns instead" in r.getMessage() and "4096" in r.getMessage()
               for r in caplog.records)


def test_mode_selection_parallel_needs_a_backend_that_offers_it(
        caplog: pytest.LogCaptureFixture) -> None:
    with LlmPlanService(ParallelFake(), config()) as s:
        assert s.batch_mode == "parallel"
    with caplog.at_level(logging.WARNING), \
            LlmPlanService(FakeBackend([GOOD]), config(batch_mode="parallel")) as s:
        assert s.batch_mode == "turns"
    assert any("cannot decode members in parallel" in r.getMessage() for r in caplog.records)
    with LlmPlanService(ParallelFake(), config(batch_mode="turns")) as s:
        assert s.batch_mode == "turns"
    assert ServiceConfig.from_env({"LLM_BATCH_MODE": "parallel"}).batch_mode == "parallel"


# ------------------------------------------------------------------ sizing (no model)


def test_common_prefix_and_layout_share_the_prefix_and_keep_a_suffix_each() -> None:
    a, b, c = [1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3, 4, 7, 7]
    assert common_prefix([a, b, c]) == 3 and common_prefix([a]) == 5 and common_prefix([]) == 0
    plan = layout([a, b, c], max_tokens=10, n_ctx=100, n_seq_max=4)
    assert plan.fits and plan.prefix == 3 and plan.suffixes == (2, 1, 3)
    assert plan.need == 3 + 6 + 30
    same = layout([a, list(a)], max_tokens=1, n_ctx=100, n_seq_max=4)
    assert same.prefix == 4 and same.suffixes == (1, 1)  # identical prompts: 1 token each


def test_layout_refuses_what_the_context_or_its_sequences_cannot_hold() -> None:
    prompts = [[1] * 100 + [k] * 50 for k in range(2, 6)]
    tight = layout(prompts, max_tokens=64, n_ctx=500, n_seq_max=8)
    assert not tight.fits and tight.prefix == 100 and tight.need == 100 + 4 * 50 + 4 * 64
    assert "need 556 tokens" in tight.problem and "holds 500" in tight.problem
    assert layout(prompts, max_tokens=64, n_ctx=556, n_seq_max=8).fits
    many = layout(prompts, max_tokens=1, n_ctx=10_000, n_seq_max=3)
    assert not many.fits and "3 sequences" in many.problem
    assert not layout([[1], []], 1, 100, 4).fits


def test_waves_put_the_first_member_alone_from_three_members_on() -> None:
    assert waves(4, True) == [[0], [1, 2, 3]]
    assert waves(3, True) == [[0], [1, 2]]
    assert waves(2, True) == [[0, 1]]
    assert waves(4, False) == [[0, 1, 2, 3]]


def test_a_llama_cpp_python_whose_internals_moved_turns_parallel_off_not_the_model(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from esper_arbiter.systems.llm.backends import embedded_parallel

    def moved(*_a: object, **_k: object) -> None:
        raise AttributeError("module 'llama_cpp._internals' has no attribute 'LlamaContext'")

    monkeypatch.setattr(embedded_parallel, "MultiSeqGenerator", moved)
    backend = SimpleNamespace(parallel_seqs=4, n_ctx=4096, n_threads=1, n_batch=512,
                              n_threads_batch=2)
    with caplog.at_level(logging.WARNING, logger="esper_arbiter"):
        gen = embedded_parallel.open_generator(backend, object())  # type: ignore[arg-type]
    assert gen is None  # batches run as turns; the model itself stays loaded and in use
    assert "parallel batches are off" in caplog.text and "LlamaContext" in caplog.text

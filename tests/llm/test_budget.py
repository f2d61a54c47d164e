"""Prompts always fit the backend's context: trimmed nearest first, refused before the model
is called when they cannot fit, and batches cut to the members that fit."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanReady, PlanRequest
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.llm.backends.fake_backend import FakeBackend, FakeReply
from esper_arbiter.systems.llm.batching import build_batch
from esper_arbiter.systems.llm.budget import ContextBudget, estimate_tokens, fit_single
from esper_arbiter.systems.llm.prompt import render_snapshot
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from tests.planning.snapshots import hello_snapshot

PLAN = '{"steps": [{"act": "Scan"}]}'


@dataclass(frozen=True)
class _Item:
    request_id: int
    request: PlanRequest


def crowded(n: int = 40) -> WorldSnapshot:
    """The opening with ``n`` enemies in view (a snapshot built without sensing limits)."""
    snap = hello_snapshot()
    foes = tuple(UnitView(100 + i, 8 + i % 10, i % 10, 40, 40, "red", name=f"Foe{i}")
                 for i in range(n))
    return replace(snap, enemies=foes)


def test_an_untrimmed_prompt_is_used_when_it_fits() -> None:
    request = PlanRequest(2, hello_snapshot())
    fitted = fit_single(request, ContextBudget(4096, 256))
    assert fitted.messages is not None and fitted.level == 1.0
    assert "more" not in fitted.messages[1]["content"]


def test_a_big_situation_is_trimmed_nearest_first_and_the_rest_counted() -> None:
    snap = crowded()
    full = fit_single(PlanRequest(2, snap), None)
    assert full.messages is not None
    need = ContextBudget(10**6, 0).measure(full.messages)
    budget = ContextBudget(need - 50 + 256, 256)  # just too small for every enemy
    fitted = fit_single(PlanRequest(2, snap), budget)
    assert fitted.messages is not None and fitted.level < 1.0
    assert budget.measure(fitted.messages) <= budget.prompt_room(1)
    text = fitted.messages[1]["content"]
    assert re.search(r"\+\d+ more", text)
    nearest = min(snap.enemies, key=lambda u: (u.x - 2) ** 2 + (u.y - 3) ** 2)
    assert f"#{nearest.id} " in text  # the nearest enemy is never the one cut


def test_the_render_lists_at_most_the_limit_and_counts_the_rest() -> None:
    from esper_arbiter.systems.llm.prompt import PromptLimits

    text = render_snapshot(crowded(12), PromptLimits(enemies=3))
    line = next(x for x in text.splitlines() if x.startswith("enemies:"))
    assert line.count("#") == 3 and line.endswith("+9 more")


def test_a_prompt_that_cannot_fit_fails_as_too_large_before_the_model_is_called() -> None:
    backend = FakeBackend([PLAN], context=ContextBudget(600, 256))
    config = ServiceConfig(timeout_s=3.0, probe_on_start=False)
    with LlmPlanService(backend, config) as service:
        outcome = service.plan_blocking(PlanRequest(2, hello_snapshot()), timeout=5.0)
    assert isinstance(outcome, PlanFailure) and outcome.kind is FailureKind.TOO_LARGE
    assert "tokens" in outcome.message and "600" in outcome.message
    assert len(backend.calls) == 0


def test_a_batch_is_cut_to_the_members_that_fit_and_the_rest_plan_alone() -> None:
    def size(agents: tuple[int, ...]) -> int:
        items = [_Item(i, PlanRequest(a, hello_snapshot())) for i, a in enumerate(agents)]
        return ContextBudget(10**6, 0).measure(build_batch(items).messages)

    two, three = size((5, 6)), size((5, 6, 7))
    assert two < three
    # Room for a prompt of two agents and their answers, not three.
    budget = ContextBudget((two + three) // 2 + 2 * 64, 64)
    answered: list[int] = []

    def first_slow(reply: str) -> FakeReply | str:
        answered.append(1)  # the blocker's answer takes a while: the rest queue up behind it
        return FakeReply(reply, delay_s=1.0) if len(answered) == 1 else reply

    backend = FakeBackend(lambda msgs: first_slow(PLAN) if "Plan for" not in msgs[1]["content"]
                          else "[" + ",".join(
                              f'{{"agent_id": {a}, "steps": [{{"act": "Scan"}}]}}'
                              for a in re.findall(r"#(\d+)", msgs[1]["content"].splitlines()[0])
                          ) + "]", context=budget)
    config = ServiceConfig(timeout_s=5.0, probe_on_start=False, max_concurrent=1,
                           max_batch_size=3)
    with LlmPlanService(backend, config) as service:
        blocker = service.submit(PlanRequest(1, replace(hello_snapshot(), t=0.0)))
        deadline = time.monotonic() + 5.0
        while not backend.calls:  # the blocker holds the only worker: the rest queue up
            assert time.monotonic() < deadline
            time.sleep(0.002)
        tickets = [service.submit(PlanRequest(a, hello_snapshot())) for a in (5, 6, 7)]
        deadline = time.monotonic() + 5.0
        outcomes = []
        for t in [blocker, *tickets]:
            while (out := t.poll(0.0)) is None:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            outcomes.append(out)
    assert all(isinstance(o, PlanReady) for o in outcomes), outcomes
    sizes = [int(m.group(1)) for c in backend.calls
             if (m := re.match(r"Plan for (\d+) agents", c.messages[1]["content"]))]
    assert sizes == [2], sizes  # the third member was left out and planned alone
    assert len(backend.calls) == 3  # the blocker, the batch of two, the one alone
    for call in backend.calls:
        tokens = budget.measure(call.messages)
        plans = max(1, len(re.findall(r"#\d+", call.messages[1]["content"].splitlines()[0])))
        if "Plan for" not in call.messages[1]["content"]:
            plans = 1
        assert tokens <= budget.prompt_room(plans), (tokens, plans)


def test_the_estimate_never_undercounts_our_prompts() -> None:
    """Measured against SmolLM2's tokenizer our prompts run 2.4-3.0 characters per token; the
    estimate assumes 2.3, so it errs on the side of fitting."""
    text = render_snapshot(crowded(8))
    assert estimate_tokens(text) >= len(text) / 2.4

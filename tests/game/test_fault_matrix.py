"""The fault matrix: every fault the ollama and OpenAI-compatible tests inject, while the whole
headless game plays a round with three companions.

Each round must complete (no exception, an outcome line), the faults must really reach the
game (requests go out and come back), and the books must balance in all three places that
count requests -- the arbiter, the service and the HUD:
``requests = plans + failures + withdrawn (cancelled, superseded, refused, expired) +
discarded + in flight``. The round runs about 12x faster than the wall clock, so a 0.25 s
deadline is 3 s of game time and a round costs about half a second.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import esper
import pytest

from esper_arbiter.components.agent import ArbiterState
from esper_arbiter.components.llm import LlmTask, PlanProposal
from esper_arbiter.game.headless import run_headless
from esper_arbiter.game.render.model import ViewState, build_frame
from esper_arbiter.game.scenario import DEFAULT_SCENARIO, Scenario, UnitSpec, load_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.llm.backends.ollama_backend import OllamaBackend
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.scripted import ScriptedPlanService
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig
from tests.fixtures.fake_ollama import ChatScript as OllamaScript
from tests.fixtures.fake_ollama import FakeOllama
from tests.fixtures.fake_openai import ChatScript as OpenAIScript
from tests.fixtures.fake_openai import FakeOpenAI
from tests.llm.test_ollama_faults import FAULTS as OLLAMA_FAULTS
from tests.llm.test_openai_faults import FAULTS as OPENAI_FAULTS

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
from _ledger import arbiter_ledger, service_ledger  # noqa: E402  (bench/ is not a package)

DEADLINE_S = 0.25
SPEEDUP = 12.0
ROUND_S = 6.0
DT = 1 / 30
CONFIG = ArbiterConfig(first_request_at_s=0.2, llm_cooldown_s=1.5)


def three_companions() -> Scenario:
    """The standard round with two more companions beside the first."""
    sc = load_scenario(DEFAULT_SCENARIO)
    first = sc.companions[0]
    extra = (dataclasses.replace(first, name="companion2", x=3, y=3),
             dataclasses.replace(first, name="companion3", x=2, y=4))
    assert all(isinstance(u, UnitSpec) for u in extra)
    return dataclasses.replace(sc, companions=(first, *extra))


SCENARIO = three_companions()


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=("qwen2.5:1.5b",), max_lifetime_s=300.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=("smollm2",), max_lifetime_s=300.0) as srv:
        yield srv


def _config() -> ServiceConfig:
    return ServiceConfig(timeout_s=DEADLINE_S, max_concurrent=2, probe_on_start=False,
                         max_batch_size=1)


# -- the books as the HUD shows them ------------------------------------------------------


def _numbers(text: str) -> dict[str, int]:
    """``"12  ok 3  failed 4  cancelled 1"`` -> {"requests": 12, "ok": 3, ...}."""
    head, *rest = re.split(r"\s{2,}", text.strip())
    out = {"requests": int(head)}
    for part in rest:
        name, value = part.rsplit(" ", 1)
        out[name] = int(value)
    return out


def hud_books(session: GameSession, status: ServiceStatus) -> list[str]:
    """Where the HUD's numbers do not add up (empty when they all do)."""
    problems = []
    for ent in session.companions:
        frame = build_frame(session, ViewState(selected=ent), status)
        panel = frame.hud.agent
        assert panel is not None and panel.entity == ent
        rows = dict(panel.metrics)
        n = _numbers(rows["LLM requests"])
        session.activate()
        state = esper.component_for_entity(ent, ArbiterState)
        # What the panel shows as in flight, and an answer the arbiter has not read yet.
        open_ = 1 if panel.in_flight else 0
        open_ += int(esper.has_component(ent, LlmTask) and not panel.in_flight)
        open_ += int(esper.has_component(ent, PlanProposal))
        shown = sum(v for k, v in n.items() if k != "requests") + open_
        if shown != n["requests"]:
            problems.append(f"agent panel of #{ent}: {rows['LLM requests']!r} + open {open_} "
                            f"(metrics {state.metrics.llm_requests} requests, discarded "
                            f"{state.metrics.plans_discarded})")
    frame = build_frame(session, ViewState(selected=session.companions[0]), status)
    rows = dict(frame.hud.llm.rows)
    n = _numbers(rows["requests"])
    withdrawn = _numbers("0  " + rows["withdrawn"]) if "withdrawn" in rows else {}
    shown = (n["ok"] + n["failed"] + sum(v for k, v in withdrawn.items() if k != "requests")
             + int(rows["in flight"]) + int(rows["queue depth"]))
    if shown != n["requests"]:
        problems.append(f"LLM panel: {rows['requests']!r}, withdrawn "
                        f"{rows.get('withdrawn', '-')!r}, in flight {rows['in flight']}, queue "
                        f"{rows['queue depth']} (status: {service_ledger(status).line()})")
    return problems


# -- one round -----------------------------------------------------------------------------


def play(service: LlmPlanService) -> dict[str, Any]:
    """A paced headless round; returns what the checks need (the session is closed)."""
    lines: list[str] = []
    session = GameSession(SCENARIO, seed=3, service=service, own_service=False, config=CONFIG)
    start = time.monotonic()

    def pace(s: GameSession) -> None:
        ahead = start + s.t / SPEEDUP - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)

    try:
        report = run_headless(session, ROUND_S, DT, lines.append, on_step=pace)
        service.close()  # every request still out ends now (cancelled): the books are final
        status = service.status()
        session.activate()
        arbiter = arbiter_ledger()
        hud = hud_books(session, status)
        per_agent = [esper.component_for_entity(c, ArbiterState).metrics.llm_requests
                     for c in session.companions]
    finally:
        session.close()
    return {"report": report, "status": status, "arbiter": arbiter, "hud": hud,
            "per_agent": per_agent, "lines": lines}


def check(result: dict[str, Any], expect: str | None) -> None:
    report, status = result["report"], result["status"]
    assert report.summary.startswith("outcome: "), report.summary
    assert result["lines"][-1] == report.summary
    assert all(n >= 1 for n in result["per_agent"]), result["per_agent"]  # all three asked
    service = service_ledger(status)
    arbiter = result["arbiter"]
    assert service.balance == 0, service.line()
    assert service.open == 0  # closed: nothing is left in flight
    assert arbiter.balance == 0, arbiter.line()
    assert arbiter.requests == service.requests  # every request the arbiter sent arrived
    assert result["hud"] == []
    if expect == "failures":
        assert status.failures > 0, service.line()
    elif expect == "plans":
        assert status.plans_ok > 0, service.line()


def _expect(fault: Any) -> str | None:
    """What the round must show of the fault: failures, plans, or either (a plan whose
    legality depends on the live round, such as an attack on entity #3)."""
    if fault.snapshot_dead_rival:
        return None
    return "plans" if fault.kind is None else "failures"


@pytest.mark.parametrize("fault", OLLAMA_FAULTS, ids=[f.name for f in OLLAMA_FAULTS])
def test_ollama_fault_during_a_three_companion_round(ollama: FakeOllama, fault: Any) -> None:
    assert isinstance(fault.script, OllamaScript)
    ollama.script(fault.script)
    service = LlmPlanService(OllamaBackend(model="qwen2.5:1.5b", host=ollama.host, seed=7),
                             _config())
    check(play(service), _expect(fault))


@pytest.mark.parametrize("fault", OPENAI_FAULTS, ids=[f.name for f in OPENAI_FAULTS])
def test_openai_fault_during_a_three_companion_round(openai: FakeOpenAI, fault: Any) -> None:
    assert isinstance(fault.script, OpenAIScript)
    openai.script(fault.script)
    service = LlmPlanService(OpenAIBackend("smollm2", openai.base_url, None, seed=7), _config())
    check(play(service), _expect(fault))


def test_the_hud_books_balance_with_every_kind_of_outcome() -> None:
    """Every counter the arbiter keeps appears on the HUD, so its numbers add up even when a
    plan was discarded (it arrived while the agent was down) or a request expired."""
    status = ServiceStatus(backend="fake", requests_total=9, plans_ok=2, failures=1,
                           cancelled=1, superseded=1, refused=1, expired=2, in_flight=1)
    service = ScriptedPlanService(seed=1)
    with GameSession(SCENARIO, seed=1, service=service, own_service=True) as session:
        session.step(DT)
        for ent in session.companions:
            m = esper.component_for_entity(ent, ArbiterState).metrics
            m.llm_requests, m.plans_by_source = 7, {"llm": 2}
            m.llm_failures, m.llm_cancelled, m.llm_expired, m.plans_discarded = 1, 1, 2, 1
        assert hud_books(session, status) == []

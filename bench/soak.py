"""Soak: a long headless game at full speed against a backend that fails a third of the time,
with agents joining and leaving, watching memory, threads, tasks and the request books.

The game is hello_companion's stress map (``--agents`` companions and as many enemies),
stepped at 30 Hz as fast as the machine goes for ``--minutes`` of game time; when a round ends
(extraction or defeat) the next one starts with the same plan service. Every ``--churn-s`` game
seconds a few companions leave (their entity is deleted, request in flight or not) and as many
join. The plan service is the real :class:`LlmPlanService` (worker thread, asyncio loop,
priority queue, batching) over :class:`FlakyBackend`, which answers in a few milliseconds and
fails one call in three at random: a backend error, a reply that is not JSON, an illegal plan,
or a hang that runs into the deadline.

Figures: resident memory (start, after the warm-up, end; growth after warm-up must stay under
10%), threads and asyncio tasks (no growth), and the books: every request the arbiter sent is
settled in the service, and the arbiter's own counts add up (``bench/_ledger.py``)::

    PYTHONPATH=. .venv/bin/python bench/soak.py                     # 30 min, 50 agents
    PYTHONPATH=. .venv/bin/python bench/soak.py --minutes 2 --agents 10 --check   # quick look
    PYTHONPATH=. .venv/bin/python bench/soak.py --write docs/soak.md

``--check`` exits 1 when a limit is missed; ``--write`` writes the figures as a Markdown section.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import esper
from _ledger import Ledger, arbiter_ledger, open_in_world, service_ledger
from _targets import Targets, add_check_flag

from esper_arbiter.components.agent import Agent, ArbiterMetrics, ArbiterState
from esper_arbiter.components.llm import FailureKind, LlmTask, PlanProposal
from esper_arbiter.components.world import Orders
from esper_arbiter.game.scenario import UnitSpec, build_stress_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.backends.base import BackendError, BackendReply, JsonSchema, Message
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

DT = 1 / 30
RSS_GROWTH_LIMIT = 0.10
_PLANS = ('[{"act": "Scan"}]', '[{"act": "Wait", "seconds": 1}, {"act": "Scan"}]',
          '[{"act": "Reload"}]')


class FlakyBackend:
    """A plan backend that answers within milliseconds and fails ``fail_rate`` of its calls
    at random (seeded). Batched calls (``plans > 1``) get a JSON array with one element per
    agent of the batch schema."""

    name = "flaky"
    model = "flaky-model"

    def __init__(self, fail_rate: float, seed: int, delay_s: float = 0.002) -> None:
        self.fail_rate = fail_rate
        self.delay_s = delay_s
        self._rng = random.Random(seed)
        self.calls = 0
        self.failed = 0

    async def generate(self, messages: Sequence[Message], schema: JsonSchema | None,
                       on_chunk: Any = None, plans: int = 1) -> BackendReply:
        self.calls += 1
        rng = self._rng
        await asyncio.sleep(self.delay_s * rng.random())
        if rng.random() < self.fail_rate:
            self.failed += 1
            kind = rng.randrange(4)
            if kind == 0:
                raise BackendError(FailureKind.CONNECTION, "flaky: connection reset")
            if kind == 1:
                await asyncio.Event().wait()  # hangs until the deadline cancels it
            text = "I think we should flank them." if kind == 2 else \
                '{"steps": [{"act": "Teleport", "x": 1}]}'
        elif plans > 1 and schema is not None:
            ids = [item["properties"]["agent_id"]["const"]
                   for item in schema.get("prefixItems", [])]
            text = json.dumps([{"agent_id": a, "steps": json.loads(rng.choice(_PLANS))}
                               for a in ids])
        else:
            text = '{"steps": ' + rng.choice(_PLANS) + "}"
        if on_chunk is not None:
            on_chunk(text)
        return BackendReply(text=text, prompt_tokens=100, completion_tokens=len(text) // 4,
                            first_chunk_s=0.001, total_s=0.002)

    async def probe(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; else the peak from resource)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loop_tasks(service: LlmPlanService) -> int:
    """asyncio tasks alive on the service's loop (asked on that loop, thread-safely)."""
    loop: asyncio.AbstractEventLoop = service._loop

    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), loop).result(5.0) - 1  # not this one


@dataclasses.dataclass
class Books:
    """Metrics of agents no longer in the world (they left, or their round ended)."""

    metrics: list[ArbiterMetrics] = dataclasses.field(default_factory=list)
    open: int = 0
    """Requests still out when their agent left or its round ended: the arbiter never hears
    of them again (the service cancels them)."""

    def keep(self, ent: int) -> None:
        state = esper.try_component(ent, ArbiterState)
        if state is not None:
            self.metrics.append(dataclasses.replace(
                state.metrics, plans_by_source=dict(state.metrics.plans_by_source)))
        self.open += int(esper.has_component(ent, LlmTask)) + int(
            esper.has_component(ent, PlanProposal))


@dataclasses.dataclass
class Figures:
    minutes: float
    agents: int
    fail_rate: float
    wall_s: float
    frames: int
    rounds: int
    joined: int
    left: int
    rss: dict[str, float]
    threads: dict[str, int]
    tasks: dict[str, int]
    service: Ledger
    arbiter: Ledger
    orphaned: int
    backend_calls: int
    backend_failed: int

    @property
    def growth(self) -> float:
        return self.rss["end"] / self.rss["warm"] - 1.0

    def problems(self) -> list[str]:
        out = []
        if self.growth >= RSS_GROWTH_LIMIT:
            out.append(f"RSS grew {self.growth:.1%} after warm-up (limit {RSS_GROWTH_LIMIT:.0%})")
        if self.threads["end"] > self.threads["warm"]:
            out.append(f"threads grew {self.threads['warm']} -> {self.threads['end']}")
        if self.tasks["end"] > max(self.tasks["warm"], 0):
            out.append(f"asyncio tasks grew {self.tasks['warm']} -> {self.tasks['end']}")
        if self.service.balance or self.service.open:
            out.append(f"service books: {self.service.line()}")
        if self.arbiter.balance:
            out.append(f"arbiter books: {self.arbiter.line()}")
        if self.arbiter.requests != self.service.requests:
            out.append(f"arbiter sent {self.arbiter.requests}, service got "
                       f"{self.service.requests}")
        return out

    def lines(self) -> list[str]:
        r, t, k = self.rss, self.threads, self.tasks
        return [
            f"soak: {self.minutes:g} game minutes, {self.agents} agents, backend failing "
            f"{self.fail_rate:.0%} at random: {self.frames} frames in {self.wall_s:.0f} s wall "
            f"({self.minutes * 60 / self.wall_s:.1f}x real time), {self.rounds} rounds, "
            f"{self.joined} agents joined and {self.left} left",
            f"RSS MiB: start {r['start']:.1f}, after warm-up {r['warm']:.1f}, end {r['end']:.1f} "
            f"(growth after warm-up {self.growth:+.1%}, limit {RSS_GROWTH_LIMIT:.0%})",
            f"threads: start {t['start']}, after warm-up {t['warm']}, end {t['end']}, after "
            f"close {t['closed']}; asyncio tasks on the service loop: start {k['start']}, "
            f"after warm-up {k['warm']}, end {k['end']}",
            f"service: {self.service.line()}",
            f"arbiter: {self.arbiter.line()}",
            f"backend calls {self.backend_calls}, failed {self.backend_failed} "
            f"({self.backend_failed / max(1, self.backend_calls):.0%}); requests still out when "
            f"their agent left or its round ended (cancelled in the service): {self.orphaned}",
        ]

    def markdown(self, command: str) -> str:
        r, t, k = self.rss, self.threads, self.tasks
        s, a = self.service, self.arbiter
        rows = [
            ("game time", f"{self.minutes:g} min at 30 Hz, full speed: {self.frames} frames "
                          f"in {self.wall_s:.0f} s ({self.minutes * 60 / self.wall_s:.1f}x real "
                          "time)"),
            ("agents", f"{self.agents} companions + {self.agents} enemies; {self.rounds} "
                       f"rounds; {self.joined} joined, {self.left} left"),
            ("backend", f"{self.backend_calls} calls, {self.backend_failed} failed "
                        f"({self.backend_failed / max(1, self.backend_calls):.0%}: errors, "
                        "non-JSON, illegal plans, hangs past the deadline)"),
            ("resident memory", f"start {r['start']:.1f} MiB, after warm-up {r['warm']:.1f} MiB, "
                                f"end {r['end']:.1f} MiB: **{self.growth:+.1%}** after warm-up "
                                "(limit 10%)"),
            ("threads", f"{t['start']} / {t['warm']} / {t['end']} (start / warm / end); "
                        f"{t['closed']} after close"),
            ("asyncio tasks", f"{k['start']} / {k['warm']} / {k['end']} on the service loop"),
            ("service books", f"{s.requests} requests = " + " + ".join(
                f"{v} {n}" for n, v in s.settled.items()) + f" + {s.open} open"),
            ("arbiter books", f"{a.requests} requests = " + " + ".join(
                f"{v} {n}" for n, v in a.settled.items()) + f" + {a.open} open (still out when "
                "their agent left or its round ended; the service cancelled them)"),
        ]
        verdict = "all limits met" if not self.problems() else "; ".join(self.problems())
        body = "\n".join(f"| {k_} | {v} |" for k_, v in rows)
        return (
            "## Soak\n\n"
            f"`{command}` on {platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} cores: {verdict}.\n\n| | |\n|---|---|\n{body}\n"
        )


def _join(session: GameSession, spec: UnitSpec) -> int:
    """A companion joins the round (the host's way of spawning one)."""
    ent = session._spawn(spec)
    esper.add_component(ent, Orders())
    esper.add_component(ent, Agent(role="companion", use_llm=True))
    session.companions = (*session.companions, ent)
    return ent


def _leave(session: GameSession, ent: int, books: Books) -> None:
    books.keep(ent)
    esper.delete_entity(ent, immediate=True)
    session.companions = tuple(c for c in session.companions if c != ent)


def run(minutes: float, agents: int, fail_rate: float, seed: int, churn_s: float,
        warmup_frac: float = 0.2, quiet: bool = False) -> Figures:
    """Play the soak and return its figures (see the module docstring)."""
    rng = random.Random(seed)
    backend = FlakyBackend(fail_rate, seed)
    cfg = ServiceConfig(timeout_s=0.25, max_concurrent=2, probe_on_start=False)
    arbiter_cfg = ArbiterConfig(llm_cooldown_s=5.0)
    rss = {"start": rss_mb()}
    threads = {"start": threading.active_count()}
    service = LlmPlanService(backend, cfg)
    tasks = {"start": loop_tasks(service)}
    books = Books()
    total_frames = round(minutes * 60 / DT)
    warm_frame = round(total_frames * warmup_frac)
    frames = rounds = joined = left = 0
    wall0 = time.perf_counter()
    report_every = max(1, total_frames // 10)
    while frames < total_frames:
        rounds += 1
        scenario = build_stress_scenario(agents, seed=seed + rounds)
        spawn = list(scenario.companions)
        session = GameSession(scenario, seed=seed + rounds, service=service, config=arbiter_cfg)
        next_churn = churn_s
        try:
            while frames < total_frames and session.result is None:
                session.step(DT)
                frames += 1
                if session.t >= next_churn:
                    next_churn += churn_s
                    for _ in range(rng.randrange(1, 4)):
                        if len(session.companions) > 1:
                            _leave(session, rng.choice(session.companions), books)
                            left += 1
                        spec = rng.choice(spawn)
                        _join(session, dataclasses.replace(spec, name=f"joiner{joined}"))
                        joined += 1
                if frames == warm_frame:
                    gc.collect()
                    rss["warm"] = rss_mb()
                    threads["warm"] = threading.active_count()
                    tasks["warm"] = loop_tasks(service)
                if not quiet and frames % report_every == 0:
                    print(f"  {frames / total_frames:4.0%}  game {frames * DT / 60:5.1f} min  "
                          f"wall {time.perf_counter() - wall0:5.0f} s  RSS {rss_mb():6.1f} MiB  "
                          f"threads {threading.active_count()}", flush=True)
        finally:
            session.activate()
            for _ent, state in esper.get_component(ArbiterState):
                books.metrics.append(state.metrics)
            books.open += open_in_world()
            session.close()
    wall = time.perf_counter() - wall0
    gc.collect()
    rss["end"] = rss_mb()
    threads["end"] = threading.active_count()
    tasks["end"] = loop_tasks(service)
    service.close()
    threads["closed"] = threading.active_count()
    status = service.status()
    arbiter = arbiter_ledger(books.metrics, books.open)
    return Figures(minutes, agents, fail_rate, wall, frames, rounds, joined, left, rss, threads,
                   tasks, service_ledger(status), arbiter, books.open, backend.calls,
                   backend.failed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="game minutes (default 30)")
    parser.add_argument("--agents", type=int, default=50, help="companions (default 50)")
    parser.add_argument("--fail-rate", type=float, default=1 / 3)
    parser.add_argument("--churn-s", type=float, default=10.0,
                        help="game seconds between agents leaving and joining (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", type=Path, metavar="PATH",
                        help="write the figures as a Markdown 'Soak' section to PATH")
    add_check_flag(parser)
    args = parser.parse_args(argv)
    figures = run(args.minutes, args.agents, args.fail_rate, args.seed, args.churn_s)
    for line in figures.lines():
        print(line)
    targets = Targets()
    problems = figures.problems()
    for name in ("RSS", "threads", "asyncio tasks", "service books", "arbiter books",
                 "arbiter sent"):
        missed = [p for p in problems if p.startswith(name)]
        targets.met(name, not missed)
        for p in missed:
            print(f"missed: {p}")
    if args.write is not None:
        shown = sys.argv[1:] if argv is None else list(argv)
        command = "python bench/soak.py " + " ".join(shown)
        args.write.write_text(figures.markdown(command.strip()), encoding="utf-8")
        print(f"wrote {args.write}")
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

"""Paired A/B of the embedded batch modes in one process, on one loaded model, interleaved:
4 single requests, the batch as turns, the batch in parallel (first member alone, then the
rest together) and in parallel all at once. Every arm starts where ``batching.py``'s arms do,
after one untimed single request, so none inherits another's cached prompt. No service in
between (no queue, no nice worker thread): this isolates what the decoding itself costs.
Printed: each arm's median span, the paired ratio singles/arm (median) and first plan / span.

    python bench/parallel_ab.py [--reps 4] [--agents 4]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from _snapshots import bench_squad
from _targets import Targets, add_check_flag

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.systems.llm.backends.base import JsonSchema, Message
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.backends.embedded_parallel import run_parallel
from esper_arbiter.systems.llm.batching import BatchMember, build_turns
from esper_arbiter.systems.llm.service import default_messages, default_schema

AGENT_IDS = (2, 6, 7, 8, 9, 10, 11, 12)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--agents", type=int, default=4)
    add_check_flag(ap)
    args = ap.parse_args(argv)
    targets = Targets()
    n = args.agents
    snaps = bench_squad(n, AGENT_IDS[:n])
    reqs = [PlanRequest(agent_id=s.me.id, snapshot=s) for s in snaps]
    turns = build_turns([BatchMember(i, r) for i, r in enumerate(reqs)])
    backend = EmbeddedBackend(max_tokens=256, seed=11)
    llm: Any = backend._ensure_loaded()[0]

    def chat(messages: Sequence[Message], schema: JsonSchema | None) -> str:
        out = llm.create_chat_completion(
            messages=[dict(m) for m in messages], temperature=backend.temperature,
            repeat_penalty=backend.repeat_penalty, max_tokens=256, seed=11,
            response_format={"type": "json_object", "schema": dict(schema or {})})
        text: str = out["choices"][0]["message"]["content"]
        return text

    warm = PlanRequest(agent_id=40, snapshot=snaps[0])

    def singles() -> tuple[float, float]:
        t0, first = time.monotonic(), 0.0
        for r in reqs:
            chat(default_messages(r), default_schema(r))
            first = first or time.monotonic() - t0
        return time.monotonic() - t0, first

    def as_turns() -> tuple[float, float]:
        t0, first = time.monotonic(), 0.0
        answered: list[tuple[int, str]] = []
        for k in range(n):
            answered.append((k, chat(turns.turn(k, answered), turns.schemas[k])))
            first = first or time.monotonic() - t0
        return time.monotonic() - t0, first

    def parallel(solo: bool) -> Callable[[], tuple[float, float]]:
        def arm() -> tuple[float, float]:
            backend.first_solo = solo
            t0 = time.monotonic()
            firsts: list[float] = []
            run_parallel(backend, [turns.turn(k) for k in range(n)], list(turns.schemas),
                         lambda k, t: None, lambda k, r: firsts.append(time.monotonic() - t0),
                         threading.Event(), [threading.Event() for _ in range(n)])
            return time.monotonic() - t0, min(firsts)
        return arm

    arms: dict[str, Callable[[], tuple[float, float]]] = {
        "singles": singles, "turns": as_turns, "parallel": parallel(True),
        "parallel_all": parallel(False)}
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in arms}
    for rep in range(args.reps):
        for name, arm in arms.items():
            chat(default_messages(warm), default_schema(warm))  # the bench's untimed warm-up
            res[name].append(arm())
        print(rep, {k: round(v[-1][0], 2) for k, v in res.items()}, flush=True)
    print(f"singles       span median {statistics.median(x[0] for x in res['singles']):.2f}s "
          f"({n} agents, {args.reps} paired reps, n_threads={backend.n_threads})")
    for name in ("turns", "parallel", "parallel_all"):
        ratios = [s[0] / a[0] for s, a in zip(res["singles"], res[name], strict=True)]
        if name == "parallel":
            ratio = statistics.median(ratios)
            first = statistics.median(x[1] / x[0] for x in res[name])
            targets.met(f"parallel: batch/singles >= 1.5x ({ratio:.2f}x)", ratio >= 1.5)
            targets.met(f"parallel: first plan / batch total <= 0.5 ({first:.2f})",
                          first <= 0.5)
        print(f"{name:13s} span median {statistics.median(x[0] for x in res[name]):.2f}s, "
              f"singles/{name} {statistics.median(ratios):.2f}x "
              f"({', '.join(f'{r:.2f}' for r in ratios)}), first plan / span "
              f"{statistics.median(x[1] / x[0] for x in res[name]):.2f}")
    backend._shutdown_worker()
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())

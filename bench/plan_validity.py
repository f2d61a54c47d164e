"""How many of the embedded model's plans pass validation: snapshot schema vs free-form prompt.

The same ``--n`` seeded snapshots go through the full service path (prompt, model, parser,
validator) twice: once with the snapshot's JSON schema handed to llama.cpp as
``response_format`` (the default), once free-form (same prompt, no schema, no JSON mode).
Printed: % valid plans for both, how the rest failed, and latency. Target: >= 95% valid with
the schema.

    python bench/plan_validity.py [--n 50] [--seed 2024]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

from _results import Results, add_json_flag, fmt
from _snapshots import bench_snapshots
from _targets import Targets, add_check_flag

from esper_arbiter.components.llm import PlanFailure, PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig

TARGET_PCT = 95.0


def run(label: str, schema: bool, n: int, seed: int) -> float:
    backend = EmbeddedBackend(seed=seed, json_mode=schema)
    service = LlmPlanService(backend, ServiceConfig(timeout_s=120.0, use_schema=schema,
                                                    probe_on_start=False, max_concurrent=1))
    ok = 0
    kinds: Counter[str] = Counter()
    latencies: list[float] = []
    examples: list[str] = []
    try:
        for i, snap in enumerate(bench_snapshots(n, seed)):
            t0 = time.perf_counter()
            outcome = service.plan_blocking(PlanRequest(agent_id=2, snapshot=snap), 180.0)
            if i:  # the first request also pays the model load and the full prompt
                latencies.append(time.perf_counter() - t0)
            if isinstance(outcome, PlanReady):
                ok += 1
            elif isinstance(outcome, PlanFailure):
                kinds[outcome.kind.value] += 1
                if len(examples) < 3:
                    examples.append(f"{outcome.kind.value}: {outcome.message[:110]}")
        status = service.status()
    finally:
        service.close()
    pct = 100.0 * ok / n
    failures = ", ".join(f"{k} {v}" for k, v in kinds.most_common()) or "none"
    tps = status.last_tokens_per_s or 0.0
    print(f"{label:10s} valid {ok:3d}/{n} = {pct:5.1f}%  failures: {failures}")
    print(f"{'':10s} latency per plan p50 {statistics.median(latencies):.2f}s "
          f"max {max(latencies):.2f}s, {tps:.0f} tokens/s, model load {backend.load_s or 0:.2f}s")
    for e in examples:
        print(f"{'':10s}   e.g. {e}")
    return pct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2024)
    add_check_flag(parser)
    add_json_flag(parser)
    args = parser.parse_args()
    with_schema = run("schema", True, args.n, args.seed)
    free = run("free-form", False, args.n, args.seed)
    targets = Targets()
    res = Results("plan_validity", "Valid plans from the embedded model", targets)
    ok = res.target(f"valid with schema >= {TARGET_PCT:.0f}%", with_schema >= TARGET_PCT,
                    f"{fmt(with_schema, 1)}%")
    res.table(f"Valid plans out of {args.n} seeded snapshots (SmolLM2-135M, full service path)",
              ["prompt", "valid %"], [["with the snapshot's JSON schema", fmt(with_schema, 1)],
                                      ["free-form (peer: no schema, no JSON mode)",
                                       fmt(free, 1)]])
    res.summary(f"{fmt(with_schema, 1)}% valid with the schema, {fmt(free, 1)}% free-form")
    res.write(args.json)
    print(f"valid with schema {with_schema:.1f}% vs free-form {free:.1f}% "
          f"(target >= {TARGET_PCT:.0f}% with schema: {'OK' if ok else 'MISSED'})")
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())

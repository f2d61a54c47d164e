"""Batched prompts against single requests, through LlmPlanService: on the embedded model, or
(``--backend openai``) on llama-cpp-python's OpenAI-compatible server serving the same GGUF on
loopback (started by this script unless ``--base-url`` names a running one).

Four companions (the same four seeded snapshots in both arms) are planned

- **singles**: four single requests, one after another (``LLM_MAX_BATCH_SIZE=1``), the way the
  service runs them on llama.cpp (one generation at a time; llama.cpp reuses the shared system
  prompt between requests);
- **batch**: one prompt for the four, its JSON array streamed and each agent's plan delivered
  the moment its element closes.

Both arms use their own freshly loaded model, warmed by one single request that is not timed,
and the same ``max_tokens`` cap (large enough for a batch of four). Printed: plans per minute
of each arm and their ratio (target >= 1.5x for the batch), the time to the first delivered
plan of the batch against the batch's total time (target <= 0.5), and what the adaptive batch
size concludes on this backend. The figures are what they are: where batching does not pay,
the adaptive size settles at 1 (``tests/llm/test_many_agents.py`` tests that behaviour).

    python bench/batching.py [--agents 4] [--rounds 1] [--threads N] [--max-tokens 1024]
                             [--backend embedded|openai] [--base-url URL] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence

from _results import Results, add_json_flag, fmt
from _snapshots import bench_snapshots, bench_squad
from _targets import Targets, add_check_flag

from esper_arbiter.components.llm import PlanReady, PlanRequest
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.llm.backends.base import PlanBackend
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend, default_model_path
from esper_arbiter.systems.llm.backends.llama_server import ALIAS, llama_server
from esper_arbiter.systems.llm.backends.llama_server import missing as server_missing
from esper_arbiter.systems.llm.backends.openai_backend import OpenAIBackend
from esper_arbiter.systems.llm.batching import AdaptiveBatchSize
from esper_arbiter.systems.llm.request_queue import QueueTicket
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig

TARGET_RATIO = 1.5
TARGET_FIRST = 0.5
AGENT_IDS = (2, 6, 7, 8, 9, 10, 11, 12)
WARMUP_AGENT = 40


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    span_s: float
    """From the first request's start to the last outcome."""
    first_s: float
    """From the start to the first delivered plan."""
    plans: int
    requests: int
    steps: list[int]
    batch_sizes: list[int]
    service_s: list[float]
    """Each request's service time (started to finished)."""
    delivered: list[float] = dataclasses.field(default_factory=list)
    """Seconds from the start to each valid plan's delivery, in order."""
    ttft_s: float = float("nan")
    """Median time to the first token of a model call (prompt reading, mostly)."""

    @property
    def plans_per_min(self) -> float:
        return 60.0 * self.plans / self.span_s if self.span_s > 0 else 0.0


def squad(n: int, worlds: str = "shared") -> list[WorldSnapshot]:
    """``n`` seeded snapshots, each seen by a different companion id: one world seen by a
    squad (``worlds="shared"``: the same map, enemies, time and order, each member on its own
    tile), or ``"separate"``: an unrelated random situation each (only the map is common)."""
    if worlds == "shared":
        return bench_squad(n, AGENT_IDS[:n])
    out = []
    for aid, snap in zip(AGENT_IDS, bench_snapshots(n), strict=False):
        out.append(dataclasses.replace(snap, me=dataclasses.replace(snap.me, id=aid)))
    return out


def make_service(args: argparse.Namespace, batch: int) -> LlmPlanService:
    backend: PlanBackend
    # max_tokens is per plan on both backends (a batch of n gets n times as many, and the
    # context budget reserves that much for the answers): --max-tokens is the batch's total.
    per_plan = max(64, args.max_tokens // args.agents)
    if args.backend == "openai":
        backend = OpenAIBackend(args.model, args.base_url, max_tokens=per_plan, seed=11)
    else:
        backend = EmbeddedBackend(n_threads=args.threads, max_tokens=per_plan, seed=11,
                                  n_batch=args.n_batch, first_solo=not args.all_at_once)
    config = ServiceConfig(timeout_s=600.0, max_concurrent=1, max_batch_size=batch,
                           batch_latency_target_s=600.0, probe_on_start=False,
                           batch_mode=args.batch_mode)
    return LlmPlanService(backend, config)


def wait_busy(service: LlmPlanService) -> None:
    end = time.monotonic() + 30.0
    while service.status().in_flight < 1 and time.monotonic() < end:
        time.sleep(0.001)


def measure(name: str, service: LlmPlanService, snaps: Sequence[WorldSnapshot]) -> Arm:
    """Warm-up request first; the squad is submitted while it runs, so it queues (and, with
    batching on, is taken as one batch the moment the worker is free)."""
    warm = service.submit(PlanRequest(agent_id=WARMUP_AGENT, snapshot=snaps[0]))
    wait_busy(service)
    tickets: list[QueueTicket] = [
        service.submit(PlanRequest(agent_id=s.me.id, snapshot=s)) for s in snaps
    ]
    warm.wait(600.0)
    outcomes = [t.wait(600.0) for t in tickets]
    assert all(o is not None for o in outcomes)
    starts = [o.timing.started_at for o in outcomes if o is not None]
    ends = [o.timing.finished_at for o in outcomes if o is not None]
    start = min(s for s in starts if s is not None)
    end = max(e for e in ends if e is not None)
    plans = [o for o in outcomes if isinstance(o, PlanReady)]
    firsts = [o.timing.finished_at for o in plans if o.timing.finished_at is not None]
    first = (min(firsts) - start) if firsts else float("nan")
    records = {r.request_id: r for r in service.status().recent}
    sizes = [records[t.request_id].batch_size for t in tickets if t.request_id in records]
    for o in outcomes:
        if o is not None and not isinstance(o, PlanReady):
            print(f"  {name}: request {o.request_id} failed: {o.kind.value}: {o.message[:100]}")
    service_s = [o.timing.finished_at - o.timing.started_at for o in outcomes
               if o is not None and o.timing.finished_at is not None
               and o.timing.started_at is not None]
    delivered = sorted(f - start for f in firsts)
    ttfts = [t for o in outcomes if o is not None
             for t in (o.timing.time_to_first_token,) if t is not None]
    return Arm(name, end - start, first, len(plans), len(tickets),
               [len(p.plan.steps) for p in plans], sizes, service_s, delivered,
               statistics.median(ttfts) if ttfts else float("nan"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=4, choices=range(2, len(AGENT_IDS) + 1),
                    metavar="2..8")
    ap.add_argument("--rounds", type=int, default=1, help="repeat both arms (medians printed)")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: "
                    "cores - 1, as the game uses)")
    ap.add_argument("--max-tokens", type=int, default=1024,
                    help="reply cap, the same for both arms (a batch of 4 needs ~500)")
    ap.add_argument("--backend", choices=("embedded", "openai"), default="embedded")
    ap.add_argument("--base-url", default=None, help="--backend openai: a running server "
                    "(default: start llama_cpp.server on loopback with the shipped GGUF)")
    ap.add_argument("--model", default=ALIAS, help="--backend openai: the served model")
    ap.add_argument("--batch-mode", choices=("auto", "array", "turns", "parallel"),
                    default="auto", help="how the batch arm runs (auto: the backend's own "
                    "mode: parallel on the embedded model, turns on the OpenAI side)")
    ap.add_argument("--n-batch", type=int, default=512,
                    help="embedded: most prompt tokens per llama_decode call")
    ap.add_argument("--all-at-once", action="store_true",
                    help="parallel mode: decode every member together (default: the first "
                    "member alone, then the rest together)")
    ap.add_argument("--worlds", choices=("shared", "separate"), default="shared",
                    help="shared: one world seen by a squad (default); separate: an unrelated "
                    "situation per agent")
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args(argv)
    if default_model_path() is None:
        print("the embedded model is not installed (pip install 'esper-arbiter[embedded]')")
        return 2
    if args.backend == "openai" and args.base_url is None and server_missing() is not None:
        print(server_missing())
        return 2
    with serving(args):
        return run(args)


@contextlib.contextmanager
def serving(args: argparse.Namespace) -> Iterator[None]:
    """Start the loopback server for ``--backend openai`` without ``--base-url``."""
    if args.backend != "openai" or args.base_url is not None:
        yield
        return
    with llama_server(args.threads) as url:
        args.base_url = url
        yield


def run(args: argparse.Namespace) -> int:
    """Both arms, ``args.rounds`` times; print and report the figures."""
    snaps = squad(args.agents, args.worlds)
    singles: list[Arm] = []
    batches: list[Arm] = []
    for _ in range(args.rounds):
        with make_service(args, batch=1) as service:
            singles.append(measure("singles", service, snaps))
        with make_service(args, batch=args.agents) as service:
            batches.append(measure("batch", service, snaps))
    threads = EmbeddedBackend(n_threads=args.threads).n_threads
    where = (f"embedded model {default_model_path()} (n_threads={threads}"
             if args.backend == "embedded" else
             f"OpenAI-compatible llama_cpp.server at {args.base_url}, model {args.model} "
             f"({default_model_path()}")
    with make_service(args, batch=args.agents) as probe:
        mode = probe.batch_mode
    print(f"{where}, max_tokens={args.max_tokens}), {args.agents} agents, "
          f"{args.rounds} round(s), batch mode {mode}, {args.worlds} world(s)")
    for arms in (singles, batches):
        a = arms[-1]
        span = statistics.median(x.span_s for x in arms)
        ppm = statistics.median(x.plans_per_min for x in arms)
        first = statistics.median(x.first_s for x in arms)
        print(f"{a.name:8s} {a.requests} requests in {span:6.2f}s: {a.plans}/{a.requests} valid "
              f"plans, {ppm:6.1f} plans/min, first plan after {first:5.2f}s, "
              f"first token {statistics.median(x.ttft_s for x in arms):5.2f}s per call, "
              f"steps per plan {a.steps}, batch sizes {a.batch_sizes}")
    ratio = (statistics.median(b.plans_per_min for b in batches)
             / max(1e-9, statistics.median(s.plans_per_min for s in singles)))
    first_ratio = statistics.median(b.first_s / b.span_s for b in batches)
    targets = Targets()
    res = Results(f"batching_{args.backend}", f"Batching and streaming ({args.backend})",
                  targets)
    ratio_ok = res.target(f"{args.backend}: batch/singles >= {TARGET_RATIO}x",
                          ratio >= TARGET_RATIO, f"{fmt(ratio)}x")
    first_ok = res.target(f"{args.backend}: first plan / batch total <= {TARGET_FIRST}",
                          first_ratio <= TARGET_FIRST, fmt(first_ratio))
    print(f"ratio batch/singles plans per minute: {ratio:.2f}x "
          f"({'PASS' if ratio_ok else 'FAIL'}, target >= {TARGET_RATIO}x)")
    print(f"time to first plan / batch total: {first_ratio:.2f} "
          f"({'PASS' if first_ok else 'FAIL'} at {first_ratio:.3f}, "
          f"target <= {TARGET_FIRST})")
    # What the service's adaptive batch size makes of these figures: the singles' service
    # times as its baseline, then this batch three times (as a game with a steady squad would).
    sizer = AdaptiveBatchSize(args.agents, maximum=args.agents,
                              latency_target_s=ServiceConfig().batch_latency_target_s)
    for s in singles[-1].service_s:
        sizer.record(1, s)
    sizes = [sizer.record(args.agents, batches[-1].span_s) for _ in range(3)]
    per_request = batches[-1].span_s / args.agents
    print(f"adaptive batch size fed these figures (batch {per_request:.2f}s per request, single "
          f"{sizer.single_cost_s or 0:.2f}s): {args.agents} -> {sizes}, "
          f"{'settled at 1: batching does not pay here' if sizer.settled else 'keeps batching'}")
    rows = []
    for arms in (singles, batches):
        a = arms[-1]
        rows.append([a.name, a.requests, f"{a.plans}/{a.requests}",
                     fmt(statistics.median(x.span_s for x in arms)),
                     fmt(statistics.median(x.plans_per_min for x in arms), 1),
                     fmt(statistics.median(x.first_s for x in arms)),
                     fmt(statistics.median(x.ttft_s for x in arms)),
                     str(a.steps), str(a.batch_sizes)])
    res.table(f"{args.agents} agents planned as {args.agents} single requests and as one "
              f"batch ({where}); medians over {args.rounds} round(s)",
              ["arm", "requests", "valid plans", "span s", "plans/min", "first plan s",
               "first token s (per call)", "steps per plan", "batch sizes"], rows)
    res.table("Ratios, same run", ["figure", "value", "target"],
              [["plans/min batch / singles", f"{fmt(ratio)}x", f">= {TARGET_RATIO}x"],
               ["first plan / batch total", fmt(first_ratio), f"<= {TARGET_FIRST}"],
               ["adaptive batch size after 3 batches", str(sizes), "-"]])
    res.plot(f"batching_{args.backend}.png", "line",
             f"Plans delivered over time, {args.agents} agents ({args.backend}, last round)",
             "seconds from the first request's start", "valid plans delivered",
             [{"label": f"{args.agents} single requests, one after another",
               "x": [0.0, *singles[-1].delivered],
               "y": list(range(len(singles[-1].delivered) + 1))},
              {"label": "one batched prompt, each plan delivered as its object closes",
               "x": [0.0, *batches[-1].delivered],
               "y": list(range(len(batches[-1].delivered) + 1))}])
    res.note("The adaptive batch size settles at 1 where a batch costs more per plan than "
             "single requests; the service then stops batching on that backend.")
    res.note("A batch's first plan cannot arrive before the model has read the batch's "
             "prompt (several snapshots at once): compare the time to first token per call. "
             "'batch sizes' is how the service actually ran each member: a 1 is a member taken "
             "as a single request before the batch formed.")
    res.note(f"Batch mode {mode}: with turns, each member's 'first token' counts from the "
             "batch's start (it waits for the turns before its own), so it is not a per-call "
             "figure; the first plan is. Squad-mates in one world (--worlds shared) share the "
             "map, hostiles, objective and order; --worlds separate gives each its own situation.")
    res.summary(f"batch/singles {fmt(ratio)}x, first plan at {fmt(first_ratio)} of the batch")
    res.write(args.json)
    print(json.dumps({"singles_ppm": round(singles[-1].plans_per_min, 2),
                      "batch_ppm": round(batches[-1].plans_per_min, 2),
                      "ratio": round(ratio, 3), "first_over_total": round(first_ratio, 3)}))
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

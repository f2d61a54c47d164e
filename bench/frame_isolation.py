"""Does the embedded model generating in the background slow the game's frames?

A simulated 60 FPS frame loop does a fixed amount of Python work per frame (calibrated to
``--work-ms``) and sleeps to the next frame boundary. The loop runs in alternating segments:
idle, then while the embedded model (SmolLM2-135M via llama.cpp, in the LLM service) generates
plans back to back, and so on, all in one run, so machine noise hits both sides alike. Printed:
the p50 / p99 frame time (work of one frame, wall clock) idle and loaded, their ratio (target
p99 ratio <= 1.25), and what one naive *blocking* model call inside the loop costs that frame.

    python bench/frame_isolation.py [--segments 4] [--segment-s 6] [--work-ms 4]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from _snapshots import bench_snapshots
from _targets import Targets, add_check_flag

from esper_arbiter.components.llm import PlanReady, PlanRequest
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig

FRAME_S = 1 / 60
TARGET_RATIO = 1.25


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def work(n: int) -> int:
    """Stand-in for a frame's simulation and AI: plain Python arithmetic over a small grid."""
    acc = 0
    for i in range(n):
        acc = (acc + (i * i) % 7) ^ (i >> 3)
    return acc


def calibrate(target_ms: float) -> int:
    n = 10_000
    while True:
        t0 = time.perf_counter()
        work(n)
        took = (time.perf_counter() - t0) * 1000
        if took > 5:
            return max(1, int(n * target_ms / took))
        n *= 2


def run_frames(seconds: float, n: int) -> list[float]:
    """Frame work times in ms over ``seconds`` of a 60 FPS loop."""
    times: list[float] = []
    start = time.perf_counter()
    next_frame = start
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        work(n)
        times.append((time.perf_counter() - t0) * 1000)
        next_frame += FRAME_S
        delay = next_frame - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_frame = time.perf_counter()
    return times


class Generator:
    """Keeps the model busy: one request after another until stopped."""

    def __init__(self, service: LlmPlanService) -> None:
        self._service = service
        self._snaps = bench_snapshots(20, seed=7)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.plans = 0
        self.requests = 0
        self.latencies: list[float] = []

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            ticket = self._service.submit(PlanRequest(agent_id=2, snapshot=self._snaps[i % 20]))
            i += 1
            self.requests += 1
            t0 = time.perf_counter()
            while not self._stop.is_set():
                outcome = ticket.wait(0.05)
                if outcome is not None:
                    self.plans += isinstance(outcome, PlanReady)
                    self.latencies.append(time.perf_counter() - t0)
                    break
            else:
                ticket.cancel()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bench-generator")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=4, help="idle/loaded pairs")
    parser.add_argument("--segment-s", type=float, default=6.0)
    parser.add_argument("--work-ms", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads (default: cores - 1)")
    add_check_flag(parser)
    args = parser.parse_args()

    n = calibrate(args.work_ms)
    backend = EmbeddedBackend(n_threads=args.threads, seed=3)
    service = LlmPlanService(backend, ServiceConfig(timeout_s=120.0, probe_on_start=False,
                                                    max_concurrent=1))
    gen = Generator(service)
    idle: list[float] = []
    loaded: list[float] = []
    try:
        # warm up: load the model and evaluate the shared system prompt once
        service.plan_blocking(PlanRequest(agent_id=2, snapshot=bench_snapshots(1)[0]), 120.0)
        for _ in range(args.segments):
            idle += run_frames(args.segment_s, n)
            gen.start()
            time.sleep(0.3)  # let generation get going
            loaded += run_frames(args.segment_s, n)
            gen.stop()
        # A naive blocking call in the loop: the frame that makes it waits for the whole reply.
        t0 = time.perf_counter()
        work(n)
        blocking = service.plan_blocking(
            PlanRequest(agent_id=2, snapshot=bench_snapshots(3, seed=99)[2]), 120.0)
        naive_ms = (time.perf_counter() - t0) * 1000
    finally:
        gen.stop()
        service.close()

    i50, i99 = statistics.median(idle), pct(idle, 0.99)
    l50, l99 = statistics.median(loaded), pct(loaded, 0.99)
    print(f"frame work {args.work_ms:g} ms at 60 FPS, llama.cpp n_threads={backend.n_threads}, "
          f"model {backend.model}")
    print(f"idle    ({len(idle):5d} frames): p50 {i50:6.2f} ms  p99 {i99:6.2f} ms  "
          f"max {max(idle):6.2f} ms")
    print(f"loaded  ({len(loaded):5d} frames): p50 {l50:6.2f} ms  p99 {l99:6.2f} ms  "
          f"max {max(loaded):6.2f} ms")
    lat = f"{statistics.median(gen.latencies):.2f}s" if gen.latencies else "n/a"
    print(f"meanwhile the model answered {len(gen.latencies)} of {gen.requests} requests "
          f"({gen.plans} valid plans; p50 {lat} per reply; the rest were cut by segment ends)")
    ratio = l99 / i99
    targets = Targets()
    verdict = "OK" if targets.met(f"p99 loaded/idle <= {TARGET_RATIO}",
                                  ratio <= TARGET_RATIO) else "MISSED"
    print(f"ratio p99 loaded/idle: {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
    print(f"naive blocking call in the loop: that frame took {naive_ms:7.1f} ms "
          f"({naive_ms / (FRAME_S * 1000):.0f} frames at 60 FPS; outcome "
          f"{type(blocking).__name__})")
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())

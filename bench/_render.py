"""Render the benchmarks' JSON (``bench/_results.py``) into ``docs/BENCHMARKS.md``.

Pure functions from JSON-like data to markdown text, so a test can check the rendering
without running any benchmark. A JSON in our shape renders its targets, tables, plots and
notes; any other JSON object (a benchmark written to its own shape) is rendered generically:
its scalar fields as one table, each list of objects as another, ``targets`` as targets when
they have ``name`` and ``met``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass
class Section:
    """One benchmark in the report: what ran, and what came of it."""

    key: str
    heading: str
    claim: str
    """The claim from the issue this section checks, in one sentence."""
    command: str
    doc: Json | None = None
    """The benchmark's JSON, or None when it produced none (see ``problem``)."""
    problem: str = ""
    """Why there are no figures (missing script, missing model, crash), if so."""
    seconds: float = 0.0
    output: str = ""
    """What the script printed (shown folded, for anyone checking the figures)."""
    images: list[str] = field(default_factory=list)
    """Plot files drawn for this section, relative to the markdown file."""


def cell(value: Any) -> str:
    """One table cell: numbers formatted, lists and objects summarised, pipes escaped."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = "n/a" if not math.isfinite(value) else f"{value:,.3g}" if abs(value) < 1000 \
            else f"{value:,.0f}"
    elif isinstance(value, dict):
        text = f"({len(value)} fields)"
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value) and len(value) <= 12:
            text = ", ".join(cell(v) for v in value)
        else:
            text = f"({len(value)} items)"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(columns: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table."""
    out = ["| " + " | ".join(cell(c) for c in columns) + " |",
           "|" + "---|" * len(columns)]
    for row in rows:
        padded = list(row) + [""] * (len(columns) - len(row))
        out.append("| " + " | ".join(cell(v) for v in padded) + " |")
    return out


def targets_of(doc: Json) -> list[tuple[str, bool, str]]:
    """``(name, met, figure)`` for each target the JSON reports (either shape)."""
    out = []
    for t in doc.get("targets", []) or []:
        if isinstance(t, dict) and "name" in t and "met" in t:
            out.append((str(t["name"]), bool(t["met"]), str(t.get("figure", ""))))
    return out


def generic(doc: Json) -> list[str]:
    """Any JSON object as tables: scalars first, then each list of objects."""
    lines: list[str] = []
    scalars = [(k, v) for k, v in doc.items()
               if k != "targets" and not (isinstance(v, list) and v and isinstance(v[0], dict))
               and not isinstance(v, dict)]
    if scalars:
        lines += [*table(["field", "value"], scalars), ""]
    for key, value in doc.items():
        if key == "targets":
            continue
        if isinstance(value, dict):
            flat = [(k, v) for k, v in value.items()]
            lines += [f"**{key}**", "", *table(["field", "value"], flat), ""]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            columns: list[str] = []
            for item in value:
                for k, v in item.items():
                    if k not in columns and not (isinstance(v, list) and v
                                                 and isinstance(v[0], dict)):
                        columns.append(k)
            rows = [[item.get(c) for c in columns] for item in value]
            lines += [f"**{key}**", "", *table(columns, rows), ""]
    return lines


def ours(doc: Json) -> list[str]:
    """A JSON in our shape (``bench/_results.py``)."""
    lines: list[str] = []
    for t in doc.get("tables", []):
        lines += [f"**{t.get('title', '')}**", "", *table(t["columns"], t["rows"]), ""]
    for note in doc.get("notes", []):
        lines += [f"- {note}"]
    if doc.get("notes"):
        lines.append("")
    return lines


def section(sec: Section) -> list[str]:
    """One benchmark's part of the report."""
    lines = [f"## {sec.heading}", "", f"*Claim:* {sec.claim}", "",
             f"Command: `{sec.command}`" + (f" ({sec.seconds:.0f} s)" if sec.seconds else ""),
             ""]
    doc = sec.doc
    if doc is None:
        lines += [f"**No figures:** {sec.problem or 'the benchmark wrote no JSON'}", ""]
    else:
        tgts = targets_of(doc)
        if tgts:
            verdicts = [[n, f or "-", "**met**" if ok else "**MISSED**"] for n, ok, f in tgts]
            lines += [*table(["target", "figure", "result"], verdicts), ""]
        lines += ours(doc) if "tables" in doc else generic(doc)
        if sec.problem:
            lines += [f"Note: {sec.problem}", ""]
    for img in sec.images:
        lines += [f"![{sec.heading}]({img})", ""]
    if sec.output.strip():
        lines += ["<details><summary>output</summary>", "", "```",
                  *sec.output.rstrip().splitlines(), "```", "", "</details>", ""]
    return lines


def report(sections: Sequence[Section], machine: Sequence[tuple[str, str]], mode: str,
           total_s: float, command: str) -> str:
    """The whole ``docs/BENCHMARKS.md``."""
    lines = ["# Benchmarks", "",
             "Every figure below comes from one run of the command underneath, on the machine "
             "described, written by `bench/proof.py` (do not edit by hand: run it again). Each "
             "figure is a median over repeated frames, rounds or requests, and each ratio is "
             "against its peer measured in the same run, interleaved where possible, so a "
             "noisy machine moves both sides alike. Targets are reported as met or missed, "
             "as measured.", "",
             f"Reproduce: `{command}` ({mode} run, {total_s / 60:.1f} min here).", ""]
    lines += [*table(["machine", ""], machine), ""]
    rows = []
    for sec in sections:
        if sec.doc is None:
            rows.append([sec.heading, "-", "-", f"not run: {sec.problem}"])
            continue
        tgts = targets_of(sec.doc)
        if not tgts:
            rows.append([sec.heading, "(no target)", sec.doc.get("summary", "-"), "-"])
        for name, ok, fig in tgts:
            rows.append([sec.heading, name, fig or "-", "met" if ok else "**MISSED**"])
    lines += ["## Summary", "", *table(["benchmark", "target", "figure", "result"], rows)]
    lines.append("")
    for sec in sections:
        lines += section(sec)
    return "\n".join(lines).rstrip() + "\n"

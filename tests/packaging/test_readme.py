"""The README's plugin example is code a user will paste: it must run as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_minimal_game_loop_runs_and_the_agent_acts() -> None:
    block = next(b for b in _python_blocks() if "ea.install(" in b and "for frame in" in b)
    code = block + (
        "\nstate = esper.component_for_entity(npc, ea.ArbiterState)\n"
        "print('goap', state.metrics.goap_actions)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.split()[-1]) > 0


def test_the_host_tool_example_builds_a_domain_that_plans_the_tool() -> None:
    block = next(b for b in _python_blocks() if "class Hack(ea.Step)" in b)
    code = (
        "from dataclasses import dataclass\nfrom typing import ClassVar\n"
        "import esper_arbiter as ea\n" + block
        + "\nassert 'Hack' in domain.tools\n"
        "assert 'hack_terminal' in [g.name for g in domain.brain.goals]\n"
        "assert domain.factions.relation('blue', 'civilian') is ea.Relation.NEUTRAL\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"

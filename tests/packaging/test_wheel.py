"""The built wheel, installed into a fresh venv next to a host game with its own
``components`` package, ``systems.py`` and ``game.py``: the names esper games use.

This is how a user gets us (``pip install esper-arbiter``): one import name, esper as the only
dependency of the core, the demo's assets inside the package and a console script to play it.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

HOST_COMPONENTS = """\
from dataclasses import dataclass

@dataclass
class Velocity:        # the host's own components module, same name as ours in the repo
    dx: float = 0.0
    dy: float = 0.0
"""

HOST_SYSTEMS = """\
import esper
from components import Velocity

class MoveSystem(esper.Processor):
    def process(self, *args, **kwargs):
        for _e, v in esper.get_component(Velocity):
            v.dx += 0.0
"""

HOST_GAME = """\
import esper
import esper_arbiter as ea
from components import Velocity
from systems import MoveSystem

esper.create_entity(ea.GameClock(0.0))
esper.create_entity(ea.MapGrid(12, 8, pois={"exit": (10, 6)}))
npc = esper.create_entity(ea.Agent(), ea.Position(1, 1), ea.Health(50, 50), ea.Team("blue"),
                          Velocity())
esper.create_entity(ea.Position(9, 2), ea.Health(30, 30), ea.Team("red"))
esper.add_processor(MoveSystem(), priority=10)
plugin = ea.install(service=None)
clock = esper.get_component(ea.GameClock)[0][1]
issued = 0
for _ in range(60):
    clock.t += 1 / 30
    esper.process()
    intent = esper.component_for_entity(npc, ea.Intent)
    if intent.status is ea.IntentStatus.RUNNING:
        issued += 1
        intent.finish()
print("issued", issued)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (found,) = out.glob("esper_arbiter-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A fresh venv with only the wheel and its declared dependencies (esper)."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # Without PYTHONPATH: a source checkout on it (with its egg-info) would make pip think the
    # package is already installed and skip the wheel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   capture_output=True, text=True, env=env)
    return py


def test_wheel_ships_one_package_with_assets_types_and_license(wheel: pathlib.Path) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"esper_arbiter"}, tops
    assert "esper_arbiter/py.typed" in names
    assert "esper_arbiter/assets/hello_companion.json" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_a_host_with_its_own_components_systems_and_game_modules(
    installed: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    host = tmp_path / "host"
    (host / "components").mkdir(parents=True)
    (host / "components" / "__init__.py").write_text(HOST_COMPONENTS)
    (host / "systems.py").write_text(HOST_SYSTEMS)
    (host / "game.py").write_text(textwrap.dedent(HOST_GAME))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(installed), "game.py"], cwd=host, capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    issued = int(run.stdout.split()[-1])
    assert issued > 0, run.stdout


def test_the_installed_demo_runs_from_the_console_script(installed: pathlib.Path,
                                                         tmp_path: pathlib.Path) -> None:
    script = installed.parent / "hello-companion"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [str(script), "--headless", "--seconds", "3", "--backend", "none"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "outcome:" in run.stdout

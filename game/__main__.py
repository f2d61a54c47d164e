"""``python -m esper_arbiter.game``: play hello_companion (same flags as ``run_demo.py``)."""

from esper_arbiter.game.cli import main

raise SystemExit(main())

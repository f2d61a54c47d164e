"""hello_companion demo entry point: ``python run_demo.py --help``."""

from esper_arbiter.game.cli import main

raise SystemExit(main())

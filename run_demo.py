"""hello_companion demo entry point: ``python run_demo.py --help``."""

from game.cli import main

raise SystemExit(main())

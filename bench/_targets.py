"""The targets a benchmark checks, and its ``--check`` flag.

Every benchmark prints its figures and, for each target, whether it was met. With ``--check``
it also exits with status 1 when any target was missed, so a person or a CI job can gate on
it (``make bench BENCH_ARGS=--check``); without it the exit status is 0 whatever the figures,
because a shared, noisy machine should not fail a plain measurement run.
"""

from __future__ import annotations

import argparse

EXIT_MISSED = 1


def add_check_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--check`` to a benchmark's parser."""
    parser.add_argument(
        "--check", action="store_true",
        help="exit with status 1 if any target is missed (for CI gates); default: report only",
    )


class Targets:
    """Collects ``(name, met)`` for each target a benchmark checks."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool]] = []

    def met(self, name: str, ok: bool) -> bool:
        """Record target ``name`` as met (``ok``) or missed; returns ``ok``."""
        self.results.append((name, bool(ok)))
        return bool(ok)

    @property
    def missed(self) -> list[str]:
        return [name for name, ok in self.results if not ok]

    def finish(self, check: bool) -> int:
        """Print the tally; the exit status: 1 with ``check`` and a missed target, else 0."""
        missed = self.missed
        tally = f"targets met: {len(self.results) - len(missed)}/{len(self.results)}"
        if missed:
            tally += f"; missed: {', '.join(missed)}"
        print(tally)
        return EXIT_MISSED if check and missed else 0

"""Ctrl-C that ends the demo cleanly, in the window and headless alike.

Python turns SIGINT into a :class:`KeyboardInterrupt` wherever the main thread happens to be:
in the middle of a simulation step, a render, or a service's shutdown. The front ends would
then die with a traceback, an unwritten outcome line and, with ``--record``, maybe a file the
recording service never closed. :func:`sigint_stops` instead makes the first Ctrl-C a *request*
that the frame loops check once per frame: they stop, print the outcome line, close the session
(recordings flushed, service threads joined) and the program exits with 130, the shell's code
for "ended by SIGINT". A second Ctrl-C while that runs raises ``KeyboardInterrupt`` as usual,
so a stuck shutdown can still be broken.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger("esper_arbiter.game.interrupt")

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), what shells and CI expect from an interrupted job."""


class StopRequest:
    """Set when the user asked the program to stop; call it to ask "stop now?"."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def set(self) -> None:
        """Ask the loops to stop (what the SIGINT handler does)."""
        self.requested = True


@contextmanager
def sigint_stops() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT sets the yielded :class:`StopRequest` instead of
    raising; the second raises ``KeyboardInterrupt``. The previous handler comes back after.

    Nothing is installed off the main thread, or when SIGINT is not Python's default handler
    (ignored, as for a background job started by a non-interactive shell, or taken by an
    embedding program): the request then simply never comes.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield stop
        return

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.set()
        log.info("interrupted (Ctrl-C): finishing the round; press Ctrl-C again to abort")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)

"""Progress lines on standard error for command-line tools that work through large inputs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

# Quiet for runs shorter than this; then one line per interval.
FIRST_AFTER_SECONDS = 2.0
EVERY_SECONDS = 5.0


class Progress:
    """Says how far a long run got, on standard error, so that a person knows it works.

    Nothing is printed for a run that ends within ``first_after`` seconds, so short runs
    and their tests see no extra output; standard output (the report, ``--json``) is
    never touched. ``tick`` is cheap: the line is only built when it is printed.
    """

    def __init__(
        self,
        label: str,
        *,
        enabled: bool = True,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_after: float = FIRST_AFTER_SECONDS,
        every: float = EVERY_SECONDS,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream
        self.clock = clock
        self.every = every
        self.started = clock()
        self._next = self.started + first_after
        self.printed = 0

    def tick(self, line: Callable[[], str]) -> None:
        """Print ``line()`` if it is time to."""
        if not self.enabled:
            return
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.every
        self._print(f"{line()} after {now - self.started:.0f}s")

    def done(self, line: str) -> None:
        """Close a run that printed progress with where it ended."""
        if self.enabled and self.printed:
            self._print(f"{line} in {self.clock() - self.started:.0f}s")

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(f"{self.label}: {text}\n")
        stream.flush()
        self.printed += 1

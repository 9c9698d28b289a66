"""How many finished batches still wait for their images to be finished and stored."""

from __future__ import annotations

import threading


class Backlog:
    """A count of batches in finishing, that a thread can wait on to fall below a bound."""

    def __init__(self) -> None:
        self._batches = 0
        self._changed = threading.Condition()

    def add(self) -> None:
        with self._changed:
            self._batches += 1

    def done(self) -> None:
        with self._changed:
            self._batches -= 1
            self._changed.notify_all()

    def wait_below(self, bound: int, timeout: float | None) -> bool:
        """Whether fewer than `bound` batches are in finishing, within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._batches < bound, timeout)

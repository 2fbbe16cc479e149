"""A monotonic clock the test sets by hand (``clock.now += 0.3``), for the journal's and the store's intervals.
Shared test helper."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

"""Frame sources for the mock server: the simulated market on its own clock.

A source implements :class:`kiwoom_tape.replay.server.Source`: it paces itself and hands batches of rows to the
server's ``dispatch``. (Recorded datasets become a second source.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kiwoom_tape.replay.contracts import Dispatch
from kiwoom_tape.replay.simulator import SIMULATED_TYPES, SimulatedMarket

__all__ = ["SimSource"]


class SimSource:
    """Serves a :class:`SimulatedMarket` in real time scaled by ``speed``.

    Market time = the market's start + (clock() - start of :meth:`run`) x speed. Each batch the
    market makes becomes one frame per client (docs/protocol.md 1.7: rows of several items in one frame).
    """

    def __init__(
        self, market: SimulatedMarket, *, speed: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.market = market
        self.speed = speed
        self.clock = clock

    def add_item(self, item: str) -> None:
        self.market.add_item(item)

    def remove_item(self, item: str) -> None:
        """Forget ``item`` (:meth:`SimulatedMarket.remove_item`); adding it again resumes its deterministic stream."""
        self.market.remove_item(item)

    def types(self) -> frozenset[str]:
        """The REAL types the simulated market models (:data:`kiwoom_tape.replay.simulator.SIMULATED_TYPES`)."""
        return SIMULATED_TYPES

    def market_time(self) -> float:
        """The simulated market clock, seconds since KST midnight (the ``market_time`` fault trigger)."""
        return self.market.now

    MAX_STEP = 0.25
    """Market seconds simulated per :meth:`SimulatedMarket.advance` call at most: a market that cannot keep
    up (many items, a high speed) falls behind but still yields to the event loop between steps, so
    that clients, signals and a stop are served (the same rows either way: ``advance`` is incremental)."""

    async def run(self, dispatch: Dispatch) -> None:
        t0 = self.clock()
        m0 = self.market.now
        step = max(0.001, self.market.batch / self.speed)
        market = self.market
        while True:
            target = m0 + (self.clock() - t0) * self.speed
            while market.now < target:
                for tick in market.advance(min(target, market.now + self.MAX_STEP)):
                    await dispatch(tick.rows, None)
                await asyncio.sleep(0)
            await asyncio.sleep(step)

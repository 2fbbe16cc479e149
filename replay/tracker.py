"""Which items the mock server's source produces: those some connected client registered, for a while after.

An item enters when a client registers it (the source's ``add_item``), stays while any connected client
has it registered, and is forgotten (the source's ``remove_item``) once none has had it for
``forget_after`` seconds. At most ``max_items`` are tracked: a new item first evicts the item idle the
longest; if every tracked item is registered, the new one is refused (no data, one log line). Pure
bookkeeping: no I/O, the clock is given to each call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

__all__ = ["ItemTracker"]

log = logging.getLogger("kiwoom_tape.replay")


class ItemTracker:
    """Reference counts of the items registered by the connected clients, and when each went idle.

    ``add(item)`` / ``remove(item)`` are the source's hooks (``remove`` may be None: the source cannot
    forget). Call :meth:`want` / :meth:`unwant` as registrations change, and :meth:`sweep` now and then.
    """

    def __init__(
        self,
        add: Callable[[str], None],
        remove: Callable[[str], None] | None,
        *,
        forget_after: float = 60.0,
        max_items: int = 200,
        initial: Iterable[str] = (),
        now: float = 0.0,
    ) -> None:
        if not forget_after >= 0:
            raise ValueError(f"forget_after must be seconds >= 0, got {forget_after!r}")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        self._add = add
        self._remove = remove
        self.forget_after = forget_after
        self.max_items = max_items
        self._count: dict[str, int] = {}
        self._idle: dict[str, float] = {}
        """Tracked items nobody has registered, with the time they went idle (oldest first)."""
        self.forgotten = 0
        self.refused = 0
        for item in initial:  # a source's own start-up items: produced until forgotten like any other
            if len(self._idle) < max_items:
                self._idle[item] = now

    def __len__(self) -> int:
        return len(self._count) + len(self._idle)

    def __contains__(self, item: object) -> bool:
        return item in self._count or item in self._idle

    def want(self, item: str, now: float) -> bool:
        """A client registered ``item``. False if it was refused (the cap is reached and nothing is idle)."""
        n = self._count.get(item)
        if n is not None:
            self._count[item] = n + 1
            return True
        if self._idle.pop(item, None) is not None:
            self._count[item] = 1
            return True
        if len(self) >= self.max_items:
            if not self._idle:
                self.refused += 1
                if self.refused & (self.refused - 1) == 0:  # 1, 2, 4, 8...: a flood of codes is a few lines
                    log.warning(
                        "item %r gets no data: the server already tracks %d registered items (max_items; "
                        "%d refused so far)", item[:20], self.max_items, self.refused,
                    )
                return False
            self._forget(next(iter(self._idle)))
        self._count[item] = 1
        self._add(item)
        return True

    def unwant(self, item: str, now: float) -> None:
        """A client that had registered ``item`` removed it or left."""
        n = self._count.get(item)
        if n is None:
            return
        if n > 1:
            self._count[item] = n - 1
            return
        del self._count[item]
        self._idle[item] = now

    def sweep(self, now: float) -> int:
        """Forget every item idle for ``forget_after`` seconds or more; returns how many."""
        done = 0
        for item, since in list(self._idle.items()):
            if now - since < self.forget_after:
                break  # idle times are in insertion order: the rest are younger
            self._forget(item)
            done += 1
        return done

    def _forget(self, item: str) -> None:
        self._idle.pop(item, None)
        self.forgotten += 1
        if self._remove is not None:
            self._remove(item)

"""The registrations of ``record --serve``'s local clients, merged into the recorders' upstream ones (issue 17).

:class:`Registrations` is the relay's :class:`kiwoom_tape.replay.contracts.Registrar`: before the relay's server
applies a local client's REG it calls :meth:`Registrations.admit` with the (item, type) pairs the REG adds. The
pairs no recorder records yet, whatever their type (a stock item, 0B beside a recorded 0D, an industry code of
0J, the empty item of 1h/00/04), are registered on one upstream connection
(:meth:`kiwoom_tape.recorder.client.Recorder.add_entries`: paced by its session, 200 items at most) and recorded
from then on; the local REG is answered once upstream has answered: with upstream's own refusal (return_code and
return_msg, e.g. 105115 "등록 허용 개수(200) 초과") when it refuses, with 105115 at once when no connection has
room for the items, else with return_code 0 (also when upstream is reconnecting, or has not answered within
``ack_wait`` seconds: the pairs are registered at its next LOGIN). Account types (00, 04: the user's orders and
balance) are refused to a client that is not on loopback.

The pairs a client brought stay registered while some local client has them, then ``forget_after`` seconds
more (:meth:`Registrations.sweep`), and are then removed upstream; those of ``--items`` x ``--types`` stay for
good. ``events`` says who asked: ``items_added`` / ``items_removed`` carry ``detail.by``, the local client's
connection number and address (``relay client #3 127.0.0.1:54321``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.server import exposed
from kiwoom_tape.schemas.errors import TooManyItems
from kiwoom_tape.schemas.items import ACCOUNT_TYPES
from kiwoom_tape.schemas.protocol import (
    RC_ERROR,
    RC_ITEM_CAP,
    RC_OK,
    RC_REG_RATE,
    RegistrationDone,
    Subscription,
    item_cap_msg,
)

if TYPE_CHECKING:
    from kiwoom_tape.replay.outbox import Client

__all__ = ["Registrations", "client_label"]

log = logging.getLogger("kiwoom_tape.relay")

Pair = tuple[str, str]
"""(item, type)."""

PRIVATE_REFUSED = "account types (00, 04) are relayed to clients on this machine only"
"""The ``return_msg`` of a REG of 00/04 from a client that is not on loopback (return_code 1)."""


def client_label(client: Client) -> str:
    """``events.detail.by`` of what ``client`` asked for: ``relay client #3 127.0.0.1:54321``."""
    return f"relay {client!r}"


@dataclass
class _Waiter:
    """An admitted REG waiting for upstream's answers: the pairs not acknowledged yet."""

    asked: frozenset[Pair]
    pending: set[Pair]
    answer: asyncio.Future[tuple[int, str] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Registrations:
    """What local clients registered, merged into ``recorders`` (see the module docstring)."""

    def __init__(
        self,
        recorders: Sequence[Recorder],
        *,
        forget_after: float = 60.0,
        ack_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recorders = list(recorders)
        self.own = frozenset(_recorded(self.recorders))
        """The pairs of ``--items`` x ``--types`` (and ``--industries``): recorded for good."""
        self.forget_after = forget_after
        self.ack_wait = ack_wait
        self.clock = clock
        self.added: dict[Pair, Recorder] = {}
        """The pairs registered upstream for local clients, and on which connection."""
        self.idle: dict[Pair, tuple[float, str]] = {}
        """The :attr:`added` pairs no local client has now: since when, and who gave them up last."""
        self._wants: dict[int, frozenset[Pair]] = {}
        self._waiters: list[_Waiter] = []
        for rec in self.recorders:
            rec.on_ack = self.on_ack

    async def admit(self, client: Client, pairs: frozenset[Pair]) -> tuple[int, str] | None:
        """``client``'s REG adds ``pairs``: register upstream those not recorded yet; None, or upstream's refusal."""
        if not _on_loopback(client) and any(t in ACCOUNT_TYPES for _, t in pairs):
            return RC_ERROR, PRIVATE_REFUSED
        recorded = _recorded(self.recorders)
        new = frozenset(p for p in pairs if p not in recorded)
        joined = [w.answer for w in self._waiters if w.asked & pairs]  # another client's REG of them is in flight
        if not new:
            return await self._first_refusal(joined)
        by = client_label(client)
        rec = self._place(new, by)
        if rec is None:
            log.warning("relay: %s asked for %d item(s) no connection has room for (200 each): refused with %d",
                        by, len({i for i, _ in new}), RC_ITEM_CAP)
            return RC_ITEM_CAP, item_cap_msg()
        for pair in new:
            self.added[pair] = rec
        log.info("relay: registering %s upstream for %s", _describe(new), by)
        refusal = await self._answer(new) if rec.stats.connected else None  # else: registered at the next LOGIN
        if refusal is not None:
            log.warning("relay: upstream refused %s for %s: %d %s", _describe(new), by, *refusal)
            self._drop(rec, new, by, refused=refusal[0])
            return refusal
        refusal = await self._first_refusal(joined)
        if refusal is not None:
            self._drop(rec, new, by, refused=refusal[0])
            return refusal
        now = self.clock()
        for pair in new:  # idle until the client's registration (next, if the server applies the REG) has them
            if pair in self.added:
                self.idle[pair] = (now, by)
        return None

    def registered(self, client: Client, pairs: frozenset[Pair]) -> None:
        """``client`` has ``pairs`` now: the added pairs nobody has any more start their ``forget_after``."""
        old = self._wants.pop(client.number, frozenset())
        if pairs:
            self._wants[client.number] = pairs
        for pair in pairs - old:
            self.idle.pop(pair, None)
        now = self.clock()
        for pair in old - pairs:
            if pair in self.added and not any(pair in w for w in self._wants.values()):
                self.idle[pair] = (now, client_label(client))

    def sweep(self, now: float | None = None) -> int:
        """Remove upstream the added pairs no local client has had for ``forget_after`` seconds; how many."""
        now = self.clock() if now is None else now
        due: dict[tuple[int, str], list[Pair]] = {}
        for pair, (since, by) in self.idle.items():
            if now - since >= self.forget_after:
                due.setdefault((id(self.added[pair]), by), []).append(pair)
        for (_, by), pairs in due.items():
            log.info("relay: removing %s upstream: no local client has it", _describe(pairs))
            self._drop(self.added[pairs[0]], pairs, by)
        return sum(len(p) for p in due.values())

    def on_ack(self, ev: RegistrationDone) -> None:
        """An upstream REG was answered: settle the admitted REGs it concerns."""
        if ev.trnm != "REG":
            return
        pairs = {(i, t) for e in ev.entries for i in e.items for t in e.types}
        for waiter in self._waiters:
            hit = waiter.pending & pairs
            if not hit or waiter.answer.done():
                continue
            if ev.return_code == RC_OK:
                waiter.pending -= hit
                if not waiter.pending:
                    waiter.answer.set_result(None)
            elif ev.return_code != RC_REG_RATE:  # the pacing's own retry is not a refusal
                waiter.answer.set_result((ev.return_code, ev.return_msg))

    async def _answer(self, pairs: Iterable[Pair]) -> tuple[int, str] | None:
        """Upstream's answer to the REG of ``pairs``: None when accepted (or not answered within ``ack_wait``)."""
        asked = frozenset(pairs)
        waiter = _Waiter(asked, set(asked))
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.answer), self.ack_wait)
        except TimeoutError:
            log.info("relay: upstream has not answered a REG within %g s: taken as registered", self.ack_wait)
            return None
        finally:
            self._waiters.remove(waiter)

    async def _first_refusal(self, answers: Sequence[asyncio.Future[tuple[int, str] | None]]) -> tuple[int, str] | None:
        """The first refusal among the upstream ``answers`` other local clients wait for (as long as they wait)."""
        for answer in answers:
            with contextlib.suppress(TimeoutError):
                refusal = await asyncio.wait_for(asyncio.shield(answer), self.ack_wait)
                if refusal is not None:
                    return refusal
        return None

    def _place(self, pairs: frozenset[Pair], by: str) -> Recorder | None:
        """Register ``pairs`` on the connection with room for all that carries most of their items already (then
        the one with the fewest items)."""
        entries = _entries(pairs)
        items = {i for i, _ in pairs}

        def rank(rec: Recorder) -> tuple[int, int]:
            has = {i for sub in rec.subscriptions for i in sub.items}
            return -len(items & has), len(has)

        ranked = sorted(self.recorders, key=rank)
        for rec in ranked:
            try:
                rec.add_entries(entries, by=by)
            except TooManyItems:
                continue
            return rec
        return None

    def _drop(self, rec: Recorder, pairs: Iterable[Pair], by: str, **why: Any) -> None:
        pairs = list(pairs)
        for entry in _entries(pairs):
            rec.remove_items(entry.items, types=entry.types, by=by, **why)
        for pair in pairs:
            self.added.pop(pair, None)
            self.idle.pop(pair, None)


def _recorded(recorders: Iterable[Recorder]) -> set[Pair]:
    return {(i, t) for rec in recorders for sub in rec.subscriptions for i in sub.items for t in sub.types}


def _entries(pairs: Iterable[Pair]) -> list[Subscription]:
    """``pairs`` as REG ``data`` entries: the items that take the same set of types together (docs/protocol.md 1.3)."""
    types_of: dict[str, list[str]] = {}
    for item, real_type in sorted(pairs):
        types_of.setdefault(item, []).append(real_type)
    by_types: dict[tuple[str, ...], list[str]] = {}
    for item, types in types_of.items():
        by_types.setdefault(tuple(types), []).append(item)
    return [Subscription(tuple(items), types) for types, items in by_types.items()]


def _describe(pairs: Iterable[Pair]) -> str:
    return "; ".join(f"{','.join(e.items) or '(empty item)'} x {','.join(e.types)}" for e in _entries(pairs))


def _on_loopback(client: Client) -> bool:
    address = client.conn.remote_address
    return bool(address) and not exposed(str(address[0]))

"""Reconnect policy as pure code: a jittered, capped backoff, a classifier of disconnects, and the decision
of what to do after a connection ended (:class:`ReconnectPolicy`).

All of it is tested without sleeping (STYLE.md habit 5, tests/test_backoff_auth.py). The driver
(:mod:`kiwoom_tape.recorder.client`) only sleeps what :meth:`ReconnectPolicy.after` says and acts on its verdict.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["KICKED", "Decision", "Disconnect", "Ended", "ReconnectPolicy", "backoff", "classify_close"]

KICKED = "kicked"
"""The cause of a connection ended by R10001: another session with the same app key took over (docs/protocol.md 1.9)."""


def backoff(
    base: float = 0.5, cap: float = 30.0, factor: float = 2.0, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Delays for successive reconnect attempts: "full jitter", ``uniform(0, min(cap, base * factor**n))``.

    Never more than ``cap``; never negative; the bound doubles until it reaches ``cap`` and stays there.
    The first delay is small but not zero, so a flapping server is not hammered.
    """
    n = 0
    while True:
        bound = min(cap, base * factor**n)
        yield max(0.05, rand() * bound)
        if bound < cap:
            n += 1


@dataclass(frozen=True)
class Disconnect:
    """Why a connection ended: a short ``cause`` (the gap's) and a sentence for the log."""

    cause: str
    detail: str = ""


def classify_close(code: int | None, reason: str, system_code: str | None) -> Disconnect:
    """Classify a closed connection from its close frame and the last SYSTEM code seen before it.

    A kick (SYSTEM R10001, or close 1000 "Bye", docs/protocol.md 1.9) is not a drop: :class:`ReconnectPolicy`
    treats it apart. Everything else is a transient drop.
    """
    if system_code == "R10001" or (code == 1000 and reason == "Bye"):
        return Disconnect(KICKED, "another session with the same app key took over (R10001)")
    if system_code == "R10002":
        return Disconnect("heartbeat", "the server saw no PING echo (R10002)")
    if system_code == "R10004":
        return Disconnect("no_login", "the server saw no LOGIN in time (R10004)")
    if code is None:
        return Disconnect("dropped", "the connection was lost without a close frame")
    return Disconnect("closed", f"the server closed the connection (code {code} {reason})".strip())


@dataclass(frozen=True)
class Ended:
    """How one connection ended, as the driver saw it."""

    cause: str
    """The disconnect cause: one of :func:`classify_close`'s, ``silence``, ``connect_failed``,
    ``token_unavailable`` or ``login_failed``."""
    logged_in: bool = False
    healthy_for: float = 0.0
    """Seconds from the LOGIN ack to the last frame received (0 if it never logged in)."""
    renew_token: bool = False
    """For ``login_failed``: the protocol layer's verdict that a new token may fix it
    (:func:`kiwoom_tape.schemas.protocol.renews_token`)."""


Action = Literal["reconnect", "renew_token", "stop", "exit_kicked"]


@dataclass(frozen=True)
class Decision:
    """What to do next: ``reconnect`` after ``delay`` seconds; ``renew_token`` then reconnect at once;
    ``stop`` (a LOGIN refusal no new token fixes: the driver raises it); ``exit_kicked`` (``--on-kick exit``)."""

    action: Action
    delay: float = 0.0


@dataclass
class ReconnectPolicy:
    """The recorder's one decision after each connection: never give up on a transient fault, never fight a kick.

    - A transient fault (any cause but a kick or a LOGIN refusal) is a reconnect after :func:`backoff`'s
      next delay. The backoff grows across consecutive failed connections and starts over only after a
      connection that stayed logged in and receiving for ``healthy_after`` seconds.
    - A kick (R10001, :data:`KICKED`) waits ``kick_wait`` seconds, doubling with each kick in a row up to
      ``kick_cap`` (plus up to 25 % jitter, never beyond ``kick_cap``), so that the session that took over
      (often the user's own trading program) is not kicked in turn; or, with ``on_kick="exit"``, ends the run.
      A kick after a connection that lasted ``kick_cap`` seconds or more starts the doubling over.
    - A LOGIN refusal gets one new token when the protocol layer says a token may fix it and
      ``can_renew``; the renewal counts as spent until a connection logs in. Anything else is ``stop``.
    """

    base: float = 0.5
    cap: float = 30.0
    healthy_after: float = 60.0
    kick_wait: float = 60.0
    kick_cap: float = 1800.0
    on_kick: Literal["wait", "exit"] = "wait"
    can_renew: bool = True
    rand: Callable[[], float] = random.random
    _delays: Iterator[float] | None = field(default=None, repr=False)
    _kicks: int = 0
    _renewed: bool = False

    def after(self, ended: Ended) -> Decision:
        """The decision after ``ended``; updates the streaks (backoff step, kicks in a row, renewal spent)."""
        if ended.logged_in:
            self._renewed = False
        if self._delays is None or ended.healthy_for >= self.healthy_after:
            self._delays = backoff(self.base, self.cap, rand=self.rand)
        if ended.cause == "login_failed":
            if ended.renew_token and self.can_renew and not self._renewed:
                self._renewed = True
                return Decision("renew_token")
            return Decision("stop")
        if ended.cause == KICKED:
            if self.on_kick == "exit":
                return Decision("exit_kicked")
            cap = max(self.kick_cap, self.kick_wait)
            if ended.healthy_for >= cap:
                self._kicks = 0
            bound = min(cap, self.kick_wait * 2.0**self._kicks)
            self._kicks += 1
            return Decision("reconnect", min(cap, bound * (1 + self.rand() / 4)))
        return Decision("reconnect", next(self._delays))

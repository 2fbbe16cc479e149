"""Reconnect policy as pure functions: a jittered, capped backoff and a classifier of disconnects.

Both are tested without sleeping (STYLE.md habit 5). The driver sleeps what :func:`backoff` yields,
and starts a new generator after a connection that worked (reset on success).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Disconnect", "backoff", "classify_close"]


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
    """Why a connection ended, and whether to try again."""

    cause: str
    retry: bool
    detail: str = ""


def classify_close(code: int | None, reason: str, system_code: str | None) -> Disconnect:
    """Classify a closed connection from its close frame and the last SYSTEM code seen before it.

    Every drop is retried: the recorder's job is to keep recording. Only LOGIN refusals that a new
    token cannot fix are final, and those are decided by the token logic, not here.
    """
    if system_code == "R10001" or (code == 1000 and reason == "Bye"):
        return Disconnect("kicked", True, "another session with the same app key took over (R10001)")
    if system_code == "R10002":
        return Disconnect("heartbeat", True, "the server saw no PING echo (R10002)")
    if system_code == "R10004":
        return Disconnect("no_login", True, "the server saw no LOGIN in time (R10004)")
    if code is None:
        return Disconnect("dropped", True, "the connection was lost without a close frame")
    return Disconnect("closed", True, f"the server closed the connection (code {code} {reason})".strip())

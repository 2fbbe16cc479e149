"""The replay clock of a recorded day: a tape time that runs at ``speed`` x the wall clock, pausable and steppable.

One clock per server, shared by every client (:class:`kiwoom_tape.replay.recorded.RecordedSource`). Tape times are
epoch nanoseconds on the replayed date. The clock waits for a first client to register, starts
``start_delay`` seconds later (so that a strategy's other connections join the same timeline) at
``origin_ns`` (``--from``) or, if None, at the first frame read; from then on it reads the tape time
it was last anchored at plus the wall time elapsed since, times ``speed``. ``speed=None`` (as fast as
the slowest client reads) has no pace: the tape time is the position of the last frame sent.
:meth:`ReplayClock.apply` runs the ``/control`` commands that act on the clock alone (:mod:`kiwoom_tape.replay.control`:
pause, resume, step, speed); a seek also moves the read (:meth:`ReplayClock.seek` is its clock half).
No I/O and no asyncio: the wall clock is injected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiwoom_tape.replay.control import Pause, Resume, SetSpeed, Step
from kiwoom_tape.replay.recording import NS

__all__ = ["ReplayClock"]

log = logging.getLogger("kiwoom_tape.replay")


class ReplayClock:
    """The shared replay clock (module docstring); ``clock`` is the wall clock in seconds (monotonic)."""

    def __init__(
        self, *, origin_ns: int | None, speed: float | None, start_delay: float, clock: Callable[[], float]
    ) -> None:
        self.origin_ns = origin_ns
        """Where on the tape the clock starts; None: at the first frame."""
        self.speed = speed
        """Recorded seconds per wall second; None: as fast as the slowest client reads."""
        self.start_delay = start_delay
        self.clock = clock
        self.registered = False
        self.start_at: float | None = None
        """The wall time the clock starts at, once a client has registered."""
        self.started = False
        self.paused = False
        self.ended = False
        self.steps = 0
        """Frames still to send for ``/control`` steps."""
        self.anchor_wall = 0.0
        self.anchor_tape: int | None = None
        self.position_ns: int | None = None
        """The tape time while it does not run (before the start, paused, ended, at max speed), else None."""

    @property
    def state(self) -> str:
        """``waiting`` (for the start), ``playing``, ``paused`` or ``ended``: what ``/control`` reports."""
        if not self.started:
            return "paused" if self.paused else "waiting"
        if self.paused:
            return "paused"
        if self.ended:
            return "ended"
        return "playing"

    def now(self) -> int | None:
        """The tape time now (epoch ns); None before any is known (not started, or no frame read yet)."""
        if not self.started or self.paused or self.ended or self.speed is None or self.anchor_tape is None:
            return self.position_ns
        return self.anchor_tape + round((self.clock() - self.anchor_wall) * self.speed * NS)

    def anchor(self, tape_ns: int | None) -> None:
        """From now on, the clock reads ``tape_ns`` + elapsed x speed (None: the next frame's time)."""
        self.anchor_wall = self.clock()
        self.anchor_tape = tape_ns

    def register(self) -> bool:
        """A client registered something: True the first time (the start delay begins at :meth:`until_start`)."""
        if self.registered:
            return False
        self.registered = True
        return True

    def until_start(self) -> float | None:
        """Wall seconds until the clock is due to start (<= 0: begin it now); None: no client registered yet."""
        if self.registered and self.start_at is None:
            self.start_at = self.clock() + self.start_delay
            log.info("a client registered: the replay clock starts in %g s", self.start_delay)
        return None if self.start_at is None else self.start_at - self.clock()

    def begin(self) -> None:
        """Start the clock: at the position a seek before the start chose, else at :attr:`origin_ns`."""
        self.started = True
        if self.position_ns is not None:  # seeked before the start
            self.anchor(self.position_ns)
        else:
            self.anchor(self.origin_ns)

    def pause(self) -> None:
        if not self.paused:
            self.position_ns = self.now()
            self.paused = True

    def apply(self, command: Pause | Resume | Step | SetSpeed) -> None:
        """Run a ``/control`` command on the clock; Resume and Step start a clock that was waiting."""
        if isinstance(command, Pause):
            self.pause()
        elif isinstance(command, Resume):
            was_paused, self.paused = self.paused, False
            if not self.started:
                self.begin()
            elif was_paused:
                self.anchor(self.position_ns)
        elif isinstance(command, Step):
            if not self.started:
                self.begin()
            self.pause()
            self.steps += command.n
        else:
            now = self.now()
            self.speed = command.speed
            self.anchor(now)
            log.info("speed %s", "max" if command.speed is None else f"{command.speed:g}x")

    def seek(self, tape_ns: int | None) -> None:
        """Continue at ``tape_ns`` (None: at the next frame read), not ended."""
        self.ended = False
        self.position_ns = tape_ns
        self.anchor(tape_ns)

    def end(self, last_ns: int | None) -> None:
        """The tape ran out after the frame at ``last_ns``: the clock stays there, pending steps dropped."""
        self.ended = True
        self.position_ns = last_ns
        self.steps = 0

    def horizon(self, next_ns: int) -> int:
        """At a speed: the tape time up to which frames are due now, anchored at ``next_ns`` (the next
        frame's time) if the clock has no tape time yet."""
        assert self.speed is not None
        if self.anchor_tape is None:
            self.anchor(next_ns)
        assert self.anchor_tape is not None
        return self.anchor_tape + int((self.clock() - self.anchor_wall) * self.speed * NS)

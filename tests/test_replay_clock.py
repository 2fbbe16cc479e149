"""The replay clock of a recorded day (replay/clock.py), driven by a fake wall clock: no sleeping, no server."""

from __future__ import annotations

from kiwoom_tape.replay.clock import ReplayClock
from kiwoom_tape.replay.control import Pause, Resume, SetSpeed, Step

NS = 1_000_000_000
ORIGIN = 1_800_000_000 * NS  # some tape time (epoch ns)


class Wall:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def started(speed: float | None = 1.0, origin: int | None = ORIGIN) -> tuple[ReplayClock, Wall]:
    wall = Wall()
    clock = ReplayClock(origin_ns=origin, speed=speed, start_delay=0.0, clock=wall)
    clock.begin()
    return clock, wall


def test_it_waits_for_a_registration_then_the_start_delay() -> None:
    wall = Wall()
    clock = ReplayClock(origin_ns=ORIGIN, speed=1.0, start_delay=2.0, clock=wall)
    assert clock.until_start() is None and clock.state == "waiting" and clock.now() is None
    wall.t += 50  # no registration: still no deadline
    assert clock.until_start() is None
    assert clock.register() is True
    assert clock.register() is False  # only the first registration starts the delay
    assert clock.until_start() == 2.0
    wall.t += 1.5
    assert clock.until_start() == 0.5
    wall.t += 0.5
    assert clock.until_start() == 0.0 and not clock.started
    clock.begin()
    assert clock.state == "playing" and clock.now() == ORIGIN


def test_the_tape_time_runs_at_speed_and_a_speed_change_keeps_the_position() -> None:
    clock, wall = started(speed=2.0)
    wall.t += 1.5
    assert clock.now() == ORIGIN + 3 * NS
    clock.apply(SetSpeed(10.0))
    assert clock.now() == ORIGIN + 3 * NS
    wall.t += 0.5
    assert clock.now() == ORIGIN + 8 * NS and clock.speed == 10.0


def test_without_a_start_time_the_clock_anchors_at_the_first_frame() -> None:
    clock, wall = started(origin=None)
    wall.t += 7
    assert clock.now() is None  # no frame read yet: no tape time
    first = ORIGIN + 123 * NS
    assert clock.horizon(first) == first  # anchored now at the frame: it is due
    wall.t += 0.25
    assert clock.horizon(ORIGIN) == first + NS // 4  # the anchor stays; the argument is only the first anchor
    assert clock.now() == first + NS // 4


def test_pause_freezes_the_tape_and_resume_goes_on_from_there() -> None:
    clock, wall = started()
    wall.t += 2
    clock.apply(Pause())
    assert clock.state == "paused" and clock.now() == ORIGIN + 2 * NS
    wall.t += 60
    assert clock.now() == ORIGIN + 2 * NS
    clock.apply(Pause())  # a second pause changes nothing
    clock.apply(Resume())
    assert clock.state == "playing" and clock.now() == ORIGIN + 2 * NS
    wall.t += 1
    assert clock.now() == ORIGIN + 3 * NS


def test_step_and_resume_start_a_waiting_clock() -> None:
    wall = Wall()
    clock = ReplayClock(origin_ns=ORIGIN, speed=1.0, start_delay=5.0, clock=wall)
    clock.apply(Step(3))
    clock.apply(Step(2))
    assert clock.started and clock.state == "paused" and clock.steps == 5 and clock.now() == ORIGIN
    other = ReplayClock(origin_ns=ORIGIN, speed=1.0, start_delay=5.0, clock=wall)
    other.apply(Pause())
    assert not other.started and other.state == "paused"
    other.apply(Resume())
    assert other.started and other.state == "playing"
    wall.t += 1
    assert other.now() == ORIGIN + NS


def test_a_seek_before_the_start_is_where_the_clock_begins() -> None:
    wall = Wall()
    clock = ReplayClock(origin_ns=ORIGIN, speed=1.0, start_delay=0.0, clock=wall)
    clock.seek(ORIGIN + 600 * NS)
    clock.begin()
    wall.t += 1
    assert clock.now() == ORIGIN + 601 * NS


def test_the_end_holds_the_last_frame_until_a_seek() -> None:
    clock, wall = started()
    clock.apply(Step(4))
    clock.apply(Resume())
    clock.end(ORIGIN + 9 * NS)
    wall.t += 10
    assert clock.state == "ended" and clock.now() == ORIGIN + 9 * NS and clock.steps == 0
    clock.seek(ORIGIN + NS)
    assert clock.state == "playing" and clock.now() == ORIGIN + NS
    clock.seek(None)  # a loop without a start time: at the next frame read
    assert clock.now() is None


def test_at_max_speed_the_tape_time_is_the_position_the_player_sets() -> None:
    clock, wall = started(speed=None)
    assert clock.now() is None
    clock.position_ns = ORIGIN + 42 * NS
    wall.t += 100
    assert clock.now() == ORIGIN + 42 * NS
    clock.apply(SetSpeed(1.0))  # from max speed to 1x: runs on from the last frame sent
    wall.t += 1
    assert clock.now() == ORIGIN + 43 * NS

"""A stand-in for Windows' ``msvcrt`` module on Linux, for the fallback tests (``kiwoom_tape.portable``).

Only ``locking`` and its mode constants, with the contract of the real one that the fallback relies on
(https://learn.microsoft.com/cpp/c-runtime-library/reference/locking): ``LK_NBLCK`` locks ``nbytes``
from the file position, held by that open file (handle) until it is unlocked or closed; when another
open file holds it, the call fails at once with OSError EACCES. Built on ``flock`` (per open file, like
a Windows handle); the byte range is recorded, not enforced (``locks`` lists the file position of each
successful lock, so a test can check where the fallback put it).
"""

from __future__ import annotations

import errno
import os
from types import ModuleType
from typing import Any

LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4


def make(fcntl: Any) -> ModuleType:
    """A module object named ``msvcrt`` whose ``locking`` uses ``fcntl`` (the real module, captured)."""
    mod = ModuleType("msvcrt", __doc__)
    locks: list[int] = []

    def locking(fd: int, mode: int, nbytes: int) -> None:
        if nbytes < 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        if mode == LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        if mode != LK_NBLCK:
            raise NotImplementedError(f"fake msvcrt: mode {mode}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PermissionError(errno.EACCES, "Permission denied") from None
        locks.append(os.lseek(fd, 0, os.SEEK_CUR))

    mod.__dict__.update(LK_UNLCK=LK_UNLCK, LK_LOCK=LK_LOCK, LK_NBLCK=LK_NBLCK, LK_RLCK=LK_RLCK,
                        LK_NBRLCK=LK_NBRLCK, locking=locking, locks=locks)
    return mod

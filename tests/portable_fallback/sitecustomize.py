"""Run every Python process started with this folder on PYTHONPATH as kiwoom-tape would run on Windows.

With ``KIWOOM_TAPE_PORTABLE=fallback`` also set (tests/test_portable.py sets both), at start-up:
``fcntl`` is made unimportable (``sys.modules['fcntl'] = None``), a stand-in ``msvcrt``
(:mod:`fake_msvcrt`) is installed, and at exit the process writes to stderr how many locks it took
through it (``fake msvcrt: N locks at offsets [...]``), so the test sees the fallback was used.
``subprocess`` is imported first: it takes the presence of ``msvcrt`` to mean Windows.

Windows also refuses to rename or delete a file that is open (``os.open`` does not share delete
access): ``os.rename``, ``os.replace``, ``os.unlink`` and ``os.remove`` raise PermissionError here too
when the file is open through an ``os.open`` descriptor of this process (what kiwoom-tape's own
durable files use; files opened by other means are not tracked).
"""

import atexit
import errno
import fcntl
import os
import subprocess  # noqa: F401  # before the stand-in msvcrt exists: it decides Windows or not from it
import sys
from typing import Any

from fake_msvcrt import make

sys.modules["msvcrt"] = _msvcrt = make(fcntl)
sys.modules["fcntl"] = None  # type: ignore[assignment]

_real = {name: getattr(os, name) for name in ("open", "rename", "replace", "unlink", "remove")}
_fds: set[int] = set()


def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    fd: int = _real["open"](path, flags, mode, dir_fd=dir_fd)
    _fds.add(fd)
    return fd


def _refuse_if_open(path: Any) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    for fd in list(_fds):
        try:
            fst = os.fstat(fd)
        except OSError:
            _fds.discard(fd)  # closed since
            continue
        if (fst.st_dev, fst.st_ino) == (st.st_dev, st.st_ino):
            raise PermissionError(errno.EACCES, "The process cannot access the file because it is being used "
                                  "by another process (WinError 32, emulated)", os.fspath(path))


def _guard(name: str) -> Any:
    real = _real[name]

    def guarded(src: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_if_open(src)
        return real(src, *args, **kwargs)

    return guarded


os.open = _open  # type: ignore[assignment]
for _name in ("rename", "replace", "unlink", "remove"):
    setattr(os, _name, _guard(_name))


@atexit.register
def _report() -> None:
    locks = _msvcrt.locks
    sys.stderr.write(f"fake msvcrt: {len(locks)} locks at offsets {sorted(set(locks))}\n")

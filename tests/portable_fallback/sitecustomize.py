"""Run every Python process started with this folder on PYTHONPATH as kiwoom-tape would run on Windows.

With ``KIWOOM_TAPE_PORTABLE=fallback`` also set (tests/test_portable.py sets both), at start-up:
``fcntl`` is made unimportable (``sys.modules['fcntl'] = None``), a stand-in ``msvcrt``
(:mod:`fake_msvcrt`) is installed, and at exit the process writes to stderr how many locks it took
through it (``fake msvcrt: N locks at offsets [...]``), so the test sees the fallback was used.
``subprocess`` is imported first: it takes the presence of ``msvcrt`` to mean Windows.
"""

import atexit
import fcntl
import subprocess  # noqa: F401  # before the stand-in msvcrt exists: it decides Windows or not from it
import sys

from fake_msvcrt import make

sys.modules["msvcrt"] = _msvcrt = make(fcntl)
sys.modules["fcntl"] = None  # type: ignore[assignment]


@atexit.register
def _report() -> None:
    locks = _msvcrt.locks
    sys.stderr.write(f"fake msvcrt: {len(locks)} locks at offsets {sorted(set(locks))}\n")

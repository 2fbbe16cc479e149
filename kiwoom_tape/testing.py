"""Testing tools: record a mock server in-process with the real recorder, and read back what it wrote.

``kiwoom-tape demo`` and the test suite record the same way::

    async with serve(SimSource(SimulatedMarket(items=["005930"])), port=0) as server:
        rec = loopback_recorder(server.url, "data", ["005930"], ["0D"])

        async def until(rec: Recorder) -> None:
            while rec.stats.real_rows < 100:
                await asyncio.sleep(0.05)

        await run_recorder(rec, until)
    rows = read_table("data", "orderbook")

:func:`loopback_recorder` is :class:`kiwoom_tape.recorder.client.Recorder` into a new, opened
:class:`kiwoom_tape.recorder.store.Store`, with a short backoff (a local mock comes back at once);
:func:`run_recorder` drives it with ``record``'s own driver (:func:`kiwoom_tape.recorder.driver.drive`: the store
ticked between frames, closed at the end) until a condition of the caller's is met. Importing this module loads the
recorder but not the replay server: ``recorder/`` and ``replay/`` stay apart (DESIGN.md).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import pyarrow.dataset as ds

from kiwoom_tape.recorder.auth import TokenProvider, token_provider_from_env
from kiwoom_tape.recorder.backoff import ReconnectPolicy
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.driver import drive
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.versions import recv_ns_of

__all__ = ["loopback_recorder", "read_table", "run_recorder"]


def loopback_recorder(
    url: str,
    root: str | os.PathLike[str],
    items: Sequence[str],
    types: Sequence[str],
    *,
    tokens: TokenProvider | None = None,
    run_id: str = "testrun",
    fsync_interval: float = 0.05,
    silence_timeout: float = 60.0,
    backoff_base: float = 0.05,
    backoff_cap: float = 0.2,
    kick_wait: float = 0.2,
    on_kick: Literal["wait", "exit"] = "wait",
) -> Recorder:
    """A recorder of ``items`` x ``types`` from ``url`` into a new store at ``root`` (run ``run_id``), opened.

    The reconnect policy (:class:`kiwoom_tape.recorder.backoff.ReconnectPolicy`) is shortened for a local mock, which
    comes back at once: backoff from ``backoff_base`` to ``backoff_cap``, ``kick_wait`` after a kick.

    ``tokens`` defaults to what ``record`` uses with no credentials in the environment: a loopback mock
    issues a token to anyone. After calling this you must hand the recorder to :func:`run_recorder`,
    which closes its store (``rec.store``). Raises StorageError if the store cannot be opened.
    """
    store = Store(root, run_id, fsync_interval=fsync_interval)
    store.open()
    policy = ReconnectPolicy(base=backoff_base, cap=backoff_cap, kick_wait=kick_wait, kick_cap=8 * kick_wait,
                             on_kick=on_kick)
    return Recorder(url, list(items), list(types), store, tokens or token_provider_from_env(url, {}),
                    policy=policy, silence_timeout=silence_timeout)


async def run_recorder(
    rec: Recorder, until: Callable[[Recorder], Awaitable[object]], *, tick: float = 0.05
) -> Recorder:
    """Run ``rec`` until ``until(rec)`` returns, through ``record``'s own driver
    (:func:`kiwoom_tape.recorder.driver.drive`):
    the store ticked every ``tick`` seconds, closed at the end.

    ``until`` starts with the recorder and may also inject faults, watch ``rec.stats`` or report
    progress. If the recorder stops by itself (a LoginError, a StorageError), ``until`` is cancelled.
    Raises what the recorder, the store or ``until`` raised (the first of them, not a group).
    """
    return await drive(rec, until=until, tick=tick)


def read_table(root: str | os.PathLike[str], name: str) -> list[dict[str, Any]]:
    """Every row of table ``name`` (``frames``, ``orderbook``, ...) under ``root``, ``recv_ts`` as int ns.

    Nanosecond timestamps do not fit ``datetime``: ``recv_ts`` is the exact receive nanosecond of either schema
    version (:func:`kiwoom_tape.schemas.tables.recv_ns_of`) and ``recv_sub_us`` is left out; no table yet reads
    as no rows. The files must be of one schema version.
    """
    path = os.path.join(root, name)
    if not os.path.exists(path):
        return []
    t = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    t = t.set_column(t.schema.get_field_index("recv_ts"), "recv_ts", recv_ns_of(t))
    if "recv_sub_us" in t.schema.names:
        t = t.drop_columns(["recv_sub_us"])
    return t.to_pylist()  # type: ignore[no-any-return]

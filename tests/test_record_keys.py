"""``record --items-file --keys`` end to end (issue 15 item 1): 450 items over 3 app keys against ``replay --simulate``,
as subprocesses, into one dataset that ``kiwoom-tape verify`` passes; the mock (checking the 3 keys' credentials)
sees exactly 3 connections."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from _cli import cli_argv, started_replay
from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.recorder.backoff import ReconnectPolicy
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.driver import drive_all
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.errors import SessionTakenOver
from kiwoom_tape.schemas.items import item_problem
from kiwoom_tape.schemas.layout import new_run_id

N_ITEMS, N_KEYS = 450, 3
WALL_LIMIT = 90.0
"""Wall seconds each wait on the server may take at most (all items are served within about 5 s on a quiet machine)."""
MARGIN = 15.0
"""Market seconds (3 wall seconds at the test's 5x) recorded after every item was served, for its rows to arrive."""


def krx_codes(n: int, seed: int = 15) -> list[str]:
    """``n`` distinct plausible KRX common-stock codes: six digits ending in 0, as 005930 and 000660 do."""
    rng = random.Random(seed)
    codes = [f"{k * 10:06d}" for k in rng.sample(range(2, 40_000), n)]
    assert all(item_problem("0D", c) is None and item_problem("0E", c) is None for c in codes)
    return codes


@pytest.mark.timeout(WALL_LIMIT * 2 + 120)  # the two waits on what was served, the 3 stores' close, verify
def test_450_items_over_3_keys_record_into_one_dataset_that_verifies(tmp_path: Path) -> None:
    codes = krx_codes(N_ITEMS)
    items_file = tmp_path / "krx.txt"
    items_file.write_text(
        "# KRX codes for the test\n\n"
        + "\n".join(f"{c}  # stock {i}" if i % 7 == 0 else c for i, c in enumerate(codes))
        + f"\n{codes[0]}\n"  # a duplicate: recorded once, with a warning
    )
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text("".join(
        f'[[key]]\nname = "acct{n}"\nappkey_env = "KT_TEST_APPKEY_{n}"\nsecretkey_env = "KT_TEST_SECRETKEY_{n}"\n'
        for n in range(1, N_KEYS + 1)
    ))
    secrets = {f"KT_TEST_SECRETKEY_{n}": f"secret-{n}-e2e-0451" for n in range(1, N_KEYS + 1)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_")}
    env |= {f"KT_TEST_APPKEY_{n}": f"appkey-{n}-e2e" for n in range(1, N_KEYS + 1)} | secrets
    out = tmp_path / "data"

    async def main() -> tuple[str, str, int]:
        async with started_replay("--simulate", "--port", "0", "--sim-start", "10:00:00", "--speed", "5",
                                  "--max-items", str(N_ITEMS),  # the mock tracks 200 items by default
                                  "--keys", str(keys_file),  # the mock checks each key's pair
                                  env=env, limit=WALL_LIMIT + 60) as replay:
            rec = await asyncio.create_subprocess_exec(
                *cli_argv("record", "--items-file", str(items_file), "--keys", str(keys_file), "--url",
                          replay.url, "--out", str(out), "--duration", f"{WALL_LIMIT + 30:g}s", "--types", "0D"),
                env=env, stderr=asyncio.subprocess.PIPE,
            )
            try:
                # until every item went out at least once, then MARGIN more market seconds for the last to arrive:
                # what was served, not a wall duration (a busy machine serves the 450 items more slowly)
                served = await replay.stop_when(rec, lambda s: s["items_served"] >= N_ITEMS,
                                                f"all {N_ITEMS} items served", WALL_LIMIT)
                await replay.stop_when(rec, lambda s: s["market_time"] >= served["market_time"] + MARGIN
                                       and s["logged_in"] == N_KEYS and s["backlog"] == 0,
                                       f"{MARGIN} market seconds past the last item's first rows", WALL_LIMIT)
                _, err = await asyncio.wait_for(rec.communicate(), 30)
            finally:
                if rec.returncode is None:
                    rec.kill()
                    await rec.wait()
            assert rec.returncode is not None
            assert await replay.interrupt() == 0
        return replay.output, err.decode(), rec.returncode

    served, err, code = asyncio.run(main())
    assert code == 0, err
    # the mock's own account: exactly 3 connections, each logged in once, nobody kicked
    assert f"stopping: {N_KEYS} connections" in served and served.count(" logged in") == N_KEYS, served
    assert "kicking" not in served and "R10001" not in err
    assert f"{codes[0]} is already on line 3: recorded once" in err, err
    assert not any(s in err for s in secrets.values())
    for n in range(1, N_KEYS + 1):  # each connection's lines name its key
        assert f"[key acct{n}] logged in; registering {N_ITEMS // N_KEYS} items x 0D" in err, err
    con = duckdb.connect()
    rows = dict(con.execute(
        f"select item, count(*) from read_parquet('{out}/orderbook/**/*.parquet', hive_partitioning = true) "
        "group by item"
    ).fetchall())
    assert sorted(rows) == sorted(codes), f"{len(rows)} of {N_ITEMS} items have rows"
    runs = con.execute(
        f"select count(distinct run_id) from read_parquet('{out}/events/**/*.parquet', hive_partitioning = true) "
        "where kind = 'login'"
    ).fetchone()
    assert runs == (N_KEYS,)
    verify = subprocess.run(cli_argv("kiwoom-tape", "verify", str(out)), capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _recorders(url: str, rest: str, out: Path, keys: list[str], policy: ReconnectPolicy) -> list[Recorder]:
    recs = []
    for n, key in enumerate(keys):
        store = Store(out, new_run_id(time.time_ns(), n), fsync_interval=0.05).open()
        tokens = TokenProvider(rest, appkey=key, secretkey="secret-" + key)
        recs.append(Recorder(url, [f"{(n + 1) * 10:06d}"], ["0D"], store, tokens, policy=policy))
    return recs


def test_two_connections_of_one_app_key_kick_each_other_for_real_and_the_kick_ends_every_connection(
    tmp_path: Path,
) -> None:
    out = tmp_path / "data"

    async def main() -> int:
        market = SimulatedMarket(seed=3, items=[], start=10 * 3600)
        async with serve(SimSource(market, speed=5.0), port=0) as server:
            # two keys of which two connections share one: what record --keys refuses, made by hand
            recs = _recorders(server.url, server.rest_url, out, ["KEY-A", "KEY-A", "KEY-B"],
                              ReconnectPolicy(on_kick="exit"))
            with pytest.raises(SessionTakenOver):
                await asyncio.wait_for(drive_all(recs, duration=20), 30)
            return server.stats.kicks

    assert asyncio.run(main()) == 1
    # every connection ended with it and closed its store: no journal left, the events say why
    assert list((out / "_journal").glob("*.journal")) == []
    con = duckdb.connect()
    kinds = con.execute(
        f"select kind, count(distinct run_id) from read_parquet('{out}/events/**/*.parquet', hive_partitioning = true) "
        "group by kind"
    ).fetchall()
    assert dict(kinds)["login"] >= 2, kinds  # both connections of KEY-A logged in (KEY-B may not have yet)


def test_drive_all_runs_each_connection_into_its_own_run_until_the_duration(tmp_path: Path) -> None:
    out = tmp_path / "data"

    async def main() -> None:
        market = SimulatedMarket(seed=4, items=[], start=10 * 3600)
        async with serve(SimSource(market, speed=5.0), port=0) as server:
            recs = _recorders(server.url, server.rest_url, out, ["KEY-A", "KEY-B"], ReconnectPolicy())
            await asyncio.wait_for(drive_all(recs, duration=3), 20)
            assert server.stats.kicks == 0 and server.stats.logins == 2

    asyncio.run(main())
    con = duckdb.connect()
    per_run = con.execute(
        f"select run_id, list(distinct item) from read_parquet('{out}/orderbook/**/*.parquet', "
        "hive_partitioning = true) group by run_id"
    ).fetchall()
    assert sorted(items for _, items in per_run) == [["000010"], ["000020"]], per_run

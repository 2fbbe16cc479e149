"""Full market on one machine: ``record --keys`` with 14 app keys x 200 items (2,800 items) at the real peak.

One lean sender process (:mod:`bench.sender`, pinned to core 0) serves the 14 connections, each with its own 200
items (the benchmark's workload with its 200 item codes renamed to the connection's, :func:`renamed`: the stream
of a connection holds only the items it registered) at the real peak of one connection (200 items x 3.6 Hz = 720
rows/s), about 10,000 rows/s in all; it answers LOGIN and REG and issues a token per app key (``POST
/oauth2/token``, as the recorder's ``--keys`` fetches them). ``record --items-file --keys`` (the real CLI, one
subprocess pinned to core 1: the recorder runs every connection in one process, on one event loop) records them
into one dataset.

Figures: the recorder's CPU (% of one core) and peak RSS, rows/s received (``recv_ts`` span) vs sent, and
lossless: per connection every frame sent is in ``frames`` (by ``run_id``), every 0D/0E row in its table, none
delayed more than :data:`bench.record_run.MAX_DELAY_S`, no gap and no reconnect in ``events``. Full mode then
steps the rate up (:data:`MARGIN_STEPS`, shorter runs) until a step is not lossless: the lossless margin is the
highest multiple of the real peak that was.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from kiwoom_tape.schemas.versions import recv_ns_of

from bench.frames import Workload
from bench.machine import kill_if_running, pin, proc_cpu_seconds, proc_rss_bytes
from bench.record import REAL_PEAK_ROWS
from bench.record_run import MAX_DELAY_S, record_cmd, watch_record
from bench.report import Config, Figure, percentile
from bench.sender_process import Sender

__all__ = ["KEYS", "MARGIN_STEPS", "market_items", "renamed", "run"]

KEYS = 14
"""App keys (connections) of the full market: 2,800 items at 200 per key (docs/protocol.md 4.1)."""
ITEMS_PER_KEY = 200
MARGIN_STEPS = (1.5, 2.0, 3.0, 4.0, 6.0)
"""Multiples of the real peak the full mode tries, in order, until one is not lossless."""


def market_items(keys: int = KEYS, per_key: int = ITEMS_PER_KEY) -> list[list[str]]:
    """``keys`` groups of ``per_key`` distinct KRX-like codes, ascending: the groups ``record --keys`` spreads
    an items file of all of them into (in order, 200 per key)."""
    codes = [f"{10 * (1000 + i):06d}" for i in range(keys * per_key)]
    return [codes[k * per_key : (k + 1) * per_key] for k in range(keys)]


def renamed(wl: Workload, items: list[str], frames: int) -> Workload:
    """The first ``frames`` frames of ``wl`` with its items renamed, in order, to ``items`` (``"item":"CODE"``
    of every row; the values hold no item code): the same stream for other items."""
    codes = {old.encode(): new.encode() for old, new in zip(wl.items, items, strict=True)}

    def sub(m: re.Match[bytes]) -> bytes:
        return b'"item":"' + codes[m.group(1)] + b'"'

    n = min(frames, len(wl))
    return Workload([_ITEM.sub(sub, f) for f in wl.frames[:n]], wl.rows_0d[:n], wl.rows_0e[:n], wl.times[:n],
                    list(items))


_ITEM = re.compile(rb'"item":"([^"]*)"')


def _sched(pid: int) -> tuple[int, int, int]:
    """(ns on a CPU, ns runnable but waiting for one, 1 if the main thread is in disk sleep) of ``pid``'s threads
    (``/proc/PID/task/*/schedstat``, ``/proc/PID/stat``): why a process that falls behind uses little CPU."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "schedstat").read_text().split()
            run += int(fields[0])
            wait += int(fields[1])
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return run, wait, int(stat[stat.rindex(b")") + 2 :].split()[0] == b"D")


def _read(out: Path) -> dict[str, Any]:
    """Per run_id: REAL frames in receive order (their recv_ts in ns), 0D/0E rows, items, event kinds."""
    con = duckdb.connect()
    try:
        def scan(table: str) -> str:
            return f"read_parquet('{out}/{table}/date=*/*.parquet', hive_partitioning = true)"

        frames = con.sql(f"SELECT run_id, seq, recv_ts, recv_sub_us FROM {scan('frames')} "
                         "WHERE direction = 'in' AND trnm = 'REAL'").to_arrow_table()
        frames = pa.table({"run_id": frames["run_id"], "seq": frames["seq"], "recv_ns": recv_ns_of(frames)})
        frames = frames.sort_by([("run_id", "ascending"), ("seq", "ascending")])
        runs: dict[str, dict[str, Any]] = {}
        for run_id, recv in zip(frames["run_id"].to_pylist(), frames["recv_ns"].to_pylist(), strict=True):
            runs.setdefault(run_id, {"recv_ns": [], "rows_0d": 0, "rows_0e": 0, "item": "", "events": {}})
            runs[run_id]["recv_ns"].append(recv)
        for table, key in (("orderbook", "rows_0d"), ("afterhours", "rows_0e")):
            if not (out / table).is_dir():
                continue
            for run_id, n, item in con.sql(f"SELECT run_id, count(*), min(item) FROM {scan(table)} "
                                           "GROUP BY run_id").fetchall():
                r = runs.setdefault(run_id, {"recv_ns": [], "rows_0d": 0, "rows_0e": 0, "item": "", "events": {}})
                r[key] = n
                r["item"] = r["item"] or item
        for run_id, kind, n in con.sql(f"SELECT run_id, kind, count(*) FROM {scan('events')} "
                                       "GROUP BY ALL").fetchall():
            if run_id in runs:
                runs[run_id]["events"][kind] = n
    finally:
        con.close()
    return runs


def market_run(cfg: Config, tmp: Path, wl_paths: list[Path], groups: list[list[str]], *, multiple: float,
               seconds: float, tag: str) -> dict[str, Any]:
    """One ``record --keys`` run at ``multiple`` x the real peak per connection: loss, delay, rate, CPU, RSS."""
    wls = [Workload.load(p) for p in wl_paths]
    rows_per_frame = sum(w.rows_per_frame for w in wls) / len(wls)
    rate = multiple * REAL_PEAK_ROWS / rows_per_frame  # frames/s per connection
    out = tmp / f"{tag}-data"
    items_file = tmp / f"{tag}-items.txt"
    items_file.write_text("\n".join(c for g in groups for c in g) + "\n")
    keys_file = tmp / f"{tag}-keys.toml"
    keys_file.write_text("".join(f'[[key]]\nname = "key{k}"\nappkey_env = "KT_BENCH_APPKEY_{k}"\n'
                                 f'secretkey_env = "KT_BENCH_SECRETKEY_{k}"\n' for k in range(len(groups))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_")}
    for k in range(len(groups)):  # a loopback sender: dummy pairs, one per key
        env[f"KT_BENCH_APPKEY_{k}"] = f"bench-appkey-{k}"
        env[f"KT_BENCH_SECRETKEY_{k}"] = f"bench-secret-{k}"
    sender = Sender(tmp, wl_paths, tag, rate=rate, seconds=seconds, expect_items=len(groups[0]),
                    connections=len(groups), loop=cfg.loop, tokens=True)
    log = open(tmp / f"{tag}.record.log", "wb")  # noqa: SIM115 - closed below
    rec = subprocess.Popen(
        [*pin(1), *record_cmd(), "--items-file", str(items_file), "--keys", str(keys_file), "--url", sender.url,
         "--out", str(out), "--types", "0D,0E", "-q", "--duration", f"{seconds + 300:.0f}s",
         "--event-loop", cfg.loop],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    samples: list[tuple[float, float, int]] = []  # (monotonic, cpu s, peak rss)
    sched: list[tuple[float, int, int, int]] = []  # (monotonic, run ns, wait ns, in disk sleep)

    def sample(now: float) -> None:
        samples.append((now, proc_cpu_seconds(rec.pid), proc_rss_bytes(rec.pid)[1]))
        sched.append((now, *_sched(rec.pid)))

    try:
        started_at = watch_record(rec, sender, seconds, log.name, 0.25 if cfg.quick else 0.5, sample)
    finally:
        kill_if_running(rec)
        log.close()
        sender.finish()
    conns = sender.stats()["connections"]
    send_ns = sender.send_ns()
    runs = _read(out)
    group_of = {c: k for k, g in enumerate(groups) for c in g}
    run_of = {group_of.get(r["item"], -1): run_id for run_id, r in runs.items()}
    per_conn: list[dict[str, Any]] = []
    offset = 0
    all_recv: list[int] = []
    for c in conns:
        stamps = send_ns[offset : offset + c["sent"]]
        offset += c["sent"]
        r = runs.get(run_of.get(group_of.get(c["first_item"], -2), ""), {})
        recv = r.get("recv_ns", [])
        all_recv += recv
        n = min(len(stamps), len(recv))
        delays = sorted((recv[i] - stamps[i]) / 1e9 for i in range(n))
        events = r.get("events", {})
        entry = {
            "sent": c["sent"], "written": len(recv),
            "rows_0d_sent": c["rows_0d"], "rows_0d_written": r.get("rows_0d", 0),
            "rows_0e_sent": c["rows_0e"], "rows_0e_written": r.get("rows_0e", 0),
            "delay_p50_s": percentile(delays, 0.5), "delay_p99_s": percentile(delays, 0.99),
            "delay_max_s": delays[-1] if delays else float("nan"),
            "gaps": events.get("gap_start", 0), "reconnects": max(0, events.get("connect", 0) - 1),
            "events": events,
        }
        entry["lossless"] = (entry["sent"] == entry["written"] and entry["rows_0d_sent"] == entry["rows_0d_written"]
                             and entry["rows_0e_sent"] == entry["rows_0e_written"] and entry["gaps"] == 0
                             and entry["reconnects"] == 0
                             and entry["delay_max_s"] <= MAX_DELAY_S)
        per_conn.append(entry)
    rows_sent = sum(c["rows_0d"] + c["rows_0e"] for c in conns)
    rows_written = sum(r["rows_0d"] + r["rows_0e"] for r in runs.values())
    t_first = min(c["t_first_ns"] for c in conns)
    t_last = max(c["t_last_ns"] for c in conns)
    recv_span = (max(all_recv) - min(all_recv)) / 1e9 if len(all_recv) > 1 else 0.0
    res: dict[str, Any] = {
        "multiple": multiple, "seconds": seconds, "connections": len(conns), "runs": len(runs),
        "items": sum(c["items"] for c in conns),
        "offered_frames_per_s": rate * len(conns), "offered_rows_per_s": multiple * REAL_PEAK_ROWS * len(conns),
        "sent": sum(c["sent"] for c in conns), "written": len(all_recv), "rows_sent": rows_sent,
        "rows_written": rows_written,
        "rows_per_s_sent": rows_sent / ((t_last - t_first) / 1e9) if t_last > t_first else float("nan"),
        "rows_per_s_received": rows_written / recv_span if recv_span > 0 else float("nan"),
        "delay_max_s": max((c["delay_max_s"] for c in per_conn), default=float("nan")),
        "gaps": sum(c["gaps"] for c in per_conn),
        "reconnects": sum(c["reconnects"] for c in per_conn),
        "delay_p50_s": percentile([c["delay_p50_s"] for c in per_conn], 0.5),
        "lossless": len(per_conn) == len(groups) and all(c["lossless"] for c in per_conn),
        "per_connection": per_conn, "returncode": rec.returncode,
    }
    if samples:
        t0 = (started_at if started_at is not None else samples[0][0]) + 1.0
        busy = [s for s in samples if s[0] >= t0]
        if len(busy) > 1 and busy[-1][0] > busy[0][0]:
            res["cpu_pct"] = 100.0 * (busy[-1][1] - busy[0][1]) / (busy[-1][0] - busy[0][0])
            res["cpu_window_s"] = busy[-1][0] - busy[0][0]
        res["rss_peak_mib"] = max(s[2] for s in samples) / 2**20
        busy_s = [s for s in sched if s[0] >= t0]
        if len(busy_s) > 1 and busy_s[-1][0] > busy_s[0][0]:
            span_ns = (busy_s[-1][0] - busy_s[0][0]) * 1e9
            # waiting for a CPU (another process has core 1) vs in disk sleep (fdatasync, writes) vs idle
            res["runqueue_wait_pct"] = 100.0 * (busy_s[-1][2] - busy_s[0][2]) / span_ns
            res["disk_sleep_samples_pct"] = 100.0 * sum(s[3] for s in busy_s) / len(busy_s)
    return res


def _summary(r: dict[str, Any]) -> str:
    return (f"{r['multiple']:g}x: {r['rows_per_s_sent']:,.0f} rows/s sent, {r['rows_per_s_received']:,.0f} received, "
            f"{r['written']:,}/{r['sent']:,} frames written, max delay {r['delay_max_s']:.3f} s "
            f"(median {r['delay_p50_s']:.3f}), gaps {r['gaps']}, reconnects {r['reconnects']}, "
            f"CPU {r.get('cpu_pct', float('nan')):.1f} % (waiting for a CPU "
            f"{r.get('runqueue_wait_pct', float('nan')):.0f} % of the time, in disk sleep "
            f"{r.get('disk_sleep_samples_pct', 0):.0f} % of samples), "
            f"peak RSS {r.get('rss_peak_mib', float('nan')):.0f} MiB, "
            f"lossless {r['lossless']}")


def run(cfg: Config, tmp: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    """The market section on ``wl`` (200 items), renamed for each key; in full mode the lossless margin."""
    groups = market_items(per_key=len(wl.items))
    frames = 1_000 if cfg.quick else 4_000  # per connection, cycled by the sender
    wl_paths = []
    for k, group in enumerate(groups):
        path = tmp / f"market-{k}.pkl"
        renamed(wl, group, frames).save(path)
        wl_paths.append(path)
    seconds = 4.0 if cfg.quick else 60.0
    main = market_run(cfg, tmp, wl_paths, groups, multiple=1.0, seconds=seconds, tag="market1")
    log(f"  {len(groups)} keys x {len(groups[0])} items for {seconds:.0f} s at " + _summary(main))
    detail: dict[str, Any] = {"peak": main, "steps": []}
    margin = 1.0 if main["lossless"] else 0.0
    if not cfg.quick and main["lossless"]:
        for m in MARGIN_STEPS:
            r = market_run(cfg, tmp, wl_paths, groups, multiple=m, seconds=20.0, tag=f"market{m:g}")
            detail["steps"].append({k: v for k, v in r.items() if k != "per_connection"})
            log("  step " + _summary(r))
            if not r["lossless"]:
                break
            margin = m
    detail["margin"] = margin
    shape = f"{len(groups)} keys x {len(groups[0])} items, {seconds:.0f} s"
    one_process = "record runs every connection in one process (one event loop) pinned to one core"
    figs = [
        Figure("market", f"CPU of record, full market at the real peak ({shape})", main.get("cpu_pct"),
               "% of a core", note=f"{one_process}; {main['rows_per_s_sent']:,.0f} rows/s sent; runnable but "
               f"waiting for a "
               f"CPU {main.get('runqueue_wait_pct', float('nan')):.0f} % of the time, in disk sleep "
               f"{main.get('disk_sleep_samples_pct', float('nan')):.0f} % of samples")
        .check_at_most(100.0, "<= 100 % (one core)"),
        Figure("market", "peak RSS of record, full market at the real peak", main.get("rss_peak_mib"), "MiB",
               note=f"VmHWM of the one record process, {len(groups)} connections"),
        Figure("market", "rows/s received, full market at the real peak", main["rows_per_s_received"], "rows/s",
               main["rows_per_s_sent"],
               note="ceiling column: rows/s the sender sent (recv_ts span vs send span); offered "
               f"{main['offered_rows_per_s']:,.0f} rows/s (TCP flow control slows the sender when record reads late)"),
    ]
    figs[-1].ratio = (main["rows_per_s_received"] / main["rows_per_s_sent"]) if main["rows_per_s_sent"] else None
    loss = Figure("market", "full market lossless at the real peak", 1.0 if main["lossless"] else 0.0, "",
                  note=f"{main['written']:,} of {main['sent']:,} frames, {main['rows_written']:,} of "
                  f"{main['rows_sent']:,} rows written; max delay {main['delay_max_s']:.3f} s; gaps {main['gaps']}")
    loss.target, loss.verdict = "every frame, no gap", "met" if main["lossless"] else "MISSED"
    figs.append(loss)
    if not cfg.quick:
        steps = ", ".join(f"{s['multiple']:g}x {'ok' if s['lossless'] else 'LOST/LATE'}" for s in detail["steps"])
        fig = Figure("market", "full market lossless margin (x the real peak)", margin, "x",
                     note=f"steps of 20 s: {steps}; {one_process}")
        fig.target, fig.verdict = ">= 1x", "met" if margin >= 1.0 else "MISSED"
        figs.append(fig)
    return figs, detail

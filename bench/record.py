"""Record, lossless: how fast the real ``record`` process keeps up, what it costs at the real peak.

Three measurements, each against the lean sender (:mod:`bench.sender`, pinned to core 0) with the
receiver pinned to core 1:

- **ceiling**: a bare websockets client (:mod:`bench.bare_client`) receiving the same frames as fast as
  TCP delivers them;
- **record at max rate**: ``record --url ws://127.0.0.1:PORT/...`` (the real CLI, a subprocess) takes the
  same stream; with TCP flow control the sender is throttled rather than frames dropped, so the rate
  it sustains with every frame written and none delayed beyond 1 s is its lossless capacity. A paced
  run at 90 % of it confirms the figure (full mode);
- **the real peak**: 200 items x 3.6 Hz = 720 rows/s, paced, for a minute (full) or seconds (quick):
  the CPU share of one core and the RSS of ``record``, sampled from /proc.

"Written" is read back from the dataset: REAL frames in ``frames``, rows in ``orderbook``/``afterhours``.
"Delayed" is a frame's ``recv_ts`` minus the sender's send time (one clock, one machine).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
from kiwoom_tape.schemas.protocol import WS_PATH

from bench.frames import Workload
from bench.machine import kill_if_running, pin, proc_cpu_seconds, proc_rss_bytes, wait_for_file
from bench.report import Config, Figure, median

__all__ = ["REAL_PEAK_ROWS", "bare_receive", "record_run", "run"]

REAL_PEAK_ROWS = 200 * 3.6
"""One connection's real peak: 200 items x ~3.6 0D updates/s (DESIGN.md Targets)."""
MAX_DELAY_S = 1.0


def _record_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "record"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from kiwoom_tape.recorder.cli import main; main()"]


class _Sender:
    """A running :mod:`bench.sender` subprocess."""

    def __init__(self, tmp: Path, wl_path: Path, tag: str, *, mode: str = "raw", rate: float = 0.0,
                 seconds: float = 5.0, expect_items: int = 200, connections: int = 1, close: bool = False,
                 max_frames: int = 0, loop: str = "asyncio") -> None:
        self.ready = tmp / f"{tag}.port"
        self.stats_path = tmp / f"{tag}.sender.json"
        self.started = tmp / f"{tag}.started"
        self.log = open(tmp / f"{tag}.sender.log", "wb")  # noqa: SIM115 - closed in finish()
        cmd = [*pin(0), sys.executable, "-m", "bench.sender", "--frames", str(wl_path), "--ready-file",
               str(self.ready), "--stats", str(self.stats_path), "--started-file", str(self.started),
               "--mode", mode, "--rate", str(rate), "--duration", str(seconds), "--expect-items",
               str(expect_items), "--connections", str(connections), "--max-frames", str(max_frames),
               "--loop", loop]
        if close:
            cmd.append("--close")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_for_file(self.ready, 60, self.proc):
            self.finish()
            raise RuntimeError(f"bench.sender did not start (see {self.log.name})")
        self.port = int(self.ready.read_text())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stats_path.read_text())
        return data

    def send_ns(self) -> array[int]:
        a = array("q")
        with open(str(self.stats_path) + ".send_ns", "rb") as f:
            a.frombytes(f.read())
        return a

    def finish(self, timeout: float = 60) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _sender_rate(conn: dict[str, Any]) -> float:
    """Frames/s from the first send until the PING echo proved everything was read."""
    span = (conn["t_echo_ns"] - conn["t_first_ns"]) / 1e9
    return conn["sent"] / span if span > 0 and conn["t_echo_ns"] else float("nan")


def bare_receive(cfg: Config, tmp: Path, wl_path: Path, items: list[str], seconds: float, tag: str) -> dict[str, Any]:
    """The ceiling: frames/s a bare websockets client receives from the lean sender."""
    sender = _Sender(tmp, wl_path, tag, seconds=seconds, expect_items=len(items), close=True, loop=cfg.loop)
    stats_path = tmp / f"{tag}.client.json"
    client = subprocess.run(
        [*pin(1), sys.executable, "-m", "bench.bare_client", "--url", sender.url, "--items", ",".join(items),
         "--stats", str(stats_path), "--loop", cfg.loop, "--timeout", str(seconds + 120)],
        capture_output=True, timeout=seconds + 180,
    )
    sender.finish()
    if client.returncode != 0:
        raise RuntimeError(f"bench.bare_client failed: {client.stderr.decode()[-2000:]}")
    conn = sender.stats()["connections"][0]
    got = json.loads(stats_path.read_text())["connections"][0]
    return {"rate": _sender_rate(conn), "sent": conn["sent"], "received": got["received"]}


def bare_cpu(cfg: Config, tmp: Path, wl_path: Path, items: list[str], rate: float, seconds: float,
             tag: str) -> float:
    """CPU % of one core a bare websockets client uses to receive ``rate`` frames/s (the floor of any recorder)."""
    sender = _Sender(tmp, wl_path, tag, rate=rate, seconds=seconds + 1.5, expect_items=len(items), close=True,
                     loop=cfg.loop)
    client = subprocess.Popen(
        [*pin(1), sys.executable, "-m", "bench.bare_client", "--url", sender.url, "--items", ",".join(items),
         "--stats", str(tmp / f"{tag}.client.json"), "--loop", cfg.loop, "--timeout", str(seconds + 120)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_file(sender.started, 60, client):
            raise RuntimeError("the bare client did not start receiving")
        time.sleep(1.0)
        a, ta = proc_cpu_seconds(client.pid), time.monotonic()
        time.sleep(seconds)
        b, tb = proc_cpu_seconds(client.pid), time.monotonic()
        client.wait(timeout=seconds + 120)
    finally:
        kill_if_running(client)
        sender.finish()
    return 100.0 * (b - a) / (tb - ta)


def store_path(wl: Workload, fast: bool) -> float:
    """Frames/s (CPU time) through ``Store`` in-process, no socket: the fast path or the general one."""
    from kiwoom_tape.recorder.store import Store
    from kiwoom_tape.schemas.protocol import ClientSession, RealData

    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-store-") as d:
        store = Store(d, "20261123T000000Z-bench2")
        store.open()
        session = ClientSession(token="bench")
        ns = time.time_ns()
        t = time.process_time()
        try:
            for data in wl.frames:
                if fast and store.add_real_frame(ns, data) is not None:
                    continue
                for ev in session.receive(data.decode("utf-8"), 0.0):  # the general path, as before bytes
                    if isinstance(ev, RealData):
                        store.add_frame(ns, "in", ev.text, rows=ev.rows, trnm="REAL")
        finally:
            store.close()
        return len(wl.frames) / (time.process_time() - t)


def _read_dataset(out: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"frames": 0, "orderbook": 0, "afterhours": 0, "recv_ns": array("q")}
    fdir = out / "frames"
    if fdir.exists():
        t = ds.dataset(fdir, format="parquet", partitioning="hive").to_table(
            columns=["recv_ts", "seq", "direction", "trnm", "run_id"]
        )
        mask = pc.and_(pc.equal(t["direction"], "in"), pc.equal(t["trnm"], "REAL"))
        t = t.filter(mask).sort_by([("run_id", "ascending"), ("seq", "ascending")])
        res["frames"] = t.num_rows
        res["recv_ns"] = array("q", t["recv_ts"].cast("int64").to_pylist())
        res["runs"] = len(set(t["run_id"].to_pylist()))
    for table in ("orderbook", "afterhours"):
        d = out / table
        if d.exists():
            res[table] = ds.dataset(d, format="parquet", partitioning="hive").count_rows()
    return res


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def _slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) samples, in MiB per minute."""
    if len(samples) < 3:
        return float("nan")
    xs = [t for t, _ in samples]
    ys = [b / 2**20 for _, b in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def _growth(samples: list[tuple[float, float, int, int]], t0: float, seconds: float,
            stat: Callable[[list[int]], float]) -> float:
    """MiB per minute between ``stat`` of the RSS in [25 %, 50 %) and in [75 %, 100 %] of the run."""
    def window(lo: float, hi: float) -> list[int]:
        return [rss for t, _c, rss, _h in samples if lo * seconds <= t - t0 < hi * seconds]

    early, late = window(0.25, 0.5), window(0.75, 1.01)
    if not early or not late:
        return float("nan")
    return (stat(late) - stat(early)) / 2**20 / (0.5 * seconds / 60.0)


def footer_bytes_per_row_group(table: str = "orderbook", groups: int = 400) -> float:
    """Memory an open ``ParquetWriter`` of ``table`` keeps per row group written (its footer), in bytes.

    Parquet writes the footer (every row group's metadata, about 850 B per column here) when the file
    closes, so until the segment rolls the writer holds it: a growth bounded by the roll, not a leak.
    Measured in-process with the store's options on tiny row groups, from RSS.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from kiwoom_tape.recorder.store import parquet_options
    from kiwoom_tape.schemas.tables import TABLES

    schema = TABLES[table]
    n = 16
    cols: list[Any] = []
    for f in schema:
        t = f.type
        if pa.types.is_string(t):
            cols.append(pa.array([f"v{i}" for i in range(n)], pa.string()))
        elif pa.types.is_timestamp(t):
            cols.append(pa.array(range(n), pa.int64()).cast(t))
        else:
            cols.append(pa.array(range(n), pa.int8()).cast(t))
    batch = pa.RecordBatch.from_arrays(cols, schema=schema)
    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-footer-") as d:
        writer = pq.ParquetWriter(f"{d}/x.parquet", schema, **parquet_options(table))
        try:
            for _ in range(groups // 4):  # warm up the allocator
                writer.write_batch(batch)
            before = proc_rss_bytes(os.getpid())[0]
            for _ in range(groups):
                writer.write_batch(batch)
            after = proc_rss_bytes(os.getpid())[0]
        finally:
            writer.close()
    return (after - before) / groups


def record_run(cfg: Config, tmp: Path, wl_path: Path, wl: Workload, *, rate: float, seconds: float, tag: str,
               cpu_window: float = 0.0, sample_every: float = 0.25,
               record_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``record`` subprocess taking the sender's stream: loss, delay, rate, CPU and RSS."""
    out = tmp / f"{tag}-data"
    items = wl.items
    sender = _Sender(tmp, wl_path, tag, rate=rate, seconds=seconds, expect_items=len(items), loop=cfg.loop)
    log = open(tmp / f"{tag}.record.log", "wb")  # noqa: SIM115 - closed below
    env = dict(os.environ, KIWOOM_TOKEN="bench")
    rec = subprocess.Popen(
        [*pin(1), *_record_cmd(), "--items", ",".join(items), "--url", sender.url, "--out", str(out), "-q",
         "--duration", f"{seconds + 300:.0f}s", "--event-loop", cfg.loop, *record_args],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    samples: list[tuple[float, float, int, int]] = []  # (monotonic, cpu s, rss, hwm)
    started_at: float | None = None
    try:
        deadline = time.monotonic() + seconds + 240
        while not sender.stats_path.exists():
            if rec.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"record stopped early or the run timed out (see {log.name})")
            now = time.monotonic()
            if started_at is None and sender.started.exists():
                started_at = now
            try:
                rss, hwm = proc_rss_bytes(rec.pid)
                samples.append((now, proc_cpu_seconds(rec.pid), rss, hwm))
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(sample_every)
        rec.send_signal(signal.SIGTERM)
        rec.wait(timeout=300)
    finally:
        kill_if_running(rec)
        log.close()
        sender.finish()
    st = sender.stats()
    conns = st["connections"]
    conn = conns[0]
    got = _read_dataset(out)
    send_ns = sender.send_ns()[: conn["sent"]]
    recv_ns = got["recv_ns"]
    n = min(len(send_ns), len(recv_ns))
    delays = sorted((recv_ns[i] - send_ns[i]) / 1e9 for i in range(n))
    span = (recv_ns[-1] - recv_ns[0]) / 1e9 if len(recv_ns) > 1 else 0.0
    res: dict[str, Any] = {
        "offered_rate": rate,
        "sent": conn["sent"],
        "written": got["frames"],
        "lost": conn["sent"] - got["frames"],
        "rows_0d_sent": conn["rows_0d"],
        "rows_0d_written": got["orderbook"],
        "rows_0e_sent": conn["rows_0e"],
        "rows_0e_written": got["afterhours"],
        "connections": len(conns),
        "rate": _sender_rate(conn),
        "recorder_rate": (len(recv_ns) - 1) / span if span > 0 else float("nan"),
        "delay_p50_s": _percentile(delays, 0.5),
        "delay_p99_s": _percentile(delays, 0.99),
        "delay_max_s": delays[-1] if delays else float("nan"),
        "returncode": rec.returncode,
    }
    res["lossless"] = (
        res["lost"] == 0 and res["rows_0d_sent"] == res["rows_0d_written"]
        and res["rows_0e_sent"] == res["rows_0e_written"] and res["delay_max_s"] <= MAX_DELAY_S
    )
    if samples:
        t0 = started_at if started_at is not None else samples[0][0]
        res["rss_peak_mib"] = max(s[3] for s in samples) / 2**20
        res["rss_last_mib"] = samples[-1][2] / 2**20
        # Growth with time, robust to the sawtooth of the flushes (every 10k rows, ~14 s at the peak): the
        # median RSS of the last quarter of the run minus that of the second quarter, per minute.
        res["rss_slope_mib_per_min"] = _growth(samples, t0, seconds, median)
        res["rss_envelope_mib_per_min"] = _growth(samples, t0, seconds, max)
        res["rss_slope_whole_mib_per_min"] = _slope_per_minute(
            [(t - t0, rss) for t, _c, rss, _h in samples if t - t0 >= min(10.0, seconds / 4)])
        res["rss_mib_at"] = {
            f"{q:.0%}": round(min(samples, key=lambda smp: abs(smp[0] - t0 - q * seconds))[2] / 2**20, 1)
            for q in (0.1, 0.25, 0.5, 0.75, 1.0)
        }
        res["rss_samples"] = [(round(t - t0, 2), rss) for t, _c, rss, _h in samples[:: max(1, len(samples) // 200)]]
        busy = [s for s in samples if s[0] >= t0]
        if len(busy) > 1 and busy[-1][0] > busy[0][0]:
            res["busy_pct"] = 100.0 * (busy[-1][1] - busy[0][1]) / (busy[-1][0] - busy[0][0])
        if cpu_window:
            a_t = t0 + 1.0
            b_t = a_t + cpu_window
            a = min(samples, key=lambda s: abs(s[0] - a_t))
            b = min(samples, key=lambda s: abs(s[0] - b_t))
            if b[0] > a[0]:
                res["cpu_pct"] = 100.0 * (b[1] - a[1]) / (b[0] - a[0])
                res["cpu_window_s"] = b[0] - a[0]
            whole = [s for s in samples if s[0] >= t0 + 1.0]
            if len(whole) > 1 and whole[-1][0] > whole[0][0]:
                res["cpu_pct_whole_run"] = 100.0 * (whole[-1][1] - whole[0][1]) / (whole[-1][0] - whole[0][0])
    return res


def _footer_in_fresh_process() -> float:
    """:func:`footer_bytes_per_row_group` in a new process (memory freed earlier would be reused)."""
    code = "from bench.record import footer_bytes_per_row_group as f; print(f())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.strip())


def run(cfg: Config, tmp: Path, wl_path: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    """The record section: ceiling, lossless max rate, CPU and memory at the real peak."""
    items = wl.items
    detail: dict[str, Any] = {"ceiling_runs": [], "max_runs": []}
    for k in range(cfg.repeats):
        r = bare_receive(cfg, tmp, wl_path, items, cfg.record_seconds, f"bare{k}")
        detail["ceiling_runs"].append(r)
        log(f"  bare receive run {k + 1}: {r['rate']:,.0f} frames/s")
    for k in range(cfg.repeats):
        r = record_run(cfg, tmp, wl_path, wl, rate=0.0, seconds=cfg.record_seconds, tag=f"recmax{k}")
        detail["max_runs"].append({key: v for key, v in r.items() if key != "rss_samples"})
        log(f"  record max run {k + 1}: {r['rate']:,.0f} frames/s, lost {r['lost']}, "
            f"max delay {r['delay_max_s']:.3f} s, lossless {r['lossless']}")
    ceiling = median([r["rate"] for r in detail["ceiling_runs"]])
    rates = [r["rate"] for r in detail["max_runs"]]
    lossless = all(r["lossless"] for r in detail["max_runs"])
    rows_per_frame = wl.rows_per_frame
    figs: list[Figure] = []
    rec = Figure("record", "record, lossless, max rate", median(rates), "frames/s", ceiling, runs=rates,
                 note=f"{rows_per_frame:.2f} rows/frame; lossless in every run: {lossless}")
    rec.check_ratio(0.40)
    if not lossless:
        rec.verdict = "MISSED"
        rec.note += " (a run lost or delayed frames)"
    if cfg.confirm_seconds > 0 and rates:
        target = 0.9 * median(rates)
        r = record_run(cfg, tmp, wl_path, wl, rate=target, seconds=cfg.confirm_seconds, tag="recconfirm")
        detail["confirm"] = {key: v for key, v in r.items() if key != "rss_samples"}
        log(f"  record paced at {target:,.0f} frames/s for {cfg.confirm_seconds:.0f} s: lost {r['lost']}, "
            f"max delay {r['delay_max_s']:.3f} s")
        rec.note += (f"; paced {cfg.confirm_seconds:.0f} s at 90 %: lost {r['lost']}, "
                     f"max delay {r['delay_max_s']:.2f} s")
        if not r["lossless"]:
            rec.verdict = "MISSED"
    figs.append(Figure("record", "bare websockets receive (ceiling)", ceiling, "frames/s",
                       runs=[r["rate"] for r in detail["ceiling_runs"]]))
    figs.append(rec)
    figs.append(Figure("record", "record, rows/s at max rate", median(rates) * rows_per_frame, "rows/s"))
    # The real peak: CPU over the window, RSS over the whole (memory) run.
    peak_fps = REAL_PEAK_ROWS / rows_per_frame
    seconds = max(cfg.cpu_seconds, cfg.memory_seconds) + 2.0
    # Segments roll every fifth of the run, so the memory run sees several: each open Parquet writer keeps
    # its file's footer until the roll (footer_bytes_per_row_group), a growth the roll bounds; what is
    # left over the rolls is what would grow without bound.
    roll_minutes = max(0.1, seconds / 5 / 60)
    r = record_run(cfg, tmp, wl_path, wl, rate=peak_fps, seconds=seconds, tag="recpeak", cpu_window=cfg.cpu_seconds,
                   sample_every=0.25 if cfg.quick else 1.0, record_args=("--roll-minutes", f"{roll_minutes:.2f}"))
    detail["peak"] = r
    log(f"  record at the real peak ({peak_fps:.0f} frames/s) for {seconds:.0f} s: CPU {r.get('cpu_pct', 0):.2f} %, "
        f"peak RSS {r.get('rss_peak_mib', 0):.0f} MiB, lost {r['lost']}")
    floor = [bare_cpu(cfg, tmp, wl_path, items, peak_fps, cfg.cpu_seconds, f"barecpu{k}") for k in range(cfg.repeats)]
    detail["bare_cpu_at_peak"] = floor
    log(f"  a bare websockets client at the same rate: CPU {median(floor):.2f} % ({[round(x, 2) for x in floor]})")
    figs.append(Figure("record", f"CPU of record at 720 rows/s ({cfg.cpu_seconds:.0f} s)", r.get("cpu_pct"),
                       "% of a core", median(floor),
                       note=f"ceiling column: a bare websockets client at the same rate; whole run: "
                       f"{r.get('cpu_pct_whole_run', float('nan')):.2f} %; lost {r['lost']}, "
                       f"max delay {r['delay_max_s']:.3f} s")
                .check_at_most(3.0, "<= 3 %"))
    figs[-1].ratio = (r["cpu_pct"] / median(floor)) if r.get("cpu_pct") and median(floor) else None
    if cfg.loop == "asyncio" and importlib.util.find_spec("uvloop") is not None:
        # what `record --event-loop auto` uses when the `fast` extra is installed, against the same floor
        uv = dataclasses.replace(cfg, loop="uvloop")
        ru = record_run(uv, tmp, wl_path, wl, rate=peak_fps, seconds=cfg.cpu_seconds + 2.0, tag="recpeakuv",
                        cpu_window=cfg.cpu_seconds, sample_every=0.25 if cfg.quick else 1.0)
        floor_uv = bare_cpu(uv, tmp, wl_path, items, peak_fps, cfg.cpu_seconds, "barecpuuv")
        detail["uvloop_peak"] = {k: v for k, v in ru.items() if k != "rss_samples"}
        detail["bare_cpu_at_peak_uvloop"] = floor_uv
        log(f"  the same on uvloop: record CPU {ru.get('cpu_pct', 0):.2f} %, bare client {floor_uv:.2f} %")
        figs.append(Figure("record", f"CPU of record at 720 rows/s, uvloop ({cfg.cpu_seconds:.0f} s)",
                           ru.get("cpu_pct"), "% of a core", floor_uv,
                           note=f"ceiling column: a bare websockets client on uvloop; lost {ru['lost']}")
                    .check_at_most(3.0, "<= 3 %"))
        figs[-1].ratio = (ru["cpu_pct"] / floor_uv) if ru.get("cpu_pct") and floor_uv else None
    # The store path alone, in-process (no socket): the fast path vs the general path it replaced.
    sp = {kind: [store_path(wl, kind == "fast") for _ in range(cfg.repeats)] for kind in ("general", "fast")}
    detail["store_path"] = sp
    log(f"  store path in-process: general {median(sp['general']):,.0f} frames/s, fast {median(sp['fast']):,.0f}")
    speedup = median(sp["fast"]) / median(sp["general"])
    figs.append(Figure("record", "store path in-process (no socket), fast path", median(sp["fast"]), "frames/s",
                       runs=sp["fast"], note=f"CPU time; the general path it replaced: {median(sp['general']):,.0f} "
                       f"frames/s ({speedup:.2f}x)"))
    figs.append(Figure("memory", f"peak RSS of record at 720 rows/s ({seconds:.0f} s)", r.get("rss_peak_mib"), "MiB",
                       note=f"segments rolled every {roll_minutes:.2f} min"))
    at = r.get("rss_mib_at", {})
    figs.append(Figure("memory", "RSS growth with time (peak of each window)", r.get("rss_envelope_mib_per_min"),
                       "MiB/min",
                       note="peak RSS of the last quarter of the run minus that of the second quarter, per minute; "
                       f"with medians instead {r.get('rss_slope_mib_per_min', float('nan')):.2f} MiB/min; "
                       f"least-squares slope after 10 s {r.get('rss_slope_whole_mib_per_min', float('nan')):.2f} "
                       f"MiB/min; RSS at 10/25/50/75/100 %: {'/'.join(str(v) for v in at.values())} MiB")
                .check_at_most(0.5, "flat (<= 0.5 MiB/min)"))
    footer = [_footer_in_fresh_process() for _ in range(cfg.repeats)]
    detail["footer_bytes_per_row_group"] = footer
    groups_per_min = 60.0 * REAL_PEAK_ROWS / 10_000  # the store writes a row group per 10,000 rows
    per_min = median(footer) * groups_per_min / 2**20
    figs.append(Figure("memory", "open writer's footer per orderbook row group", median(footer) / 1024, "KiB",
                       note=f"held until the segment rolls: at the real peak {per_min:.2f} MiB/min"
                       " while a segment is open, reset by each roll (128 MiB or 60 min by default)"))
    return figs, detail

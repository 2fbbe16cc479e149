"""One run of the real ``record`` CLI (a subprocess pinned to core 1) taking the lean sender's stream: frames lost,
delay, rate, CPU and RSS, read back from the dataset it wrote and sampled from /proc.

"Written" is read back from the dataset: REAL frames in ``frames``, rows in ``orderbook``/``afterhours``.
"Delayed" is a frame's ``recv_ts`` minus the sender's send time (one clock, one machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
from kiwoom_tape.schemas.versions import recv_ns_of

from bench.frames import Workload
from bench.machine import kill_if_running, pin, proc_cpu_seconds, proc_rss_bytes
from bench.memory import WINDOW_S, rss_estimate
from bench.report import Config, percentile
from bench.sender_process import Sender, sender_rate

__all__ = ["MAX_DELAY_S", "read_dataset", "record_cmd", "record_run"]

MAX_DELAY_S = 1.0
"""A frame written later than this after it was sent is a delayed one: the run is not lossless."""


def record_cmd(prelude: str = "") -> list[str]:
    """The ``record`` command; with ``prelude`` (Python run first, e.g. a bench variant's setting), through -c."""
    exe = Path(sys.executable).parent / "record"
    if exe.exists() and not prelude:
        return [str(exe)]
    return [sys.executable, "-c", f"{prelude}\nfrom kiwoom_tape.relay_cli import main; main()"]


def read_dataset(out: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"frames": 0, "orderbook": 0, "afterhours": 0, "recv_ns": array("q")}
    fdir = out / "frames"
    if fdir.exists():
        t = ds.dataset(fdir, format="parquet", partitioning="hive").to_table(
            columns=["recv_ts", "recv_sub_us", "seq", "direction", "trnm", "run_id"]
        )
        mask = pc.and_(pc.equal(t["direction"], "in"), pc.equal(t["trnm"], "REAL"))
        t = t.filter(mask).sort_by([("run_id", "ascending"), ("seq", "ascending")])
        res["frames"] = t.num_rows
        res["recv_ns"] = array("q", recv_ns_of(t).to_pylist())
        res["runs"] = len(set(t["run_id"].to_pylist()))
    for table in ("orderbook", "afterhours"):
        d = out / table
        if d.exists():
            res[table] = ds.dataset(d, format="parquet", partitioning="hive").count_rows()
    return res


def watch_record(rec: subprocess.Popen[bytes], sender: Sender, seconds: float, log_name: str, every: float,
                 sample: Callable[[float], None]) -> float | None:
    """Call ``sample(monotonic now)`` every ``every`` s while ``rec`` records from ``sender`` (a sample that
    fails reading /proc is skipped), until the sender has written its stats; then stop ``rec`` with SIGTERM.
    Returns when the sender started sending (monotonic), or None. RuntimeError if ``rec`` stops early or the run
    outlasts ``seconds`` + 240 s."""
    started_at: float | None = None
    deadline = time.monotonic() + seconds + 240
    while not sender.stats_path.exists():
        if rec.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"record stopped early or the run timed out (see {log_name})")
        now = time.monotonic()
        if started_at is None and sender.started.exists():
            started_at = now
        with contextlib.suppress(OSError, ValueError, IndexError):
            sample(now)
        time.sleep(every)
    rec.send_signal(signal.SIGTERM)
    rec.wait(timeout=300)
    return started_at


def record_run(cfg: Config, tmp: Path, wl_path: Path, wl: Workload, *, rate: float, seconds: float, tag: str,
               cpu_window: float = 0.0, sample_every: float = 0.25,
               record_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
               window_s: float = WINDOW_S, prelude: str = "",
               on_spawn: Callable[[int], None] | None = None) -> dict[str, Any]:
    """One ``record`` subprocess taking the sender's stream: loss, delay, rate, CPU and RSS.

    ``env``: more environment variables for ``record``; ``window_s``: the RSS estimator's window
    (:func:`bench.memory.rss_estimate`); ``prelude``: Python code ``record`` runs first (:func:`record_cmd`);
    ``on_spawn``: called with ``record``'s pid once it is started (a profiler attaches there)."""
    out = tmp / f"{tag}-data"
    items = wl.items
    sender = Sender(tmp, wl_path, tag, rate=rate, seconds=seconds, expect_items=len(items), loop=cfg.loop)
    log = open(tmp / f"{tag}.record.log", "wb")  # noqa: SIM115 - closed below
    env = dict(os.environ, KIWOOM_TOKEN="bench", **(env or {}))
    rec = subprocess.Popen(
        [*pin(1), *record_cmd(prelude), "--items", ",".join(items), "--url", sender.url, "--out", str(out), "-q",
         "--duration", f"{seconds + 300:.0f}s", "--event-loop", cfg.loop, *record_args],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    if on_spawn is not None:
        on_spawn(rec.pid)
    samples: list[tuple[float, float, int, int]] = []  # (monotonic, cpu s, rss, hwm)

    def sample(now: float) -> None:
        rss, hwm = proc_rss_bytes(rec.pid)
        samples.append((now, proc_cpu_seconds(rec.pid), rss, hwm))

    try:
        started_at = watch_record(rec, sender, seconds, log.name, sample_every, sample)
    finally:
        kill_if_running(rec)
        log.close()
        sender.finish()
    st = sender.stats()
    conns = st["connections"]
    conn = conns[0]
    got = read_dataset(out)
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
        "rate": sender_rate(conn),
        "recorder_rate": (len(recv_ns) - 1) / span if span > 0 else float("nan"),
        "delay_p50_s": percentile(delays, 0.5),
        "delay_p99_s": percentile(delays, 0.99),
        "delay_max_s": delays[-1] if delays else float("nan"),
        "returncode": rec.returncode,
    }
    res["lossless"] = (
        res["lost"] == 0 and res["rows_0d_sent"] == res["rows_0d_written"]
        and res["rows_0e_sent"] == res["rows_0e_written"] and res["delay_max_s"] <= MAX_DELAY_S
    )
    if samples:
        t0 = started_at if started_at is not None else samples[0][0]
        # Peak and growth by the estimator stated before the run (bench.memory): medians per window,
        # least-squares slope over them; the peak is the largest sample (or VmHWM, if higher).
        est = rss_estimate([(t - t0, rss) for t, _c, rss, _h in samples], window_s, max(s[3] for s in samples))
        res["rss_peak_mib"] = est.peak_mib
        res["rss_last_mib"] = samples[-1][2] / 2**20
        res["rss_growth_mib_per_min"] = est.growth_mib_per_min
        res["rss_window_s"] = est.window_s
        res["rss_window_medians_mib"] = est.window_medians_mib
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

"""Where ``record``'s time goes: py-spy samples the real ``record`` process while the lean sender feeds it.

The run is the record section's max-rate run (:func:`bench.record_run.record_run`: the lean sender on core 0
as fast as TCP lets it, ``record`` on core 1, every frame read back), with py-spy attached to ``record`` from
outside (``--nonblocking``, so the process is not paused; idle samples are left out by py-spy). The samples
are folded three ways: into named parts (a sample counts for the innermost frame a part names, so the shares
add up to 1), into the source lines the process was on (the innermost frame: a line calling msgspec or
pyarrow is where that C code ran), and into CPU microseconds per frame (share x ``record``'s CPU time over
the frames it took). Needs py-spy (``pip install -e '.[profile]'``)::

    python -m bench.profile_record --out bench/results/profile-record-2026-12-03.json
"""

from __future__ import annotations

import argparse
import json
import linecache
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.frames import make_workload
from bench.machine import machine_info
from bench.record_run import record_run
from bench.report import Config

__all__ = ["PARTS", "Folded", "fold", "main", "parse_frame", "part_of"]

PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "read_real_frame: the fast path's reading (decodes and checks)": (("read_real_frame", ""),),
    "buffering the rows (_buffer_parsed)": (("_buffer_parsed", ""),),
    "building Arrow batches from the buffered rows": (("flush", "schemas/"),),
    "pyarrow's Parquet writer (encoding, compression, file write)": (("write", "parquet_parts.py"),),
    "the rest of the flush (the sort by item, the loop)": (("_flush", ""),),
    "journal (append_frame, sync)": (("append_frame", ""), ("sync", "journal.py"), ("maybe_sync", "")),
    "websockets: receiving and parsing the frames": (("", "websockets/"),),
    "the receive loop and per-frame bookkeeping (their own lines)": (
        ("_receive_loop", ""), ("add_received", ""), ("_journal_frame", ""), ("_drain", "")),
    "the event loop (asyncio, uvloop) and other tasks": (("", "asyncio/"), ("", "uvloop/")),
}
"""The parts a sample is counted in: the innermost frame of its stack that one of them names, by function name
(py-spy gives qualified names, ``Class.method``: the last part is compared) and a part of its file path ("" for
any); a sample no part names counts as "other". The shares add up to 1."""

DECODER_CALL = re.compile(r"_read_frame\(|read_strs\(|read_nums\(|read_every\(|_read_other\(")
"""A source line of :mod:`kiwoom_tape.schemas.fastpath` that calls one of its msgspec decoders."""

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*):(?P<line>\d+)\)$")


def parse_frame(text: str) -> tuple[str, str, int]:
    """``func (file:line)`` of py-spy's raw format as (func, file, line); line 0 when there is none."""
    m = _FRAME.match(text.strip())
    if m is None:
        return text.strip(), "", 0
    return m["func"], m["file"], int(m["line"])


def part_of(stack: list[tuple[str, str, int]]) -> str:
    """The part (a key of :data:`PARTS`, or "other") of a sample: the innermost frame a part names."""
    for func, file, _ in reversed(stack):
        for name, keys in PARTS.items():
            if any((not f or func == f or func.endswith("." + f)) and (not p or p in file) for f, p in keys):
                return name
    return "other"


@dataclass
class Folded:
    """A profile folded: samples in all, per part, per innermost line, per function (inclusive)."""

    samples: int
    parts: dict[str, int]
    leaf_lines: Counter[tuple[str, str, int]]
    functions: Counter[str]
    decoder_lines: int
    idle: int = 0

    def share(self, n: int) -> float:
        return n / self.samples if self.samples else float("nan")


def fold(lines: Iterable[str]) -> Folded:
    """Fold py-spy ``--format raw`` lines (``frame;frame;...;frame COUNT``, outermost first).

    A sample whose innermost frame is the selector's wait (``EpollSelector.select``: the event loop waiting for
    the socket) is idle time py-spy did not leave out: it counts in ``idle``, not in ``samples``."""
    total = idle = 0
    parts = dict.fromkeys([*PARTS, "other"], 0)
    leaves: Counter[tuple[str, str, int]] = Counter()
    functions: Counter[str] = Counter()
    decoder = 0
    for line in lines:
        stack_text, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        n = int(count_text)
        stack = [parse_frame(f) for f in stack_text.split(";") if f]
        if not stack:
            continue
        if stack[-1][0].endswith("select") and stack[-1][1].endswith("selectors.py"):
            idle += n
            continue
        total += n
        parts[part_of(stack)] += n
        for func in {f[0] for f in stack}:
            functions[func] += n
        leaf = stack[-1]
        leaves[leaf] += n
        if leaf[1].endswith("fastpath.py") and DECODER_CALL.search(linecache.getline(_source(leaf[1]), leaf[2])):
            decoder += n
    return Folded(total, parts, leaves, functions, decoder, idle)


def _source(file: str) -> str:
    """py-spy names files by their path, sometimes shortened to the part below site-packages or the root."""
    if os.path.isabs(file) or os.path.exists(file):
        return file
    root = Path(__file__).resolve().parent.parent
    for base in (root, root / "kiwoom_tape"):
        if (base / file).exists():
            return str(base / file)
    return file


def _count(line: str) -> int:
    tail = line.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


def _pyspy(pid: int, out: Path, seconds: float, rate: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--rate", str(rate),
                             "--duration", f"{seconds:.0f}", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile(seconds: float, rate_hz: int, rows: int, loop: str, offered: float = 0.0) -> dict[str, Any]:
    """One profiled run of ``record`` (``offered`` frames/s, 0: as fast as it takes them): the folded profile
    and the run's own figures."""
    wl = make_workload(rows)
    cfg = Config.make(False)
    cfg.loop = loop
    spy: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-profile-") as d:
        tmp = Path(d)
        wl_path = tmp / "workload.pkl"
        wl.save(wl_path)
        raw = tmp / "record.folded"

        def attach(pid: int) -> None:
            def later() -> None:
                time.sleep(2.0)  # record's imports; samples while it waits for the socket are idle (fold)
                spy["p"] = _pyspy(pid, raw, seconds, rate_hz)
            threading.Thread(target=later, daemon=True).start()

        run = record_run(cfg, tmp, wl_path, wl, rate=offered, seconds=seconds + 2.0, tag="profile", on_spawn=attach)
        p = spy.get("p")
        err = b""
        if p is not None:
            _, err = p.communicate(timeout=60)
        if not raw.exists():
            raise SystemExit(f"py-spy wrote no profile: {err.decode(errors='replace').strip()[-400:]}\n"
                             "Install it with: pip install -e '.[profile]'")
        text = raw.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = {k: v for k, v in run.items() if k != "rss_samples"}
    head: dict[str, Any] = {
        "kind": "profile-record",
        "workload": wl.summary(),
        "event_loop": loop,
        "offered_frames_per_s": offered or "as fast as record takes them",
        "seconds": seconds,
        "py_spy_rate_hz": rate_hz,
        "run": kept,
    }
    return {**head, **summary(text, kept)}


def summary(text: list[str], run: dict[str, Any]) -> dict[str, Any]:
    """The folded profile of py-spy's raw ``text`` lines, in CPU us per frame of the ``record_run`` result ``run``."""
    f = fold(text)
    frames_per_s = run["recorder_rate"]
    busy = run.get("busy_pct", float("nan")) / 100.0  # record's CPU share while the stream ran
    us_per_frame = busy / frames_per_s * 1e6 if frames_per_s else float("nan")

    def line_text(leaf: tuple[str, str, int]) -> str:
        return linecache.getline(_source(leaf[1]), leaf[2]).strip()

    return {
        "cpu_us_per_frame": us_per_frame,
        "samples": f.samples,
        "idle_samples_left_out": f.idle,
        "parts": {name: {"share": f.share(n), "us_per_frame": f.share(n) * us_per_frame}
                  for name, n in f.parts.items()},
        "msgspec_decoder_lines": {"share": f.share(f.decoder_lines),
                                  "us_per_frame": f.share(f.decoder_lines) * us_per_frame,
                                  "what": "innermost frame on a line of schemas/fastpath.py that calls a decoder"},
        "top_lines": [{"func": leaf[0], "file": leaf[1], "line": leaf[2], "source": line_text(leaf),
                       "share": f.share(n)} for leaf, n in f.leaf_lines.most_common(25)],
        "top_functions_inclusive": [{"func": func, "share": f.share(n)} for func, n in f.functions.most_common(40)],
        "folded": sorted(text, key=_count, reverse=True),
    }


def _print(res: dict[str, Any]) -> None:
    print(f"record: {res['run']['recorder_rate']:,.0f} frames/s, {res['cpu_us_per_frame']:.1f} CPU us/frame, "
          f"{res['samples']} samples ({res['idle_samples_left_out']} idle left out)")
    for name, v in res["parts"].items():
        print(f"  {v['share']:6.1%} {v['us_per_frame']:6.1f} us  {name}")
    v = res["msgspec_decoder_lines"]
    print(f"  {v['share']:6.1%} {v['us_per_frame']:6.1f} us  of which on msgspec decoder lines")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the JSON file to write (bench/results/profile-...)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long py-spy samples (default 20)")
    ap.add_argument("--sample-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    ap.add_argument("--frames-per-s", type=float, default=0.0,
                    help="the sender's pace (default 0: as fast as record takes them; the real peak is 550)")
    ap.add_argument("--rows", type=int, default=40_000, help="0D rows of the workload (default 40,000)")
    ap.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--refold", action="store_true",
                    help="fold the samples stored in --out again (after a change to the parts), without a run")
    args = ap.parse_args(argv)
    if args.refold:
        stored = json.loads(args.out.read_text(encoding="utf-8"))
        stored.update(summary(stored["folded"], stored["run"]))
        args.out.write_text(json.dumps(stored, indent=1, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
        _print(stored)
        return
    load_before = os.getloadavg()
    res = profile(args.seconds, args.sample_rate, args.rows, args.event_loop, args.frames_per_s)
    res = {"machine": machine_info(), "load_before": load_before, "load_after": os.getloadavg(), **res}
    args.out.write_text(json.dumps(res, indent=1, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    _print(res)


if __name__ == "__main__":
    main()

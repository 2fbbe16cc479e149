"""Crash recovery: turning the journals a dead run left into Parquet files, and saying what was lost.

DESIGN.md "Reliability" is the spec; :func:`recover` is safe to run any time, and twice. Files a
crashed run was writing are garbage (their rows are in the journal): recovery deletes the recorder's files
directly in ``ROOT/_tmp/`` of runs that are not running, as the ``_tmp/`` contract of :mod:`kiwoom_tape.schemas.layout`
says (never a subfolder: those belong to other writers), and the ``.tmp`` files that datasets written
before ``_tmp/`` existed keep in their partitions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from kiwoom_tape.recorder.journal import (
    JOURNAL_SUFFIX,
    NEW_SUFFIX,
    FrameRecord,
    JournalBusy,
    JournalFormatError,
    JournalScan,
    JournalWriter,
    Record,
    iter_journal_at,
    storage_error,
)
from kiwoom_tape.recorder.journal_io import torn_path
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import StorageError

__all__ = ["RecoveryReport", "recover"]

log = logging.getLogger("kiwoom_tape.recorder")

TABLE_NAMES = layout.TABLE_NAMES


@dataclass
class RecoveryReport:
    """What :func:`recover` did. :attr:`dropped` says whether anything could not be recovered."""

    segments: int = 0
    """Journal segments turned into Parquet files (and deleted)."""
    frames: int = 0
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written per table, the ``recovery``, ``journal_damage`` and crash ``gap_start`` events included."""
    torn_bytes: int = 0
    """Unreadable journal bytes (torn tails and damage anywhere), all kept in ``.torn`` files."""
    frames_lost: int = 0
    """Frames known to be in those bytes (from the frame numbers around each range; a lower bound)."""
    damage: list[str] = field(default_factory=list)
    """One line per unreadable range: journal, byte range, frames lost, where the bytes were kept."""
    files: list[str] = field(default_factory=list)
    """Parquet files written (or rewritten with the same rows)."""
    removed: list[str] = field(default_factory=list)
    """Stray Parquet files being written (in ``_tmp/``, or ``.tmp`` in a partition) and half-created or empty
    journals deleted (garbage of a crash)."""
    skipped: list[str] = field(default_factory=list)
    """Journals left alone because a running recorder holds them."""
    unreadable: list[str] = field(default_factory=list)
    """Files left alone and not recovered: journals that are not journals, Parquet files that do not open."""
    torn_kept: list[str] = field(default_factory=list)
    """``.torn`` files holding the unreadable ranges of the journals recovered."""
    skipped_records: list[str] = field(default_factory=list)
    """Valid journal records the store could not ingest (a bug): each named, and stored as an ``error`` event."""
    crashes: list[tuple[str, int]] = field(default_factory=list)
    """(run id, gap start ns) of each run closed with a crash gap by this recovery."""
    last_recv_ns: int | None = None
    """Receive time of the newest frame recovered, or None."""

    @property
    def dropped(self) -> bool:
        """Something could not be recovered: unreadable bytes, records skipped, files left alone."""
        return bool(self.torn_bytes or self.skipped_records or self.unreadable)


# --------------------------------------------------------------------------------------------------
# Recovery


def _journal_files(jdir: Path) -> list[Path]:
    try:
        return sorted(p for p in jdir.iterdir() if p.name.endswith(JOURNAL_SUFFIX))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, jdir, "list the journal directory") from exc


_LEGACY_TMP_PREFIX = "."
"""Leading part of a part file's temporary name in its partition, before ``_tmp/``: ``.{final}.tmp``."""


def _tmp_files(root: Path) -> list[tuple[Path, str]]:
    """(path, the final name it was to get) of every file a recorder may have been writing: directly in
    ``_tmp/`` (never a subfolder), and ``*.tmp`` in the partitions (the layout before ``_tmp/``)."""
    out: list[tuple[Path, str]] = []
    staging = root / layout.STAGING_DIR
    if staging.is_dir():
        for path in sorted(staging.iterdir()):
            parsed = layout.parse_staging_filename(path.name)
            if parsed is not None and path.is_file():
                out.append((path, parsed[2]))
    for table in TABLE_NAMES:
        tdir = root / table
        if not tdir.is_dir():
            continue
        for path in sorted(tdir.glob("date=*/*" + layout.TMP_SUFFIX)):
            base = path.name[: -len(layout.TMP_SUFFIX)]
            out.append((path, base.removeprefix(_LEGACY_TMP_PREFIX)))
    return out


def _run_has_journal(jdir: Path, run_id: str) -> bool:
    return any(jdir.glob(_glob_escape(run_id) + "-*" + JOURNAL_SUFFIX))


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _remove_garbage(root: Path, jdir: Path, dead_runs: set[str], report: RecoveryReport) -> None:
    """Delete the part files dead runs were writing, and half-created journals no one holds.

    A run is dead if this recovery holds its journal, or if it has no journal at all (a running
    recorder always has one, created before any of its files in ``_tmp/``, and holds it locked).
    """
    for tmp, final in _tmp_files(root):
        parsed = layout.parse_part_filename(final)
        if parsed is None:
            continue  # not a file of ours
        if parsed[0] not in dead_runs and _run_has_journal(jdir, parsed[0]):
            continue  # a running recorder's file being written
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise storage_error(exc, tmp, "delete the stray temporary file") from exc
        report.removed.append(str(tmp))
    if jdir.is_dir():
        for new in sorted(jdir.glob("*" + JOURNAL_SUFFIX + NEW_SUFFIX)):
            try:
                w, _scan = JournalWriter.resume(new, keep_damage=False)
            except JournalBusy:
                continue  # being created right now
            except StorageError:
                w = None
            if w is not None:
                w.remove()
            else:
                with contextlib.suppress(OSError):
                    os.unlink(new)
            report.removed.append(str(new))


def _check_readable(dirs: set[Path], report: RecoveryReport) -> None:
    for d in sorted(dirs):
        for f in sorted(d.glob("*.parquet")):
            try:
                pq.read_metadata(f)
            except Exception:  # any failure to open is "unreadable": reported, left alone
                report.unreadable.append(str(f))


@dataclass
class _Segment:
    """A journal segment this recovery holds (locked), with what its scan found."""

    writer: JournalWriter
    scan: JournalScan
    run_id: str
    number: int

    @property
    def started_ns(self) -> int:
        """When the segment was created (its header; the file's mtime if the header is damaged)."""
        if self.scan.header is not None:
            return self.scan.header.created_ns
        return os.stat(self.writer.path).st_mtime_ns


def recover(
    root: str | os.PathLike[str],
    *,
    clock_ns: Callable[[], int] = time.time_ns,
    flush_rows: int = 10_000,
) -> RecoveryReport:
    """Turn journals left by a crash into Parquet files; safe to run any time, and twice.

    For each journal segment under ``ROOT/_journal`` that no running recorder holds (they are locked),
    by run, in segment order: keep its unreadable ranges in ``{journal}.torn`` (any size; the reader
    resynchronises after each, :mod:`kiwoom_tape.recorder.journal_reader`), append to it a ``journal_damage`` event
    per range (detail: journal, segment, start, end, bytes, frames_lost, until_ns, kept_in), to the last
    segment of each run a ``gap_start`` event of cause ``crash`` at the run's last durable record (or
    when its last segment was created, if its journals hold none: an empty segment is a crash too), and a
    ``recovery`` event (detail: journal, segment, frames, events, torn_bytes); then replay every record
    through the same ingestion code as the live path, finalize the segment's Parquet files (written in
    ``_tmp/``, fsynced, renamed into place) and delete the segment. The events go into the journal first, so a recovery
    interrupted (kill, Ctrl-C) is redone from the journal with the same events, never twice. A run
    has a journal from its start to its clean stop (the next segment's journal exists before the
    previous one is deleted), so every run that did not stop cleanly gets exactly one crash gap; the
    ``gaps`` view ends it at the next run's first event (:mod:`kiwoom_tape.schemas.views`).

    Stray files of runs that are not running (in ``_tmp/``, or ``.tmp`` in a partition of an older
    dataset) are deleted first. A file that is not a journal,
    and a Parquet file that does not open, is left alone and reported; a record that the store cannot
    ingest is skipped, named in :attr:`RecoveryReport.skipped_records` and stored as an ``error`` event.
    :attr:`RecoveryReport.dropped` says whether anything was lost. Raises StorageError if the disk
    fails (what was finalized before stays; run it again later).
    """
    root = Path(root)
    jdir = root / layout.JOURNAL_DIR
    report = RecoveryReport()
    if not root.exists():
        return report
    if not root.is_dir():
        raise StorageError(
            f"{root} is not a directory", path=str(root), hint="pass the --out directory of an earlier record run"
        )
    locked: list[_Segment] = []
    try:
        for path in _journal_files(jdir):
            try:
                writer, scan = JournalWriter.resume(path)
            except JournalBusy:
                report.skipped.append(str(path))
                continue
            except JournalFormatError:
                report.unreadable.append(str(path))
                continue
            ident = _identity(path, scan)
            if ident is None:
                report.unreadable.append(str(path))
                writer.close()
                continue
            locked.append(_Segment(writer, scan, *ident))
        _remove_garbage(root, jdir, {seg.run_id for seg in locked}, report)
        touched: set[Path] = set()
        runs: dict[str, list[_Segment]] = {}
        for seg in locked:
            runs.setdefault(seg.run_id, []).append(seg)
        for run_id in sorted(runs):
            segments = sorted(runs[run_id], key=lambda sg: sg.number)
            last = segments[-1]
            durable = [sg.scan.last_ns for sg in segments if sg.scan.last_ns is not None]
            since = max(durable) if durable else last.started_ns
            for seg in segments:
                crash = since if seg is last else None
                _recover_segment(root, seg, crash, report, touched, clock_ns, flush_rows)
        _check_readable(touched, report)
    finally:
        for seg in locked:
            if not seg.writer.closed:
                with contextlib.suppress(StorageError):
                    seg.writer.close()
    return report


def _identity(path: Path, scan: JournalScan) -> tuple[str, int] | None:
    """(run id, segment) of a journal: its header's, else its file name's (a damaged header); None if neither."""
    header = scan.header
    ident = (header.run_id, header.segment) if header is not None else layout.parse_journal_filename(path.name)
    if ident is None:
        return None
    try:
        layout.journal_filename(*ident)
    except ValueError:
        return None
    return ident


def _damage_events(seg: _Segment, report: RecoveryReport) -> list[tuple[int, str, dict[str, object]]]:
    """Report each unreadable range of ``seg``; the ``journal_damage`` events that say so."""
    path = seg.writer.path
    kept = torn_path(path)
    events: list[tuple[int, str, dict[str, object]]] = []
    if seg.scan.damage:
        report.torn_kept.append(str(kept))
    for d in seg.scan.damage:
        lost = d.frames_lost
        report.torn_bytes += d.nbytes
        report.frames_lost += lost or 0
        what = f"{lost} frame(s)" if lost is not None else ("a torn tail" if d.at_tail else "frames unknown")
        report.damage.append(f"{path}: bytes {d.start}..{d.end} unreadable ({d.nbytes} bytes, {what}), kept in {kept}")
        ns = next((t for t in (d.before_ns, d.after_ns) if t is not None), seg.started_ns)
        events.append((ns, "journal_damage", {
            "journal": path.name, "segment": seg.number, "start": d.start, "end": d.end, "bytes": d.nbytes,
            "frames_lost": lost, "until_ns": d.after_ns, "kept_in": kept.name,
        }))
    return events


def _recover_segment(
    root: Path,
    seg: _Segment,
    crash_since: int | None,
    report: RecoveryReport,
    touched: set[Path],
    clock_ns: Callable[[], int],
    flush_rows: int,
) -> None:
    writer, scan = seg.writer, seg.scan
    events = _damage_events(seg, report)
    if crash_since is None and not events and scan.frames + scan.events == 0:
        # An empty segment followed by a later one of its run (a roll): nothing to recover, no event.
        writer.remove()
        report.removed.append(str(writer.path))
        return
    if scan.recovery_events == 0:
        # The events go into the journal first: the journal stays the one source of truth, and a
        # recovery interrupted after this point is redone with the same events, not a second set.
        if crash_since is not None:
            events.append((crash_since, "gap_start", {"cause": "crash", "journal": writer.path.name,
                                                      "segment": seg.number}))
            report.crashes.append((seg.run_id, crash_since))
        events.append((clock_ns(), "recovery", {
            "journal": writer.path.name, "segment": seg.number, "frames": scan.frames, "events": scan.events,
            "torn_bytes": scan.torn_bytes,
        }))
        for ns, kind, detail in events:
            writer.append_event(ns, kind, json.dumps(detail, separators=(",", ":")))
        writer.sync()
    store = Store(root, seg.run_id, flush_rows=flush_rows, _recovering=seg.number)
    store.open()
    try:
        for pos, rec in iter_journal_at(writer.path):
            if isinstance(rec, FrameRecord) and (report.last_recv_ns is None or rec.recv_ns > report.last_recv_ns):
                report.last_recv_ns = rec.recv_ns
            try:
                store._replay(rec)
            except (ValueError, TypeError, OverflowError, LookupError) as exc:
                _skip_record(store, writer.path, pos, rec, exc, report)
        finals = store._finish_segment()
    except BaseException:
        store._abandon()
        raise
    writer.remove()
    report.segments += 1
    report.frames += store._frames
    report.events += store._n_events
    for table, n in (("frames", store._frames), *store._n_rows.items(), ("events", store._n_events)):
        report.rows[table] = report.rows.get(table, 0) + n
    report.files.extend(str(f) for f in finals)
    touched.update(f.parent for f in finals)


def _skip_record(store: Store, path: Path, pos: int, rec: Record, exc: Exception, report: RecoveryReport) -> None:
    """A valid record the store cannot take (a bug): named in the report and the log, stored as an ``error`` event."""
    what = f"frame seq {rec.seq}" if isinstance(rec, FrameRecord) else f"event {rec.kind!r}"
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    line = f"{path}: the record at byte {pos} ({what}) could not be stored: {reason}"
    report.skipped_records.append(line)
    log.warning("%s (skipped; please report it)", line)
    detail = {"journal": path.name, "skipped_record": pos, "what": what, "reason": reason}
    store._ingest_event(rec.recv_ns, "error", json.dumps(detail, separators=(",", ":")), None)

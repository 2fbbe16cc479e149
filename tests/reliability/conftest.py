"""Shared pieces of the reliability suite: the figures it reports, and the secret audit.

**Figures.** Tests put what they measured in the session-scoped ``report`` fixture (a :class:`Report`);
``pytest_terminal_summary`` prints them as one table at the end of the run: kills survived, the worst
frames lost per kill against the fsync bound, gaps per crash, journal damage cases recovered, faults
survived, fuzz cases tried, secrets found, and the mock server under load (RSS after a slow reader and
after a 10,000-code churn, time to stop under load).

**Secrets.** Every test here gets ``audit`` (autouse): tests make their tokens, app keys and secrets
with ``audit.secret(label)`` (distinctive random strings), hand over any text they collect
(subprocess output, exception messages) with ``audit.text(where, text)``, and register tokens a
server issued with ``audit.add``. After each test the audit greps every file under the test's
``tmp_path``, every log record of the test (all loggers, DEBUG and up, with tracebacks) and the texts
it was given, for every secret of the session, whole or in part, and fails the test if one is found.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FRAGMENT = 12
"""A secret counts as leaked if any of its first, middle or last ``FRAGMENT`` characters show up."""
RECORDER_WS_LOGGER = "kiwoom_tape.recorder.ws"
"""The logger the recorder hands websockets (frames at DEBUG, tokens redacted by schemas.redact)."""


@dataclass
class Report:
    """What the reliability tests measured; printed by ``pytest_terminal_summary``."""

    kills: int = 0
    kills_survived: int = 0
    worst_lost_per_kill: int | None = None
    total_lost: int = 0
    oldest_lost_ms: float | None = None
    fsync_ms: float | None = None
    slack_ms: float | None = None
    kill_modes: dict[str, int] = field(default_factory=dict)
    """What the kills hit: "random", "early" (before the run's first fsync), "roll", "recovery", ..."""
    crashes: int = 0
    """Runs killed after their journal existed (a kill during start-up recovery kills no run)."""
    crash_gaps: int = 0
    """``crash`` gaps in the ``gaps`` view after the kills: one per crash."""
    journal_damage: tuple[int, int] | None = None
    """(damaged journals recovered with every record outside the damage, cases tried)."""
    faults: dict[str, str] = field(default_factory=dict)
    """fault case -> "survived" or what went wrong (or "xfail: ...")."""
    fuzz: dict[str, int] = field(default_factory=dict)
    """fuzz target -> cases tried."""
    secrets: int = 0
    secrets_found: list[str] = field(default_factory=list)
    scanned_files: int = 0
    scanned_bytes: int = 0
    scanned_logs: int = 0
    scanned_texts: int = 0
    disk_full: str = ""
    server: dict[str, str] = field(default_factory=dict)
    """The mock server under load (test_server_load.py): figure -> what was measured."""
    extra: dict[str, Any] = field(default_factory=dict)


REPORT = Report()


@pytest.fixture(scope="session")
def report() -> Report:
    return REPORT


def _fragments(secret: str) -> set[str]:
    if len(secret) <= FRAGMENT:
        return {secret}
    mid = (len(secret) - FRAGMENT) // 2
    return {secret[:FRAGMENT], secret[mid : mid + FRAGMENT], secret[-FRAGMENT:]}


class SecretAudit:
    """Distinctive secrets for a test, and the grep that proves none of them leaked."""

    _all: dict[str, str] = {}  # noqa: RUF012  # every secret of the session -> its label (shared on purpose)

    def __init__(self, report: Report) -> None:
        self.report = report
        self.texts: list[tuple[str, str]] = []

    def secret(self, label: str) -> str:
        """A new distinctive secret (its random part is what the grep looks for)."""
        value = f"KT{label.upper()}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"
        self.add(value, label)
        return value

    def add(self, value: str, label: str = "issued token") -> None:
        """Register a secret the test did not make itself (a token the server issued)."""
        if value and value not in SecretAudit._all:
            SecretAudit._all[value] = label
            self.report.secrets += 1

    def text(self, where: str, text: str | bytes) -> None:
        """Grep ``text`` (subprocess output, an exception message, ...) when the test ends."""
        self.texts.append((where, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))

    def _hits(self, blob: str) -> list[str]:
        found = []
        for value, label in SecretAudit._all.items():
            if any(frag in blob for frag in _fragments(value)):
                found.append(label)
        return found

    def scan(self, tmp: Path, records: list[logging.LogRecord]) -> list[str]:
        """Every place a secret shows up: ``"where: label"``."""
        found: list[str] = []
        fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for rec in records:
            self.report.scanned_logs += 1
            line = fmt.format(rec)
            found += [f"log {rec.name}: {label}" for label in self._hits(line)]
        for where, text in self.texts:
            self.report.scanned_texts += 1
            found += [f"{where}: {label}" for label in self._hits(text)]
        if tmp.exists():
            for p in sorted(tmp.rglob("*")):
                if not p.is_file() or p.is_symlink():
                    continue
                data = p.read_bytes()
                self.report.scanned_files += 1
                self.report.scanned_bytes += len(data)
                found += [f"file {p.relative_to(tmp)}: {label}" for label in self._hits(data.decode("latin-1"))]
        return found


@pytest.fixture(autouse=True)
def audit(report: Report, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[SecretAudit]:
    # The tests' own bare websockets clients (not the product) log their LOGIN frames at DEBUG:
    caplog.set_level(logging.INFO, logger="websockets.client")
    caplog.set_level(logging.DEBUG)  # last: set_level also sets the capturing handler's level
    a = SecretAudit(report)
    yield a
    records = caplog.get_records("setup") + caplog.get_records("call")
    found = a.scan(tmp_path, records)
    report.secrets_found += found
    assert not found, f"secrets leaked: {found}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    r = REPORT
    if not (r.kills or r.faults or r.fuzz or r.scanned_logs or r.disk_full or r.journal_damage or r.server):
        return  # the reliability suite did not run
    tr = terminalreporter
    tr.section("kiwoom-tape reliability summary")
    rows: list[tuple[str, str]] = []
    if r.kills:
        fsync = f" at --fsync-interval {r.fsync_ms / 1000:g} s" if r.fsync_ms is not None else ""
        rows.append(("kill -9 survived", f"{r.kills_survived} / {r.kills}{fsync}"))
        if r.kill_modes:
            rows.append(("  kills by instant", ", ".join(f"{k} {v}" for k, v in sorted(r.kill_modes.items()))))
        if r.kills_survived:
            rows.append(("gaps per crash", f"{r.crash_gaps} crash gaps for {r.crashes} runs killed "
                         f"({r.crash_gaps / r.crashes if r.crashes else 0:g} per crash)"))
        if r.worst_lost_per_kill is not None:
            rows.append((
                "frames lost per kill",
                f"worst {r.worst_lost_per_kill}, total {r.total_lost}; oldest lost frame sent "
                f"{r.oldest_lost_ms:.0f} ms before its kill (fsync bound {r.fsync_ms:.0f} ms + {r.slack_ms:.0f} ms "
                "receive slack)",
            ))
    if r.journal_damage is not None:
        ok, tried = r.journal_damage
        rows.append(("journal damage recovered", f"{ok} / {tried} damaged journals (bit flips, cuts): every record "
                     "outside the damage stored, every damaged byte kept"))
    if r.disk_full:
        rows.append(("disk full", r.disk_full))
    if r.faults:
        ok = sum(v == "survived" for v in r.faults.values())
        rows.append(("faults survived", f"{ok} / {len(r.faults)}"))
        for name, verdict in sorted(r.faults.items()):
            if verdict != "survived":
                rows.append((f"  {name}", verdict))
    from ._fuzzgen import FAILURES, seed  # here, not at import: it is needed only for this table

    if r.fuzz or FAILURES:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(r.fuzz.items()))
        rows.append(("fuzz cases tried", f"{sum(r.fuzz.values())}, {len(FAILURES)} undocumented exceptions or "
                                         f"broken properties (KIWOOM_TAPE_FUZZ_SEED={seed()}; {detail})"))
        rows += [("  fuzz failure", f) for f in FAILURES]
    rows.append((
        "secrets found",
        f"{len(r.secrets_found)} (of {r.secrets} secrets, grepped in {r.scanned_files} files / "
        f"{r.scanned_bytes / 1e6:.1f} MB, {r.scanned_logs} log records, {r.scanned_texts} outputs)",
    ))
    rows.extend(sorted(r.server.items()))
    for k, v in r.extra.items():
        rows.append((k, str(v)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        tr.write_line(f"{k.ljust(width)}  {v}")
    for leak in r.secrets_found:
        tr.write_line(f"  LEAK {leak}", red=True)

"""``docs/protocol.md`` against the code: every section reference resolves, and its numbers are the code's.

The code and the docs cite protocol facts as "PROTOCOL.md 2.1" (the research notes the project started from)
or "docs/protocol.md 2.1" (the copy in this repository, same section numbers). Every such reference in a
``*.py``, ``*.md`` or ``*.ipynb`` file of the repository must name a section that exists in
``docs/protocol.md``, so that no reference dangles. The "This project" paragraphs quote the code's
constants (return codes, limits, timers, tick table, windows); they are checked against the code here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiwoom_tape.replay import rest
from kiwoom_tape.replay import server as mock_server
from kiwoom_tape.replay.sim_calendar import KRX_0D_WINDOWS, KRX_0E_WINDOWS, NXT_0D_WINDOWS
from kiwoom_tape.schemas import protocol
from kiwoom_tape.schemas.fields import REAL_TYPE_NAMES
from kiwoom_tape.schemas.market import ETF_CODES, is_etf, tick_size

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", "__pycache__", ".mypy_cache",
             ".ruff_cache", ".pytest_cache", ".hypothesis"}

_NUM = r"\d{1,2}(?:\.\d{1,2})?(?!\d|\.\d)"
_ONE = rf"{_NUM}(?:\s*-\s*{_NUM})?"
REFERENCE = re.compile(
    rf"(?:PROTOCOL\.md|docs/protocol\.md)(?:\s+section)?\s+({_ONE}(?:\s*(?:,|/|\band\b)\s*{_ONE})*)"
)
"""``PROTOCOL.md 2.1``, ``docs/protocol.md 1.2-1.9``, ``PROTOCOL.md section 2.1, 2.2, 3 and 6.1``, ``2.1/2.2``."""


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def outside_code_blocks(text: str) -> str:
    """The text with every fenced code block blanked (a ``#요청`` line in an example is not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def sections(text: str) -> dict[str, str]:
    """Section number -> its text (up to the next heading of any level), for ``## N.`` and ``### N.N`` headings."""
    body = outside_code_blocks(text)
    heads = list(re.finditer(r"^#{2,3} (\d{1,2}(?:\.\d{1,2})?)[. ]", body, flags=re.MULTILINE))
    out: dict[str, str] = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(body)
        out[m[1]] = body[m.start() : end]
    return out


def expand(ref: str) -> list[str]:
    """``"1.2-1.4"`` -> ``["1.2", "1.3", "1.4"]``; ``"2.1, 2.2, 3 and 6.1"`` -> the four numbers."""
    out: list[str] = []
    for part in re.split(r"\s*(?:,|/|\band\b)\s*", ref.strip()):
        lo, _, hi = (p.strip() for p in part.partition("-"))
        if not hi:
            out.append(lo)
            continue
        (lo_major, _, lo_minor), (hi_major, _, hi_minor) = lo.partition("."), hi.partition(".")
        if lo_major != hi_major or not lo_minor or not hi_minor:
            out += [lo, hi]
            continue
        out += [f"{lo_major}.{n}" for n in range(int(lo_minor), int(hi_minor) + 1)]
    return out


def repository_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.suffix in {".py", ".md", ".ipynb"} and path.is_file():
            yield path


def references() -> Iterator[tuple[str, int, str, str]]:
    """(file, line, the reference as written, a section number it names) for every reference."""
    for path in repository_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in REFERENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            for number in expand(m[1]):
                yield str(path.relative_to(ROOT)), line, m[0], number


# ==================================================================================================
# The reference finder itself


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("see PROTOCOL.md 2.1).", ["2.1"]),
        ("(docs/protocol.md 1.2-1.4, 4.1)", ["1.2", "1.3", "1.4", "4.1"]),
        ("PROTOCOL.md section 2.1, 2.2, 3 and 6.1.", ["2.1", "2.2", "3", "6.1"]),
        ("PROTOCOL.md 2.1/2.2 (`ask_price_1`", ["2.1", "2.2"]),
        ("PROTOCOL.md 0, 4.3):", ["0", "4.3"]),
        ("PROTOCOL.md section 1):", ["1"]),
        ("PROTOCOL.md 5.3, 200 items", ["5.3"]),  # a quantity after the list is not a section
        ("PROTOCOL.md\n    2.0 and 5.5 read", ["2.0", "5.5"]),  # wrapped in a docstring
    ],
)
def test_the_finder_reads_every_form_in_use(text: str, numbers: list[str]) -> None:
    found = [n for m in REFERENCE.finditer(text) for n in expand(m[1])]
    assert found == numbers


def test_the_finder_ignores_other_files_and_headings_in_code_blocks() -> None:
    assert [m[0] for m in REFERENCE.finditer("PERF-LIMITS.md section 4; PROTOCOL.md (windows)")] == []
    text = "## 1. A\n```\n# 2. not a heading\n```\n### 1.1 B\nbody\n"
    assert list(sections(text)) == ["1", "1.1"]


# ==================================================================================================
# Every reference resolves


def test_every_reference_names_a_section_of_docs_protocol_md() -> None:
    known = set(sections(doc_text()))
    refs = list(references())
    # the code cites the protocol everywhere: a finder that finds nothing is broken, not a clean repository
    assert len(refs) >= 100, len(refs)
    dangling = sorted({f"{file}:{line}: {written!r} -> {number}" for file, line, written, number in refs
                       if number not in known})
    assert not dangling, "references to sections docs/protocol.md does not have:\n" + "\n".join(dangling)


def test_the_section_numbers_are_those_the_code_was_written_against() -> None:
    known = set(sections(doc_text()))
    expected = {"0", "1", "2", "3", "4", "5", "6", "7", "8"}
    expected |= {f"1.{n}" for n in range(1, 12)} | {f"2.{n}" for n in range(5)}
    expected |= {f"4.{n}" for n in range(1, 5)} | {f"5.{n}" for n in range(1, 6)} | {f"6.{n}" for n in range(1, 6)}
    assert known == expected


def test_internal_section_references_resolve() -> None:
    body = outside_code_blocks(doc_text())
    known = set(sections(body))
    cited = set(re.findall(r"\bsections? (\d{1,2}(?:\.\d{1,2})?)\b", body))
    cited |= {n for pair in re.findall(r"\((\d\.\d{1,2})(?:, (\d\.\d{1,2}))?\)", body) for n in pair if n}
    assert cited, "no internal references found"
    assert cited <= known, sorted(cited - known)


def test_every_fact_carries_a_source_that_the_sources_table_resolves() -> None:
    text = doc_text()
    table = text[text.index("\n## Sources") :]
    first_cells = re.findall(r"^\| ([A-Z0-9][A-Z0-9 /-]+?) \|", table, flags=re.MULTILINE)
    keys = {key.strip() for cell in first_cells for key in cell.split("/")}  # "K-EX0D / K-EX0E"
    cited = set(re.findall(r"\[([A-Z][A-Z0-9-]+)\]", text[: text.index("\n## Sources")]))
    cited -= {"INFERRED"}
    assert len(keys) > 30
    assert cited <= keys, sorted(cited - keys)


# ==================================================================================================
# The "This project" paragraphs quote the code


def project_notes(number: str) -> str:
    section = sections(doc_text())[number]
    notes = re.findall(r"^\*\*This project:\*\*(.*?)(?=\n\n|\Z)", section, flags=re.MULTILINE | re.DOTALL)
    assert notes, f"section {number} has no 'This project' paragraph"
    return " ".join(" ".join(n.split()) for n in notes)


def test_the_wire_constants_are_the_code_s() -> None:
    s0 = project_notes("0")
    assert "PROD_WS_URL" in s0 and "MOCK_WS_URL" in s0 and "permessage-deflate" in s0
    assert protocol.PROD_WS_URL in sections(doc_text())["0"]
    assert protocol.MOCK_WS_URL in sections(doc_text())["0"]

    s12 = project_notes("1.2")
    assert protocol.login_ok() in s12.replace("` `", "")
    assert f"`{protocol.RC_LOGIN_FAILED}`" in s12
    assert all(str(code) in s12 for code in protocol.AUTH_RETRY_CODES)
    assert protocol.login_failed().split('"return_msg":"')[1].rstrip('"}') in s12

    s14 = project_notes("1.4")
    for code in (protocol.RC_REG_RATE, protocol.RC_ITEM_CAP, protocol.RC_ERROR):
        assert f"`{code}`" in s14
    config = protocol.ServerConfig()
    assert f"reg_rate` = {config.reg_rate} per `reg_window` = {config.reg_window} s" in s14
    assert f"above {protocol.MAX_ITEMS_PER_CONNECTION} distinct" in s14

    s16 = project_notes("1.6")
    assert f"every {config.ping_interval:g} s" in s16
    assert f"after {config.max_missed_pings} unanswered" in s16

    s18 = project_notes("1.8")
    assert f"within {config.login_timeout:g} s" in s18
    assert all(code in s18 for code in protocol.TERMINAL_SYSTEM_CODES)

    s13 = project_notes("1.3")
    client = protocol.ClientSession(token="t")
    assert f"batches of {client.reg_batch} items" in s13
    assert f"{client.reg_interval} s apart" in s13


def test_the_limits_and_tokens_are_the_mock_s() -> None:
    s41 = project_notes("4.1")
    max_message = inspect.signature(mock_server.Server).parameters["max_message"].default
    assert max_message == rest.MAX_HTTP_BODY == 64 * 1024
    assert "64 KiB with close 1009" in s41 and "HTTP body over 64 KiB" in s41
    s43 = project_notes("4.3")
    assert f"valid {rest.TOKEN_LIFETIME / 3600:g} h" in s43


def test_the_tick_table_of_5_5_is_schemas_market_tick_size() -> None:
    section = sections(doc_text())["5.5"]
    rows = re.findall(r"^\| ([^|]+) \| ([\d,]+) \|$", section, flags=re.MULTILINE)
    assert len(rows) == 7
    bounds: list[int] = []
    for price, tick in rows:
        tick_won = int(tick.replace(",", ""))
        numbers = [int(x.replace(",", "")) for x in re.findall(r"[\d,]*\d", price)]
        if price.startswith("<"):
            lo, hi = 0, numbers[0]
        elif price.startswith(">="):
            lo, hi = numbers[0], numbers[0] * 10
        else:
            lo, hi = numbers
        bounds.append(lo)
        for p in (lo, (lo + hi) // 2, hi - 1):
            assert tick_size(p) == tick_won, (price, p)
            assert tick_size(p, etf=True) == 5, p  # "ETF, ETN and ELW keep a 5-won tick"
    assert bounds == sorted(bounds)
    notes = project_notes("5.5")
    assert "`tick_size(price, etf=True)` the 5-won ETF tick" in notes and "ETF_CODES" in notes
    assert all(is_etf(code) and is_etf(code + "_NX") for code in ETF_CODES)


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def test_the_simulated_windows_of_5_3_are_the_simulator_s() -> None:
    s53 = project_notes("5.3")
    spans = {f"{_hms(a)}–{_hms(b)}" for a, b in KRX_0D_WINDOWS + KRX_0E_WINDOWS}
    assert all(span in s53 for span in spans), sorted(s for s in spans if s not in s53)
    (pre_start, _), *_, (_, after_end) = NXT_0D_WINDOWS
    assert f"{_hms(pre_start)}–{_hms(after_end)}" in s53
    halts = [(NXT_0D_WINDOWS[i][1], NXT_0D_WINDOWS[i + 1][0]) for i in range(len(NXT_0D_WINDOWS) - 1)]
    assert all(f"{_hms(a)}–{_hms(b)}" in s53 for a, b in halts)


def test_the_type_tables_of_2_4_and_3_name_every_type_the_code_knows() -> None:
    for number in ("2.4", "3"):
        codes = set(re.findall(r"^\| `(\w\w)` \|", sections(doc_text())[number], flags=re.MULTILINE))
        assert set(REAL_TYPE_NAMES) <= codes, (number, sorted(set(REAL_TYPE_NAMES) - codes))

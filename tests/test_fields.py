"""The 0B/0D/0E field tables of ``schemas/fields.py`` against docs/protocol.md sections 2.1-2.3, 3, 6.1 and 6.5.

The FID lists are checked twice: against an order written out here (the official key order of the 0D
example, docs/protocol.md 6.1), and against the tables of docs/protocol.md itself, parsed, when the file is there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiwoom_tape.schemas.fields import (
    FIELDS_0B,
    FIELDS_0D,
    FIELDS_0E,
    FIELDS_BY_TYPE,
    REAL_TYPE_NAMES,
    FieldSpec,
    Kind,
    fields_for,
)

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def official_0d_order() -> list[int]:
    """docs/protocol.md 6.1: 21; per level 41,61,81,51,71,91; totals and expected; LP 621/631 interleaved; ..."""
    order = [21]
    for n in range(10):
        order += [41 + n, 61 + n, 81 + n, 51 + n, 71 + n, 91 + n]
    order += [121, 122, 125, 126, 23, 24, 128, 129, 138, 139, 200, 201, 238, 291, 292, 293, 294, 295]
    for n in range(10):
        order += [621 + n, 631 + n]
    order += [13, 299, 215, 216]
    order += list(range(6044, 6088))
    order += list(range(6100, 6116))
    return order


# ==================================================================================================
# 0D, against the order written out here


def test_0d_has_163_unique_fids_and_unique_columns() -> None:
    fids = [f.fid for f in FIELDS_0D]
    columns = [f.column for f in FIELDS_0D]
    assert len(FIELDS_0D) == 163
    assert len(set(fids)) == 163
    assert len(set(columns)) == 163


def test_0d_is_in_the_official_key_order() -> None:
    assert [int(f.fid) for f in FIELDS_0D] == official_0d_order()


def test_fids_are_canonical_decimal_strings() -> None:
    for spec in (*FIELDS_0B, *FIELDS_0D, *FIELDS_0E):
        assert isinstance(spec, FieldSpec)
        assert spec.fid == str(int(spec.fid)), spec  # as the wire keys: "41", never "041"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.column), spec
        assert spec.korean, spec


def test_0d_level_fields() -> None:
    by_fid = {f.fid: f for f in FIELDS_0D}
    for n in range(1, 11):
        assert by_fid[str(40 + n)].column == f"ask_price_{n}"
        assert by_fid[str(50 + n)].column == f"bid_price_{n}"
        assert by_fid[str(60 + n)].column == f"ask_qty_{n}"
        assert by_fid[str(70 + n)].column == f"bid_qty_{n}"
        assert by_fid[str(80 + n)].column == f"ask_qty_delta_{n}"
        assert by_fid[str(90 + n)].column == f"bid_qty_delta_{n}"
        assert by_fid[str(40 + n)].kind is by_fid[str(50 + n)].kind is Kind.PRICE
        assert by_fid[str(60 + n)].kind is by_fid[str(70 + n)].kind is Kind.QTY
        assert by_fid[str(80 + n)].kind is by_fid[str(90 + n)].kind is Kind.SIGNED
    assert by_fid["21"].kind is Kind.TIME
    # docs/protocol.md 2.0: signed deltas, percentages with 2 places, sign codes
    assert by_fid["122"].kind is by_fid["126"].kind is by_fid["128"].kind is by_fid["138"].kind is Kind.SIGNED
    assert by_fid["129"].kind is by_fid["139"].kind is by_fid["201"].kind is by_fid["295"].kind is Kind.PCT
    assert by_fid["238"].kind is by_fid["293"].kind is Kind.CODE


def test_units_follow_kinds() -> None:
    for spec in (*FIELDS_0D, *FIELDS_0E):
        if spec.kind is Kind.PRICE:
            assert spec.unit == "KRW", spec
        elif spec.kind is Kind.QTY:
            assert spec.unit == "shares", spec
        elif spec.kind is Kind.SIGNED:
            assert spec.unit in ("shares", "KRW"), spec


# ==================================================================================================
# 0E, REAL_TYPE_NAMES, lookup


def test_0e_fields() -> None:
    assert [f.fid for f in FIELDS_0E] == ["21", "131", "132", "135", "136"]
    assert [f.column for f in FIELDS_0E] == [
        "quote_time",
        "ah_total_ask_qty",
        "ah_total_ask_qty_delta",
        "ah_total_bid_qty",
        "ah_total_bid_qty_delta",
    ]
    assert [f.kind for f in FIELDS_0E] == [Kind.TIME, Kind.QTY, Kind.SIGNED, Kind.QTY, Kind.SIGNED]


def test_fields_for() -> None:
    assert fields_for("0D") is FIELDS_0D
    assert fields_for("0E") is FIELDS_0E
    assert fields_for("0B") is FIELDS_0B
    assert set(FIELDS_BY_TYPE) == {"0B", "0D", "0E"}
    with pytest.raises(KeyError):
        fields_for("0H")
    with pytest.raises(KeyError):
        fields_for("0d")  # type codes are case-sensitive


def test_real_type_names() -> None:
    assert len(REAL_TYPE_NAMES) == 19
    assert REAL_TYPE_NAMES["0D"] == "주식호가잔량"
    assert REAL_TYPE_NAMES["0E"] == "주식시간외호가"
    assert REAL_TYPE_NAMES["0B"] == "주식체결"
    assert REAL_TYPE_NAMES["04"] == "현물잔고"  # the row name, not "잔고" (docs/protocol.md 1.7)
    assert {"0g", "0m", "0s", "0u", "0w", "1h"} <= set(REAL_TYPE_NAMES)


# ==================================================================================================
# Against docs/protocol.md itself

_ROW = re.compile(r"^\| `(\d+)`(?:\s*[–-]\s*`(\d+)`)? \| ([^|]+?) \| `([^`]+)` \|")


def _protocol_md() -> str:
    if not PROTOCOL_MD.is_file():
        pytest.skip(f"{PROTOCOL_MD} not found: the field tables cannot be checked against the spec")
    return PROTOCOL_MD.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n##", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _table_fields(section: str) -> Iterator[tuple[str, str, str]]:
    """(fid, column, korean) for every row of the section's tables, with ranges `41`-`50` expanded."""
    for line in section.splitlines():
        m = _ROW.match(line)
        if m is None:
            continue
        lo, hi, korean, column = int(m[1]), int(m[2] or m[1]), m[3].strip(), m[4]
        if hi == lo:
            yield str(lo), column, korean
            continue
        assert "{n}" in column, line
        prefix = re.sub(r"1[–-]10$", "", korean)
        assert prefix != korean, line
        for n in range(1, hi - lo + 2):
            yield str(lo + n - 1), column.replace("{n}", str(n)), f"{prefix}{n}"


def test_0d_matches_protocol_md_2_1() -> None:
    section = _section(_protocol_md(), "### 2.1 0D")
    table = list(_table_fields(section))
    assert len(table) == 163
    by_fid = {f.fid: f for f in FIELDS_0D}
    assert {fid for fid, _, _ in table} == set(by_fid)
    for fid, column, korean in table:
        assert by_fid[fid].column == column, fid
        assert by_fid[fid].korean == korean, fid
    # every FID the section mentions: first cells of all tables (range ends too), the key-order line
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE)
    mentioned = {int(x) for cell in first_cells for x in re.findall(r"`(\d+)`", cell)}
    assert len(mentioned) > 60
    order_line = re.search(r"interleaved per level:\s*`([^`]+)`", section)
    assert order_line is not None
    mentioned |= {int(x) for x in re.findall(r"\d+", order_line[1])}
    assert mentioned <= {int(f) for f in by_fid}, sorted(mentioned - {int(f) for f in by_fid})
    assert "**163 keys**" in section


def test_0e_matches_protocol_md_2_2() -> None:
    section = _section(_protocol_md(), "### 2.2 0E")
    table = list(_table_fields(section))
    assert [(f.fid, f.column, f.korean) for f in FIELDS_0E] == table


def test_0d_order_matches_the_official_example_of_protocol_md_6_1() -> None:
    section = _section(_protocol_md(), "### 6.1 Official 0D example")
    values = section[section.index("'values': {") :]
    keys: list[int] = []
    gap = False
    for m in re.finditer(r"'(\d+)'\s*:|…", values):
        if m[0] == "…":
            gap = True  # '6044':'0', … '6087':'0' elides a consecutive run
            continue
        key = int(m[1])
        if gap:
            keys += range(keys[-1] + 1, key)
            gap = False
        keys.append(key)
    assert keys == official_0d_order()
    assert [int(f.fid) for f in FIELDS_0D] == keys


def test_real_type_names_match_protocol_md_3() -> None:
    section = _section(_protocol_md(), "## 3. Real-time type codes")
    rows = dict(re.findall(r"^\| `(\w\w)` \| ([^|]+?) \|", section, flags=re.MULTILINE))
    assert set(rows) == set(REAL_TYPE_NAMES)
    for code, name in rows.items():
        if code != "04":  # the table says 잔고; REAL rows say 현물잔고 (docs/protocol.md 1.7)
            assert REAL_TYPE_NAMES[code] == name, code


# ==================================================================================================
# 0B, against docs/protocol.md 2.3 and 6.5 and spec/realtime-types.json

SPEC_JSON = Path(__file__).resolve().parents[2] / "shared" / "spec" / "realtime-types.json"


def test_0b_matches_protocol_md_2_3() -> None:
    section = _section(_protocol_md(), "### 2.3 0B")
    table = list(_table_fields(section))
    assert len(table) == 43
    assert [(f.fid, f.column, f.korean) for f in FIELDS_0B] == table
    assert len({f.column for f in FIELDS_0B}) == 43


def test_0b_order_matches_the_official_example_of_protocol_md_6_5() -> None:
    section = _section(_protocol_md(), "### 6.5 Official 0B example")
    example = section[section.index("'values': {") : section.index("}}]}")]
    assert [f.fid for f in FIELDS_0B] == re.findall(r"'(\d+)'\s*:", example)


def test_0b_matches_the_spec_json() -> None:
    import json

    if not SPEC_JSON.is_file():
        pytest.skip(f"{SPEC_JSON} not found")
    spec = json.loads(SPEC_JSON.read_text(encoding="utf-8"))["types"]["0B"]
    assert [(f["fid"], f["name_ko"]) for f in spec["fields"]] == [(f.fid, f.korean) for f in FIELDS_0B]
    by_fid = {f.fid: f for f in FIELDS_0B}
    for f in spec["fields"]:  # what the official descriptions say is how the FID is read
        desc = f["desc"]
        if desc == "HHmmss":
            assert by_fid[f["fid"]].kind is Kind.TIME, f
        elif desc.startswith("단위: 원"):
            assert by_fid[f["fid"]].kind in (Kind.PRICE, Kind.SIGNED), f
            assert by_fid[f["fid"]].unit == "KRW", f
        elif desc.startswith("단위: %"):
            assert by_fid[f["fid"]].kind is Kind.PCT, f


def test_0b_kinds_and_units() -> None:
    by_fid = {f.fid: f for f in FIELDS_0B}
    assert [fid for fid, f in by_fid.items() if f.kind is Kind.PRICE] == ["10", "27", "28", "16", "17", "18"]
    assert by_fid["15"].kind is Kind.SIGNED and "+" in by_fid["15"].unit  # the sign is the aggressor side
    assert by_fid["13"].kind is Kind.QTY and by_fid["13"].unit == "shares"
    assert by_fid["14"].unit == "million KRW"  # 백만원 (docs/protocol.md 2.3)
    assert by_fid["1313"].unit == "thousand KRW"  # 천원 (hoga-ops)
    assert by_fid["311"].unit == "100 million KRW"  # 억원
    assert by_fid["25"].kind is by_fid["290"].kind is by_fid["9081"].kind is Kind.CODE
    assert by_fid["20"].kind is by_fid["567"].kind is by_fid["568"].kind is Kind.TIME
    assert all(f.unit for f in FIELDS_0B if f.kind is not Kind.TEXT and f.kind is not Kind.CODE), FIELDS_0B

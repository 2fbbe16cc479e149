"""The 0B, 0D and 0E field tables of docs/protocol.md section 2, as data.

Every real-time row carries ``values``: an object of FID (a decimal string) to a string value.
This module says, for each FID of 0B (주식체결, 43 keys), 0D (주식호가잔량, 163 keys) and 0E
(주식시간외호가, 5 keys), its column name in the stored tables, its Korean name, its kind (how the wire
string is read) and its unit. The tuples are in the official key order of docs/protocol.md 6.1/6.2/6.5, which
is the order the simulator emits and the order of the stored columns.

Kinds (docs/protocol.md 2.0):

- ``time``: ``HHmmss`` KST, no date (``"165207"``).
- ``price``: won with a sign that means "vs the reference price", not arithmetic; stored as
  ``abs()``; ``"-0"`` and ``""`` mean an empty level and are stored NULL.
- ``qty``: unsigned whole shares (``"82"``).
- ``signed``: an arithmetic signed integer (deltas, changes in won): ``"-1036021"``, ``"+156"``.
- ``pct``: a signed decimal percentage with two places (``"-0.24"``, ``"114.51"``).
- ``code``: a small integer code, e.g. the sign codes 1 상한가 .. 5 하락.
- ``text``: free text, often ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FIELDS_0B",
    "FIELDS_0D",
    "FIELDS_0E",
    "FIELDS_BY_TYPE",
    "REAL_TYPE_NAMES",
    "FieldSpec",
    "Kind",
    "fields_for",
]


class Kind(StrEnum):
    TIME = "time"
    PRICE = "price"
    QTY = "qty"
    SIGNED = "signed"
    PCT = "pct"
    CODE = "code"
    TEXT = "text"


_UNIT = {
    Kind.TIME: "HHmmss KST",
    Kind.PRICE: "KRW",
    Kind.QTY: "shares",
    Kind.SIGNED: "",  # set per field: shares or KRW
    Kind.PCT: "percent",
    Kind.CODE: "code",
    Kind.TEXT: "",
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One FID of a real-time type: how its wire string is read and where it is stored."""

    fid: str
    column: str
    korean: str
    kind: Kind
    unit: str


def _f(fid: int, column: str, korean: str, kind: Kind, unit: str | None = None) -> FieldSpec:
    return FieldSpec(str(fid), column, korean, kind, _UNIT[kind] if unit is None else unit)


def _build_0d() -> tuple[FieldSpec, ...]:
    out = [_f(21, "quote_time", "호가시간", Kind.TIME)]
    for n in range(1, 11):
        out += [
            _f(40 + n, f"ask_price_{n}", f"매도호가{n}", Kind.PRICE),
            _f(60 + n, f"ask_qty_{n}", f"매도호가수량{n}", Kind.QTY),
            _f(80 + n, f"ask_qty_delta_{n}", f"매도호가직전대비{n}", Kind.SIGNED, "shares"),
            _f(50 + n, f"bid_price_{n}", f"매수호가{n}", Kind.PRICE),
            _f(70 + n, f"bid_qty_{n}", f"매수호가수량{n}", Kind.QTY),
            _f(90 + n, f"bid_qty_delta_{n}", f"매수호가직전대비{n}", Kind.SIGNED, "shares"),
        ]
    out += [
        _f(121, "total_ask_qty", "매도호가총잔량", Kind.QTY),
        _f(122, "total_ask_qty_delta", "매도호가총잔량직전대비", Kind.SIGNED, "shares"),
        _f(125, "total_bid_qty", "매수호가총잔량", Kind.QTY),
        _f(126, "total_bid_qty_delta", "매수호가총잔량직전대비", Kind.SIGNED, "shares"),
        _f(23, "expected_price", "예상체결가", Kind.PRICE),
        _f(24, "expected_qty", "예상체결수량", Kind.QTY),
        _f(128, "net_bid_qty", "순매수잔량", Kind.SIGNED, "shares"),
        _f(129, "bid_ratio_pct", "매수비율", Kind.PCT),
        _f(138, "net_ask_qty", "순매도잔량", Kind.SIGNED, "shares"),
        _f(139, "ask_ratio_pct", "매도비율", Kind.PCT),
        _f(200, "expected_change_vs_prev_close", "예상체결가전일종가대비", Kind.SIGNED, "KRW"),
        _f(201, "expected_change_pct_vs_prev_close", "예상체결가전일종가대비등락율", Kind.PCT),
        _f(238, "expected_change_sign_vs_prev_close", "예상체결가전일종가대비기호", Kind.CODE),
        _f(291, "expected_price_auction", "예상체결가", Kind.PRICE),
        _f(292, "expected_qty_auction", "예상체결량", Kind.QTY),
        _f(293, "expected_change_sign", "예상체결가전일대비기호", Kind.CODE),
        _f(294, "expected_change", "예상체결가전일대비", Kind.SIGNED, "KRW"),
        _f(295, "expected_change_pct", "예상체결가전일대비등락율", Kind.PCT),
    ]
    for n in range(1, 11):
        out += [
            _f(620 + n, f"lp_ask_qty_{n}", f"LP매도호가수량{n}", Kind.QTY),
            _f(630 + n, f"lp_bid_qty_{n}", f"LP매수호가수량{n}", Kind.QTY),
        ]
    out += [
        _f(13, "cum_volume", "누적거래량", Kind.QTY),
        _f(299, "expected_vs_prev_volume_pct", "전일거래량대비예상체결율", Kind.PCT),
        _f(215, "market_op_code", "장운영구분", Kind.TEXT),
        _f(216, "investor_ticker", "투자자별ticker", Kind.TEXT),
    ]
    for venue, base in (("krx", 6044), ("nxt", 6066)):
        v = venue.upper()
        out += [_f(base + n - 1, f"{venue}_ask_qty_{n}", f"{v} 매도호가잔량{n}", Kind.QTY) for n in range(1, 11)]
        out += [
            _f(base + 10 + n - 1, f"{venue}_bid_qty_{n}", f"{v} 매수호가잔량{n}", Kind.QTY) for n in range(1, 11)
        ]
        out += [
            _f(base + 20, f"{venue}_total_ask_qty", f"{v} 매도호가총잔량", Kind.QTY),
            _f(base + 21, f"{venue}_total_bid_qty", f"{v} 매수호가총잔량", Kind.QTY),
        ]
    for venue, base, sep in (("krx", 6100, " "), ("nxt", 6105, "")):
        v = venue.upper()
        out += [
            _f(base, f"{venue}_mid_ask_total_delta", f"{v}{sep}중간가 매도 총잔량 증감", Kind.SIGNED, "shares"),
            _f(base + 1, f"{venue}_mid_ask_total", f"{v}{sep}중간가 매도 총잔량", Kind.QTY),
            _f(base + 2, f"{venue}_mid_price", f"{v}{sep}중간가", Kind.PRICE),
            _f(base + 3, f"{venue}_mid_bid_total", f"{v}{sep}중간가 매수 총잔량", Kind.QTY),
            _f(base + 4, f"{venue}_mid_bid_total_delta", f"{v}{sep}중간가 매수 총잔량 증감", Kind.SIGNED, "shares"),
        ]
    for venue, base in (("krx", 6110), ("nxt", 6113)):
        v = venue.upper()
        out += [
            _f(base, f"{venue}_mid_change", f"{v}중간가대비", Kind.SIGNED, "KRW"),
            _f(base + 1, f"{venue}_mid_change_sign", f"{v}중간가대비 기호", Kind.CODE),
            _f(base + 2, f"{venue}_mid_change_pct", f"{v}중간가대비등락율", Kind.PCT),
        ]
    return tuple(out)


FIELDS_0D: tuple[FieldSpec, ...] = _build_0d()
"""0D 주식호가잔량, docs/protocol.md 2.1: 163 FIDs in the official key order of 6.1."""

FIELDS_0E: tuple[FieldSpec, ...] = (
    _f(21, "quote_time", "호가시간", Kind.TIME),
    _f(131, "ah_total_ask_qty", "시간외매도호가총잔량", Kind.QTY),
    _f(132, "ah_total_ask_qty_delta", "시간외매도호가총잔량직전대비", Kind.SIGNED, "shares"),
    _f(135, "ah_total_bid_qty", "시간외매수호가총잔량", Kind.QTY),
    _f(136, "ah_total_bid_qty_delta", "시간외매수호가총잔량직전대비", Kind.SIGNED, "shares"),
)
"""0E 주식시간외호가, docs/protocol.md 2.2: 5 FIDs, totals only (no price levels)."""

FIELDS_0B: tuple[FieldSpec, ...] = (
    _f(20, "trade_time", "체결시간", Kind.TIME),
    _f(10, "price", "현재가", Kind.PRICE),
    _f(11, "change", "전일대비", Kind.SIGNED, "KRW"),
    _f(12, "change_pct", "등락율", Kind.PCT),
    _f(27, "best_ask", "(최우선)매도호가", Kind.PRICE),
    _f(28, "best_bid", "(최우선)매수호가", Kind.PRICE),
    _f(15, "trade_qty", "거래량", Kind.SIGNED, "shares, + buyer-initiated / - seller-initiated"),
    _f(13, "cum_volume", "누적거래량", Kind.QTY),
    _f(14, "cum_value_mil", "누적거래대금", Kind.QTY, "million KRW"),
    _f(16, "open", "시가", Kind.PRICE),
    _f(17, "high", "고가", Kind.PRICE),
    _f(18, "low", "저가", Kind.PRICE),
    _f(25, "change_sign", "전일대비기호", Kind.CODE),
    _f(26, "vol_change_vs_prev", "전일거래량대비(계약,주)", Kind.SIGNED, "shares"),
    _f(29, "value_change", "거래대금증감", Kind.SIGNED, "KRW"),
    _f(30, "vol_pct_vs_prev", "전일거래량대비(비율)", Kind.PCT),
    _f(31, "turnover_pct", "거래회전율", Kind.PCT),
    _f(32, "trade_cost", "거래비용", Kind.SIGNED, "unspecified"),
    _f(228, "strength_pct", "체결강도", Kind.PCT),
    _f(311, "mkt_cap_100m", "시가총액(억)", Kind.QTY, "100 million KRW"),
    _f(290, "session_code", "장구분", Kind.CODE),
    _f(691, "ko_proximity", "K.O 접근도", Kind.PCT, "unspecified"),
    _f(567, "upper_limit_time", "상한가발생시간", Kind.TIME),
    _f(568, "lower_limit_time", "하한가발생시간", Kind.TIME),
    _f(851, "vol_ratio_same_time_prev", "전일 동시간 거래량 비율", Kind.PCT),
    _f(1890, "open_time", "시가시간", Kind.TEXT, "HHmmss when set (unconfirmed)"),
    _f(1891, "high_time", "고가시간", Kind.TEXT, "HHmmss when set (unconfirmed)"),
    _f(1892, "low_time", "저가시간", Kind.TEXT, "HHmmss when set (unconfirmed)"),
    _f(1030, "sell_exec_qty", "매도체결량", Kind.QTY),
    _f(1031, "buy_exec_qty", "매수체결량", Kind.QTY),
    _f(1032, "buy_ratio", "매수비율", Kind.PCT),
    _f(1071, "sell_exec_count", "매도체결건수", Kind.QTY, "trades"),
    _f(1072, "buy_exec_count", "매수체결건수", Kind.QTY, "trades"),
    _f(1313, "tick_value", "순간거래대금", Kind.SIGNED, "thousand KRW"),
    _f(1315, "sell_exec_qty_single", "매도체결량_단건", Kind.QTY),
    _f(1316, "buy_exec_qty_single", "매수체결량_단건", Kind.QTY),
    _f(1314, "net_buy_exec_qty", "순매수체결량", Kind.SIGNED, "shares"),
    _f(1497, "cfd_margin", "CFD증거금", Kind.PCT, "unspecified"),
    _f(1498, "maint_margin", "유지증거금", Kind.PCT, "unspecified"),
    _f(620, "vwap", "당일거래평균가", Kind.PCT, "KRW"),
    _f(732, "cfd_cost", "CFD거래비용", Kind.PCT, "unspecified"),
    _f(852, "short_cost", "대주거래비용", Kind.PCT, "unspecified"),
    _f(9081, "exchange_code", "거래소구분", Kind.CODE),
)
"""0B 주식체결, docs/protocol.md 2.3: 43 FIDs in the official key order of 6.5.

Kinds where docs/protocol.md gives no format (marked "—" there) are chosen so that the official and measured
values read cleanly: decimals (``pct``) for rates, costs and 620 (``14 x 1e6 / 13``, not a whole number);
``text`` for 1890-1892 (empty in every example, so their format is unknown); ``time`` for 567/568
(``"000000"`` in the example, stored as 00:00 KST: "not reached"). 290 장구분 is 1 장전 시간외, 2 장중,
3 장후 시간외; 9081 거래소구분 is 1 KRX in the official example (see the simulator for NXT).
"""

FIELDS_BY_TYPE: dict[str, tuple[FieldSpec, ...]] = {"0B": FIELDS_0B, "0D": FIELDS_0D, "0E": FIELDS_0E}

REAL_TYPE_NAMES: dict[str, str] = {
    "00": "주문체결",
    "04": "현물잔고",
    "0A": "주식기세",
    "0B": "주식체결",
    "0C": "주식우선호가",
    "0D": "주식호가잔량",
    "0E": "주식시간외호가",
    "0F": "주식당일거래원",
    "0G": "ETF NAV",
    "0H": "주식예상체결",
    "0I": "국제금환산가격",
    "0J": "업종지수",
    "0U": "업종등락",
    "0g": "주식종목정보",
    "0m": "ELW 이론가",
    "0s": "장시작시간",
    "0u": "ELW 지표",
    "0w": "종목프로그램매매",
    "1h": "VI발동/해제",
}
"""Real-time type code to the ``name`` Kiwoom puts in each REAL row (docs/protocol.md 3, 1.7)."""


def fields_for(real_type: str) -> tuple[FieldSpec, ...]:
    """The field table of ``real_type`` ("0B", "0D" or "0E"); raises KeyError for types we do not normalize."""
    return FIELDS_BY_TYPE[real_type]

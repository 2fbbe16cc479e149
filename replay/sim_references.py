"""The simulated market's items: reference prices (기준가) of known codes and ETFs, and stable seeds.

Pure data and functions (docs/protocol.md 5.5 for the tick grid of the references).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Mapping
from types import MappingProxyType

from kiwoom_tape.schemas.market import is_etf, split_item, tick_size

__all__ = ["DEFAULT_UNIVERSE", "ETF_REFERENCES", "REFERENCE_PRICES", "is_known", "reference_price_of", "seed_int"]

# Previous closes (기준가), plausible for 2025, all on the KRX tick grid (docs/protocol.md 5.5).
_REFERENCES: dict[str, int] = {
    "005930": 71_400,  # 삼성전자
    "000660": 201_500,  # SK하이닉스
    "035420": 213_500,  # NAVER
    "005380": 214_000,  # 현대차
    "035720": 41_450,  # 카카오
    "051910": 312_000,  # LG화학
    "006400": 287_500,  # 삼성SDI
    "068270": 178_500,  # 셀트리온
    "207940": 1_021_000,  # 삼성바이오로직스
    "005490": 356_500,  # POSCO홀딩스
    "000270": 98_700,  # 기아
    "012330": 246_500,  # 현대모비스
    "105560": 84_300,  # KB금융
    "055550": 53_800,  # 신한지주
    "028260": 139_600,  # 삼성물산
    "066570": 82_400,  # LG전자
    "003550": 73_900,  # LG
    "096770": 118_200,  # SK이노베이션
    "034730": 156_300,  # SK
    "015760": 23_850,  # 한국전력
    "247540": 112_400,  # 에코프로비엠 (KOSDAQ)
    "086520": 62_300,  # 에코프로 (KOSDAQ)
    "373220": 356_000,  # LG에너지솔루션
    "032830": 83_900,  # 삼성생명
    "017670": 53_100,  # SK텔레콤
    "033780": 104_800,  # KT&G
    "003490": 22_150,  # 대한항공
    "196170": 318_500,  # 알테오젠 (KOSDAQ)
    "042700": 98_400,  # 한미반도체
    "035900": 71_200,  # JYP Ent. (KOSDAQ)
    "000020": 6_450,  # 동화약품 (docs/protocol.md 6.3)
}

DEFAULT_UNIVERSE: tuple[str, ...] = tuple(_REFERENCES)
"""The default simulated items: real KOSPI/KOSDAQ codes (KRX venue, no suffix) with plausible previous closes."""

REFERENCE_PRICES: Mapping[str, int] = MappingProxyType(_REFERENCES)
"""Previous close of each :data:`DEFAULT_UNIVERSE` code, won."""

ETF_REFERENCES: Mapping[str, int] = MappingProxyType(
    {"069500": 35_215, "102110": 35_370, "229200": 11_645, "122630": 17_905, "252670": 2_135, "114800": 4_260}
)
"""Plausible previous closes of some ETFs of :data:`kiwoom_tape.schemas.market.ETF_CODES`, on the 5-won grid (5.5)."""


def is_known(code: str) -> bool:
    """Whether ``code`` is one of the listed large caps or ETFs (liquid, quoted one tick wide)."""
    return code in _REFERENCES or code in ETF_REFERENCES


def seed_int(*parts: object) -> int:
    """A 64-bit seed from ``parts`` (blake2b of their ``str``): stable across runs, unlike ``hash()``."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def reference_price_of(item: str) -> int:
    """The previous close (기준가) of ``item``; venue suffixes share the code's reference.

    Known codes use :data:`REFERENCE_PRICES` and :data:`ETF_REFERENCES`; any other code gets a
    deterministic price derived from ``zlib.crc32`` of the code (log-uniform 500..800,000 won, snapped
    down to its tick, docs/protocol.md 5.5; the 5-won tick for an ETF).
    """
    code, _ = split_item(item)
    known = _REFERENCES.get(code) or ETF_REFERENCES.get(code)
    if known is not None:
        return known
    u = (zlib.crc32(b"ref:" + code.encode("utf-8")) & 0xFFFFFF) / float(0x1000000)
    p = int(math.exp(math.log(500.0) + u * (math.log(800_000.0) - math.log(500.0))))
    return p - p % tick_size(p, etf=is_etf(code))

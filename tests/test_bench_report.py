"""The bench's verdict helpers: a quantile by nearest rank, and a ratio target from above or below."""

from __future__ import annotations

import math

from bench.report import Figure, percentile


def test_percentile_is_nearest_rank_of_unsorted_values() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 1.0) == 5.0
    assert percentile(values, 0.99) == 5.0
    assert math.isnan(percentile([], 0.5))


def test_ratio_at_most_is_a_cost_against_its_floor() -> None:
    over = Figure("record", "cpu", 9.6, "% of a core", ceiling=5.77).check_ratio_at_most(1.0)
    assert over.verdict == "MISSED" and over.target == "<= 100% of ceiling"
    assert over.ratio is not None and abs(over.ratio - 9.6 / 5.77) < 1e-12
    under = Figure("record", "cpu", 5.0, "% of a core", ceiling=5.77).check_ratio_at_most(1.0)
    assert under.verdict == "met"
    unknown = Figure("record", "cpu", None, "% of a core", ceiling=5.77).check_ratio_at_most(1.0)
    assert unknown.verdict == "" and unknown.ratio is None


def test_ratio_at_least_is_a_rate_against_its_ceiling() -> None:
    assert Figure("r", "rate", 40.0, "f/s", ceiling=100.0).check_ratio(0.40).verdict == "met"
    assert Figure("r", "rate", 39.0, "f/s", ceiling=100.0).check_ratio(0.40).verdict == "MISSED"

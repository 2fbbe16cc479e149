"""The RSS estimator of bench/memory.py: medians per window, least-squares slope over them, peak = max sample."""

from __future__ import annotations

import math
import random

import pytest

from bench.memory import WINDOW_S, rss_estimate, window_medians

MIB = 2**20


def _series(slope_mib_per_min: float, *, seconds: int = 1800, noise_mib: float = 3.0, seed: int = 1,
            sawtooth_mib: float = 0.0, roll_every: int = 0, roll_drop_mib: float = 0.0) -> list[tuple[float, int]]:
    """A synthetic run sampled every second: 150 MiB + slope * t, noise, a flush sawtooth, drops at rolls."""
    rng = random.Random(seed)
    out = []
    for t in range(seconds):
        v = 150.0 + slope_mib_per_min * t / 60.0 + rng.gauss(0.0, noise_mib)
        v += sawtooth_mib * ((t % 14) / 14.0)  # buffers fill for 14 s, then a flush empties them
        if roll_every and (t % roll_every) < 10:
            v -= roll_drop_mib  # a roll: memory released for a few seconds, then back
        out.append((float(t), int(v * MIB)))
    return out


@pytest.mark.parametrize("slope", [0.0, 0.3, 2.0, -0.5])
def test_known_slope_with_noise(slope: float) -> None:
    est = rss_estimate(_series(slope, noise_mib=5.0, sawtooth_mib=20.0))
    assert est.growth_mib_per_min == pytest.approx(slope, abs=0.1)
    assert len(est.window_medians_mib) == 6  # 30 min / 5 min


def test_steps_at_rolls_do_not_make_growth() -> None:
    # a flat run whose RSS drops by 40 MiB for 10 s at every roll (every 6 min): the medians ignore the steps
    est = rss_estimate(_series(0.0, sawtooth_mib=20.0, roll_every=360, roll_drop_mib=40.0))
    assert abs(est.growth_mib_per_min) < 0.1


def test_peak_is_the_largest_sample_or_hwm() -> None:
    samples = _series(0.0, seconds=600, noise_mib=0.0)
    samples[300] = (300.0, 400 * MIB)  # one spike
    est = rss_estimate(samples, window_s=60.0)
    assert est.peak_mib == pytest.approx(400.0)
    assert est.growth_mib_per_min == pytest.approx(0.0, abs=1e-9)  # one spike moves no median
    assert rss_estimate(samples, window_s=60.0, hwm_bytes=500 * MIB).peak_mib == pytest.approx(500.0)


def test_windows_start_at_zero_and_drop_a_short_last_one() -> None:
    samples = [(float(t), float(t)) for t in range(-5, 700)]  # before the start: ignored
    mids, meds = window_medians(samples, WINDOW_S)
    # [0,300) and [300,600); [600,700) holds 100 s < 150 s: dropped
    assert mids == [150.0, 450.0]
    assert meds == [149.5, 449.5]
    mids, _ = window_medians([(float(t), 0.0) for t in range(760)], WINDOW_S)
    assert mids == [150.0, 450.0, 750.0]  # [600,760): 160 s >= half a window, kept


def test_too_few_windows_give_nan() -> None:
    assert math.isnan(rss_estimate(_series(1.0, seconds=200)).growth_mib_per_min)
    assert math.isnan(rss_estimate([]).peak_mib)
    with pytest.raises(ValueError):
        window_medians([(0.0, 1.0)], 0.0)

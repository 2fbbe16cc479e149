"""Benchmarks of kiwoom-tape against this machine's own limits: ``python -m bench`` (``--quick`` for seconds).

Each figure is measured with its ceiling in the same run, on the same frames (``bench.frames``: the
simulator's full 163-FID 0D frames). Sections: ``record`` (lossless capacity of the real ``record``
process vs a bare websockets receiver; CPU at the real peak), ``storage`` (bytes per 0D row, and every
writer lever), ``replay`` (our server at ``--speed max`` vs a bare websockets sender; pacing at 1x),
``query`` (a generated day through the DuckDB views vs hand-written SQL, on the segment files and compacted),
``memory`` (RSS of ``record`` over time at the real peak), ``market`` (``record --keys`` with 14 keys x 200
items at the real peak: CPU, RSS, loss, lossless margin), ``compact`` (bytes per 0D row before and after
``kiwoom-tape compact``). Results go to ``bench/results/latest.json`` and a dated copy.

These are measurements, not tests: nothing here asserts a timing (``tests/test_bench_smoke.py`` only
runs ``--quick`` and checks that every section reported).
"""

__all__: list[str] = []

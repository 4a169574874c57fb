"""Benchmarks (``bench_*.py``, run by ``make bench``) and the fault-injection suite (``bench/chaos``)."""

"""Benchmarks for ordo: ``python -m bench.run`` (``make bench``)."""

"""Benchmarks: the SDK against a raw-httpx baseline, same run, same server.

Run them with ``scripts/dev bench`` (``--quick`` for a < 1 minute pass); see
``docs/benchmarks.md`` for what each figure means.
"""
